"""Reading a table of runs or curves: a DataFrame, a CSV/Parquet path or a bundled data set's name."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from bayescale.data import catalog
from bayescale.errors import RunsError, RunsWarning


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
