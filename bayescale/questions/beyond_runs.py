"""Answers of a fit beyond its runs: the fitted law's draws blended with its variant law's.

The fit-level side of :mod:`bayescale.posterior.extrapolation` for the questions of
:mod:`bayescale.questions.plan`: which draws are blended, at which distance, anchored where.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from bayescale.posterior.extrapolation import blend_beyond

if TYPE_CHECKING:
    from bayescale.posterior.protocol import FitLike as Fit


def _beyond_runs(
    fit: Fit,
    draws: xr.Dataset,
    distance: np.ndarray,
    second: Callable[[Fit], xr.Dataset] | None,
    log_vars: Sequence[str],
    linear_vars: Sequence[str] = (),
    at_edge: Callable[[Fit], xr.Dataset] | None = None,
) -> xr.Dataset:
    """Answers beyond the runs: the fitted law's draws blended with the variant law's.

    See :func:`~bayescale.posterior.extrapolation.blend_beyond`: weight and discrepancy grow
    with ``distance``. ``at_edge`` gives a fit's answers at the edge of the runs (one query, or
    one per query); the variables it holds are anchored there (``blend_beyond``'s ``edge``).

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
    return blend_beyond(draws, second(variant), distance, log_vars, linear_vars, edge=edge)


def _on_budget(draws: xr.Dataset, compute: Any, k: float) -> xr.Dataset:
    """Tokens from the (blended) params so that k N D stays the budget; tokens per param, b = 1 - a."""
    budget = compute if isinstance(compute, xr.DataArray) else xr.DataArray(compute, dims="query")
    tokens = budget / k / draws["params"]
    draws = draws.assign(tokens=tokens.transpose(*draws["params"].dims))
    draws["tokens_per_param"] = draws["tokens"] / draws["params"]
    if "a" in draws:
        draws["b"] = 1.0 - draws["a"]
    return draws
