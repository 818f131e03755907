"""Convergence diagnostics computed on every fit: r_hat, bulk ESS, divergences."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

#: Thresholds a fit must meet (Vehtari et al. 2021 recommend r_hat <= 1.01, ESS >= 400).
MAX_R_HAT = 1.01
MIN_ESS_BULK = 400


class FitWarning(UserWarning):
    """A fit whose diagnostics fail: its answers may not be trustworthy."""


def compute(idata: Any, names: list[str]) -> dict[str, Any]:
    """Diagnostics of the free parameters ``names`` of a sampled InferenceData.

    Returns
    -------
    dict
        ``divergences``, ``max_r_hat``, ``min_ess_bulk``, per-parameter
        ``r_hat`` and ``ess_bulk``, ``ok`` and a list of ``problems``.
    """
    import arviz as az

    posterior = idata.posterior[names]
    chains = posterior.sizes["chain"]
    r_hat = az.rhat(posterior) if chains > 1 else None
    ess = az.ess(posterior, method="bulk")
    # A vector variable (one value per group) is judged by its worst element.
    per_r_hat = {n: float(r_hat[n].max()) if r_hat is not None else float("nan") for n in names}
    per_ess = {n: float(ess[n].min()) for n in names}
    divergences = int(idata.sample_stats["diverging"].sum()) if "diverging" in idata.sample_stats else 0
    max_r_hat = max(per_r_hat.values()) if r_hat is not None else float("nan")
    min_ess = min(per_ess.values())
    problems = []
    if divergences:
        problems.append(
            f"{divergences} divergent transitions: raise target_accept (e.g. 0.95), "
            "tighten the priors, or check that the law suits the data"
        )
    if np.isfinite(max_r_hat) and max_r_hat > MAX_R_HAT:
        worst = max(per_r_hat, key=per_r_hat.__getitem__)
        problems.append(
            f"max r_hat {max_r_hat:.3f} > {MAX_R_HAT} (worst: {worst}): chains disagree; "
            "run more tuning steps and draws, or check for a multimodal posterior"
        )
    if min_ess < MIN_ESS_BULK:
        worst = min(per_ess, key=per_ess.__getitem__)
        problems.append(f"min bulk ESS {min_ess:.0f} < {MIN_ESS_BULK} (worst: {worst}): run more draws")
    return {
        "divergences": divergences,
        "max_r_hat": max_r_hat,
        "min_ess_bulk": min_ess,
        "r_hat": per_r_hat,
        "ess_bulk": per_ess,
        "ok": not problems,
        "problems": problems,
    }


def warn_if_failed(diagnostics: dict[str, Any], stacklevel: int = 3) -> None:
    """Emit a :class:`FitWarning` listing every failed diagnostic."""
    if not diagnostics["ok"]:
        warnings.warn(
            "the fit failed its diagnostics; treat its answers with care:\n  - "
            + "\n  - ".join(diagnostics["problems"]),
            FitWarning,
            stacklevel=stacklevel,
        )
