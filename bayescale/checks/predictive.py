"""Posterior predictive checks of a fit on its own runs: coverage, PIT, residual trends."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from bayescale.posterior.intervals import interval_table
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


def residual_trends(check: Any, alpha: float = 0.01) -> Any:
    """Rank correlation of the residuals of :func:`predictive_check` with each covariate and its square.

    A well-specified law leaves residuals that do not trend with model size,
    tokens or epochs; a significant trend (p < ``alpha``) says the law's shape
    is wrong along that axis (for example Chinchilla's law on heavily
    repeated data, whose loss rises with epochs). A law that bends the wrong
    way leaves a U-shaped pattern instead (Kaplan's law, which has no
    irreducible loss, on runs that flatten towards one: residuals high at both
    ends of the size range), which the correlation with the squared distance
    from the mean of the log covariate catches.

    Returns
    -------
    pandas.DataFrame
        One row per covariate: ``spearman_rho``, ``pvalue`` and ``trend``
        (p < ``alpha``); ``curvature_rho``, ``curvature_pvalue`` and
        ``curvature`` for the squared log covariate (only with more than three
        distinct values; NaN and False otherwise).
    """
    rows = {}
    for column in ("params", "tokens", "epochs"):
        if column in check.columns and check[column].nunique() > 2:
            log_x = np.log(check[column].to_numpy(dtype=float))
            result = stats.spearmanr(log_x, check["residual"])
            row = {"spearman_rho": float(result.statistic), "pvalue": float(result.pvalue)}
            row["curvature_rho"], row["curvature_pvalue"] = np.nan, np.nan
            if check[column].nunique() > 3:
                bend = stats.spearmanr((log_x - log_x.mean()) ** 2, check["residual"])
                row["curvature_rho"], row["curvature_pvalue"] = float(bend.statistic), float(bend.pvalue)
            rows[column] = row
    table = pd.DataFrame(rows).T
    table["trend"] = table["pvalue"] < alpha
    table["curvature"] = table["curvature_pvalue"] < alpha  # NaN compares False
    return table[["spearman_rho", "pvalue", "trend", "curvature_rho", "curvature_pvalue", "curvature"]]
