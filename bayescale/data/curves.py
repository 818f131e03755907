"""The validated table of loss curves: checkpoints of several training runs.

Columns (units in brackets), on top of those of :class:`~bayescale.Runs`:

``run``         label of the training run a checkpoint belongs to
``params``      N of that run [count], one value per run
``tokens``      tokens seen at the checkpoint [count]
``loss``        loss at the checkpoint [nats per token]
``step``        optimiser step, optional
``batch_size``  batch size in tokens or sequences, optional
``compute``     compute spent so far [FLOPs], optional (default 6 N D)

Checkpoints of one run are not independent draws; the table keeps them
sorted by tokens within each run so models can treat them as a series.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bayescale.data import catalog
from bayescale.data.runs import Runs, from_source, validate_frame
from bayescale.errors import RunsError

#: Spellings of the curve-only columns (compared case-insensitively); the rest are Runs' aliases.
CURVE_ALIASES: dict[str, tuple[str, ...]] = {
    "run": ("run", "run_name", "run_id", "model"),
    "tokens": ("tokens_seen", "tokens_so_far"),
    "step": ("step", "steps", "iteration"),
    "batch_size": ("batch_size", "batch", "bs"),
}


@dataclass(frozen=True)
class Curves:
    """A validated table of loss curves, one row per checkpoint.

    Build one with :meth:`Curves.from_any`. Rows are sorted by ``run`` then
    ``tokens``.

    Attributes
    ----------
    frame
        Canonical columns (see module docstring) plus any extra columns.
    source
        Where the curves came from.
    notes
        What the loader options did (rows kept, columns derived), as the CLI prints them.
    """

    frame: pd.DataFrame
    source: str = "DataFrame"
    notes: tuple[str, ...] = ()

    @classmethod
    def from_any(cls, source: Any, **options: Any) -> Curves:
        """Load and validate curves from a Curves, DataFrame, CSV/Parquet path or bundled name.

        ``options`` are the loader options of :meth:`bayescale.Runs.from_any` (``columns``,
        ``where``, ``best_of``, ``flops_per_param_token``); ``columns`` may also name the
        curve columns ``step`` and ``batch_size``, and ``best_of`` keeps, per model size
        (and group), the whole run whose last checkpoint has the lowest loss.
        """
        if isinstance(source, Curves):
            return source if not options else cls.from_frame(source.frame, source.source, **options)

        def bundled(name: str) -> Curves:
            return cls.from_frame(catalog.curves_frame(name), source=name, **options)

        return from_source(source, "curves", lambda f, s: cls.from_frame(f, s, **options), bundled)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, source: str = "DataFrame", **options: Any) -> Curves:
        """Validate a DataFrame and return Curves with canonical column names (options: see from_any)."""
        notes: list[str] = []
        return cls(frame=validate_curves(frame, notes=notes, **options), source=source, notes=tuple(notes))

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def run_names(self) -> list[str]:
        """Run labels in table order."""
        return list(pd.unique(self.frame["run"]))

    def run_index(self) -> np.ndarray:
        """Integer index of each checkpoint's run (into :attr:`run_names`)."""
        return pd.Categorical(self.frame["run"], categories=self.run_names).codes.astype(int)

    def column(self, name: str) -> np.ndarray:
        """The named column as a float64 array."""
        if name not in self.frame.columns:
            raise RunsError(f"curves have no column {name!r}; columns are {list(self.frame.columns)}")
        return self.frame[name].to_numpy(dtype=float)

    def runs_table(self) -> pd.DataFrame:
        """One row per run: ``run``, ``params``, ``n_points``, ``tokens_max``."""
        grouped = self.frame.groupby("run", sort=False)
        return pd.DataFrame(
            {
                "run": self.run_names,
                "params": grouped["params"].first().to_numpy(),
                "n_points": grouped.size().to_numpy(),
                "tokens_max": grouped["tokens"].max().to_numpy(),
            }
        )

    def final_runs(self) -> Runs:
        """The last checkpoint of each run as :class:`~bayescale.Runs`."""
        last = self.frame.groupby("run", sort=False).tail(1).reset_index(drop=True)
        return Runs.from_frame(last, source=f"{self.source} (final checkpoints)")

    def as_runs(self) -> Runs:
        """Every checkpoint as a run (what a parametric fit on checkpoints treats as independent).

        The run label moves to column ``curve`` (a fit's saved runs are indexed by ``run``).
        """
        frame = self.frame.rename(columns={"run": "curve"})
        return Runs.from_frame(frame, source=f"{self.source} (checkpoints as runs)")


def validate_curves(
    frame: pd.DataFrame,
    columns: Mapping[str, str] | None = None,
    best_of: str | None = None,
    notes: list[str] | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Return a validated copy of ``frame`` with canonical columns, sorted by run then tokens.

    ``columns``, ``best_of`` and ``options`` (``where``, ``flops_per_param_token``) are the
    loader options of :meth:`Curves.from_any`; what they did is appended to ``notes``.

    Raises
    ------
    RunsError
        Everything :func:`bayescale.data.runs.validate_frame` rejects, plus: no
        ``run`` column, a missing run label, a run with several ``params``
        values, two checkpoints of one run at the same tokens, a run with a
        single checkpoint, or fewer than two runs.
    """
    if not isinstance(frame, pd.DataFrame):
        raise RunsError(f"expected a pandas DataFrame, got {type(frame).__name__}")
    explicit = dict(columns or {})
    # The curve-only columns (step, batch_size) are mapped here; the others by the runs loader.
    own = {name: explicit.pop(name) for name in CURVE_ONLY if name in explicit}
    for name, source in own.items():
        if source and source not in [str(c) for c in frame.columns]:
            raise RunsError(
                f"column mapping {name}={source}: the table has no column {source!r}. "
                f"Columns: {[str(c) for c in frame.columns]}"
            )
    by_text = {str(c): c for c in frame.columns}
    renamed = {by_text[source]: name for name, source in own.items() if source}
    automatic = {
        col: canon
        for col, canon in _curve_mapping(frame.columns).items()
        if canon not in explicit and canon not in own and str(col) not in explicit.values()
    }
    out = frame.rename(columns={**automatic, **renamed})
    if "run" not in out.columns and "run" not in explicit:
        raise RunsError(
            f"curves need a 'run' column saying which run each checkpoint belongs to; "
            f"found {list(frame.columns)}. Accepted names: {', '.join(CURVE_ALIASES['run'])}; "
            "map another with --column run=COLUMN (Python: columns={'run': 'COLUMN'})"
        )
    out = validate_frame(out, columns=explicit or None, notes=notes, **options)
    if "run" not in out.columns:
        raise RunsError("curves need a 'run' column; the column mapping left it out")
    # (validate_frame also refused a missing run label and a run with several params)
    for col in ("step", "batch_size"):
        if col in out.columns:
            values = pd.to_numeric(out[col], errors="coerce")
            bad = np.flatnonzero(~(values.to_numpy(dtype=float) > 0))
            if bad.size:
                raise RunsError(
                    f"column {col!r} row {int(bad[0])}: {out[col].iloc[bad[0]]!r} must be a number > 0"
                )
            out[col] = values.astype(float)
    per_run = out.groupby("run", sort=False)
    counts = per_run.size()
    if (counts < 2).any():
        run = counts.index[np.flatnonzero(counts.to_numpy() < 2)[0]]
        raise RunsError(f"run {run!r} has a single checkpoint; a curve needs at least 2")
    if len(counts) < 2:
        raise RunsError(f"curves need at least 2 runs; found {len(counts)} ({list(counts.index)})")
    out["_order"] = np.arange(len(out))
    out = out.sort_values(["run", "tokens"], kind="stable")
    dup = out.duplicated(["run", "tokens"], keep=False).to_numpy()
    if dup.any():
        row = int(out["_order"].to_numpy()[dup][0])
        raise RunsError(
            f"row {row}: run {out['run'].to_numpy()[dup][0]!r} has two checkpoints at "
            f"{out['tokens'].to_numpy()[dup][0]:g} tokens"
        )
    out = out.drop(columns="_order").reset_index(drop=True)
    if best_of is not None:
        out = _best_run_of_sweep(out, best_of, notes if notes is not None else [])
    return out


#: Curve columns the runs loader does not know; a column mapping may name them.
CURVE_ONLY = ("step", "batch_size")


def _best_run_of_sweep(out: pd.DataFrame, sweep: str, notes: list[str]) -> pd.DataFrame:
    """Keep, per model size (and group), the run of the sweep whose last checkpoint has the lowest loss."""
    if sweep not in out.columns:
        raise RunsError(
            f"best of {sweep!r}: the curves have no column {sweep!r}; columns: {list(out.columns)}"
        )
    last = out.groupby("run", sort=False).tail(1)
    keys = [c for c in ("params", "group") if c in last.columns]
    best = last.sort_values("loss", kind="stable").drop_duplicates(subset=keys, keep="first")["run"]
    kept = out[out["run"].isin(set(best))].reset_index(drop=True)
    notes.append(
        f"best of {sweep!r}: kept the run with the lowest final loss per ({', '.join(keys)}), "
        f"{len(best)} of {last.shape[0]} runs"
    )
    return kept


def _curve_mapping(columns: Any) -> dict[Any, str]:
    lower = {str(c).strip().lower(): c for c in columns}
    mapping: dict[Any, str] = {}
    for canon, aliases in CURVE_ALIASES.items():
        if canon in lower:
            continue  # the canonical name itself is present
        hits = [lower[a] for a in aliases if a in lower]
        if canon == "tokens" and any(a in lower for a in ("d", "n_tokens", "training_tokens", "num_tokens")):
            continue  # Runs' own alias of tokens is present
        if len(hits) > 1:
            raise RunsError(f"columns {hits} all mean {canon!r}; keep one")
        if hits:
            mapping[hits[0]] = canon
    return mapping
