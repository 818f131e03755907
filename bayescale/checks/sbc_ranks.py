"""The statistics of an SBC study: ranks of the truth, their uniformity, held-out coverage.

:func:`rank_of_truth` ranks a true value among thinned posterior draws; :func:`uniformity` tests the
ranks; :class:`SBCResult` holds a study of one law (:func:`bayescale.checks.calibration.sbc`) with
its coverage of held-out runs, whose intervals are :func:`binomial_interval` (runs as independent)
and :func:`cluster_interval` (ladders as the independent units).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.errors import BayescaleError


def rank_of_truth(draws: xr.DataArray, truth: float, ess: float) -> tuple[int, int]:
    """Rank of ``truth`` among posterior draws thinned to about ``ess`` draws.

    Autocorrelated draws make ranks lumpy; thinning each chain by
    ``ceil(draws / ess)`` keeps them close to independent (Talts et al. 2018).

    Returns
    -------
    rank, n
        Number of kept draws below the truth, and the number kept.
    """
    values = np.asarray(draws.transpose("chain", "draw").values, dtype=float)
    step = max(1, int(np.ceil(values.size / max(float(ess), 1.0))))
    kept = values[:, ::step].ravel()
    return int(np.sum(kept < truth)), int(kept.size)


def uniformity(ranks: np.ndarray, sizes: np.ndarray, rng: np.random.Generator, bins: int = 0) -> dict:
    """Tests of SBC ranks for uniformity.

    Each rank ``r`` out of ``n`` is mapped to ``u = (r + V) / (n + 1)`` with
    ``V ~ U(0, 1)``, which is exactly uniform on (0, 1) when the ranks are.

    Returns
    -------
    dict
        ``ks_pvalue`` (Kolmogorov-Smirnov against U(0, 1)), ``chi2_pvalue``
        (counts in ``bins`` equal bins; default about five expected per bin),
        ``edge_fraction`` (share of u below 0.05 or above 0.95, 0.1 when
        calibrated: high means overconfident), ``mean_u`` (0.5 when unbiased).
    """
    from scipy import stats

    ranks, sizes = np.asarray(ranks, dtype=float), np.asarray(sizes, dtype=float)
    u = (ranks + rng.uniform(size=ranks.shape)) / (sizes + 1)
    bins = bins or int(np.clip(len(u) // 5, 2, 20))
    counts = np.histogram(u, bins=bins, range=(0.0, 1.0))[0]
    return {
        "n": len(u),
        "ks_pvalue": float(stats.kstest(u, "uniform").pvalue),
        "chi2_pvalue": float(stats.chisquare(counts).pvalue),
        "edge_fraction": float(np.mean((u < 0.05) | (u > 0.95))),
        "mean_u": float(np.mean(u)),
    }


@dataclass
class SBCResult:
    """Outcome of :func:`sbc` for one law.

    Attributes
    ----------
    law
        Law name.
    ranks
        One row per accepted simulation: ``sim``, then for each quantity
        ``<name>_rank`` and ``<name>_n`` (thinned draws), then diagnostics
        (``divergences``, ``max_r_hat``, ``min_ess_bulk``, ``ok``), held-out
        coverage (``heldout_covered``, ``heldout_n``, ``mean_covered``) and
        ``seconds``.
    rejected
        Simulations rejected by the training-loss rule (see :mod:`bayescale.checks.calibration`).
    quantities
        Names of the ranked quantities (free parameters, and ``N_opt`` when
        the law has a closed-form compute-optimal allocation).
    """

    law: str
    ranks: pd.DataFrame
    rejected: int
    quantities: list[str]
    settings: dict[str, Any] = field(default_factory=dict)

    def uniformity(self, seed: int = 0) -> pd.DataFrame:
        """One row per quantity: the tests of :func:`uniformity` on its ranks."""
        rng = np.random.default_rng(seed)
        rows = {
            q: uniformity(self.ranks[f"{q}_rank"].to_numpy(), self.ranks[f"{q}_n"].to_numpy(), rng)
            for q in self.quantities
        }
        return pd.DataFrame(rows).T

    @staticmethod
    def combine(parts: list[SBCResult]) -> SBCResult:
        """Pool studies of one law run with different seeds (e.g. rounds of a time-boxed benchmark)."""
        if len({p.law for p in parts}) != 1:
            raise BayescaleError("combine SBC results of one law only")
        ranks = pd.concat([p.ranks for p in parts], ignore_index=True)
        settings = {
            **parts[0].settings,
            "n_sims": sum(p.settings.get("n_sims", 0) for p in parts),
            "seeds": [p.settings.get("seed") for p in parts],
            "fit_errors": [e for p in parts for e in p.settings.get("fit_errors", [])],
        }
        return SBCResult(parts[0].law, ranks, sum(p.rejected for p in parts), parts[0].quantities, settings)

    def summary(self, seed: int = 0, alpha: float = 0.01) -> dict[str, Any]:
        """What the closing note reports for one law.

        ``failed_diagnostics`` counts fits whose diagnostics failed (they stay
        in the ranks: dropping them would condition on the sampler and bias
        the test); ``min_pvalue`` is the smallest KS or chi-square p-value over
        the quantities and ``uniform`` whether it clears the Bonferroni level
        ``alpha / (2 * quantities)``.
        """
        table = self.uniformity(seed)
        ok = self.ranks["ok"].astype(bool) if len(self.ranks) else pd.Series(dtype=bool)
        smallest = float(np.min(table[["ks_pvalue", "chi2_pvalue"]].to_numpy()))
        return {
            "law": self.law,
            "sims": len(self.ranks),
            "rejected": self.rejected,
            "fit_errors": len(self.settings.get("fit_errors", [])),
            "failed_diagnostics": int((~ok).sum()),
            "fits_with_divergences": int((self.ranks["divergences"] > 0).sum()),
            "fits_r_hat_over_1_05": int((self.ranks["max_r_hat"] > 1.05).sum()),
            "min_pvalue": smallest,
            "uniform": smallest > alpha / (2 * len(table)),
            "coverage": self.coverage(),
            "uniformity": table.to_dict(orient="index"),
        }

    def coverage(self) -> dict[str, Any]:
        """Coverage of the held-out runs by the 90% intervals, pooled over simulations.

        ``predictive``: noisy held-out losses inside the predictive interval,
        with ``predictive_95ci`` (Clopper-Pearson, runs as independent) and
        ``predictive_95ci_ladders`` (:func:`cluster_interval`, ladders as the
        independent units); ``mean``: the true mean loss inside the interval
        of the law's mean.
        """
        n = int(self.ranks["heldout_n"].sum())
        covered = int(self.ranks["heldout_covered"].sum())
        low, high = binomial_interval(covered, n)
        return {
            "predictive": covered / n,
            "predictive_95ci": [low, high],
            "predictive_95ci_ladders": list(
                cluster_interval(self.ranks["heldout_covered"].to_numpy(), self.ranks["heldout_n"].to_numpy())
            ),
            "mean": float(self.ranks["mean_covered"].sum()) / n,
            "runs": n,
            "simulations": len(self.ranks),
        }


def binomial_interval(successes: int, trials: int, prob: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval of a binomial proportion.

    Held-out runs of one simulated ladder share its parameters, so their
    coverages are correlated and this interval is somewhat too narrow.
    """
    from scipy import stats

    tail = (1 - prob) / 2
    low = stats.beta.ppf(tail, successes, trials - successes + 1) if successes > 0 else 0.0
    high = stats.beta.ppf(1 - tail, successes + 1, trials - successes) if successes < trials else 1.0
    return float(low), float(high)


def cluster_interval(successes: Any, trials: Any, prob: float = 0.95) -> tuple[float, float]:
    """Interval of a pooled proportion whose trials come in correlated clusters (one per ladder).

    The ratio estimator ``sum(successes) / sum(trials)`` with its cluster-robust
    (between-cluster) standard error and a Student-t quantile on ``clusters - 1``
    degrees of freedom, clipped to [0, 1]. Unlike :func:`binomial_interval` it
    does not assume the held-out runs of one ladder are independent.
    """
    from scipy import stats

    successes, trials = np.asarray(successes, dtype=float), np.asarray(trials, dtype=float)
    m = len(trials)
    if m < 2:
        return 0.0, 1.0
    p = successes.sum() / trials.sum()
    residual = (successes - p * trials) / trials.mean()
    se = float(np.sqrt(np.sum(residual**2) / (m * (m - 1))))
    half = float(stats.t.ppf(0.5 + prob / 2, m - 1)) * se
    return float(max(p - half, 0.0)), float(min(p + half, 1.0))
