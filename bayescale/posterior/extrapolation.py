"""How far an answer lies beyond the runs it was fitted to, and what the law does not know there.

Two jobs, both driven by the same distances:

- **The guard**: every answer row says how far it is from the runs
  (:func:`distance_columns`): its compute as a multiple of the largest run's,
  its model size as a multiple of the largest run's, and how far its tokens per
  parameter lie outside the runs' span. :func:`beyond_message` names the rows
  past :data:`GUARD`, the distances up to which held-out coverage was measured.
- **Model uncertainty that grows with the distance**: a posterior conditional on
  one law being exactly true understates what is not known off the data's range
  (which law, and how the truth bends past the last run). Answers beyond the runs
  (:func:`beyond` > 0) are the fitted law's draws moved towards and widened by a
  second law fitted to the same runs, :data:`VARIANT_LAW`, with a weight rising
  smoothly from 0 at the edge (:func:`law_weight`), plus a discrepancy whose sd
  grows with the distance (:data:`DISCREPANCY`): :func:`blend_beyond`. Every
  answer is continuous in N, D and C, unimodal, and never narrower than the
  fitted law's own; inside the range the answers are the fitted law's alone.
  Chosen on held-out ladders by ``benchmarks/extrapolation.py`` (``--method blend``;
  docs/measurements.md).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.data.runs import Runs
from bayescale.data.schema import FLOPS_PER_PARAM_TOKEN

#: Guard thresholds: an answer past any of these is flagged.
GUARD = {"compute_multiple": 100.0, "params_multiple": 30.0, "tokens_per_param_outside": 4.0}


#: The second law that answers beyond the runs' range are blended with (:func:`blend_draws`).
VARIANT_LAW = "kaplan-e"

#: Its weight far beyond the runs, and the e-folds of distance over which the weight rises
#: (:func:`law_weight`), chosen on ``benchmarks/extrapolation.py`` (docs/measurements.md).
VARIANT_SHARE = 0.5
VARIANT_RAMP = 0.5

#: The guard's columns on every answer table.
DISTANCE_COLUMNS = tuple(GUARD)


@dataclass(frozen=True)
class RunSpan:
    """The range the runs cover: largest params, compute and N D; span of tokens per parameter."""

    params_max: float
    compute_max: float
    tokens_per_param_min: float
    tokens_per_param_max: float
    params_tokens_max: float

    @classmethod
    def of(cls, params: Any, tokens: Any, compute: Any) -> RunSpan:
        """The span of runs with these columns (equal-length arrays)."""
        n, d, c = (np.asarray(v, dtype=float) for v in (params, tokens, compute))
        ratio = d / n
        return cls(
            float(n.max()),
            float(c.max()),
            float(ratio.min()),
            float(ratio.max()),
            float((n * d).max()),
        )


def _outside(ratio: np.ndarray, low: float, high: float) -> np.ndarray:
    """Factor (>= 1) by which ``ratio`` lies outside ``[low, high]``; 1 inside."""
    return np.maximum(np.maximum(ratio / high, low / ratio), 1.0)


def distance_columns(span: RunSpan, params: Any, tokens: Any, compute: Any) -> dict[str, np.ndarray]:
    """The guard's columns for answers at (params, tokens, compute).

    Returns
    -------
    dict
        ``compute_multiple`` (compute / the largest run's), ``params_multiple``
        (params / the largest run's) and ``tokens_per_param_outside`` (the factor
        by which tokens/params lies outside the runs' span; 1 inside).
    """
    n, d, c = (np.asarray(v, dtype=float) for v in (params, tokens, compute))
    return {
        "compute_multiple": c / span.compute_max,
        "params_multiple": n / span.params_max,
        "tokens_per_param_outside": _outside(d / n, span.tokens_per_param_min, span.tokens_per_param_max),
    }


def beyond_message(columns: dict[str, np.ndarray]) -> str | None:
    """A one-line warning naming how many answers lie past :data:`GUARD`, or ``None``."""
    past = {name: np.asarray(columns[name]) > limit for name, limit in GUARD.items() if name in columns}
    if not past:
        return None
    any_past = np.logical_or.reduce(list(past.values()))
    if not any_past.any():
        return None
    worst = []
    for name, limit in GUARD.items():
        if name in columns and past[name].any():
            worst.append(f"{name.replace('_', ' ')} up to {np.nanmax(columns[name]):.3g} (guard {limit:g})")
    return (
        f"{int(any_past.sum())} of {any_past.size} answers lie beyond the distance at which held-out "
        f"coverage was measured: {'; '.join(worst)}. Treat their intervals as a lower bound on the "
        "uncertainty."
    )


def beyond(span: RunSpan, params: Any, tokens: Any) -> np.ndarray:
    """Distance beyond the runs in e-folds: the largest of three ways to leave their range.

    ``log(N D / max N D)`` (compute beyond the largest run's), ``log(N / max N)``
    (a larger model than any run) and how far ``log(D / N)`` lies outside the
    runs' span of tokens per parameter, each counted only when positive; 0 inside.
    """
    n, d = (np.asarray(v, dtype=float) for v in (params, tokens))
    ratio = d / n
    parts = (
        np.log(n * d / span.params_tokens_max),
        np.log(n / span.params_max),
        np.log(ratio / span.tokens_per_param_max),
        np.log(span.tokens_per_param_min / ratio),
    )
    return np.maximum(np.maximum.reduce(parts), 0.0)


def beyond_compute(span: RunSpan, compute: Any, flops_per_param_token: float) -> np.ndarray:
    """Distance of budgets beyond the runs in e-folds: ``log(C / k / max N D)``, 0 inside.

    The optimum's own N and D are not known before it is found, so a budget is
    placed by its N D = C / k against the largest run's.
    """
    params_tokens = np.asarray(compute, dtype=float) / flops_per_param_token
    return np.maximum(np.log(params_tokens / span.params_tokens_max), 0.0)


def law_weight(distance: Any, share: float = VARIANT_SHARE, ramp: float = VARIANT_RAMP) -> np.ndarray:
    """Weight of the second law at ``distance`` e-folds beyond the runs: ``share (1 - exp(-d / ramp))``.

    0 inside the runs, rising smoothly (no step at the edge) towards ``share``.
    """
    d = np.maximum(np.asarray(distance, dtype=float), 0.0)
    return share * -np.expm1(-d / ramp)


def _robust_sd(values: np.ndarray) -> np.ndarray:
    """Interquartile range / 1.349 per query (axis 0 the draws).

    A Student-t predictive's variance can be infinite, its quartiles never are.
    """
    q25, q75 = np.nanquantile(values, [0.25, 0.75], axis=0)
    return (q75 - q25) / 1.349


def blend_draws(
    main: np.ndarray,
    variant: np.ndarray,
    weight: Any,
    z: np.ndarray,
    extra_sd: Any = 0.0,
    offset: Any = 0.0,
    reference: np.ndarray | None = None,
) -> np.ndarray:
    """The fitted law's draws moved and widened towards a second law's, one Gaussian per query.

    ``main`` and ``variant`` are draws (axis 0) of a quantity on a scale where the laws'
    disagreement is additive (log loss, log N), queries on the last axis. With w = ``weight``
    per query and D = median(variant) - median(main) - ``offset``, each draw becomes

        main_i + w D + z_i sqrt(w (1 - w) D^2 + w (s_v^2 - s_m^2)_+ + extra_sd^2)

    the two moments of the mixture (1 - w) main + w variant added to the fitted law's own
    draws (s the robust spreads): the centre moves towards the second law by w D, and the
    spread grows by what the mixture adds. ``z`` (one standard normal per draw, shared by
    every query) keeps each draw a smooth function of the query, so answers are continuous
    wherever w, D and ``extra_sd`` are; being an independent Gaussian added to the fitted law's
    draws, it never narrows an interval (dispersive order: Lewis and Thompson 1981), and the
    answer stays unimodal where the mixture of two disagreeing laws would be bimodal. Where
    the draws are not finite (unreachable targets) they are left as they are.

    ``reference``: the fitted law's draws that D and s_m are taken from, when ``main`` answers
    a different question at the same point (``optimal``'s per-draw optimal loss, moved by the
    terms of the loss at the optimum's median allocation: :func:`blend_beyond`).
    """
    main = np.asarray(main, dtype=float)
    shift, sd = blend_terms(main, variant, weight, extra_sd, offset, reference)
    shape = (main.shape[0],) + (1,) * (main.ndim - 1)
    with np.errstate(invalid="ignore"):  # inf draws (unreachable targets) stay inf
        return main + shift + np.reshape(z, shape) * sd


def blend_terms(
    main: np.ndarray,
    variant: np.ndarray,
    weight: Any,
    extra_sd: Any = 0.0,
    offset: Any = 0.0,
    reference: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The two terms of :func:`blend_draws` per query: a draw of the blend is ``main_i + shift + z_i sd``.

    Apart, so that the blend of a surface can be interpolated between queries
    (``benchmarks/optimal_surface.py``).
    """
    main, variant = np.asarray(main, dtype=float), np.asarray(variant, dtype=float)
    ref = main if reference is None else np.asarray(reference, dtype=float)
    w = np.broadcast_to(np.asarray(weight, dtype=float), main.shape[1:])
    finite_m = np.where(np.isfinite(ref), ref, np.nan)
    finite_v = np.where(np.isfinite(variant), variant, np.nan)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-inf columns: nothing to blend there
        gap = np.nanmedian(finite_v, axis=0) - np.nanmedian(finite_m, axis=0)
        grow = np.maximum(_robust_sd(finite_v) ** 2 - _robust_sd(finite_m) ** 2, 0.0)
    gap, grow = (np.where(np.isfinite(v), v, 0.0) for v in (gap, grow))
    gap = gap - np.broadcast_to(np.asarray(offset, dtype=float), gap.shape)
    extra = np.broadcast_to(np.asarray(extra_sd, dtype=float), w.shape)
    return w * gap, np.sqrt(w * (1 - w) * gap**2 + w * grow + extra**2)


#: sd of log loss per e-fold of distance added to every answer beyond the runs (:func:`blend_beyond`):
#: what neither law knows, so that a law blended with one that agrees with it still widens.
#: Chosen with the weights on ``benchmarks/extrapolation.py`` (docs/measurements.md).
DISCREPANCY = 0.0025

#: Seed of the one standard normal per draw that :func:`blend_beyond` shares across queries, so the
#: same fit gives the same answer whichever call asks and each draw is smooth across queries.
BLEND_SEED = 20261207


def blend_beyond(
    main: xr.Dataset,
    variant: xr.Dataset,
    distance: Any,
    log_vars: Sequence[str] = (),
    linear_vars: Sequence[str] = (),
    discrepancy: float = DISCREPANCY,
    edge: tuple[xr.Dataset, xr.Dataset] | None = None,
    reference: xr.Dataset | None = None,
) -> xr.Dataset:
    """:func:`blend_draws` on answers: ``main``'s draws moved and widened towards ``variant``'s.

    Both have dims (``chain``, ``draw``, ``query``); ``distance`` (e-folds beyond the runs,
    one per query) sets the second law's weight (:func:`law_weight`) and the discrepancy's sd
    (``discrepancy`` times the distance). ``log_vars`` are blended on the log scale (positive
    quantities: losses, sizes, budgets), ``linear_vars`` as they are; other variables are
    ``main``'s. At distance 0 every answer is ``main``'s, exactly.

    ``edge``: (``main``, ``variant``) answering the same question at the edge of the runs (one
    query, or one per query: :func:`edge_point`). The variables found in both are *anchored*: the
    two laws' gap there (of medians, on the blending scale) is the ``offset`` of
    :func:`blend_draws`, so the answer moves towards the second law's change from the edge, not
    towards its level. Both laws were fitted to the same runs, so where they disagree at the edge
    (a level the runs measured) it is not extrapolation uncertainty. Blended towards the level
    instead, the optimal loss rose just past the edge wherever the second law sat higher there
    (the weight rising faster than the loss falls); anchored, near the edge the centre moves by w
    times a gap that itself starts at 0.

    ``reference``: the fitted law's draws of the same variables at the same queries as
    ``variant``, when ``main`` is another quantity moved by their terms (:func:`blend_draws`).
    """
    d = np.maximum(np.asarray(distance, dtype=float), 0.0)
    weight = law_weight(d)
    main = main.transpose("chain", "draw", "query", ...)
    chains, draws = main.sizes["chain"], main.sizes["draw"]
    z = np.random.default_rng(BLEND_SEED).standard_normal(chains * draws)
    out = main.copy()
    for name in (*log_vars, *linear_vars):
        ours = main[name].values.reshape(chains * draws, -1)
        theirs = variant[name].transpose("chain", "draw", "query").values.reshape(-1, ours.shape[1])
        logs = name in log_vars
        if logs:
            with np.errstate(divide="ignore"):
                ours, theirs = np.log(ours), np.log(theirs)
        offset: Any = 0.0
        if edge is not None and all(name in e for e in edge):
            medians = [_query_medians(e[name], logs) for e in edge]
            with np.errstate(invalid="ignore"):
                gap = medians[1] - medians[0]
            offset = np.where(np.isfinite(gap), gap, 0.0)
        ref = None
        if reference is not None:
            ref = reference[name].transpose("chain", "draw", "query").values.reshape(ours.shape)
            if logs:
                with np.errstate(divide="ignore"):
                    ref = np.log(ref)
        mixed = blend_draws(ours, theirs, weight, z, discrepancy * d, offset, ref)
        with np.errstate(over="ignore"):
            values = np.exp(mixed) if logs else mixed
        original = main[name].values.reshape(values.shape)
        values = np.where(d > 0, values, original)  # exactly the fitted law's inside the runs
        out[name] = (main[name].dims, values.reshape(main[name].shape))
    return out


def _query_medians(values: xr.DataArray, logs: bool) -> np.ndarray:
    """Median over the draws of each query (of the log when ``logs``)."""
    array = values.transpose("chain", "draw", "query").values.astype(float)
    array = array.reshape(-1, array.shape[-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.median(np.log(array) if logs else array, axis=0)


def edge_point(span: RunSpan, params: Any, tokens: Any) -> tuple[np.ndarray, np.ndarray]:
    """The point of the runs' range that an answer at (N, D) beyond it is continued from.

    Tokens per parameter clipped into the runs' span, then N D lowered to the largest run's N D
    and to what keeps N within the largest run's: a projection onto the region where
    :func:`beyond` is 0, continuous in N and D and the identity inside it. ``predict`` and
    ``optimal`` anchor a loss beyond the runs at this point (:func:`blend_beyond`'s ``edge``),
    so both answer by one rule and ``predict`` at the optimum's (N, D) moves as ``optimal`` does.
    """
    n, d = (np.asarray(v, dtype=float) for v in (params, tokens))
    ratio = np.clip(d / n, span.tokens_per_param_min, span.tokens_per_param_max)
    product = np.minimum(np.minimum(n * d, span.params_tokens_max), span.params_max**2 * ratio)
    return np.sqrt(product / ratio), np.sqrt(product * ratio)


def span_of(runs: Runs) -> RunSpan:
    """The :class:`RunSpan` of a runs table."""
    return RunSpan.of(runs.column("params"), runs.column("tokens"), runs.column("compute"))


def _answer_column(table: pd.DataFrame, name: str) -> np.ndarray | None:
    """An answer's input column, or its posterior median (``optimal`` answers ``params_median``)."""
    for column in (name, f"{name}_median"):
        if column in table.columns:
            return table[column].to_numpy(dtype=float)
    return None


def guard(table: pd.DataFrame, span: RunSpan, flops_per_param_token: float = FLOPS_PER_PARAM_TOKEN) -> None:
    """Add the guard's columns to an answer table (in place) and its warning to ``table.attrs``.

    The table needs ``params`` and ``tokens`` (or their ``_median``); ``compute``
    (or ``compute_median``) is used when present, else k N D. Tables without
    them (next-run designs, say) are left as they are. The warning, when any
    row lies past :data:`GUARD`, is ``table.attrs["extrapolation_warning"]``.
    """
    params, tokens = _answer_column(table, "params"), _answer_column(table, "tokens")
    if params is None or tokens is None:
        return
    compute = _answer_column(table, "compute")
    if compute is None:
        compute = flops_per_param_token * params * tokens
    with np.errstate(divide="ignore", invalid="ignore"):  # unreachable targets answer inf
        columns = distance_columns(span, params, tokens, compute)
    for name, values in columns.items():
        table[name] = np.where(np.isnan(values), np.inf, values)  # an unreachable answer is infinitely far
    message = beyond_message(columns)
    if message:
        table.attrs["extrapolation_warning"] = message
