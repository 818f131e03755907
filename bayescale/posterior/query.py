"""Query points of an answer (params, tokens, compute, ...), checked and broadcast."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from bayescale.errors import BayescaleError


def query_values(values: Any, name: str) -> np.ndarray:
    """``values`` as a 1-d float array, every entry finite and > 0; an error naming ``name`` otherwise."""
    try:
        arr = np.atleast_1d(np.asarray(values, dtype=float))
    except (TypeError, ValueError):
        raise BayescaleError(f"{name} must be a number or numbers, got {values!r}") from None
    if arr.ndim != 1:
        raise BayescaleError(f"{name} must be a number or a 1-d sequence, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise BayescaleError(f"{name} must be finite and > 0, got {values!r}")
    return arr


def make_query(**columns: Any) -> xr.Dataset:
    """The query points of an answer: one ``query`` dimension, the columns broadcast together.

    Columns given as ``None`` are left out; every value must be finite and > 0.
    """
    arrays = {k: query_values(v, k) for k, v in columns.items() if v is not None}
    try:
        broadcast = np.broadcast_arrays(*arrays.values())
    except ValueError:
        shapes = {k: v.shape for k, v in arrays.items()}
        raise BayescaleError(f"query inputs have incompatible lengths: {shapes}") from None
    return xr.Dataset({k: ("query", v) for k, v in zip(arrays, broadcast, strict=True)})
