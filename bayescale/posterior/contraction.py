"""Where a fit's information comes from: how far the runs narrowed each parameter's prior.

The contraction of a parameter is ``1 - var(posterior) / var(prior)`` (Schad, Betancourt and
Vasishth 2021), on the log scale for a positive parameter: 0 when the runs taught nothing (the
posterior is the prior), near 1 when they decide it. On a small ladder fitted with a borrowed
prior it says which answers are the data's and which are the prior's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.model.priors import Prior

#: Contraction at or above which the runs, not the prior, decide a parameter.
DATA_DECIDES = 0.5
#: Prior draws used when a prior's spread has no closed form.
PRIOR_DRAWS = 20_000


def _prior_sd(prior: Prior, log: bool) -> float:
    """Standard deviation of the prior, of the log when ``log``.

    Closed forms for the noise model's priors too (Gamma for nu, HalfNormal for sigma): drawing
    them imports PyMC and SciPy's statistics, seconds that ``predict`` and ``plan`` on a saved
    fit would spend only to report the contraction.
    """
    k, d = prior.kwargs, prior.distribution
    if (d == "LogNormal" and log) or (d == "Normal" and not log):
        return float(k["sigma"])
    if d == "Gamma":  # log of a Gamma(alpha, beta) variable: variance trigamma(alpha)
        return math.sqrt(_trigamma(k["alpha"])) if log else math.sqrt(k["alpha"]) / k["beta"]
    if d == "HalfNormal":  # log |sigma Z|: variance pi^2 / 8, whatever sigma
        return math.pi / math.sqrt(8.0) if log else k["sigma"] * math.sqrt(1.0 - 2.0 / math.pi)
    if d == "Exponential":  # log of an exponential variable: Gumbel, variance pi^2 / 6
        return math.pi / math.sqrt(6.0) if log else 1.0 / k["lam"]
    draws = prior.sample(np.random.default_rng(0), PRIOR_DRAWS)
    return float(np.std(np.log(draws) if log else draws))


def _trigamma(x: float) -> float:
    """The trigamma function psi'(x), x > 0: recurrence up to 6, then its asymptotic series (error < 1e-9)."""
    total = 0.0
    while x < 6.0:
        total += 1.0 / (x * x)
        x += 1.0
    inv = 1.0 / x
    inv2 = inv * inv
    series = inv + inv2 / 2 + inv * inv2 * (1 / 6 - inv2 * (1 / 30 - inv2 * (1 / 42 - inv2 / 30)))
    return total + series


def prior_contraction(posterior: xr.Dataset, priors: Mapping[str, Prior]) -> pd.DataFrame:
    """Prior and posterior spread of every free parameter, and how much the runs narrowed it.

    Parameters
    ----------
    posterior
        Draws with dims ``chain, draw`` (a fit's ``posterior``).
    priors
        The prior of each free parameter (a fit's ``priors``); parameters absent from
        ``posterior`` or with a per-group dimension are skipped.

    Returns
    -------
    pandas.DataFrame
        One row per parameter (index ``parameter``): ``scale`` (``"log"`` for a positive
        parameter), ``prior_sd``, ``posterior_sd`` and ``contraction``
        (``1 - posterior_sd**2 / prior_sd**2``, below 0 when the posterior is wider).
    """
    rows = []
    for name, prior in priors.items():
        if name not in posterior or set(posterior[name].dims) != {"chain", "draw"}:
            continue
        log = prior.is_positive
        values = posterior[name].values.ravel()
        post_sd = float(np.std(np.log(values) if log else values))
        prior_sd = _prior_sd(prior, log)
        rows.append(
            {
                "parameter": name,
                "scale": "log" if log else "linear",
                "prior_sd": prior_sd,
                "posterior_sd": post_sd,
                "contraction": 1.0 - (post_sd / prior_sd) ** 2,
            }
        )
    columns = ["parameter", "scale", "prior_sd", "posterior_sd", "contraction"]
    return pd.DataFrame(rows, columns=columns).set_index("parameter")  # columns: even with no rows


def information_message(table: pd.DataFrame, source: str) -> str:
    """One sentence per side: which parameters the runs decide and which mostly keep ``source``'s prior."""
    shares = ", ".join(f"{name} {row.contraction:.0%}" for name, row in table.iterrows())
    prior_led = [str(n) for n, row in table.iterrows() if row.contraction < DATA_DECIDES]
    data_led = [str(n) for n, row in table.iterrows() if row.contraction >= DATA_DECIDES]
    text = (
        "where the answer's information comes from (share of the prior's variance the runs removed): "
        f"{shares}."
    )
    if data_led:
        text += f" The runs decide {', '.join(data_led)}."
    if prior_led:
        verb = "keeps" if len(prior_led) == 1 else "keep"
        text += (
            f" {', '.join(prior_led)} mostly {verb} {source}: answers that lean on them (plans, and "
            "predictions far from the runs) come from the prior more than from these runs."
        )
    return text
