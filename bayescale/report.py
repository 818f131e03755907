"""A self-contained HTML report of a fit, to attach to a design review.

Everything is in one file: figures are embedded as base64 PNG, there is no
script, stylesheet or image fetched from the network.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bayescale import plots
from bayescale._version import __version__
from bayescale.errors import BayescaleError
from bayescale.inference import diagnostics as diag
from bayescale.plots._common import decades
from bayescale.posterior.residuals import trend_message

if TYPE_CHECKING:
    from bayescale.methods.parametric import Fit

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 960px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; }
figcaption { color: #555; font-size: 0.9em; }
.ok { color: #1a7f37; } .failed { color: #c62828; font-weight: bold; }
"""


def default_budgets(fit: Fit) -> np.ndarray:
    """Budgets planned when none are given: the decades 10x to 1000x above the largest run."""
    top = float(fit.runs.frame["compute"].max())
    return decades(top * 10, top * 1000)


def _has_allocation(fit: Fit) -> bool:
    return fit.law.optimal_allocation(fit.theta(), np.array([1e20])) is not None


def figures(fit: Fit) -> list[tuple[str, Callable[[], Any]]]:
    """The report's figures for this fit, as (caption, function drawing it)."""
    out: list[tuple[str, Callable[[], Any]]] = [
        ("Loss against compute: runs coloured by model size, posterior median and 50%/90% bands at fixed N.",
         lambda: plots.plot_loss(fit, "compute")),
    ]  # fmt: skip
    if _has_allocation(fit):
        out += [
            ("IsoFLOP profiles: loss against N at fixed budgets, with each optimum and its 90% interval.",
             lambda: plots.plot_isoflop(fit)),
            ("Compute-optimal frontier: N_opt(C) and D_opt(C) with credible bands.",
             lambda: plots.plot_allocation(fit)),
        ]  # fmt: skip
    if "unique_tokens" in fit.law.required_columns:
        out.append(("Loss against epochs over fixed unique data.", lambda: plots.plot_epochs(fit)))
        if "R_D_star" in fit.posterior:
            out.append(("Value of repeated tokens.", lambda: plots.plot_repeated_value(fit)))
    exponents = [p for p in ("alpha_N", "alpha_D") if p in fit.free_parameters]
    if exponents:
        out.append(("Posterior of the exponents (pair plot).", lambda: plots.plot_pair(fit, exponents)))
    out += [
        ("Prior against posterior of each free parameter.", lambda: plots.plot_prior_posterior(fit)),
        ("Residuals of the runs with 90% posterior predictive intervals.", lambda: plots.plot_residuals(fit)),
        ("Posterior predictive check on the runs.", lambda: plots.plot_ppc(fit)),
    ]
    return out


def _png(obj: Any) -> str:
    import matplotlib.pyplot as plt

    fig = obj if hasattr(obj, "savefig") else obj.figure
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _e(value: Any) -> str:
    """The one way a value enters the HTML: as escaped text (a saved fit's values are not trusted)."""
    return html.escape(str(value), quote=True)


def _table(frame: Any, index: bool = True) -> str:
    return frame.to_html(index=index, border=0, float_format=lambda v: f"{v:.4g}", na_rep="", escape=True)


def _data_section(fit: Fit) -> str:
    import pandas as pd

    frame = fit.runs.frame
    columns = [c for c in ("params", "tokens", "unique_tokens", "compute", "loss") if c in frame]
    ranges = pd.DataFrame({"min": frame[columns].min(), "median": frame[columns].median(),
                           "max": frame[columns].max()})  # fmt: skip
    ranges.index.name = "column"
    return (
        f"<p>{_e(len(frame))} runs from <code>{_e(fit.runs.source)}</code>; "
        "units: counts, FLOPs and nats/token.</p>" + _table(ranges)
    )


def _diagnostics_section(fit: Fit) -> str:
    d = fit.diagnostics
    state = '<span class="ok">passed</span>' if d["ok"] else '<span class="failed">FAILED</span>'
    config = fit.sampler.to_dict()
    # The text of the one renderer, without its "diagnostics: " and verdict (the state says it).
    line = diag.summary_lines(d)[0].removeprefix("diagnostics: ").rsplit(" -> ", 1)[0]
    rows = [
        f"<li>diagnostics {state}: {_e(line)}</li>",
        "<li>sampler: " + _e(", ".join(f"{k}={v}" for k, v in config.items()))
        + f", random_seed={_e(fit.random_seed)}</li>",
    ]  # fmt: skip
    rows += [f'<li class="failed">{_e(p)}</li>' for p in d["problems"]]
    rows += [f"<li>warning: {_e(w)}</li>" for w in d.get("warnings", [])]
    trends = fit.residual_trends()
    misfit = trend_message(trends)
    if misfit:
        rows.append(f'<li class="failed">residuals: {_e(misfit)}</li>')
    elif len(trends):
        rows.append(f'<li class="ok">residuals: no trend with {_e(", ".join(map(str, trends.index)))}</li>')
    return "<ul>" + "".join(rows) + "</ul>"


def _plan_section(fit: Fit, compute: Sequence[float] | None, prob: float) -> str:
    if not _has_allocation(fit):
        return f"<p>The {_e(fit.law.name)} law has no closed-form compute-optimal allocation.</p>"
    budgets = np.asarray(compute if compute is not None else default_budgets(fit), dtype=float)
    table = fit.optimal(budgets, prob=prob)
    table.index = [f"{c:.3g}" for c in table.pop("compute")]
    table.index.name = "compute [FLOPs]"
    return (
        f"<p>Compute-optimal allocation at C = 6ND, posterior median and "
        f"{_e(format(prob, '.0%'))} interval.</p>" + _table(table)
    )


def build_report(fit: Fit, compute: Sequence[float] | None = None, prob: float = 0.9) -> str:
    """The HTML text of the report.

    Parameters
    ----------
    fit
        A fitted law.
    compute
        Budgets [FLOPs] to plan; default the decades 10x to 1000x above the largest run.
    prob
        Probability of the credible intervals in the tables.
    """
    if compute is not None:
        values = np.atleast_1d(np.asarray(compute, dtype=float))
        if values.ndim != 1 or not np.all(np.isfinite(values)) or np.any(values <= 0):
            raise BayescaleError(f"compute budgets must be finite and > 0, got {compute!r}")
    law = fit.law
    fixed = ", ".join(f"{k} = {v:.4g}" for k, v in fit.fixed.items()) or "none"
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>bayescale report: {_e(law.name)} law</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_e(law.title)}</h1>",
        f"<p><code>{_e(law.formula)}</code><br>{_e(law.reference)}<br>"
        f"likelihood on log loss: {_e(fit.likelihood)}; fixed parameters: {_e(fixed)}</p>",
        "<h2>Data</h2>", _data_section(fit),
        "<h2>Diagnostics</h2>", _diagnostics_section(fit),
        f"<h2>Parameters ({_e(format(prob, '.0%'))} credible intervals)</h2>", _table(fit.summary(prob)),
        "<h2>Plan</h2>", _plan_section(fit, compute, prob),
        "<h2>Figures</h2>",
    ]  # fmt: skip
    for caption, draw in figures(fit):
        parts.append(
            f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{_png(draw())}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )
    parts.append(f"<p><small>made by bayescale {_e(__version__)}</small></p></body></html>")
    return "\n".join(parts)


def write_report(
    fit: Fit, path: str | Path, compute: Sequence[float] | None = None, prob: float = 0.9
) -> Path:
    """Write :func:`build_report` to ``path`` (HTML) atomically and return the path.

    Refuses to replace a file that is not an HTML report (a saved fit, a runs table).
    """
    path = Path(path)
    if not path.parent.exists():
        raise BayescaleError(f"cannot write the report: folder {str(path.parent)!r} does not exist")
    refuse_to_replace_data(path, "the report")
    text = build_report(fit, compute, prob)
    write_atomically(path, text.encode("utf-8"))
    return path


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
