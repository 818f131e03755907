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
"""

from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayescale.data import catalog
from bayescale.data import columns as loader
from bayescale.data.schema import (
    COLUMN_ALIASES,
    FLOPS_PER_PARAM_TOKEN,
    NUMERIC_COLUMNS,
    REQUIRED_COLUMNS,
    positive_numeric,
)
from bayescale.data.units import DEFAULT_LOSS_UNIT, check_loss_column, check_loss_unit
from bayescale.errors import RunsError, RunsWarning

#: No loss in nats per token exceeds this: the uniform distribution over a vocabulary of
#: 1M tokens is ln(1e6) = 13.8 nats, and bits per token over 50k tokens are 15.6.
MAX_LOSS_NATS = 20.0
#: Below these a column is almost surely in millions/billions rather than counts: the smallest
#: language models in published ladders have ~1e5 parameters and see ~1e7 tokens.
MIN_PLAUSIBLE_MAX_PARAMS = 1e4
MIN_PLAUSIBLE_MAX_TOKENS = 1e6
#: Published ladders train on 1 to 10^4 tokens per parameter; a median below this means
#: tokens and params are in different units (e.g. tokens in billions, params in counts).
MIN_PLAUSIBLE_TOKENS_PER_PARAM = 1e-3


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


def from_source[T](
    source: Any, what: str, from_frame: Callable[[pd.DataFrame, str], T], bundled: Callable[[str], T]
) -> T:
    """Build a table from a DataFrame, a CSV/Parquet path or a bundled data set name.

    Parameters
    ----------
    source
        The user's input.
    what
        What is being read (``"runs"``, ``"curves"``), for the error message.
    from_frame
        Validates a DataFrame; called with the frame and a description of its source.
    bundled
        Loads a bundled data set by name.
    """
    if isinstance(source, pd.DataFrame):
        return from_frame(source, "DataFrame")
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_file():
            return from_frame(read_table(path), str(path))
        if str(source) in catalog.names():
            if path.exists():
                warnings.warn(
                    f"{str(source)!r} names a local folder and a bundled data set; the folder is not "
                    "a runs file, so the bundled data set is used",
                    RunsWarning,
                    stacklevel=3,
                )
            return bundled(str(source))
        if path.exists():
            raise RunsError(
                f"{str(source)!r} could not be read as a table: it is a folder, "
                f"not a .csv/.parquet file of {what}"
            )
        raise RunsError(
            f"{str(source)!r} is neither an existing file nor a bundled data set "
            f"(bundled: {', '.join(catalog.names())})"
        )
    raise RunsError(
        f"cannot read {what} from a {type(source).__name__}; "
        "pass a DataFrame, a .csv/.parquet path, or a bundled data set name"
    )


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet file into a DataFrame, with errors that name the file."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".txt", ".tsv", ""):
            sep = "\t" if suffix == ".tsv" else ","
            _refuse_repeated_header(path, sep)
            return pd.read_csv(path, sep=sep)
    except pd.errors.EmptyDataError:
        raise RunsError(f"{str(path)!r} is empty: expected a table with a header row") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise RunsError(f"{str(path)!r} could not be read as a table: {exc}") from None
    except Exception as exc:  # pyarrow and csv raise their own types for a damaged file
        raise RunsError(f"{str(path)!r} could not be read as a table: {type(exc).__name__}: {exc}") from None
    raise RunsError(f"{str(path)!r}: unsupported file type {suffix!r}; use .csv or .parquet")


def _refuse_repeated_header(path: Path, sep: str) -> None:
    """Raise for a header that repeats a name (pandas would rename the second ``loss.1``)."""
    header = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False)
    if header.empty:
        return
    names = [str(v).strip() for v in header.iloc[0].tolist()]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise RunsError(f"{str(path)!r}: the header repeats column name(s) {repeated}; keep one of each")


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
    mapping = _plausible_short_aliases(frame, loader.resolve_columns(list(frame.columns), columns))
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
        raise RunsError(_missing_message(missing, frame, mapping))
    if len(out) == 0:
        raise RunsError("runs table has no rows")
    out = out.reset_index(drop=True)
    if best_of is not None:
        out, said = loader.best_of_sweep(out, best_of, mapping)
        notes += said
    for col in NUMERIC_COLUMNS:
        if col in out.columns:
            out[col] = positive_numeric(out[col], col)
    _check_loss_units(out["loss"].to_numpy())
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
    _warn_units(out)
    _warn_duplicates(out)
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


#: One-letter aliases of optional columns, easily another column's name (a cluster id ``c``):
#: taken only when their values look like what they would mean.
SHORT_ALIASES = {"c": "compute", "u": "unique_tokens"}
#: A ``c`` column is compute when its median ratio to 6 N D is within this factor of 1.
COMPUTE_ALIAS_FACTOR = 10.0
#: A ``u`` column is unique tokens when its values are counts of at least this many tokens
#: (the smallest published ladders see ~1e7 tokens) and at most D.
MIN_PLAUSIBLE_UNIQUE_TOKENS = 1e5


def _plausible_short_aliases(frame: pd.DataFrame, mapping: dict[Any, str]) -> dict[Any, str]:
    """Drop a one-letter alias (``c``, ``u``) whose values do not fit its meaning, with a warning.

    ``c`` must agree with 6 N D within a factor of :data:`COMPUTE_ALIAS_FACTOR` (median ratio);
    ``u`` must hold counts of at least :data:`MIN_PLAUSIBLE_UNIQUE_TOKENS` and at most D. A
    column that fails stays an extra column; spelled out (``compute``, ``unique_tokens``)
    it is taken as given and checked as before.
    """
    by_canon = {canon: col for col, canon in mapping.items()}
    if frame.empty or "params" not in by_canon or "tokens" not in by_canon:
        return mapping  # an empty table is refused below, with the other checks
    params = pd.to_numeric(frame[by_canon["params"]], errors="coerce").to_numpy(dtype=float)
    tokens = pd.to_numeric(frame[by_canon["tokens"]], errors="coerce").to_numpy(dtype=float)
    kept = dict(mapping)
    for col, canon in mapping.items():
        if str(col).strip().lower() not in SHORT_ALIASES:
            continue
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN (text) columns
            if canon == "compute":
                six_nd = FLOPS_PER_PARAM_TOKEN * params * tokens
                ratio = np.nanmedian(values / six_nd)
                fits = bool(np.isfinite(ratio) and 1 / COMPUTE_ALIAS_FACTOR <= ratio <= COMPUTE_ALIAS_FACTOR)
                evidence = (
                    f"median {np.nanmedian(values):.3g} against 6 N D median {np.nanmedian(six_nd):.3g}"
                )
            else:
                fits = bool(
                    np.all(np.isfinite(values))
                    and np.nanmin(values) >= MIN_PLAUSIBLE_UNIQUE_TOKENS
                    and np.all(values <= tokens * (1 + loader.UNIQUE_TOKENS_RTOL))
                )
                evidence = (
                    f"values {np.nanmin(values):.3g} to {np.nanmax(values):.3g}, "
                    f"tokens D median {np.nanmedian(tokens):.3g}"
                )
        if not fits:
            del kept[col]
            warnings.warn(
                f"column {col!r} was not taken as {canon!r}: its values ({evidence}) do not look like "
                f"{canon}; it is kept as an extra column. If it is {canon}, map it with "
                f"--column {canon}={col} (Python: columns={{{canon!r}: {str(col)!r}}})",
                RunsWarning,
                stacklevel=4,
            )
    return kept


#: Words that make a column a candidate for a missing canonical column (its name split at
#: non-letters, e.g. ``N_nonembed`` -> ``n``, ``nonembed``); close spellings count too.
CANDIDATE_WORDS: dict[str, frozenset[str]] = {
    "params": frozenset({"n", "params", "param", "parameters", "nparams", "nonembed", "model_size"}),
    "tokens": frozenset({"d", "tokens", "token", "toks"}),
    "loss": frozenset({"loss", "l", "nll", "xent", "ce"}),
}


def _plausible_values(canon: str, values: pd.Series) -> bool:
    """Whether a candidate column's values could be ``canon`` (numbers in its range)."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    if numbers.size == 0 or not np.isfinite(numbers).any():
        return False
    top = float(np.nanmax(numbers))
    if canon == "params":
        return top >= MIN_PLAUSIBLE_MAX_PARAMS
    if canon == "tokens":
        return top >= MIN_PLAUSIBLE_MAX_TOKENS
    if canon == "loss":
        return 0 < top <= MAX_LOSS_NATS
    return True


def column_candidates(canon: str, frame: pd.DataFrame, taken: Iterable[Any] = ()) -> list[Any]:
    """The columns of ``frame`` (not in ``taken``) that could be the canonical column ``canon``.

    A candidate's name holds one of :data:`CANDIDATE_WORDS` or is close to an accepted
    name of ``canon``, and its values fit (numbers of the right size).
    """
    taken = set(taken)
    words = CANDIDATE_WORDS.get(canon, frozenset({canon}))
    found = []
    for col in frame.columns:
        if col in taken:
            continue
        name = str(col).strip().lower()
        parts = {part for part in re.split(r"[^a-z]+", name) if part}
        # (one- and two-letter names are too short to be close to anything: ``lr`` is not ``l``)
        close = len(name) > 2 and any(
            difflib.SequenceMatcher(None, name, alias).ratio() >= 0.6
            for alias in COLUMN_ALIASES[canon]
            if len(alias) > 2
        )
        if (parts & words or name in words or close) and _plausible_values(canon, frame[col]):
            found.append(col)
    return found


def mapping_hint(canon: str, candidates: Sequence[Any]) -> str:
    """How to say which column is ``canon``: every candidate, and the ``--column`` to map one."""
    names = ", ".join(repr(str(c)) for c in candidates)
    example = str(candidates[0])
    how = f"--column {canon}={example} (Python: columns={{{canon!r}: {example!r}}})"
    if len(candidates) == 1:
        return f"{canon}: candidate column {names}: map it with {how}"
    return (
        f"{canon}: {len(candidates)} candidate columns {names}: map the one you mean with "
        f"--column {canon}=COLUMN, e.g. {how}"
    )


def _missing_message(missing: list[str], frame: pd.DataFrame, mapping: dict[Any, str]) -> str:
    """Name the missing columns, list every candidate column for each and the ``--column`` to map it."""
    columns = list(frame.columns)
    hints = []
    for canon in missing:
        candidates = column_candidates(canon, frame, taken=mapping)
        if candidates:
            hints.append(mapping_hint(canon, candidates))
    message = f"runs are missing required column(s) {missing}; found {[str(c) for c in columns]}. "
    if hints:
        message += "Candidates: " + "; ".join(hints) + ". "
    elif len(columns) == 1 and any(sep in str(columns[0]) for sep in (";", "\t", "|", " ")):
        message += "The whole header was read as one column: is the file comma-separated? "
    return (
        message
        + "Accepted names: "
        + "; ".join(f"{c}: {', '.join(COLUMN_ALIASES[c])}" for c in missing)
        + ". Map any column with --column NAME=COLUMN (Python: columns={'NAME': 'COLUMN'})"
    )


def _check_loss_units(loss: np.ndarray) -> None:
    """Raise for a loss that no language model reports in nats per token."""
    bad = np.flatnonzero(loss > MAX_LOSS_NATS)
    if bad.size:
        row = int(bad[0])
        raise RunsError(
            f"column 'loss' row {row}: {loss[row]:g} cannot be a loss in nats per token "
            f"(> {MAX_LOSS_NATS:g}; {bad.size} such row(s)). Perplexity? use log(perplexity). "
            "Bits per token? multiply by ln 2 = 0.693. A percentage or accuracy is not a loss"
        )


def _warn_units(out: pd.DataFrame) -> None:
    """Warn, with the evidence, when params or tokens look like millions or billions."""
    params, tokens = out["params"].to_numpy(), out["tokens"].to_numpy()
    notes = []
    if params.max() < MIN_PLAUSIBLE_MAX_PARAMS:
        row = int(np.argmax(params))
        notes.append(
            f"column 'params': the largest value is {params[row]:g} (row {row}), below "
            f"{MIN_PLAUSIBLE_MAX_PARAMS:g}; params count parameters: are these millions (x 1e6) "
            "or billions (x 1e9)?"
        )
    if tokens.max() < MIN_PLAUSIBLE_MAX_TOKENS:
        row = int(np.argmax(tokens))
        notes.append(
            f"column 'tokens': the largest value is {tokens[row]:g} (row {row}), below "
            f"{MIN_PLAUSIBLE_MAX_TOKENS:g}; tokens count tokens: are these billions (x 1e9)?"
        )
    ratio = tokens / params
    if np.median(ratio) < MIN_PLAUSIBLE_TOKENS_PER_PARAM:
        row = int(np.argmin(ratio))
        notes.append(
            f"columns 'tokens'/'params': median tokens per parameter is {np.median(ratio):.3g} "
            f"(row {row}: {tokens[row]:g} tokens for {params[row]:g} params); ladders train on "
            "1-10^4 tokens per parameter: are tokens in billions or params in different units?"
        )
    if notes:
        warnings.warn("runs units look wrong:\n  - " + "\n  - ".join(notes), RunsWarning, stacklevel=4)


def _warn_duplicates(out: pd.DataFrame) -> None:
    """Warn about identical rows, keeping them, and say how to drop them."""
    keys = [c for c in (*NUMERIC_COLUMNS, "group") if c in out.columns]
    repeats = np.flatnonzero(out.duplicated(subset=keys, keep="first").to_numpy())
    if repeats.size:
        first = int(repeats[0])
        twin = int(np.flatnonzero((out[keys] == out[keys].iloc[first]).all(axis=1).to_numpy())[0])
        warnings.warn(
            f"{repeats.size} run(s) repeat an earlier row exactly (row {first} equals row {twin}; "
            f"repeats at rows {repeats[:10].tolist()}{' ...' if repeats.size > 10 else ''}). They are "
            "kept and count as independent runs; drop them with runs.drop_duplicates() or "
            "frame.drop_duplicates() if they are copies",
            RunsWarning,
            stacklevel=4,
        )
