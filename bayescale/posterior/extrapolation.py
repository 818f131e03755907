"""How far an answer lies beyond the runs it was fitted to, and what the law does not know there.

Two jobs, both driven by the same distances:

- **The guard**: every answer row says how far it is from the runs
  (:func:`distance_columns`): its compute as a multiple of the largest run's,
  its model size as a multiple of the largest run's, and how far its tokens per
  parameter lie outside the runs' span. :func:`beyond_message` names the rows
  past :data:`GUARD`, the distances up to which held-out coverage was measured.
- **The discrepancy**: a posterior conditional on one law being exactly true
  understates what is not known off the data's range (which law, and how the
  truth bends past the last run). :func:`discrepancy_draws` adds, on log loss, a
  Normal term whose scale grows linearly with the distance beyond the runs
  (:func:`beyond_decades`); zero inside the runs' range, so in-range answers
  keep their sharpness.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: Guard thresholds: an answer past any of these is flagged.
GUARD = {"compute_multiple": 100.0, "params_multiple": 30.0, "tokens_per_param_outside": 4.0}


@dataclass(frozen=True)
class RunSpan:
    """The range the runs cover: largest params, tokens, compute; span of tokens per parameter."""

    params_max: float
    tokens_max: float
    compute_max: float
    tokens_per_param_min: float
    tokens_per_param_max: float

    @classmethod
    def of(cls, params: Any, tokens: Any, compute: Any) -> RunSpan:
        """The span of runs with these columns (equal-length arrays)."""
        n, d, c = (np.asarray(v, dtype=float) for v in (params, tokens, compute))
        ratio = d / n
        return cls(float(n.max()), float(d.max()), float(c.max()), float(ratio.min()), float(ratio.max()))


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


def beyond_decades(span: RunSpan, params: Any, tokens: Any) -> np.ndarray:
    """Distance beyond the runs, in decades: the largest of log10(N/N_max), log10(D/D_max), 0."""
    n, d = (np.asarray(v, dtype=float) for v in (params, tokens))
    return np.maximum(np.maximum(np.log10(n / span.params_max), np.log10(d / span.tokens_max)), 0.0)
