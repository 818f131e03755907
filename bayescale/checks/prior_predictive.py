"""Prior predictive draws: what the priors say about the runs before any fitting."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from bayescale.data.runs import Runs
from bayescale.model.laws import ScalingLaw, get_law, ops
from bayescale.model.likelihoods import Likelihood
from bayescale.model.priors import Prior
from bayescale.model.pymc_model import draw_log_noise, law_covariates, resolve_priors


def prior_predictive(
    law: str | ScalingLaw,
    runs: Any,
    *,
    priors: Mapping[str, Prior | Mapping[str, Any]] | None = None,
    fix: Mapping[str, float] | None = None,
    likelihood: Likelihood = "student_t",
    draws: int = 500,
    random_seed: int | None = None,
) -> xr.Dataset:
    """Draw parameters from the priors and the loss of every run from the law.

    Parameters
    ----------
    law
        Law name or object.
    runs
        Anything :meth:`Runs.from_any` accepts; only the covariates are used.
    priors, fix, likelihood
        As in :func:`bayescale.methods.parametric`.
    draws
        Number of prior draws.
    random_seed
        Seed for reproducible draws.

    Returns
    -------
    xarray.Dataset
        Every parameter (dims ``chain``, ``draw``; one chain), ``loss`` (the
        law's mean) and ``loss_predictive`` (with noise), dims ``chain``,
        ``draw``, ``run``.
    """
    law_obj = get_law(law)
    runs_obj = Runs.from_any(runs)
    free, fixed = resolve_priors(law_obj, likelihood, priors, fix)
    rng = np.random.default_rng(random_seed)
    theta: dict[str, xr.DataArray] = {}
    for name, prior in free.items():
        theta[name] = xr.DataArray(prior.sample(rng, (1, draws)), dims=("chain", "draw"))
    for name, value in fixed.items():
        theta[name] = xr.DataArray(np.full((1, draws), value), dims=("chain", "draw"))
    x = {k: xr.DataArray(v, dims="run") for k, v in law_covariates(law_obj, runs_obj).items()}
    with np.errstate(over="ignore", invalid="ignore"):
        log_mean = law_obj.log_loss(theta, x, ops.NUMPY).transpose("chain", "draw", "run")
        noisy = log_mean + draw_log_noise(rng, likelihood, theta, log_mean.shape)
        out = xr.Dataset(theta)
        out["loss"] = np.exp(log_mean)
        out["loss_predictive"] = np.exp(noisy)
    return out
