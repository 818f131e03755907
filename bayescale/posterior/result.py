"""What every fitted result answers (:class:`Result`), and how it shows itself in Jupyter.

:class:`~bayescale.Fit`, :class:`~bayescale.IsoflopFit`, :class:`~bayescale.EnvelopeFit` and
:class:`~bayescale.StepsFit` hold their draws in ``idata``, their sampler settings, seed and
diagnostics, and answer ``summary`` (a table), ``to_dict`` (the same and more, for JSON),
``save`` (read back by :func:`bayescale.load_fit`), ``__repr__`` (one line) and
``_repr_html_`` (a compact table, built by :func:`html_card`).

Every text that :func:`html_card` shows is HTML-escaped: a data set name, a column or a
saved file's attribute is data, and a ``<script>`` in it must come out as text.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import xarray as xr

from bayescale.inference.diagnostics import Diagnostics
from bayescale.inference.sampling import SamplerConfig


@runtime_checkable
class Result(Protocol):
    """The protocol of every fitted result :func:`bayescale.load_fit` can return."""

    idata: Any
    sampler: SamplerConfig
    random_seed: int | None
    diagnostics: Diagnostics

    @property
    def posterior(self) -> xr.Dataset:
        """Posterior draws (dims ``chain``, ``draw``, ...)."""
        ...

    def summary(self, prob: float = 0.9, kind: str = "eti") -> Any:
        """Posterior summary: a table, one row per quantity, columns ``median``, ``lower``, ``upper``, ..."""
        ...

    def to_dict(self, prob: float = 0.9, kind: str = "eti") -> dict[str, Any]:
        """What the fit is and says, JSON-ready: its data, options, intervals and diagnostics."""
        ...

    def save(self, path: str | Path) -> Path:
        """Write the result to NetCDF atomically; :func:`bayescale.load_fit` reads it back."""
        ...

    def _repr_html_(self) -> str:
        """A compact HTML table for Jupyter."""
        ...


def finite_or_none(value: Any) -> float | None:
    """A float for JSON: ``None`` for NaN or an infinity (JSON has neither)."""
    number = float(value)
    return number if math.isfinite(number) else None


def json_record(row: Any, numbers: Sequence[str] = (), flags: Sequence[str] = ()) -> dict[str, Any]:
    """A table row as JSON: ``numbers`` as floats (``None`` for NaN or infinities), ``flags`` as bools."""
    return {**{n: finite_or_none(row[n]) for n in numbers}, **{f: bool(row[f]) for f in flags}}


def intervals_frame(payload: Mapping[str, Any]) -> Any:
    """The entries of ``payload`` that are intervals (``{"median", "lower", "upper"}``) as a table.

    One row per entry, in order, columns ``median``, ``lower`` and ``upper``: the summary table
    of a result whose :meth:`Result.to_dict` holds its intervals.
    """
    import pandas as pd

    stats = ("median", "lower", "upper")
    rows = {
        name: [value[s] for s in stats]
        for name, value in payload.items()
        if isinstance(value, Mapping) and set(stats) <= set(value)
    }
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(stats)).rename_axis("quantity")


def draws_text(posterior: Any) -> str:
    """``"4 chains x 1000 draws"`` of a posterior."""
    return f"{posterior.sizes['chain']} chains x {posterior.sizes['draw']} draws"


def verdict(diagnostics: Mapping[str, Any]) -> str:
    """``"ok"`` or ``"FAILED"``, with divergences, max r_hat and min bulk ESS."""
    r_hat = diagnostics.get("max_r_hat", float("nan"))
    ess = diagnostics.get("min_ess_bulk", float("nan"))
    numbers = (
        f"{diagnostics.get('divergences', '?')} divergences, max r_hat "
        f"{'n/a' if not _finite(r_hat) else format(r_hat, '.3f')}, min bulk ESS "
        f"{'n/a' if not _finite(ess) else format(ess, '.0f')}"
    )
    return f"{'ok' if diagnostics.get('ok') else 'FAILED'} ({numbers})"


def short_repr(kind: str, facts: Mapping[str, Any]) -> str:
    """``Kind(key=value, ...)`` on one line: what a result is, not every array it holds."""
    return f"{kind}(" + ", ".join(f"{k}={v}" for k, v in facts.items()) + ")"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _cell(value: Any) -> str:
    """A table cell's text, escaped: numbers to 4 significant digits, booleans as yes/no."""
    if isinstance(value, (bool, np.bool_)):
        text = "yes" if value else "no"
    elif isinstance(value, (int, float)) or hasattr(value, "dtype"):
        try:
            number = float(value)
        except (TypeError, ValueError):
            text = str(value)
        else:
            text = "" if math.isnan(number) else f"{number:.4g}"
    else:
        text = str(value)
    return html.escape(text)


def html_card(
    title: str,
    facts: Sequence[tuple[str, Any]],
    rows: Mapping[str, Mapping[str, Any]],
    columns: Sequence[str],
    problems: Sequence[str] = (),
    caption: str = "",
) -> str:
    """A result as a small HTML block: a title, a facts table and a parameter table.

    Parameters
    ----------
    title
        The heading (the kind of result).
    facts
        ``(label, value)`` pairs: law, data set, runs, draws, diagnostics verdict...
    rows
        ``{parameter: {column: value}}`` of the parameter table.
    columns
        The columns of the parameter table, in order.
    problems
        The diagnostics' problems, listed under the tables.
    caption
        A line under the parameter table (e.g. the interval's probability).

    Every label, value, parameter name and problem is HTML-escaped.
    """
    cell = "padding:1px 8px;text-align:{};"
    parts = [f"<div><strong>{html.escape(title)}</strong>", '<table style="border-collapse:collapse">']
    for label, value in facts:
        parts.append(
            f'<tr><th style="{cell.format("left")}">{html.escape(str(label))}</th>'
            f'<td style="{cell.format("left")}">{html.escape(str(value))}</td></tr>'
        )
    parts.append("</table>")
    if rows:
        head = "".join(f'<th style="{cell.format("right")}">{html.escape(c)}</th>' for c in columns)
        parts.append(
            f'<table style="border-collapse:collapse"><tr><th style="{cell.format("left")}">parameter</th>'
            f"{head}</tr>"
        )
        for name, row in rows.items():
            cells = "".join(
                f'<td style="{cell.format("right")}">{_cell(row.get(c, ""))}</td>' for c in columns
            )
            parts.append(f'<tr><td style="{cell.format("left")}">{html.escape(str(name))}</td>{cells}</tr>')
        parts.append("</table>")
    if caption:
        parts.append(f"<small>{html.escape(caption)}</small>")
    if problems:
        items = "".join(f"<li>{html.escape(str(p))}</li>" for p in problems)
        parts.append(f"<ul>{items}</ul>")
    parts.append("</div>")
    return "\n".join(parts)
