"""The random-walk discrepancy of a loss curve from the multi-power law.

A curve's residuals on log loss are its discrepancy from the law plus independent noise; the
discrepancy starts at the curve's offset and walks in ``log S1`` (:func:`walk_time`). Its
log density (:func:`walk_log_lik`, a Kalman filter over all curves at once), its draws along a
new curve (:func:`walk_paths`) and given a fitted curve's residuals (:func:`walk_given`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def walk_time(log_s1: Any, log_s1_ref: float) -> np.ndarray:
    """The time of the random walk along a curve: ``log S1`` past the fit's reference, from 0.

    ``log_s1_ref`` is the lowest ``log S1`` of the fitted checkpoints, so every curve's walk
    starts at the same time; checkpoints before it (less LR summed) get time 0.
    """
    return np.maximum(np.asarray(log_s1, dtype=float) - log_s1_ref, 0.0)


def walk_structure(curve_index: np.ndarray, time: np.ndarray) -> dict[str, np.ndarray]:
    """Checkpoints of curves stacked contiguously as a padded ``curves x longest`` layout.

    ``pad`` holds checkpoint indices (a short curve repeats its last one), ``pad_mask`` 1 where
    a position is a checkpoint, ``pad_dt`` the walk's time since the previous checkpoint of the
    curve (since 0 at the first; 0 at padding).
    """
    curve_index = np.asarray(curve_index)
    counts = np.bincount(curve_index)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    position = np.arange(int(counts.max()))
    pad = starts[:, None] + np.minimum(position[None, :], counts[:, None] - 1)
    mask = (position[None, :] < counts[:, None]).astype(float)
    padded = np.asarray(time, dtype=float)[pad]
    dt = np.diff(padded, axis=1, prepend=0.0)
    return {"pad": pad, "pad_mask": mask, "pad_dt": dt}


def _kalman_step(carry: tuple[Any, Any, Any], x: tuple[Any, Any, Any, Any], kappa2: Any, xp: Any) -> Any:
    """One checkpoint of every curve: predict the walk's level, then update it on the residual."""
    mean, var, total = carry
    r, noise2, dt, on = x
    var = var + kappa2 * dt
    spread = var + noise2
    v = r - mean
    total = total + on * -0.5 * (xp.log(2 * math.pi * spread) + v**2 / spread)
    gain = on * var / spread
    return (mean + gain * v, var - gain * var, total)


def walk_log_lik(resid: Any, sigma: Any, tau: Any, kappa: Any, data: Mapping[str, Any], xp: Any = np) -> Any:
    """Log density of the residuals, each curve's being a level that walks plus independent noise.

    A curve's residuals on log loss are ``d(t) + e`` with ``e ~ Normal(0, sigma)`` and ``d`` its
    discrepancy from the law: ``d(0) ~ Normal(0, tau)`` (the curve's offset) and a Gaussian
    random walk from there, ``Var(d(t) - d(s)) = kappa^2 (t - s)`` in the walk's time
    (:func:`walk_time`, ``log S1``). So a curve's covariance is
    ``sigma^2 I + tau^2 11' + kappa^2 min(t_i, t_j)``: with ``kappa = 0`` this is the offsets'
    model (:func:`~bayescale.model.curve_laws.offset_terms`), and a run under a new schedule is
    uncertain by more the further
    along its curve. The level is integrated out exactly by a Kalman filter run over the padded
    layout (:func:`walk_structure`), all curves at once: ``lax.scan`` in JAX, a loop over
    positions in numpy (where ``resid`` and ``sigma`` may carry draws before the checkpoints'
    axis, and ``tau``, ``kappa`` shape ``(..., 1)``).
    """
    pad, mask, dt = data["pad"], xp.asarray(data["pad_mask"]), xp.asarray(data["pad_dt"])
    r = xp.take(resid, pad, axis=-1)
    noise2 = xp.take(xp.broadcast_to(sigma, xp.shape(resid)) ** 2, pad, axis=-1)
    kappa2 = xp.asarray(kappa) ** 2
    zero = xp.zeros(r.shape[:-1])
    carry = (zero, zero + xp.asarray(tau) ** 2, zero)
    if xp is np:
        for j in range(pad.shape[1]):
            carry = _kalman_step(carry, (r[..., j], noise2[..., j], dt[:, j], mask[:, j]), kappa2, np)
    else:
        from jax import lax

        def step(c: Any, x: Any) -> Any:
            return _kalman_step(c, x, kappa2, xp), None

        xs = (xp.moveaxis(r, -1, 0), xp.moveaxis(noise2, -1, 0), dt.T, mask.T)
        carry, _ = lax.scan(step, carry, xs)
    return xp.sum(carry[2], axis=-1)


def walk_kernel(s: np.ndarray, t: np.ndarray, tau: Any, kappa: Any) -> np.ndarray:
    """Covariance of a curve's discrepancy at walk times ``s`` and ``t``: ``tau^2 + kappa^2 min(s, t)``.

    ``tau`` and ``kappa`` are per draw, shape ``(draws,)``; the result is ``(draws, len(s), len(t))``.
    """
    low = np.minimum(np.asarray(s)[:, None], np.asarray(t)[None, :])
    return np.asarray(tau)[:, None, None] ** 2 + np.asarray(kappa)[:, None, None] ** 2 * low


def walk_paths(time: np.ndarray, tau: np.ndarray, kappa: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draws of a new curve's discrepancy at walk times ``time`` (any order): ``(draws, len(time))``.

    One offset per draw (``Normal(0, tau)``) and a random walk of variance ``kappa^2`` per unit
    time from time 0 (cumulated in time order).
    """
    time = np.asarray(time, dtype=float)
    order = np.argsort(time, kind="stable")
    steps = np.diff(time[order], prepend=0.0)
    increments = rng.standard_normal((len(tau), len(time))) * np.sqrt(steps) * np.asarray(kappa)[:, None]
    path = np.empty_like(increments)
    path[:, order] = np.cumsum(increments, axis=1)
    return path + rng.standard_normal((len(tau), 1)) * np.asarray(tau)[:, None]


def walk_given(
    resid: np.ndarray,
    known: np.ndarray,
    new: np.ndarray,
    tau: np.ndarray,
    kappa: np.ndarray,
    sigma: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draws of one curve's discrepancy at walk times ``new`` given its residuals at ``known``.

    Per draw (``resid`` is ``(draws, n)``; ``tau``, ``kappa``, ``sigma`` ``(draws,)``), an exact
    draw from the Gaussian conditional by Matheron's rule: a joint prior draw at ``known`` and
    ``new`` (:func:`walk_paths`) plus noise at ``known``, moved by the conditional's gain
    ``k(new, known) (K + sigma^2 I)^-1`` on the residuals' difference from it. No Cholesky of
    the ``new`` block, so many new times cost little.
    """
    n = len(known)
    joint = walk_paths(np.r_[known, new], tau, kappa, rng)
    noise = rng.standard_normal(resid.shape) * sigma[:, None]
    cov = walk_kernel(known, known, tau, kappa) + sigma[:, None, None] ** 2 * np.eye(n)
    gain = np.linalg.solve(cov, (resid - joint[:, :n] - noise)[..., None])[..., 0]
    return joint[:, n:] + np.einsum("dsn,dn->ds", walk_kernel(new, known, tau, kappa), gain)
