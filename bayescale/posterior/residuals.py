"""Residuals of a fitted law on its own runs, and whether they trend with a covariate.

A law whose shape misses the runs can still pass every sampler diagnostic and answer
confidently; its residuals then trend with model size, tokens or epochs. This is
the cheap check every fit runs (no predictive draws): the log loss of each run
minus the posterior median of the law's log mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import stdtr

from bayescale.data.runs import Runs
from bayescale.model.laws import ScalingLaw, ops
from bayescale.model.pymc_model import law_covariates

#: Significance level of a trend: strict, as hundreds of runs make tiny trends significant.
TREND_ALPHA = 0.01


#: Draws x runs evaluated at once by :func:`log_residuals` (~160 MB of float64 per intermediate).
CHUNK_CELLS = 20_000_000


def log_residuals(law: ScalingLaw, theta: Mapping[str, Any], runs: Runs) -> np.ndarray:
    """``log loss - median over draws of the law's log mean`` for each run.

    The law's mean over draws x runs is evaluated a block of runs at a time: at a million runs
    and 4,000 draws the whole array would take 32 GB.
    """
    covariates = law_covariates(law, runs)
    n_draws = max((int(np.size(v)) for v in theta.values()), default=1)
    step = max(1, CHUNK_CELLS // max(n_draws, 1))
    medians = []
    for start in range(0, len(runs), step):
        x = {k: xr.DataArray(np.asarray(v)[start : start + step], dims="run") for k, v in covariates.items()}
        log_mean = law.log_loss(theta, x, ops.NUMPY).median(("chain", "draw"))
        medians.append(np.asarray(log_mean.transpose("run").values, dtype=float))
    return np.log(runs.column("loss")) - np.concatenate(medians)


def residual_frame(runs: Runs, residual: np.ndarray) -> pd.DataFrame:
    """The covariates a residual may trend with (``params``, ``tokens``, ``epochs``) and ``residual``."""
    out = pd.DataFrame({"params": runs.column("params"), "tokens": runs.column("tokens")})
    if runs.has_unique_tokens:
        out["epochs"] = out["tokens"] / runs.column("unique_tokens")
    out["residual"] = residual
    return out


def trends(frame: pd.DataFrame, alpha: float = TREND_ALPHA) -> pd.DataFrame:
    """Rank correlation of the residuals with each log covariate and with its square.

    A well-specified law leaves residuals that do not trend with model size,
    tokens or epochs; a significant trend (p < ``alpha``) says the law's shape
    is wrong along that axis (for example Chinchilla's law on heavily
    repeated data, whose loss rises with epochs). A law that bends the wrong
    way leaves a U-shaped pattern instead (Kaplan's law, which has no
    irreducible loss, on runs that flatten towards one: residuals high at both
    ends of the size range), which the correlation with the squared distance
    from the mean of the log covariate catches.

    Parameters
    ----------
    frame
        ``residual`` and any of ``params``, ``tokens``, ``epochs`` (see :func:`residual_frame`).

    Returns
    -------
    pandas.DataFrame
        One row per covariate with more than two distinct values: ``spearman_rho``,
        ``pvalue`` and ``trend`` (p < ``alpha``); ``curvature_rho``,
        ``curvature_pvalue`` and ``curvature`` for the squared log covariate (only
        with more than three distinct values; NaN and False otherwise).
    """
    rows = {}
    for column in ("params", "tokens", "epochs"):
        if column in frame.columns and frame[column].nunique() > 2:
            log_x = np.log(frame[column].to_numpy(dtype=float))
            rho, pvalue = spearman(log_x, frame["residual"].to_numpy(dtype=float))
            row = {"spearman_rho": rho, "pvalue": pvalue}
            row["curvature_rho"], row["curvature_pvalue"] = np.nan, np.nan
            if frame[column].nunique() > 3:
                row["curvature_rho"], row["curvature_pvalue"] = spearman(
                    (log_x - log_x.mean()) ** 2, frame["residual"].to_numpy(dtype=float)
                )
            rows[column] = row
    columns = ["spearman_rho", "pvalue", "trend", "curvature_rho", "curvature_pvalue", "curvature"]
    if not rows:
        return pd.DataFrame(columns=columns)
    table = pd.DataFrame(rows).T
    table["trend"] = table["pvalue"] < alpha
    table["curvature"] = table["curvature_pvalue"] < alpha  # NaN compares False
    return table[columns]


def spearman(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Spearman's rank correlation of ``x`` and ``y`` and its two-sided p-value, as ``scipy.stats.spearmanr``.

    The correlation of the ranks (ties averaged); the p-value from Student's t with ``n - 2``
    degrees of freedom. Written out so that a fit does not import ``scipy.stats`` (~0.7 s).
    """
    ranks_x = pd.Series(x).rank(method="average").to_numpy()
    ranks_y = pd.Series(y).rank(method="average").to_numpy()
    dof = len(x) - 2
    with np.errstate(divide="ignore", invalid="ignore"):  # a constant input: NaN; |rho| = 1: p = 0
        rho = np.corrcoef(ranks_x, ranks_y)[0, 1]
        t = rho * np.sqrt(dof / ((1.0 - rho) * (1.0 + rho)))
    return float(rho), float(2 * stdtr(dof, -np.abs(t)))


def trend_message(table: pd.DataFrame) -> str | None:
    """One line naming each covariate the residuals trend or bend with, or ``None``."""
    found = []
    for column, row in table.iterrows():
        if row["trend"]:
            found.append(f"a trend with {column} (rho {row['spearman_rho']:.2f}, p {row['pvalue']:.1e})")
        if row["curvature"]:
            found.append(
                f"a U-shape in log {column} (rho {row['curvature_rho']:.2f}, p {row['curvature_pvalue']:.1e})"
            )
    if not found:
        return None
    return (
        "the law's shape misses its own runs: residuals show " + "; ".join(found) + ". Answers "
        "from it, above all beyond the runs, are suspect; compare other laws (bayescale compare)"
    )
