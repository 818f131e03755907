"""The catalogue of published data sets shipped with bayescale, each with a provenance card.

The files live in the top-level ``data/`` folder of the repository, installed
as the ``bayescale.bundled`` package so they load from a wheel as well.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

import pandas as pd

from bayescale.errors import DatasetError


@dataclass(frozen=True)
class DatasetInfo:
    """A bundled data set: its file, card and one-line description."""

    name: str
    description: str
    csv: str
    card: str
    law_hint: str
    #: pandas query selecting the rows that are loaded ("" keeps all); stated in the description.
    keep_rows: str = ""
    #: True when the rows are checkpoints of loss curves (a ``run`` column): see :func:`load_curves`.
    curves: bool = False


def _catalog() -> dict[str, DatasetInfo]:
    raw = json.loads(_files().joinpath("catalog.json").read_text())
    return {name: DatasetInfo(name=name, **spec) for name, spec in raw.items()}


def _files() -> Any:
    return resources.files("bayescale.bundled")


def names() -> list[str]:
    """Names of the bundled data sets."""
    return sorted(_catalog())


def info(name: str) -> DatasetInfo:
    """The catalogue entry of a bundled data set."""
    catalog = _catalog()
    if name not in catalog:
        raise DatasetError(f"unknown data set {name!r}; bundled: {', '.join(sorted(catalog))}")
    return catalog[name]


def describe() -> pd.DataFrame:
    """One row per bundled data set: name, rows and description."""
    rows = [{"name": n, "description": info(n).description} for n in names()]
    return pd.DataFrame(rows)


def card(name: str) -> str:
    """The provenance card (source, licence, units) of a bundled data set."""
    return _files().joinpath(info(name).card).read_text()


def frame(entry: DatasetInfo) -> pd.DataFrame:
    """The rows of a bundled data set as read from its file (``keep_rows`` applied)."""
    with _files().joinpath(entry.csv).open("r") as handle:
        rows = pd.read_csv(handle)
    if entry.keep_rows:
        rows = rows.query(entry.keep_rows).reset_index(drop=True)
    return rows


def curves_frame(name: str) -> pd.DataFrame:
    """The checkpoints of a bundled data set of loss curves; an error for final-loss data sets."""
    entry = info(name)
    if not entry.curves:
        curves = [n for n in names() if info(n).curves]
        raise DatasetError(
            f"data set {name!r} holds final losses, not loss curves; curve data sets: {curves}"
        )
    return frame(entry)
