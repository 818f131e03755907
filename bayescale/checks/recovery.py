"""Bounds for parameter-recovery checks: how many 90% intervals a calibrated fit misses.

One data set's checks are correlated (E, B and alpha_D lie on one ridge), so the binomial
bound for independent checks fails a calibrated fit more often than its nominal rate.
:func:`wald_misses` simulates copies of a design with a maximum-likelihood fit standing in
for the posterior; :func:`miss_bounds` turns them into bounds for a test over several seeds.
Used by ``tests/checks/test_recovery*.py`` and ``benchmarks/recovery_design.py``.
"""

from __future__ import annotations

from math import comb
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from bayescale.model.laws import covariates, get_law, ops

Z90 = 1.6448536269514722


def ladder(law: str, sizes: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The test's ladder (7 sizes x 5/20/80 tokens per parameter, x 1/4/40 epochs if needed)."""
    N, M = (a.ravel() for a in np.meshgrid(np.geomspace(*sizes, 7), [5.0, 20.0, 80.0]))
    D = N * M
    if law != "data-constrained":
        return N, D, None
    N, D, epochs = (a.ravel() for a in np.meshgrid(N, D, [1.0, 4.0, 40.0], indexing="ij"))
    keep = np.repeat(np.eye(21, dtype=bool).ravel(), 3)
    return N[keep], D[keep], D[keep] / epochs[keep]


def _residual(log_theta: np.ndarray, law: Any, names: list[str], x: dict, y: np.ndarray) -> np.ndarray:
    theta = dict(zip(names, np.exp(log_theta), strict=True))
    return law.log_loss(theta, x, ops.NUMPY) - y


def wald_misses(
    law_name: str,
    truth: dict[str, float],
    params: np.ndarray,
    tokens: np.ndarray,
    unique_tokens: np.ndarray | None = None,
    sigma: float = 0.01,
    datasets: int = 600,
    first_seed: int = 10_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Which 90% intervals miss the truth, on ``datasets`` simulated copies of one design.

    Each copy adds Gaussian noise (``sigma``, on log loss) to the true mean log loss; the
    maximum-likelihood estimate of the log parameters and its Wald 90% interval stand in for
    the posterior and its equal-tailed interval.

    Returns
    -------
    misses, cov
        A boolean array (data set x parameter, in ``law.parameter_names`` order), and the
        covariance of the log parameters of the last data set.
    """
    law = get_law(law_name)
    names = law.parameter_names
    t0 = np.log([truth[n] for n in names])
    x = covariates(np.asarray(params, float), np.asarray(tokens, float), unique_tokens)
    mean = law.log_loss(truth, x, ops.NUMPY)
    z = []
    for seed in range(first_seed, first_seed + datasets):
        y = mean + np.random.default_rng(seed).normal(0.0, sigma, mean.shape)
        fit = least_squares(_residual, t0, method="lm", args=(law, names, x, y))
        cov = np.linalg.inv(fit.jac.T @ fit.jac) * 2 * fit.cost / (len(y) - len(names))
        z.append((fit.x - t0) / np.sqrt(np.diag(cov)))
    return np.abs(np.array(z)) > Z90, cov


def miss_bounds(
    misses: np.ndarray, seeds: int, quantile: float = 0.99, groups: int = 20_000, seed: int = 0
) -> tuple[int, int]:
    """Bounds on misses over ``seeds`` data sets that a calibrated fit exceeds with probability ~1 - quantile.

    Groups of ``seeds`` distinct data sets are drawn from the rows of ``misses`` (from
    :func:`wald_misses`), so the correlation between one data set's checks is kept.

    Returns
    -------
    total, per_parameter
        The ``quantile`` of the total misses of a group, and of the most misses of one parameter.
    """
    rng = np.random.default_rng(seed)
    picked = np.array([misses[rng.choice(len(misses), seeds, replace=False)] for _ in range(groups)])
    counts = picked.sum(axis=1)  # group x parameter
    total = np.quantile(counts.sum(axis=1), quantile, method="inverted_cdf")
    most = np.quantile(counts.max(axis=1), quantile, method="inverted_cdf")
    return int(total), int(most)


def independent_bound(checks: int, quantile: float = 0.99) -> int:
    """Binomial ``quantile`` of misses of ``checks`` independent checks, each missing with p = 0.1."""
    cdf = np.cumsum([comb(checks, k) * 0.1**k * 0.9 ** (checks - k) for k in range(checks + 1)])
    return int(np.searchsorted(cdf, quantile))
