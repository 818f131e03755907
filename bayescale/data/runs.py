"""The validated table of training runs every fit starts from.

Canonical columns (units in brackets):

``params``         N, model parameters [count]
``tokens``         D, training tokens [count]
``loss``           final loss [nats per token, or the unit stated as ``loss_unit``:
                   :mod:`bayescale.data.units`]
``unique_tokens``  U, unique tokens behind D [count], optional
``compute``        C, training compute [FLOPs], optional (default 6 N D)
``group``          label of a data set or recipe, optional
``run``            label of the training run a row is a checkpoint of, optional:
                   rows sharing a label are one model's loss curve (one ``params``)

Every bad value raises :class:`~bayescale.errors.RunsError` naming the column
and the row (0-based position in the table), so nothing is silently dropped.
Legal but suspicious input (duplicate runs, units that look like millions or
billions) loads with a :class:`~bayescale.errors.RunsWarning` giving the evidence.

Reading a table is :mod:`bayescale.data.reading`, the limits of plausible values and their checks
:mod:`bayescale.data.plausibility`, the hints for a missing column :mod:`bayescale.data.column_hints`;
the names callers import from here (``read_table``, ``from_source``, ``MAX_LOSS_NATS``) still are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bayescale.data import catalog
from bayescale.data import columns as loader
from bayescale.data.column_hints import missing_message, plausible_short_aliases
from bayescale.data.plausibility import (
    MAX_LOSS_NATS,
    MIN_PLAUSIBLE_MAX_PARAMS,
    MIN_PLAUSIBLE_MAX_TOKENS,
    MIN_PLAUSIBLE_TOKENS_PER_PARAM,
    check_loss_units,
    warn_duplicates,
    warn_units,
)
from bayescale.data.reading import from_source, read_table
from bayescale.data.schema import (
    FLOPS_PER_PARAM_TOKEN,
    NUMERIC_COLUMNS,
    REQUIRED_COLUMNS,
    positive_numeric,
)
from bayescale.data.units import DEFAULT_LOSS_UNIT, check_loss_column, check_loss_unit
from bayescale.errors import RunsError

__all__ = [
    "MAX_LOSS_NATS",
    "MIN_PLAUSIBLE_MAX_PARAMS",
    "MIN_PLAUSIBLE_MAX_TOKENS",
    "MIN_PLAUSIBLE_TOKENS_PER_PARAM",
    "Runs",
    "from_source",
    "read_table",
    "validate_frame",
]


@dataclass(frozen=True)
class Runs:
    """A validated table of training runs.

    Build one with :meth:`Runs.from_any` (a path, a DataFrame, or the name of a
    bundled data set) rather than the constructor.

    Attributes
    ----------
    frame
        One row per run with the canonical columns (see module docstring) and
        any extra columns the source had. ``compute`` is always present.
    source
        Where the runs came from (path, data set name or ``"DataFrame"``).
    loss_unit
        Unit of the ``loss`` column (:data:`~bayescale.data.units.LOSS_UNITS`), default nats per token.
    """

    frame: pd.DataFrame
    source: str = "DataFrame"
    #: What the loader options did (rows kept by filters and best-of, derived columns).
    notes: tuple[str, ...] = ()
    loss_unit: str = DEFAULT_LOSS_UNIT

    @classmethod
    def from_any(cls, source: Any, **options: Any) -> Runs:
        """Load and validate runs from a path, a DataFrame, a Runs, or a bundled name.

        Parameters
        ----------
        source
            ``Runs`` (returned as is), ``pandas.DataFrame``, a path to a
            ``.csv`` / ``.parquet`` file, or the name of a bundled data set
            (see :func:`bayescale.data.datasets.names`).
        **options
            Loader options for a raw table (see :mod:`bayescale.data.columns`):
            ``columns`` (``{"params": "N_no_emb"}``), ``where``
            (``["peak_lr <= 4e-3"]``), ``best_of`` (``"peak_lr"``) and
            ``flops_per_param_token`` (k of C = k N D for derived columns and
            the compute check; default 6), and ``loss_unit`` (the loss column's unit, see
            :mod:`bayescale.data.units`; a column named as bits per byte, ``task_bpb``, is
            refused unless it is stated).
        """
        if isinstance(source, Runs):
            return source if not options else cls.from_frame(source.frame, source.source, **options)

        def bundled(name: str) -> Runs:
            return cls.from_frame(catalog.frame(catalog.info(name)), name, **options)

        return from_source(source, "runs", lambda f, s: cls.from_frame(f, s, **options), bundled)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, source: str = "DataFrame", **options: Any) -> Runs:
        """Validate a DataFrame and return Runs with canonical column names (options: see from_any)."""
        notes: list[str] = []
        unit = check_loss_unit(options.pop("loss_unit", None) or DEFAULT_LOSS_UNIT)
        out = validate_frame(frame, notes=notes, loss_unit=unit, **options)
        return cls(frame=out, source=source, notes=tuple(notes), loss_unit=unit)

    def __len__(self) -> int:
        return len(self.frame)

    def __getitem__(self, column: str) -> pd.Series:
        return self.frame[column]

    @property
    def has_unique_tokens(self) -> bool:
        """True when the table carries a ``unique_tokens`` column."""
        return "unique_tokens" in self.frame.columns

    def column(self, name: str) -> np.ndarray:
        """The named column as a float64 numpy array."""
        if name not in self.frame.columns:
            raise RunsError(f"runs have no column {name!r}; columns are {list(self.frame.columns)}")
        return self.frame[name].to_numpy(dtype=float)

    def require(self, columns: Iterable[str], purpose: str) -> None:
        """Raise a RunsError naming every column in ``columns`` that is missing."""
        missing = [c for c in columns if c not in self.frame.columns]
        if missing:
            raise RunsError(f"{purpose} needs column(s) {missing}; the runs have {list(self.frame.columns)}")

    def drop_duplicates(self) -> Runs:
        """Runs without repeated identical rows (the first of each is kept)."""
        keys = [c for c in (*NUMERIC_COLUMNS, "group") if c in self.frame.columns]
        keep = ~self.frame.duplicated(subset=keys, keep="first").to_numpy()
        return self.subset(keep)

    def subset(self, mask: np.ndarray) -> Runs:
        """Runs restricted to the rows where ``mask`` is true."""
        kept = self.frame.loc[np.asarray(mask, dtype=bool)].reset_index(drop=True)
        return Runs(kept, self.source, loss_unit=self.loss_unit)


def validate_frame(
    frame: pd.DataFrame,
    columns: Mapping[str, str] | None = None,
    where: Sequence[str] | str | None = None,
    best_of: str | None = None,
    flops_per_param_token: float | None = None,
    notes: list[str] | None = None,
    loss_unit: str = DEFAULT_LOSS_UNIT,
) -> pd.DataFrame:
    """Return a validated copy of ``frame`` with canonical columns.

    ``columns``, ``where``, ``best_of`` and ``flops_per_param_token`` are the
    loader options of :mod:`bayescale.data.columns`; what they did is appended to ``notes``.
    ``loss_unit``: the unit of the loss column, which its source name must not contradict.

    Raises
    ------
    RunsError
        For a missing column, a non-numeric, NaN, infinite, zero or negative
        value (naming column and row), or an empty table.
    """
    if not isinstance(frame, pd.DataFrame):
        raise RunsError(f"expected a pandas DataFrame, got {type(frame).__name__}")
    repeated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
    if repeated:
        raise RunsError(f"runs table has repeated column name(s) {repeated}; keep one of each")
    notes = [] if notes is None else notes
    mapping = plausible_short_aliases(frame, loader.resolve_columns(list(frame.columns), columns))
    loss_source = next((col for col, canon in mapping.items() if canon == "loss"), "loss")
    check_loss_column(str(loss_source), loss_unit)
    out = frame.rename(columns=mapping).copy()
    if where:
        out, said = loader.apply_where(out, [where] if isinstance(where, str) else list(where), mapping)
        notes += said
    out, said = loader.derive_columns(out, flops_per_param_token)
    notes += said
    missing = [c for c in REQUIRED_COLUMNS if c not in out.columns]
    if missing:
        raise RunsError(missing_message(missing, frame, mapping))
    if len(out) == 0:
        raise RunsError("runs table has no rows")
    out = out.reset_index(drop=True)
    if best_of is not None:
        out, said = loader.best_of_sweep(out, best_of, mapping)
        notes += said
    for col in NUMERIC_COLUMNS:
        if col in out.columns:
            out[col] = positive_numeric(out[col], col)
    check_loss_units(out["loss"].to_numpy())
    if "compute" in out.columns:
        loader.check_flops(out, flops_per_param_token)
    else:
        k = FLOPS_PER_PARAM_TOKEN if flops_per_param_token is None else loader.check_k(flops_per_param_token)
        with np.errstate(over="ignore"):
            out["compute"] = k * out["params"] * out["tokens"]
        overflow = np.flatnonzero(~np.isfinite(out["compute"].to_numpy()))
        if overflow.size:
            row = int(overflow[0])
            raise RunsError(
                f"row {row}: 6 x params x tokens = 6 x {out['params'].iloc[row]:g} x "
                f"{out['tokens'].iloc[row]:g} overflows; params and tokens are counts, "
                "not exponents or scaled units"
            )
    if "unique_tokens" in out.columns:
        out = loader.check_unique_tokens(out)
    if "group" in out.columns:
        if out["group"].isna().any():
            row = int(np.flatnonzero(out["group"].isna().to_numpy())[0])
            raise RunsError(f"column 'group' row {row}: missing group label")
        out["group"] = out["group"].astype(str)
    if "run" in out.columns:
        _check_run_labels(out)
    warn_units(out)
    warn_duplicates(out)
    return out


def _check_run_labels(out: pd.DataFrame) -> None:
    """Turn run labels to text; refuse a missing label or a run whose rows disagree on params.

    A run is one model trained once: its rows are checkpoints at growing tokens.
    """
    if out["run"].isna().any():
        row = int(np.flatnonzero(out["run"].isna().to_numpy())[0])
        raise RunsError(f"column 'run' row {row}: missing run label")
    out["run"] = out["run"].astype(str)
    sizes = out.groupby("run", sort=False)["params"].nunique()
    mixed = sizes[sizes > 1]
    if len(mixed):
        label = mixed.index[0]
        rows = np.flatnonzero((out["run"] == label).to_numpy())
        values = sorted(out["params"].iloc[rows].unique())
        raise RunsError(
            f"column 'run': run {label!r} has rows with different params ({values[0]:.4g} and "
            f"{values[-1]:.4g}, rows {rows[:6].tolist()}); the rows of one run are checkpoints of one "
            "model. If the column means something else, leave it out with --column run= "
            "(Python: columns={'run': ''})"
        )
