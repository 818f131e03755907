"""Questions answered from a posterior, vectorised over all draws at once.

Each function has a ``*_draws`` form returning an ``xarray.Dataset`` with dims
``chain``, ``draw``, ``query`` and a table form with the median and credible
interval of each quantity, one row per query.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.errors import BayescaleError, LawError
from bayescale.intervals import check_interval, interval_table
from bayescale.laws import covariates, ops
from bayescale.model import draw_log_noise

if TYPE_CHECKING:
    from bayescale.fit import Fit


def _query_array(values: Any, name: str) -> np.ndarray:
    try:
        arr = np.atleast_1d(np.asarray(values, dtype=float))
    except (TypeError, ValueError):
        raise BayescaleError(f"{name} must be a number or numbers, got {values!r}") from None
    if arr.ndim != 1:
        raise BayescaleError(f"{name} must be a number or a 1-d sequence, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise BayescaleError(f"{name} must be finite and > 0, got {values!r}")
    return arr


def _query(**columns: Any) -> xr.Dataset:
    arrays = {k: _query_array(v, k) for k, v in columns.items() if v is not None}
    try:
        broadcast = np.broadcast_arrays(*arrays.values())
    except ValueError:
        shapes = {k: v.shape for k, v in arrays.items()}
        raise BayescaleError(f"query inputs have incompatible lengths: {shapes}") from None
    return xr.Dataset({k: ("query", v) for k, v in zip(arrays, broadcast, strict=True)})


def predict_draws(
    fit: Fit, params: Any, tokens: Any, unique_tokens: Any = None, random_seed: int | None = None
) -> xr.Dataset:
    """Draws of the mean loss ``loss`` and predictive loss ``loss_predictive`` per query."""
    query = _query(params=params, tokens=tokens, unique_tokens=unique_tokens)
    if "unique_tokens" in fit.law.required_columns and "unique_tokens" not in query:
        raise LawError(f"law {fit.law.name!r} needs unique_tokens to predict")
    x = covariates(query["params"], query["tokens"], query.get("unique_tokens"))
    theta = fit.theta()
    log_mean = fit.law.log_loss(theta, x, ops.NUMPY)
    log_mean = log_mean.transpose("chain", "draw", "query")
    noise = draw_log_noise(np.random.default_rng(random_seed), fit.likelihood, theta, log_mean.shape)
    # Heavy-tailed noise (small nu) can put a rare draw beyond exp's float range; it becomes inf,
    # a faithful "larger than any float" draw that leaves the quantiles untouched.
    with np.errstate(over="ignore"):
        predictive = np.exp(log_mean + noise)
    return xr.Dataset({"loss": np.exp(log_mean), "loss_predictive": predictive})


def predict(
    fit: Fit,
    params: Any,
    tokens: Any,
    unique_tokens: Any = None,
    prob: float = 0.9,
    kind: str = "eti",
    random_seed: int | None = None,
) -> pd.DataFrame:
    """Table of :func:`predict_draws`: the inputs, then ``loss_*`` and ``loss_predictive_*``."""
    check_interval(prob, kind)
    query = _query(params=params, tokens=tokens, unique_tokens=unique_tokens)
    draws = predict_draws(fit, params, tokens, unique_tokens, random_seed)
    return interval_table(draws, prob, kind, query)


def optimal_draws(fit: Fit, compute: Any) -> xr.Dataset:
    """Draws of the compute-optimal allocation at each budget, C = 6ND.

    Returns ``params``, ``tokens``, ``tokens_per_param`` and ``loss`` with dims
    ``chain``, ``draw``, ``query``.
    """
    query = _query(compute=compute)
    theta = fit.theta()
    best = fit.law.optimal_allocation(theta, query["compute"])
    if best is None:
        raise LawError(f"law {fit.law.name!r} has no closed-form compute-optimal allocation")
    x = covariates(best["params"], best["tokens"])
    loss = np.exp(fit.law.log_loss(theta, x, ops.NUMPY))
    out = xr.Dataset(
        {
            "params": best["params"],
            "tokens": best["tokens"],
            "tokens_per_param": best["tokens"] / best["params"],
            "loss": loss,
        }
    )
    return out.transpose("chain", "draw", "query")


def optimal(fit: Fit, compute: Any, prob: float = 0.9, kind: str = "eti") -> pd.DataFrame:
    """Table of :func:`optimal_draws`: ``compute``, then each quantity's median and interval."""
    check_interval(prob, kind)
    query = _query(compute=compute)
    return interval_table(optimal_draws(fit, compute), prob, kind, query)
