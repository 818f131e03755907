"""Kaplan et al. (2020) L(N, S_min) and the critical batch size: its parameters and formulas.

Kaplan et al. (sections 5 and 6) model the loss of a model of N parameters after S
optimiser steps at batch size B (in tokens) as

    L(N, S_min) = (N_c / N)^alpha_N + (S_c / S_min)^alpha_S                (eq. 5.6)

where S_min = S / (1 + B_crit(L) / B) is the least number of steps that reaches the same
loss (at a batch size far above the critical one, eq. 5.4) and the critical batch size is
a power of the loss only, B_crit(L) = B* / L^(1 / alpha_B) (eq. 5.3). The compute the same
loss needs at a batch size far below B_crit is C_min = C / (1 + B / B_crit(L)) (eq. 5.5).
Both follow McCandlish et al. (2018)'s trade-off (S / S_min - 1)(E / E_min - 1) = 1 between
steps S and tokens E = B S, with E_min = B_crit S_min.

Since B_crit depends on the loss, the loss at (N, S, B) is the fixed point of
L = L(N, S / (1 + B_crit(L) / B)); :func:`loss_at_steps` solves it by Newton's method
(unique: the right side falls as L rises). The numpy functions take fixed parameters
(:data:`KAPLAN_2020` holds the published ones); :func:`bayescale.methods.training_steps.fit_steps`
fits the law to loss curves in PyMC, with B* and alpha_B when the runs differ in batch size. With
one batch size B_crit is not identified (it moves S_min by a factor that trades with S_c): the law is then
fitted with S_min = S, the steps as run, and the summary says so.

:func:`log_loss` is the law's mean, written once for numpy, xarray and PyTensor.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import numpy as np
import xarray as xr

from bayescale.errors import BayescaleError
from bayescale.model.laws import ops as _ops
from bayescale.model.laws.base import Parameter
from bayescale.model.laws.kaplan import KAPLAN_ALPHA_N, N_C
from bayescale.model.priors import Prior

#: Kaplan et al. (2020): Table 3 fit of L(N, S_min) and the critical-batch fit of section 5.1
#: (N non-embedding parameters, loss in nats per token, batch size in tokens).
KAPLAN_2020: dict[str, float] = {
    "alpha_N": 0.077,
    "alpha_S": 0.76,
    "N_c": 6.5e13,
    "S_c": 2.1e3,
    "B_star": 2.0e8,
    "alpha_B": 0.21,
}


#: Newton iterations of the loss fixed point inside the sampler (each one squares the error).
MODEL_ITERATIONS = 8

ALPHA_S = Parameter(
    "alpha_S",
    Prior("LogNormal", mu=-0.5, sigma=0.7),
    "Kaplan's alpha_S is 0.76; median 0.61, 90% in 0.19-1.9 leaves room for other optimisers",
    "exponent of the steps term",
)
S_C = Parameter(
    "S_c",
    Prior("LogNormal", mu=7.65, sigma=3.0),
    "Kaplan's S_c is 2.1e3 steps (log 7.65); sd 3 on the log scale (a factor 20 per sd)",
    "critical number of steps (loss scale of the steps term)",
)
B_STAR = Parameter(
    "B_star",
    Prior("LogNormal", mu=19.1, sigma=3.0),
    "Kaplan's B* is 2e8 tokens (log 19.1); sd 3 on the log scale (a factor 20 per sd)",
    "critical batch size at loss 1 [tokens]",
)
ALPHA_B = Parameter(
    "alpha_B",
    Prior("LogNormal", mu=-1.56, sigma=0.5),
    "Kaplan's alpha_B is 0.21 (B_crit ~ L^-4.8); median 0.21, 90% in 0.09-0.48",
    "exponent of the critical batch size: B_crit = B* / L^(1/alpha_B)",
)
LAW_PARAMETERS = (KAPLAN_ALPHA_N, ALPHA_S, N_C, S_C)
BATCH_PARAMETERS = (B_STAR, ALPHA_B)


# ---------------------------------------------------------------------------------------------
# The formulas with fixed parameters (numpy)


def critical_batch(loss: Any, B_star: Any, alpha_B: Any) -> np.ndarray:
    """Kaplan's critical batch size ``B_crit(L) = B* / L^(1 / alpha_B)`` [tokens] (eq. 5.3)."""
    loss = np.asarray(loss, dtype=float)
    return np.asarray(B_star) * loss ** (-1.0 / np.asarray(alpha_B))


def min_steps(steps: Any, batch: Any, loss: Any, B_star: Any, alpha_B: Any) -> np.ndarray:
    """Least steps reaching ``loss``: ``S_min = S / (1 + B_crit(L) / B)`` (eq. 5.4).

    Parameters
    ----------
    steps, batch, loss
        Optimiser steps S, batch size B in tokens and the loss L reached (nats per token).
    B_star, alpha_B
        Parameters of :func:`critical_batch`.
    """
    return np.asarray(steps, dtype=float) / (1.0 + critical_batch(loss, B_star, alpha_B) / batch)


def min_compute(compute: Any, batch: Any, loss: Any, B_star: Any, alpha_B: Any) -> np.ndarray:
    """Least compute reaching ``loss``: ``C_min = C / (1 + B / B_crit(L))`` (eq. 5.5)."""
    return np.asarray(compute, dtype=float) / (
        1.0 + np.asarray(batch) / critical_batch(loss, B_star, alpha_B)
    )


def loss_at_min_steps(params: Any, steps_min: Any, theta: Mapping[str, Any] = KAPLAN_2020) -> np.ndarray:
    """``L(N, S_min) = (N_c / N)^alpha_N + (S_c / S_min)^alpha_S`` (eq. 5.6).

    Parameters
    ----------
    params, steps_min
        N and S_min; anything numpy broadcasts.
    theta
        ``alpha_N``, ``alpha_S``, ``N_c``, ``S_c`` (default: :data:`KAPLAN_2020`).
    """
    t = _theta(theta, batch=False)
    x = {
        "log_params": np.log(np.asarray(params, dtype=float)),
        "log_steps": np.log(np.asarray(steps_min, dtype=float)),
    }
    return np.exp(log_loss(t, x, _ops.NUMPY))


def loss_at_steps(
    params: Any, steps: Any, batch: Any = None, theta: Mapping[str, Any] = KAPLAN_2020, tol: float = 1e-12
) -> np.ndarray:
    """Loss after ``steps`` at batch size ``batch`` [tokens]: the fixed point of L = L(N, S_min(L)).

    With ``batch=None`` the steps are taken as S_min (a batch far above B_crit).
    ``theta`` holds ``alpha_N``, ``alpha_S``, ``N_c``, ``S_c`` and, with a batch,
    ``B_star`` and ``alpha_B``.
    """
    if batch is None:
        return loss_at_min_steps(params, steps, theta)
    t = _theta(theta, batch=True)
    log_n, log_s, log_b = (np.log(np.asarray(v, dtype=float)) for v in (params, steps, batch))
    x = {"log_params": log_n, "log_steps": log_s, "log_batch": log_b}
    # Start at the loss without the batch penalty (a lower bound) and iterate to convergence.
    start = log_loss(t, x, _ops.NUMPY, log_start=None)
    for _ in range(100):
        new = log_loss(t, x, _ops.NUMPY, log_start=start, iterations=1)
        if np.all(np.abs(new - start) < tol):
            return np.exp(new)
        start = new
    raise BayescaleError("the loss fixed point did not converge in 100 Newton steps; check the parameters")


def compute_efficient_exponents(alpha_N: Any, alpha_S: Any, alpha_B: Any) -> dict[str, Any]:
    """Exponents of the compute-efficient frontier implied by L(N, S_min) and B_crit (section 6.1).

    ``L ~ C_min^-alpha_C_min`` with ``alpha_C_min = 1 / (1/alpha_S + 1/alpha_B + 1/alpha_N)``,
    and ``N ~ C_min^(alpha_C_min/alpha_N)``, ``B ~ C_min^(alpha_C_min/alpha_B)``,
    ``S_min ~ C_min^(alpha_C_min/alpha_S)`` (the three sum to 1 since C_min = 6 N B S_min).
    """
    a_n, a_s, a_b = (
        v if isinstance(v, xr.DataArray) else np.asarray(v, float) for v in (alpha_N, alpha_S, alpha_B)
    )
    alpha_c = 1.0 / (1.0 / a_s + 1.0 / a_b + 1.0 / a_n)
    return {
        "alpha_C_min": alpha_c,
        "params": alpha_c / a_n,
        "batch": alpha_c / a_b,
        "steps": alpha_c / a_s,
    }


def compute_optimal(
    compute: Any, theta: Mapping[str, Any] = KAPLAN_2020, batch: Any = None, kappa: float = 6.0
) -> dict[str, Any]:
    """The compute-optimal model at budget(s) ``compute``, in closed form (Kaplan sec. 6, app. B).

    At a fixed budget the loss is least where the two terms of L(N, S_min) stand in the ratio
    ``alpha_N (N_c/N)^alpha_N = alpha_S (S_c/S_min)^alpha_S`` (set dL/dN = 0 with S_min = C /
    (kappa N B)), so ``L = (1 + alpha_N/alpha_S) (N_c/N)^alpha_N`` at the optimum (Kaplan's
    appendix B, equation number not checked). Writing N and S_min through L and C = kappa N B S_min gives
    ``L = (C / C_c)^-alpha_C`` and N, S_min, B as powers of C:

    * ``batch=None`` (B_crit fitted): ``compute`` is C_min, the compute at a batch far below
      B_crit, and B = B_crit(L) = B*/L^(1/alpha_B); ``1/alpha_C = 1/alpha_N + 1/alpha_S +
      1/alpha_B``, the frontier of :func:`compute_efficient_exponents` (Kaplan sec. 6.1; he
      fits N ∝ C_min^0.73 directly). Training at B = B_crit itself takes 2 S_min steps and 2 C_min.
    * ``batch=B`` (tokens per step, fixed): ``compute`` = kappa N B S and S_min = S (the law
      fitted at that one batch size); ``1/alpha_C = 1/alpha_N + 1/alpha_S``, so
      N ∝ C^(alpha_S/(alpha_N+alpha_S)) as for Chinchilla's law.

    Parameters
    ----------
    compute
        Budget(s) in FLOPs; numpy arrays or xarray (broadcast against ``theta``).
    theta
        ``alpha_N``, ``alpha_S``, ``N_c``, ``S_c`` and, without ``batch``, ``B_star``, ``alpha_B``.
    batch
        ``None``: Kaplan's C_min frontier with B_crit(L); a number: plan at that batch size.
    kappa
        FLOPs per parameter per token (Kaplan's C = 6 N B S).

    Returns
    -------
    dict
        ``params``, ``tokens`` (= C/(kappa N); E_min on the frontier), ``steps`` (S_min),
        ``batch`` (B_crit(L) on the frontier, else ``batch``), ``loss`` and ``alpha_C``.
    """
    t = _theta(theta, batch=batch is None)
    a_n, a_s = t["alpha_N"], t["alpha_S"]
    if batch is None:
        inv_b, log_scale = 1.0 / t["alpha_B"], t["log_B_star"]
    else:
        b = np.asarray(batch, dtype=float)
        if np.any(~np.isfinite(b)) or np.any(b <= 0):
            raise BayescaleError(f"batch must be finite and > 0 tokens per step, got {batch!r}")
        inv_b, log_scale = 0.0, np.log(b)
    # shares of the loss at the optimum: (N_c/N)^alpha_N = p_n L, (S_c/S_min)^alpha_S = p_s L
    log_p_n, log_p_s = np.log(a_s / (a_n + a_s)), np.log(a_n / (a_n + a_s))
    inv_c = 1.0 / a_n + 1.0 / a_s + inv_b
    log_c_c = np.log(kappa) + t["log_N_c"] + t["log_S_c"] + log_scale - log_p_n / a_n - log_p_s / a_s
    log_l = (log_c_c - np.log(compute)) / inv_c
    log_n = t["log_N_c"] - (log_p_n + log_l) / a_n
    params = np.exp(log_n)
    return {
        "params": params,
        "tokens": compute / (kappa * params),
        "steps": np.exp(t["log_S_c"] - (log_p_s + log_l) / a_s),
        "batch": np.exp(log_scale - inv_b * log_l),
        "loss": np.exp(log_l),
        "alpha_C": 1.0 / inv_c,
    }


def _theta(theta: Mapping[str, Any], batch: bool) -> dict[str, Any]:
    names = ["alpha_N", "alpha_S", "N_c", "S_c"] + (["B_star", "alpha_B"] if batch else [])
    missing = [n for n in names if n not in theta]
    if missing:
        raise BayescaleError(f"Kaplan's L(N, S) needs values for {missing}; got {sorted(theta)}")
    # xarray draws keep their dims (chain, draw); anything else becomes a float array
    out = {
        n: theta[n].astype(float) if isinstance(theta[n], xr.DataArray) else np.asarray(theta[n], float)
        for n in names
    }
    for n in names:
        if np.any(out[n] <= 0):
            raise BayescaleError(f"{n} must be > 0, got {theta[n]!r}")
    out["log_N_c"], out["log_S_c"] = np.log(out["N_c"]), np.log(out["S_c"])
    if batch:
        out["log_B_star"] = np.log(out["B_star"])
    return out


# ---------------------------------------------------------------------------------------------
# The mean, written once for numpy, xarray and PyTensor


def _softplus(x: Any, ops: SimpleNamespace) -> Any:
    """``log(1 + exp(x))`` without overflow."""
    return ops.maximum(x, 0.0) + ops.log1p(ops.exp(ops.minimum(x, -x)))


def log_loss(
    theta: Mapping[str, Any],
    x: Mapping[str, Any],
    ops: SimpleNamespace,
    log_start: Any = None,
    iterations: int = MODEL_ITERATIONS,
) -> Any:
    """Log of L(N, S_min): with ``log_batch`` in ``x``, the fixed point in B_crit(L).

    Parameters
    ----------
    theta
        ``alpha_N``, ``alpha_S``, ``log_N_c``, ``log_S_c`` and (with a batch)
        ``log_B_star``, ``alpha_B``.
    x
        ``log_params``, ``log_steps`` and optionally ``log_batch``.
    log_start
        Start of the Newton iterations on log L (e.g. the observed log loss);
        ``None`` returns the loss with S_min = S (no batch penalty).
    iterations
        Newton steps; each step is at most 1 in log loss, so a far start stays finite.
    """
    term_n = theta["alpha_N"] * (theta["log_N_c"] - x["log_params"])
    if log_start is None or "log_batch" not in x:
        return _ops.logsumexp([term_n, theta["alpha_S"] * (theta["log_S_c"] - x["log_steps"])], ops)
    inv_b = 1.0 / theta["alpha_B"]
    level = log_start
    for _ in range(iterations):
        # k = log(B_crit(L) / B); log S_min = log S - log(1 + B_crit / B).
        k = theta["log_B_star"] - inv_b * level - x["log_batch"]
        penalty = _softplus(k, ops)
        term_s = theta["alpha_S"] * (theta["log_S_c"] - x["log_steps"] + penalty)
        total = _ops.logsumexp([term_n, term_s], ops)
        residual = total - level
        # d total / d level = share of the steps term * alpha_S * sigmoid(k) * (-1/alpha_B) <= 0.
        slope = ops.exp(term_s - total) * theta["alpha_S"] * ops.exp(k - penalty) * (-inv_b) - 1.0
        step = residual / slope
        level = level - ops.maximum(ops.minimum(step, 1.0), -1.0)
    return level
