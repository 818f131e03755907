"""Posterior predictive checks of a fit on its own runs: coverage, PIT, residual trends."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bayescale.posterior.intervals import interval_table
from bayescale.posterior.residuals import TREND_ALPHA, trends
from bayescale.questions.plan import predict_draws


def predictive_check(fit: Any, prob: float = 0.9, random_seed: int | None = None) -> Any:
    """Posterior predictive check on the runs the law was fitted to.

    Returns
    -------
    pandas.DataFrame
        One row per run: ``params``, ``tokens`` (and ``unique_tokens``,
        ``epochs`` when present), the observed ``loss``, the predictive
        ``loss_predictive_{median,lower,upper}``, whether the run is
        ``covered``, its ``pit`` (share of predictive draws below the observed
        loss: uniform for a well-specified law) and the ``residual`` on log
        loss against the posterior median of the law's mean.
    """
    runs = fit.runs
    unique = runs.column("unique_tokens") if "unique_tokens" in fit.law.required_columns else None
    draws = predict_draws(fit, runs.column("params"), runs.column("tokens"), unique, random_seed)
    table = interval_table(draws, prob, "eti")
    observed = runs.column("loss")
    predictive = draws["loss_predictive"].stack(sample=("chain", "draw")).transpose("query", "sample").values
    out = pd.DataFrame({"params": runs.column("params"), "tokens": runs.column("tokens")})
    if runs.has_unique_tokens:
        out["unique_tokens"] = runs.column("unique_tokens")
        out["epochs"] = out["tokens"] / out["unique_tokens"]
    out["loss"] = observed
    for stat in ("median", "lower", "upper"):
        out[f"loss_predictive_{stat}"] = table[f"loss_predictive_{stat}"].to_numpy()
    out["covered"] = (out["loss_predictive_lower"] <= observed) & (observed <= out["loss_predictive_upper"])
    out["pit"] = np.mean(predictive < observed[:, None], axis=1)
    out["residual"] = np.log(observed) - np.log(table["loss_median"].to_numpy())
    return out


def residual_trends(check: Any, alpha: float = TREND_ALPHA) -> Any:
    """:func:`bayescale.posterior.residuals.trends` of the residuals of :func:`predictive_check`."""
    return trends(check, alpha)
