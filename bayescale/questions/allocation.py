"""Questions answered from parameter draws, vectorised over all draws at once.

The core functions take a law and ``theta``, a dict of parameter draws as
``xarray.DataArray`` with dims ``chain`` and ``draw`` (a fit's
:meth:`~bayescale.Fit.theta`, or :func:`point_theta` for published values),
and return an ``xarray.Dataset`` with dims ``chain``, ``draw``, ``query``.
The ``fit``-taking functions wrap them and summarise each quantity as median
and credible interval, one row per query.

Conventions
-----------
- Compute is C = k N D with k = ``flops_per_param_token`` (default 6,
  :data:`bayescale.data.schema.FLOPS_PER_PARAM_TOKEN`); pass another k if you count
  embedding or attention FLOPs differently.
- ``unique_tokens`` U is the unique data *available*: a plan with D < U sees
  only D of it, so the law is evaluated at min(U, D) (as in the datablations
  README's allocation search).
- Laws with a closed-form optimum (``law.optimal_allocation``) use it; the
  others are optimised numerically over log N along the iso-FLOP line, for
  every draw and query at once: a grid of :data:`GRID_POINTS` points, then
  golden-section search in the bracket around the best grid point.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import xarray as xr

from bayescale.data.schema import FLOPS_PER_PARAM_TOKEN
from bayescale.errors import BayescaleError, LawError
from bayescale.model.laws import ScalingLaw, ops
from bayescale.posterior.intervals import SAMPLE_DIMS
from bayescale.posterior.query import make_query

#: Points of the coarse grid over log N that brackets the numerical optimum.
GRID_POINTS = 48
#: Golden-section steps after the grid (bracket width shrinks by 0.618 per step).
GOLDEN_STEPS = 60
#: Half-width in log C of the central difference giving the local exponents a, b (log N_opt is
#: found to ~1e-7, so the slope to ~1e-6; exact for a power law, as in the Chinchilla law).
SLOPE_STEP = 0.1
#: Largest budget searched by :func:`target_compute_draws`; beyond it a target counts as unreachable.
MAX_COMPUTE = 1e60
#: Bisection steps on log C in :func:`target_compute_draws`.
BISECTION_STEPS = 60

_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0


# --------------------------------------------------------------------------- inputs


def _check_flops(k: float) -> float:
    if not isinstance(k, (int, float)) or not np.isfinite(k) or k <= 0:
        raise BayescaleError(f"flops_per_param_token must be a finite number > 0, got {k!r}")
    return float(k)


def _check_law(law: ScalingLaw, unique_tokens: Any) -> None:
    """Raise unless the law can answer allocation questions with (or without) U."""
    if not {"params", "tokens"} <= set(law.required_columns):
        raise LawError(
            f"law {law.name!r} depends on {list(law.required_columns)} only: it has no compute-optimal "
            "allocation between parameters and tokens"
        )
    needs_u = "unique_tokens" in law.required_columns
    if needs_u and unique_tokens is None:
        raise LawError(f"law {law.name!r} needs unique_tokens (the unique data available) to plan")
    if not needs_u and unique_tokens is not None:
        raise LawError(
            f"law {law.name!r} does not model repeated data, so unique_tokens cannot change its answer; "
            "fit the 'data-constrained' law to plan with limited unique data"
        )


def point_theta(values: Mapping[str, float], draws: int = 1) -> dict[str, xr.DataArray]:
    """Parameter values as ``theta`` draws: each broadcast to dims ``(chain, draw)`` = ``(1, draws)``.

    Lets every question be asked of a published point estimate, e.g.
    ``optimal_allocation_draws(law, point_theta(MUENNIGHOFF_C4), 1e22, 25e9)``.
    """
    return {k: xr.DataArray(np.full((1, draws), float(v)), dims=SAMPLE_DIMS) for k, v in values.items()}


def _theta_arrays(
    law: ScalingLaw, theta: Mapping[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Parameter draws as numpy arrays of shape (chain, draw, 1), plus the sample coords."""
    missing = [n for n in law.parameter_names if n not in theta]
    if missing:
        raise LawError(f"law {law.name!r} needs draws of {missing}")
    out: dict[str, np.ndarray] = {}
    coords: dict[str, np.ndarray] = {}
    for name, value in theta.items():
        if not isinstance(value, xr.DataArray) or set(value.dims) != set(SAMPLE_DIMS):
            raise BayescaleError(f"theta[{name!r}] must be an xarray.DataArray with dims {SAMPLE_DIMS}")
        value = value.transpose(*SAMPLE_DIMS)
        coords = {d: value[d].values for d in SAMPLE_DIMS if d in value.coords} or coords
        out[name] = np.asarray(value.values, dtype=float)[..., None]
    return out, coords


def _wrap(arrays: Mapping[str, np.ndarray], coords: Mapping[str, Any]) -> xr.Dataset:
    dims = (*SAMPLE_DIMS, "query")
    return xr.Dataset({k: (dims, np.asarray(v)) for k, v in arrays.items()}, coords=dict(coords))


# --------------------------------------------------------------------------- the law on the log scale


def _log_loss(
    law: ScalingLaw, th: Mapping[str, np.ndarray], log_n: Any, log_d: Any, log_u: Any = None
) -> np.ndarray:
    """Log mean loss at log N, log D and available log U (clipped to the D actually trained)."""
    x = {"log_params": log_n, "log_tokens": log_d}
    if log_u is not None:
        x["log_unique_tokens"] = np.minimum(log_u, log_d)
    return np.asarray(law.log_loss(th, x, ops.NUMPY))


def _minimise(f: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Elementwise argmin of ``f`` over [lo, hi]: grid, then golden section around the best point.

    The grid makes the search robust to a function that is not unimodal on the
    whole range; the golden section needs it unimodal inside one grid bracket.
    The loop runs over grid points and steps, never over draws.
    """
    step = (hi - lo) / (GRID_POINTS - 1)
    best_x, best_f = lo, f(lo)
    for j in range(1, GRID_POINTS):
        x = lo + j * step
        fx = f(x)
        better = fx < best_f
        best_x, best_f = np.where(better, x, best_x), np.where(better, fx, best_f)
    a, b = np.maximum(best_x - step, lo), np.minimum(best_x + step, hi)
    c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(GOLDEN_STEPS):
        left = fc < fd  # minimum in [a, d]
        a, b = np.where(left, a, c), np.where(left, d, b)
        new = np.where(left, b - _GOLDEN * (b - a), a + _GOLDEN * (b - a))
        fnew = f(new)
        c, d, fc, fd = (
            np.where(left, new, d),
            np.where(left, c, new),
            np.where(left, fnew, fd),
            np.where(left, fc, fnew),
        )
    return (a + b) / 2


def _optimal_log_params(
    law: ScalingLaw, th: Mapping[str, np.ndarray], log_c: Any, log_u: Any, k: float
) -> np.ndarray:
    """Log N_opt at log budget ``log_c`` (and available log U), closed form when the law has one."""
    log_nd = np.asarray(log_c) - np.log(k)
    if log_u is None:
        # The law's closed form assumes C = 6 N D: hand it the budget with the same N D.
        best = law.optimal_allocation(th, np.exp(log_nd) * FLOPS_PER_PARAM_TOKEN)
        if best is not None:
            return np.log(np.asarray(best["params"]))
    zeros = np.zeros(np.broadcast_shapes(np.shape(log_nd), np.shape(th[law.parameter_names[0]])))
    # N and D between 1 and C / k: the whole iso-FLOP line.
    return _minimise(lambda ln: _log_loss(law, th, ln, log_nd - ln, log_u), zeros, zeros + log_nd)


# --------------------------------------------------------------------------- 1-2. optimal allocation


def optimal_allocation_draws(
    law: ScalingLaw,
    theta: Mapping[str, xr.DataArray],
    compute: Any,
    unique_tokens: Any = None,
    flops_per_param_token: float = FLOPS_PER_PARAM_TOKEN,
    more_unique_factor: float = 2.0,
) -> xr.Dataset:
    """Draws of the compute-optimal (or data-constrained optimal) allocation at each budget.

    Parameters
    ----------
    law
        A law depending on both N and D.
    theta
        Parameter draws, dims ``chain``, ``draw`` (see :func:`point_theta`).
    compute
        Budget(s) C in FLOPs.
    unique_tokens
        Unique tokens U available (laws that model repetition only); broadcast
        against ``compute``.
    flops_per_param_token
        k in C = k N D.
    more_unique_factor
        With U: how much more unique data the "value of data" columns assume.

    Returns
    -------
    xarray.Dataset
        ``params``, ``tokens``, ``tokens_per_param``, ``loss`` and the local
        exponents ``a`` = d log N_opt / d log C and ``b`` = d log D_opt / d log C
        (a + b = 1). With U also ``epochs`` = D / U, ``loss_more_unique`` (the
        optimal loss with ``more_unique_factor`` times U), ``loss_reduction_more_unique``
        and ``dloss_dlog_unique`` (the marginal value of unique data at the
        optimum, by the envelope theorem).
    """
    _check_law(law, unique_tokens)
    k = _check_flops(flops_per_param_token)
    query = make_query(compute=compute, unique_tokens=unique_tokens)
    th, coords = _theta_arrays(law, theta)
    log_c = np.log(query["compute"].values)
    log_u = np.log(query["unique_tokens"].values) if "unique_tokens" in query else None
    log_nd = log_c - np.log(k)
    log_n = _optimal_log_params(law, th, log_c, log_u, k)
    log_d = log_nd - log_n
    log_loss = _log_loss(law, th, log_n, log_d, log_u)
    up = _optimal_log_params(law, th, log_c + SLOPE_STEP, log_u, k)
    down = _optimal_log_params(law, th, log_c - SLOPE_STEP, log_u, k)
    a = (up - down) / (2 * SLOPE_STEP)
    out = {
        "params": np.exp(log_n),
        "tokens": np.exp(log_d),
        "tokens_per_param": np.exp(log_d - log_n),
        "loss": np.exp(log_loss),
        "a": a,
        "b": 1.0 - a,
    }
    if log_u is not None:
        if not np.isfinite(more_unique_factor) or more_unique_factor <= 1:
            raise BayescaleError(f"more_unique_factor must be > 1, got {more_unique_factor!r}")
        log_more = log_u + np.log(more_unique_factor)
        n_more = _optimal_log_params(law, th, log_c, log_more, k)
        loss_more = np.exp(_log_loss(law, th, n_more, log_nd - n_more, log_more))
        h = 1e-4
        slope = (
            np.exp(_log_loss(law, th, log_n, log_d, log_u + h))
            - np.exp(_log_loss(law, th, log_n, log_d, log_u - h))
        ) / (2 * h)
        out |= {
            "epochs": np.exp(log_d - log_u),
            "loss_more_unique": loss_more,
            "loss_reduction_more_unique": out["loss"] - loss_more,
            "dloss_dlog_unique": slope,
        }
    shape = np.broadcast_shapes(*(np.shape(v) for v in out.values()))
    return _wrap({k_: np.broadcast_to(v, shape) for k_, v in out.items()}, coords)


# --------------------------------------------------------------------------- 4. budget for a target loss


def target_compute_draws(
    law: ScalingLaw,
    theta: Mapping[str, xr.DataArray],
    target_loss: Any,
    unique_tokens: Any = None,
    flops_per_param_token: float = FLOPS_PER_PARAM_TOKEN,
    max_compute: float = MAX_COMPUTE,
) -> xr.Dataset:
    """Draws of the least compute whose optimal allocation reaches ``target_loss``.

    Bisection on log C of the optimal loss (which falls as C grows), for every
    draw and target at once. A draw whose optimal loss at ``max_compute`` is
    still above the target (the target is at or below its reachable floor, e.g.
    E for the Chinchilla law) gets ``compute = inf``; ``unreachable`` is 1 there.

    Returns
    -------
    xarray.Dataset
        ``compute``, ``params``, ``tokens`` (inf where unreachable) and
        ``unreachable`` (0 or 1), dims ``chain``, ``draw``, ``query``.
    """
    _check_law(law, unique_tokens)
    k = _check_flops(flops_per_param_token)
    query = make_query(target_loss=target_loss, unique_tokens=unique_tokens)
    th, coords = _theta_arrays(law, theta)
    log_target = np.log(query["target_loss"].values)
    log_u = np.log(query["unique_tokens"].values) if "unique_tokens" in query else None

    def optimal_log_loss(log_c: np.ndarray) -> np.ndarray:
        log_n = _optimal_log_params(law, th, log_c, log_u, k)
        return _log_loss(law, th, log_n, log_c - np.log(k) - log_n, log_u)

    shape = np.broadcast_shapes(np.shape(log_target), th[law.parameter_names[0]].shape)
    lo, hi = np.full(shape, np.log(k)), np.full(shape, np.log(max_compute))  # N = D = 1 up to the cap
    unreachable = optimal_log_loss(hi) > log_target
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        reached = optimal_log_loss(mid) <= log_target
        lo, hi = np.where(reached, lo, mid), np.where(reached, mid, hi)
    log_c = np.where(unreachable, np.inf, hi)
    log_n = np.where(unreachable, np.inf, _optimal_log_params(law, th, hi, log_u, k))
    log_d = np.where(unreachable, np.inf, hi - np.log(k) - log_n)
    out = {
        "compute": np.exp(log_c),
        "params": np.exp(log_n),
        "tokens": np.exp(log_d),
        "unreachable": unreachable.astype(float),
    }
    return _wrap(out, coords)


# --------------------------------------------------------------------------- 5. comparing plans


def compare_plans_draws(
    law: ScalingLaw,
    theta: Mapping[str, xr.DataArray],
    params: Any,
    tokens: Any,
    unique_tokens: Any = None,
    flops_per_param_token: float = FLOPS_PER_PARAM_TOKEN,
) -> xr.Dataset:
    """Draws of each plan's loss, whether it is the best plan, and its regret.

    Parameters
    ----------
    params, tokens, unique_tokens
        One entry per plan (dim ``query``); U only for laws modelling repetition.

    Returns
    -------
    xarray.Dataset
        ``loss`` (the law's mean loss), ``best`` (1 on draws where this plan
        has the lowest loss of all plans) and ``regret`` = loss minus the
        optimal loss at the plan's own budget k N D (and U).
    """
    _check_law(law, unique_tokens)
    k = _check_flops(flops_per_param_token)
    query = make_query(params=params, tokens=tokens, unique_tokens=unique_tokens)
    if query.sizes["query"] < 2:
        raise BayescaleError("compare at least two plans")
    th, coords = _theta_arrays(law, theta)
    log_n, log_d = np.log(query["params"].values), np.log(query["tokens"].values)
    log_u = np.log(query["unique_tokens"].values) if "unique_tokens" in query else None
    loss = np.exp(_log_loss(law, th, log_n, log_d, log_u))
    best = (loss == loss.min(axis=-1, keepdims=True)).astype(float)
    log_c = np.log(k) + log_n + log_d
    opt_n = _optimal_log_params(law, th, log_c, log_u, k)
    optimum = np.exp(_log_loss(law, th, opt_n, log_c - np.log(k) - opt_n, log_u))
    return _wrap({"loss": loss, "best": best, "regret": loss - optimum}, coords)
