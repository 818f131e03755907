"""Informed prior sets built from published fits, to borrow strength from them.

A prior set centres a LogNormal prior on each published estimate with the
published standard error (on the log scale) widened by a factor, because a
user's runs differ from the paper's in data, tokenizer and recipe. Fit once
with the default priors and once with a prior set to see how much the answer
moved.

A population set (``published-ladders``) is learnt from many public ladders
(``benchmarks/population_prior.py``): its spread is the spread between ladders,
so it is used as it is (its own ``widen`` of 1), and it is the default prior of a
ladder too small for the law's default priors (:data:`SMALL_LADDER_SETS`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from importlib import resources
from typing import Any

import numpy as np

from bayescale.errors import PriorError
from bayescale.model.priors import Prior

#: Default widening of the published standard errors (a set may carry its own ``widen``).
DEFAULT_WIDEN = 2.0

#: The prior set a ladder with too few runs for a law's default priors fits with, by law.
SMALL_LADDER_SETS = {"chinchilla": "published-ladders"}


def _catalog() -> dict[str, Any]:
    return json.loads(resources.files("bayescale.bundled").joinpath("prior_sets.json").read_text())


def list_prior_sets() -> list[str]:
    """Names of the informed prior sets shipped with bayescale."""
    return sorted(_catalog())


def prior_set_info(name: str) -> dict[str, Any]:
    """The law, description, source and estimates behind prior set ``name``."""
    catalog = _catalog()
    if name not in catalog:
        raise PriorError(f"unknown prior set {name!r}; available: {', '.join(sorted(catalog))}")
    return catalog[name]


def default_widen(name: str) -> float:
    """The widening prior set ``name`` is used with unless told otherwise."""
    return float(prior_set_info(name).get("widen", DEFAULT_WIDEN))


def published_priors(
    name: str, widen: float | None = None, parameters: Iterable[str] | None = None
) -> dict[str, Prior]:
    """Priors centred on a published fit, for :func:`bayescale.methods.parametric`'s ``priors=``.

    Parameters
    ----------
    name
        A prior set, see :func:`list_prior_sets` (``"epoch-chinchilla"``,
        ``"published-ladders"``).
    widen
        Factor applied to the published standard errors (>= 1 keeps the prior
        no tighter than the paper's own uncertainty). Default: the set's own,
        2 for a single published fit, 1 for a population set (its spread is
        already the spread between ladders).
    parameters
        Only these parameters (default: all the set has). Leave out ``E`` when
        your loss is measured on other data or another tokenizer: the
        irreducible loss does not transfer.

    Returns
    -------
    dict
        ``{parameter: Prior("LogNormal", mu=log(estimate), sigma=widen * log_se)}``.
    """
    if widen is None:
        widen = default_widen(name)
    if not np.isfinite(widen) or widen <= 0:
        raise PriorError(f"widen must be a finite number > 0, got {widen!r}")
    estimates = prior_set_info(name)["estimates"]
    chosen = list(estimates) if parameters is None else list(parameters)
    unknown = [p for p in chosen if p not in estimates]
    if unknown:
        raise PriorError(f"prior set {name!r} has no estimate of {unknown}; it has {list(estimates)}")
    return {
        p: Prior("LogNormal", mu=float(np.log(estimates[p]["value"])), sigma=widen * estimates[p]["log_se"])
        for p in chosen
    }
