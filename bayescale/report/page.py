"""The page both HTML reports share: style, number format, template engine, parts, safe writing.

A report's values are computed as plain text here and in :mod:`.fit` and :mod:`.downstream`;
the Jinja2 templates (``bayescale/templates``, autoescape on) escape every one of them.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import jinja2
import numpy as np

from bayescale.errors import BayescaleError
from bayescale.inference import diagnostics as diag

if TYPE_CHECKING:
    from bayescale.methods.parametric import Fit

#: The pages' own stylesheet (inline: a report fetches nothing).
STYLE = """
body { font-family: system-ui, sans-serif; max-width: 960px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; vertical-align: top; }
th.l, td.l { text-align: left; }
td small { color: #555; white-space: nowrap; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.9em; }
.ok { color: #1a7f37; } .failed { color: #c62828; font-weight: bold; } .warning { color: #9a6700; }
"""
#: Width of the page the report is laid out for [CSS px]; its tables and figures fit in it.
PAGE_WIDTH = 1280


def _png(obj: Any) -> str:
    import matplotlib.pyplot as plt

    fig = obj if hasattr(obj, "savefig") else obj.figure
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def number(value: Any, digits: int = 4) -> str:
    """A number as a person reads it: ``digits`` significant digits, exponents without padding.

    ``3.406e+10`` is written ``3.406e10``; integers below 1e6 in full.
    """
    value = float(value)
    if not np.isfinite(value):
        return str(value)
    text = f"{value:.{digits}g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


class Interval(NamedTuple):
    """A table cell printed as the median with the interval below it in small print."""

    median: str
    lower: str
    upper: str


def interval_cell(median: float, lower: float, upper: float) -> Interval:
    """The three numbers of an interval as a table cell (:func:`number` each)."""
    return Interval(number(median), number(lower), number(upper))


def environment() -> jinja2.Environment:
    """The templates of ``bayescale/templates``, autoescaped: a value from a fit is always text."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("bayescale", "templates"),
        autoescape=True,  # every template, whatever its file name: the report shows untrusted values
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
    )
    env.tests["interval"] = lambda value: isinstance(value, Interval)
    return env


def parameter_section(fit: Fit, prob: float) -> dict[str, Any]:
    """Median and interval of each parameter, r_hat to 3 decimals and bulk ESS as a whole number."""
    summary = fit.summary(prob)
    any_fixed = bool(summary["fixed"].any())
    header = ["parameter", "median", "lower", "upper", "r_hat", "bulk ESS"] + (["fixed"] if any_fixed else [])
    rows = []
    for name, row in summary.iterrows():
        fixed = bool(row["fixed"])
        diagnostics = ["", ""] if fixed else [f"{row['r_hat']:.3f}", f"{round(row['ess_bulk']):d}"]
        cells = [str(name), number(row["median"]), number(row["lower"]), number(row["upper"]), *diagnostics]
        rows.append(cells + (["yes" if fixed else ""] if any_fixed else []))
    return {"header": header, "rows": rows}


def diagnostics_line(diagnostics: Mapping[str, Any]) -> str:
    """The text of the one renderer, without its "diagnostics: " and verdict (the state says it)."""
    return diag.summary_lines(diagnostics)[0].removeprefix("diagnostics: ").rsplit(" -> ", 1)[0]


def embedded_figure(caption: str, drawn: Any) -> dict[str, str]:
    """A drawn figure (or its axes) as the template's caption and base64 PNG; the figure is closed."""
    return {"caption": caption, "png": _png(drawn)}


#: Leading bytes of the files an output must never replace: HDF5/NetCDF-4 (saved fits), Parquet.
_DATA_SIGNATURES = (b"\x89HDF\r\n\x1a\n", b"CDF\x01", b"CDF\x02", b"PAR1")


def refuse_to_replace_data(path: Path, what: str) -> None:
    """Raise a BayescaleError when ``path`` is a folder or holds a saved fit or Parquet data."""
    if path.is_dir():
        raise BayescaleError(f"cannot write {what}: {str(path)!r} is a folder")
    if path.is_file():
        try:
            with open(path, "rb") as handle:
                head = handle.read(8)
        except OSError:
            return
        if head.startswith(_DATA_SIGNATURES):
            raise BayescaleError(
                f"refusing to write {what} over {str(path)!r}: it holds a saved fit or data; "
                "choose another --out"
            )


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` beside ``path`` and move it into place, so a failure leaves no partial file."""
    import os
    import tempfile

    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        mask = os.umask(0o022)
        os.umask(mask)
        os.chmod(tmp_name, 0o666 & ~mask)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
