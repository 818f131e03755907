"""Rank-normalised split R-hat and bulk ESS of one parameter's draws (Vehtari et al. 2021).

The same estimators as ArviZ's ``rhat(method="rank")`` and ``ess(method="bulk")``
(``tests/inference/test_convergence.py`` checks them against ``arviz_stats``), in numpy: every
fit computes them, and importing ``arviz_stats`` imports ``scipy.stats`` with it, the largest
single import of a command-line fit (~0.7 s of a cold ``bayescale fit``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.fft import next_fast_len
from scipy.special import ndtri

#: Fewer draws per chain than this give NaN (as ArviZ).
MIN_DRAWS = 4


def r_hat(draws: np.ndarray) -> float:
    """Rank-normalised split R-hat of one scalar's draws ``(chain, draw)``: the bulk's or the tails'.

    The larger of the two: that of the normal scores and that of the folded draws' (distances
    from the median). NaN with a NaN draw, fewer than 2 chains or :data:`MIN_DRAWS` draws.
    """
    split = _split_chains(draws, min_chains=2)
    if split is None:
        return float("nan")
    folded = np.abs(split - np.median(split))
    return float(max(_split_r_hat(_z_scale(split)), _split_r_hat(_z_scale(folded))))


def ess_bulk(draws: np.ndarray) -> float:
    """Bulk effective sample size of one scalar's draws ``(chain, draw)``: of their normal scores.

    NaN with a NaN draw or fewer than :data:`MIN_DRAWS` draws; one chain is enough.
    """
    split = _split_chains(draws, min_chains=1)
    return float("nan") if split is None else _ess(_z_scale(split))


def _split_chains(draws: np.ndarray, min_chains: int) -> np.ndarray | None:
    """Each chain's first and last halves as two chains (the middle draw of an odd count dropped).

    ``None`` when the draws hold a NaN or too few chains or draws for the estimate.
    """
    draws = np.asarray(draws, dtype=float)
    chains, count = draws.shape
    if np.isnan(draws).any() or chains < min_chains or count < MIN_DRAWS:
        return None
    half = count // 2
    return np.vstack((draws[:, :half], draws[:, -half:]))


def _z_scale(draws: np.ndarray) -> np.ndarray:
    """Normal scores of the pooled ranks (ties averaged), Blom's offset 3/8."""
    ranks = pd.Series(draws.ravel()).rank(method="average").to_numpy()
    return ndtri((ranks - 3 / 8) / (ranks.size + 1 / 4)).reshape(draws.shape)


def _split_r_hat(draws: np.ndarray) -> float:
    """Gelman-Rubin's potential scale reduction of chains ``(chain, draw)``."""
    count = draws.shape[1]
    between = count * np.var(draws.mean(axis=1), ddof=1)
    within = np.mean(np.var(draws, axis=1, ddof=1))
    with np.errstate(divide="ignore", invalid="ignore"):  # constant draws: NaN, as ArviZ
        return float(np.sqrt((between / within + count - 1) / count))


def _autocovariance(draws: np.ndarray) -> np.ndarray:
    """Each chain's autocovariance at every lag (FFT, zero-padded against wrap-around)."""
    count = draws.shape[1]
    padded = next_fast_len(2 * count)
    centred = draws - draws.mean(axis=1, keepdims=True)
    spectrum = np.fft.rfft(centred, n=padded, axis=1)
    return np.fft.irfft(spectrum * np.conjugate(spectrum), n=padded, axis=1)[:, :count] / count


def _ess(draws: np.ndarray) -> float:
    """ESS of chains ``(chain, draw)``: autocorrelations summed up to Geyer's initial monotone sequence."""
    chains, count = draws.shape
    if np.max(draws) - np.min(draws) < np.finfo(float).resolution:
        return float(draws.size)
    acov = _autocovariance(draws)
    mean_var = np.mean(acov[:, 0]) * count / (count - 1.0)
    var_plus = mean_var * (count - 1.0) / count
    if chains > 1:
        var_plus += np.var(draws.mean(axis=1), ddof=1)
    rho = np.zeros(count)
    rho_even, rho_odd = 1.0, 1.0 - (mean_var - np.mean(acov[:, 1])) / var_plus
    rho[0], rho[1] = rho_even, rho_odd
    # Geyer's initial positive sequence: sums of adjacent pairs while positive.
    t = 1
    while t < count - 3 and rho_even + rho_odd > 0.0:
        rho_even = 1.0 - (mean_var - np.mean(acov[:, t + 1])) / var_plus
        rho_odd = 1.0 - (mean_var - np.mean(acov[:, t + 2])) / var_plus
        if rho_even + rho_odd >= 0:
            rho[t + 1], rho[t + 2] = rho_even, rho_odd
        t += 2
    last = t - 2
    if rho_even > 0:
        rho[last + 1] = rho_even
    # ... made monotone: no pair sum above the one before it.
    t = 1
    while t <= last - 2:
        if rho[t + 1] + rho[t + 2] > rho[t - 1] + rho[t]:
            rho[t + 1] = rho[t + 2] = (rho[t - 1] + rho[t]) / 2.0
        t += 2
    total = chains * count
    tau = -1.0 + 2.0 * np.sum(rho[: last + 1]) + np.sum(rho[last + 1 : last + 2])
    tau = max(tau, 1 / np.log10(total))
    return float("nan") if np.isnan(rho).any() else float(total / tau)
