"""How far an answer lies beyond the runs it was fitted to, and what the law does not know there.

Two jobs, both driven by the same distances:

- **The guard**: every answer row says how far it is from the runs
  (:func:`distance_columns`): its compute as a multiple of the largest run's,
  its model size as a multiple of the largest run's, and how far its tokens per
  parameter lie outside the runs' span. :func:`beyond_message` names the rows
  past :data:`GUARD`, the distances up to which held-out coverage was measured.
- **Averaging over laws beyond the runs**: a posterior conditional on one law
  being exactly true understates what is not known off the data's range (which
  law, and how the truth bends past the last run). Answers beyond the runs
  (:func:`beyond` > 0) are drawn half from the fitted law and half from a
  second law fitted to the same runs, :data:`VARIANT_LAW`
  (:func:`mix_beyond`); inside the range they are the fitted law's alone, so
  in-range answers keep their sharpness. Measured on held-out ladders by
  ``benchmarks/extrapolation.py`` (results in ``benchmarks/results/``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.data.runs import Runs
from bayescale.data.schema import FLOPS_PER_PARAM_TOKEN

#: Guard thresholds: an answer past any of these is flagged.
GUARD = {"compute_multiple": 100.0, "params_multiple": 30.0, "tokens_per_param_outside": 4.0}


#: The second law that answers beyond the runs' range are averaged with (equal weights).
VARIANT_LAW = "kaplan-e"

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


def mix_beyond(main: xr.Dataset, variant: xr.Dataset, distance: np.ndarray) -> xr.Dataset:
    """Draws of the equal mixture of two laws' answers where ``distance`` > 0, of ``main`` elsewhere.

    Both datasets have dims (``chain``, ``draw``, ``query``, ...) of equal sizes; the
    result has twice the draws: ``main``'s, then per query the variant's (beyond the
    runs) or ``main``'s again (inside, so the distribution there is unchanged).
    """
    # Each law's draws are numbered on their own: drop the sample coordinates, renumber the mixture.
    main, variant = (ds.drop_vars(["chain", "draw"], errors="ignore") for ds in (main, variant))
    outside = xr.DataArray(np.asarray(distance) > 0, dims="query")
    second = xr.where(outside, variant, main).transpose(*main.dims)
    mixed = xr.concat([main, second], dim="draw")
    return mixed.assign_coords(chain=np.arange(mixed.sizes["chain"]), draw=np.arange(mixed.sizes["draw"]))


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
