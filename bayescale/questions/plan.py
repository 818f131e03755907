"""Questions answered from a posterior, vectorised over all draws at once.

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

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.data.schema import FLOPS_PER_PARAM_TOKEN, canonical_columns
from bayescale.errors import BayescaleError, LawError
from bayescale.model.laws import ScalingLaw, covariates, ops
from bayescale.model.pymc_model import draw_log_noise
from bayescale.posterior.extrapolation import beyond, beyond_compute, blend_beyond, edge_point, span_of
from bayescale.posterior.intervals import SAMPLE_DIMS, check_interval, interval_table
from bayescale.posterior.query import make_query

if TYPE_CHECKING:
    from bayescale.posterior.protocol import FitLike as Fit

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


# --------------------------------------------------------------------------- beyond the runs


def _beyond_runs(
    fit: Fit,
    draws: xr.Dataset,
    distance: np.ndarray,
    second: Callable[[Fit], xr.Dataset] | None,
    log_vars: Sequence[str],
    linear_vars: Sequence[str] = (),
    at_edge: Callable[[Fit], xr.Dataset] | None = None,
    reference: Callable[[Fit], xr.Dataset] | None = None,
) -> xr.Dataset:
    """Answers beyond the runs: the fitted law's draws blended with the variant law's.

    See :func:`~bayescale.posterior.extrapolation.blend_beyond`: weight and discrepancy grow
    with ``distance``. ``at_edge`` gives a fit's answers at the edge of the runs (one query, or
    one per query); the variables it holds are anchored there (``blend_beyond``'s ``edge``).
    ``reference`` gives the fitted law's draws of what ``second`` gives the variant's, when
    ``draws`` is another quantity moved by their terms (``blend_beyond``'s ``reference``).

    ``second`` gives the variant's draws of the same answers; ``None`` when the variant cannot
    answer the question (it does not see unique tokens): then, as for a fit of the variant law
    itself or of a pooled law, only the discrepancy widens the answer. A law is never blended
    with itself.
    """
    if not np.any(distance > 0):
        return draws
    variant = fit.variant_fit() if second is not None else None
    if second is None or variant is None:
        return blend_beyond(draws, draws, distance, log_vars, linear_vars)
    edge = (at_edge(fit), at_edge(variant)) if at_edge is not None else None
    ref = reference(fit) if reference is not None else None
    return blend_beyond(draws, second(variant), distance, log_vars, linear_vars, edge=edge, reference=ref)


def _mean_loss(one: Fit, theta: Mapping[str, xr.DataArray], params: Any, tokens: Any) -> xr.Dataset:
    """A law's mean loss draws (``loss``, dims chain, draw, query) at each (N, D), no unique tokens."""
    n, d = (xr.DataArray(np.atleast_1d(np.asarray(v, dtype=float)), dims="query") for v in (params, tokens))
    log_mean = one.law.log_loss(theta, covariates(n, d), ops.NUMPY)
    return xr.Dataset({"loss": np.exp(log_mean.transpose(*SAMPLE_DIMS, "query"))})


def _loss_beyond_runs(
    fit: Fit,
    draws: xr.Dataset,
    params: Any,
    tokens: Any,
    second: Callable[[Fit], xr.Dataset] | None,
    names: Sequence[str],
    group: str | None = None,
    reference: Callable[[Fit], xr.Dataset] | None = None,
) -> xr.Dataset:
    """The one rule for a loss at an allocation (N, D) beyond the runs: ``predict``, ``optimal``, plans.

    Blended as far as (N, D) lies beyond the runs (:func:`~bayescale.posterior.extrapolation.beyond`),
    towards the second law's change from the point of the runs' range that (N, D) is continued
    from (:func:`~bayescale.posterior.extrapolation.edge_point`), not towards its level: the two laws'
    gap there is a loss the runs measured. ``optimal`` passes its per-draw optimal loss as
    ``draws`` and the fitted law's loss at its median allocation as ``reference``, so it is moved by
    exactly the terms that move ``predict`` at that allocation.
    """
    span = span_of(fit.runs)
    distance = beyond(span, params, tokens)
    edge_n, edge_d = edge_point(span, params, tokens)

    def at_edge(one: Fit) -> xr.Dataset:
        theta = one.theta(group) if one is fit else one.theta()
        loss = _mean_loss(one, theta, edge_n, edge_d)["loss"]
        return xr.Dataset(dict.fromkeys(names, loss))

    return _beyond_runs(fit, draws, distance, second, names, (), at_edge, reference)


def _on_budget(draws: xr.Dataset, compute: Any, k: float) -> xr.Dataset:
    """Tokens from the (blended) params so that k N D stays the budget; tokens per param, b = 1 - a."""
    budget = compute if isinstance(compute, xr.DataArray) else xr.DataArray(compute, dims="query")
    tokens = budget / k / draws["params"]
    draws = draws.assign(tokens=tokens.transpose(*draws["params"].dims))
    draws["tokens_per_param"] = draws["tokens"] / draws["params"]
    if "a" in draws:
        draws["b"] = 1.0 - draws["a"]
    return draws


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


def optimal_draws(
    fit: Fit,
    compute: Any,
    unique_tokens: Any = None,
    flops_per_param_token: float = FLOPS_PER_PARAM_TOKEN,
    average_beyond: bool = True,
    group: str | None = None,
) -> xr.Dataset:
    """:func:`optimal_allocation_draws` on a fit's posterior (a grouped law's ``group``, see ``Fit.theta``).

    With ``average_beyond`` (default), budgets beyond the runs' compute are answered by
    the fitted law blended with the fit's variant law (:meth:`~bayescale.Fit.variant_fit`),
    the blend's weight and discrepancy growing smoothly with the distance
    (:mod:`bayescale.posterior.extrapolation`); with ``unique_tokens`` by the discrepancy alone.
    """
    theta = fit.theta(group)
    draws = optimal_allocation_draws(fit.law, theta, compute, unique_tokens, flops_per_param_token)
    if not average_beyond:
        return draws
    query = make_query(compute=compute, unique_tokens=unique_tokens)
    budgets = query["compute"].values
    k = _check_flops(flops_per_param_token)
    sees_u = unique_tokens is not None

    def second(variant: Fit) -> xr.Dataset:
        return optimal_allocation_draws(variant.law, variant.theta(), compute, None, k)

    # N_opt, which the runs do not measure, moves towards the second law's (not anchored) as the
    # fitted law's optimum leaves the runs' range: by predict's distance, at its median allocation.
    median = draws["params"].median(SAMPLE_DIMS).values
    distance = beyond(span_of(fit.runs), median, budgets / k / median)
    allocation = _beyond_runs(fit, draws, distance, None if sees_u else second, ("params",), ("a",))
    # The loss: by the rule of a loss at an allocation (predict's), at the answer's median
    # allocation, applied to each draw's own optimal loss; so predict there moves as optimal does.
    params = allocation["params"].median(SAMPLE_DIMS).values
    tokens = budgets / k / params

    def loss_at(one: Fit) -> xr.Dataset:
        return _mean_loss(one, one.theta(group) if one is fit else one.theta(), params, tokens)

    loss = _loss_beyond_runs(
        fit, draws[["loss"]], params, tokens, None if sees_u else loss_at, ("loss",), group, loss_at
    )
    if allocation is draws:
        return draws.assign(loss=loss["loss"])
    blended = _on_budget(allocation.assign(loss=loss["loss"]), budgets, k)
    if "epochs" in blended:
        blended["epochs"] = blended["tokens"] / xr.DataArray(query["unique_tokens"].values, dims="query")
    return blended


def optimal(
    fit: Fit,
    compute: Any,
    unique_tokens: Any = None,
    prob: float = 0.9,
    kind: str = "eti",
    flops_per_param_token: float = FLOPS_PER_PARAM_TOKEN,
    average_beyond: bool = True,
    group: str | None = None,
) -> pd.DataFrame:
    """Table of :func:`optimal_draws`: ``compute`` (and ``unique_tokens``), then each quantity's interval."""
    check_interval(prob, kind)
    query = make_query(compute=compute, unique_tokens=unique_tokens)
    draws = optimal_draws(fit, compute, unique_tokens, flops_per_param_token, average_beyond, group)
    return interval_table(draws, prob, kind, query)


# --------------------------------------------------------------------------- 3. loss at a plan


def predict_draws(
    fit: Fit,
    params: Any,
    tokens: Any,
    unique_tokens: Any = None,
    random_seed: int | None = None,
    average_beyond: bool = True,
    group: str | None = None,
) -> xr.Dataset:
    """Draws of the mean loss ``loss`` and predictive loss ``loss_predictive`` per query.

    ``group``: a grouped law's group (see ``Fit.theta``); ``None`` is a typical group.

    With ``average_beyond`` (default), queries beyond the runs' range
    (:func:`~bayescale.posterior.extrapolation.beyond`) are answered by the fitted law
    blended with the fit's variant law (:meth:`~bayescale.Fit.variant_fit`), more as the
    distance grows; with ``unique_tokens``, which the variant does not see, by the
    discrepancy alone.
    """
    query = make_query(params=params, tokens=tokens, unique_tokens=unique_tokens)
    if "unique_tokens" in fit.law.required_columns and "unique_tokens" not in query:
        raise LawError(f"law {fit.law.name!r} needs unique_tokens to predict")
    x = covariates(query["params"], query["tokens"], query.get("unique_tokens"))
    if "log_unique_tokens" in x:  # U available; the run sees at most D of it
        x["log_unique_tokens"] = np.minimum(x["log_unique_tokens"], x["log_tokens"])
    theta = fit.theta(group)
    log_mean = fit.law.log_loss(theta, x, ops.NUMPY)
    log_mean = log_mean.transpose("chain", "draw", "query")
    noise = draw_log_noise(np.random.default_rng(random_seed), fit.likelihood, theta, log_mean.shape)
    # Heavy-tailed noise (small nu) can put a rare draw beyond exp's float range; it becomes inf,
    # a faithful "larger than any float" draw that leaves the quantiles untouched.
    with np.errstate(over="ignore"):
        predictive = np.exp(log_mean + noise)
    draws = xr.Dataset({"loss": np.exp(log_mean), "loss_predictive": predictive})
    if not average_beyond:
        return draws
    seed = None if random_seed is None else random_seed + 1

    def second(variant: Fit) -> xr.Dataset:
        return predict_draws(variant, params, tokens, None, seed, average_beyond=False)

    sees_u = "unique_tokens" in query
    names = ("loss", "loss_predictive")
    return _loss_beyond_runs(
        fit, draws, query["params"].values, query["tokens"].values, None if sees_u else second, names, group
    )


def predict(
    fit: Fit,
    params: Any,
    tokens: Any,
    unique_tokens: Any = None,
    prob: float = 0.9,
    kind: str = "eti",
    random_seed: int | None = None,
    average_beyond: bool = True,
    group: str | None = None,
) -> pd.DataFrame:
    """Table of :func:`predict_draws`: the inputs, then ``loss_*`` and ``loss_predictive_*``."""
    check_interval(prob, kind)
    query = make_query(params=params, tokens=tokens, unique_tokens=unique_tokens)
    draws = predict_draws(fit, params, tokens, unique_tokens, random_seed, average_beyond, group)
    return interval_table(draws, prob, kind, query)


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


def target_compute(
    fit: Fit,
    target_loss: Any,
    unique_tokens: Any = None,
    prob: float = 0.9,
    kind: str = "eti",
    flops_per_param_token: float = FLOPS_PER_PARAM_TOKEN,
    average_beyond: bool = True,
) -> pd.DataFrame:
    """Compute needed to reach each target loss: one row per target.

    Columns: ``target_loss`` (and ``unique_tokens``), ``compute_*``,
    ``params_*``, ``tokens_*`` (median and interval; ``inf`` where more than
    that share of draws cannot reach the target) and ``fraction_unreachable``.
    With ``average_beyond`` (default), a target whose median compute lies beyond
    the runs' largest N D is answered by the fitted law blended with the fit's variant law
    (:meth:`~bayescale.Fit.variant_fit`; with ``unique_tokens`` the discrepancy alone), the
    blend growing with the distance of that median compute.
    """
    check_interval(prob, kind)
    query = make_query(target_loss=target_loss, unique_tokens=unique_tokens)
    draws = target_compute_draws(fit.law, fit.theta(), target_loss, unique_tokens, flops_per_param_token)
    if average_beyond:
        # The answer's own compute places it: beyond the runs when its median is past their N D.
        median = draws["compute"].median(SAMPLE_DIMS).values
        distance = beyond_compute(span_of(fit.runs), median, flops_per_param_token)

        def second(variant: Fit) -> xr.Dataset:
            return target_compute_draws(
                variant.law, variant.theta(), target_loss, None, flops_per_param_token
            )

        blended = _beyond_runs(
            fit, draws, distance, None if unique_tokens is not None else second, ("compute", "params")
        )
        if blended is not draws:
            draws = _on_budget(blended, blended["compute"], _check_flops(flops_per_param_token))
            draws = draws.drop_vars("tokens_per_param")
    share = draws["unreachable"].mean(SAMPLE_DIMS).values
    table = _interval_table_with_inf(draws.drop_vars("unreachable"), prob, kind, query)
    table["fraction_unreachable"] = share
    return table


def _interval_table_with_inf(draws: xr.Dataset, prob: float, kind: str, query: xr.Dataset) -> pd.DataFrame:
    """:func:`interval_table` for draws that may be ``inf``: quantiles into inf stay inf, never NaN."""
    big = 1e300  # stands in for inf: far above any budget, and sums of thousands of it stay finite
    table = interval_table(draws.where(np.isfinite(draws), big), prob, kind, query)
    stats = [c for c in table.columns if c not in query.data_vars]
    table[stats] = table[stats].where(table[stats] < big / 1e6, np.inf)
    return table


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


def compare_plans(
    fit: Fit,
    plans: Sequence[Sequence[float]] | pd.DataFrame,
    prob: float = 0.9,
    kind: str = "eti",
    flops_per_param_token: float = FLOPS_PER_PARAM_TOKEN,
    average_beyond: bool = True,
    unique_tokens: Any = None,
) -> pd.DataFrame:
    """Which plan gives the lowest loss: one row per plan.

    Parameters
    ----------
    plans
        ``(N, D)`` or ``(N, D, U)`` tuples, or a DataFrame with columns
        ``params``, ``tokens`` and optionally ``unique_tokens``.
    unique_tokens
        Unique tokens of plans given as ``(N, D)``: one number shared by every plan (the data
        one has) or one per plan; not with plans that carry their own U.

    Returns
    -------
    pandas.DataFrame
        ``params``, ``tokens`` (``unique_tokens``), ``compute``, ``loss_*``,
        ``prob_best`` (posterior probability that the plan has the lowest mean
        loss), ``regret_mean`` (expected loss above the per-draw optimum at
        the plan's own budget) and ``regret_*``.

        With ``average_beyond`` (default), each plan beyond the runs' range is judged
        on the fitted law blended with the fit's variant law
        (:meth:`~bayescale.Fit.variant_fit`; with ``unique_tokens`` the discrepancy alone),
        more as its distance grows; ``prob_best`` compares the plans' blended losses
        draw by draw (each draw's blend is shared by every plan).
    """
    check_interval(prob, kind)
    frame = _with_unique_tokens(_plans_frame(plans), unique_tokens)
    u = frame["unique_tokens"] if "unique_tokens" in frame else None
    draws = compare_plans_draws(
        fit.law, fit.theta(), frame["params"], frame["tokens"], u, flops_per_param_token
    )
    if average_beyond:
        distance = beyond(span_of(fit.runs), frame["params"].to_numpy(), frame["tokens"].to_numpy())

        def second(variant: Fit) -> xr.Dataset:
            return compare_plans_draws(
                variant.law, variant.theta(), frame["params"], frame["tokens"], None, flops_per_param_token
            )

        # The loss by predict's rule (anchored at the edge); the regret, a difference of losses at
        # one budget, towards the second law's level.
        other = None if u is not None else second
        params, tokens = frame["params"].to_numpy(), frame["tokens"].to_numpy()
        loss = _loss_beyond_runs(fit, draws[["loss"]], params, tokens, other, ("loss",))
        blended = _beyond_runs(fit, draws, distance, other, (), ("regret",)).assign(loss=loss["loss"])
        if np.any(distance > 0):
            losses = blended["loss"]
            best = (losses == losses.min("query")).astype(float)
            draws = blended.assign(best=best, regret=np.maximum(blended["regret"], 0.0))
    query = make_query(params=frame["params"], tokens=frame["tokens"], unique_tokens=u)
    query["compute"] = flops_per_param_token * query["params"] * query["tokens"]
    table = interval_table(draws[["loss"]], prob, kind, query)
    table["prob_best"] = draws["best"].mean(SAMPLE_DIMS).values
    table["regret_mean"] = draws["regret"].mean(SAMPLE_DIMS).values
    regret = interval_table(draws[["regret"]], prob, kind)
    return pd.concat([table, regret], axis=1)


def _with_unique_tokens(frame: pd.DataFrame, unique_tokens: Any) -> pd.DataFrame:
    """``frame`` with ``unique_tokens`` as its U column (one value for all plans, or one per plan)."""
    if unique_tokens is None:
        return frame
    if "unique_tokens" in frame:
        raise BayescaleError(
            "the plans already give unique tokens (N, D, U); give U there or as unique_tokens=, not both"
        )
    values = np.asarray(unique_tokens, dtype=float)
    if values.ndim > 1 or (values.ndim == 1 and values.size != len(frame)):
        raise BayescaleError(
            f"unique_tokens= must be one number or one per plan ({len(frame)}); got shape {values.shape}"
        )
    return frame.assign(unique_tokens=np.broadcast_to(values, (len(frame),)))


def _plans_frame(plans: Sequence[Sequence[float]] | pd.DataFrame) -> pd.DataFrame:
    if isinstance(plans, pd.DataFrame):
        frame = plans.rename(columns=canonical_columns(plans.columns))
        missing = [c for c in ("params", "tokens") if c not in frame.columns]
        if missing:
            raise BayescaleError(f"plans need column(s) {missing}; found {list(plans.columns)}")
        return frame
    rows = [tuple(p) for p in plans]
    lengths = {len(r) for r in rows}
    if not rows or not lengths <= {2, 3} or len(lengths) != 1:
        raise BayescaleError(
            f"each plan must be (params, tokens) or (params, tokens, unique_tokens): {plans!r}"
        )
    names = ["params", "tokens", "unique_tokens"][: lengths.pop()]
    return pd.DataFrame(rows, columns=names, dtype=float)
