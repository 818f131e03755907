"""The runs table's schema: canonical columns, their accepted spellings, the FLOP convention.

Also the cell-level check every numeric column passes (:func:`positive_numeric`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from bayescale.errors import RunsError

NUMERIC_COLUMNS = ("params", "tokens", "loss", "unique_tokens", "compute")
REQUIRED_COLUMNS = ("params", "tokens", "loss")

#: Accepted spellings of each canonical column (compared case-insensitively).
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "params": ("params", "n", "n_params", "parameters", "num_params", "model_size"),
    "tokens": ("tokens", "d", "n_tokens", "training_tokens", "train_tokens", "num_tokens"),
    "loss": ("loss", "l", "final_loss", "val_loss", "validation_loss"),
    "unique_tokens": ("unique_tokens", "u", "unique", "n_unique_tokens"),
    "compute": ("compute", "c", "flops", "training_flop", "training_flops", "compute_budget"),
    "group": ("group", "dataset"),
    "run": ("run", "run_id"),
    # FLOPs a ladder logs per training token (e.g. 6 N plus attention): compute = this x tokens
    "flops_per_token": ("flops_per_token", "flops_per_tok", "flop_per_token"),
}

#: Compute per parameter per token in the default FLOPs model C = 6 N D.
FLOPS_PER_PARAM_TOKEN = 6.0


def canonical_columns(columns: Iterable[Any]) -> dict[Any, str]:
    """Map source column names to canonical names using :data:`COLUMN_ALIASES`.

    Raises when two source columns claim the same canonical name.
    """
    lookup = {alias: canon for canon, aliases in COLUMN_ALIASES.items() for alias in aliases}
    mapping: dict[Any, str] = {}
    claimed: dict[str, Any] = {}
    columns = list(columns)
    # Exact canonical names win over aliases (a table with both `params` and `N`).
    ordered = sorted(columns, key=lambda c: str(c).strip().lower() not in COLUMN_ALIASES)
    for col in ordered:
        canon = lookup.get(str(col).strip().lower())
        if canon is None:
            continue
        if canon in claimed:
            first_is_canon = str(claimed[canon]).strip().lower() == canon
            # `Tokens` and `tokens` both spell the canonical name: renaming would repeat a column.
            if first_is_canon and str(col).strip().lower() != canon:
                continue  # the canonical column itself is used; the alias stays an extra column
            raise RunsError(
                f"columns {claimed[canon]!r} and {col!r} both mean {canon!r}; say which with "
                f"--column {canon}={claimed[canon]} (Python: columns={{{canon!r}: {str(claimed[canon])!r}}}) "
                "or keep one"
            )
        claimed[canon] = col
        mapping[col] = canon
    return mapping


def positive_numeric(series: pd.Series, col: str) -> pd.Series:
    """The column as floats, each finite and > 0; an error naming the column and first bad row."""
    arr = np.array([_to_float(v) for v in series.to_numpy(dtype=object)], dtype=float)
    bad_text = np.isnan(arr) & series.notna().to_numpy()
    if bad_text.any():
        row = int(np.flatnonzero(bad_text)[0])
        raise RunsError(
            f"column {col!r} row {row}: {series.iloc[row]!r} is not a number "
            f"({int(bad_text.sum())} non-numeric value(s) in {col!r})"
        )
    checks = (
        (np.isnan(arr), "is missing (NaN)"),
        (np.isinf(arr), "is infinite"),
        (arr <= 0, "must be > 0"),
    )
    for bad, what in checks:
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise RunsError(
                f"column {col!r} row {row}: value {float(arr[row])!r} {what} "
                f"({int(bad.sum())} such row(s) in {col!r})"
            )
    return pd.Series(arr, index=series.index, name=col)


def _to_float(value: Any) -> float:
    """A real number from a cell, or NaN for anything else (text, booleans, complex, lists)."""
    if isinstance(value, (bool, np.bool_)) or value is None:
        return float("nan")
    if isinstance(value, str):
        value = value.strip().replace("_", "")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return float("nan")
    return number
