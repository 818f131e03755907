"""The runs (or curves) table as stored in a saved fit: an xarray Dataset along one dim."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.data.config import parse_config
from bayescale.data.runs import Runs
from bayescale.data.schema import NUMERIC_COLUMNS, positive_numeric
from bayescale.data.units import DEFAULT_LOSS_UNIT, check_loss_unit
from bayescale.errors import RunsError


def runs_to_dataset(runs: Runs) -> xr.Dataset:
    """The runs table as an xarray Dataset along dim ``run`` (for saving), with its loss unit."""
    ds = table_to_dataset(runs.frame, runs.source, "run")
    ds.attrs["loss_unit"] = runs.loss_unit
    return ds


def table_to_dataset(frame: pd.DataFrame, source: str, dim: str) -> xr.Dataset:
    """A table (runs, or the checkpoints of curves) as an xarray Dataset along ``dim``.

    Variables whose names start with ``_`` (other than ``_column_``) are never
    columns, so a saved result can keep its own arrays beside the table.
    """
    frame = frame.reset_index(drop=True)
    data = {}
    names = [_column_variable(str(col), i, dim) for i, col in enumerate(frame.columns)]
    for col, name in zip(frame.columns, names, strict=True):
        values = frame[col].to_numpy()
        if values.dtype == object or pd.api.types.is_string_dtype(frame[col]):
            values = frame[col].astype(str).to_numpy(dtype=str)
        data[name] = ((dim,), values)
    ds = xr.Dataset(data, coords={dim: np.arange(len(frame))})
    ds.attrs["source"] = source
    ds.attrs["columns"] = json.dumps([str(c) for c in frame.columns])
    ds.attrs["column_variables"] = json.dumps(names)
    return ds


def _column_variable(column: str, position: int, dim: str = "run") -> str:
    """The NetCDF variable holding a table column: its own name when NetCDF can hold it.

    ``dim`` is the dimension's name and ``/`` separates HDF5 groups, so such a
    column (and any other unusual name) is stored as ``_column_<position>``;
    the ``columns`` attr keeps the real names in order.
    """
    plain = column != dim and column.isascii() and column[:1].isalpha()
    if plain and all(ch.isalnum() or ch in "_-." for ch in column):
        return column
    return f"_column_{position}"


def runs_from_dataset(ds: xr.Dataset) -> Runs:
    """Inverse of :func:`runs_to_dataset`."""
    frame, source = table_from_dataset(ds)
    for required in ("params", "tokens", "loss", "compute"):
        if required not in frame.columns:
            raise TypeError(f"the runs' 'columns' attr lacks {required!r}: {list(frame.columns)}")
    # Checked like new runs: a forged table with a negative size or a NaN loss would move every answer.
    if len(frame) == 0:
        raise TypeError("the saved runs table has no rows")
    try:
        for column in NUMERIC_COLUMNS:
            if column in frame.columns:
                frame[column] = positive_numeric(frame[column], column)
    except RunsError as exc:
        raise TypeError(f"the saved runs table is not valid: {exc}") from None
    unit = str(ds.attrs.get("loss_unit", DEFAULT_LOSS_UNIT))  # files before units: nats per token
    return Runs(frame=frame, source=source, loss_unit=check_loss_unit(unit))


def table_from_dataset(ds: xr.Dataset) -> tuple[pd.DataFrame, str]:
    """Inverse of :func:`table_to_dataset`: the table and its source."""
    columns = parse_config(str(ds.attrs["columns"]))
    names = parse_config(str(ds.attrs.get("column_variables", ds.attrs["columns"])))
    if not (isinstance(columns, list) and isinstance(names, list) and len(columns) == len(names)):
        raise TypeError("the runs' 'columns' and 'column_variables' attrs must be lists of equal length")
    frame = pd.DataFrame({str(c): ds[str(n)].values for c, n in zip(columns, names, strict=True)})
    if len(frame.columns) != len(columns):
        raise TypeError(f"the runs' 'columns' attr repeats a name: {columns}")
    return frame, str(ds.attrs.get("source", "saved fit"))
