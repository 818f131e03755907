"""A self-contained HTML report of a fit, to attach to a design review.

Everything is in one file: figures are embedded as base64 PNG, there is no
script, stylesheet or image fetched from the network.
"""

from __future__ import annotations

import base64
import html
import io
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bayescale import plots
from bayescale._version import __version__
from bayescale.errors import BayescaleError
from bayescale.inference import diagnostics as diag
from bayescale.plots._common import decades
from bayescale.plots.posterior import PAIR_PARAMETERS
from bayescale.posterior.residuals import trend_message

if TYPE_CHECKING:
    from bayescale.methods.parametric import Fit

_STYLE = """
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
    shown = [p for p in PAIR_PARAMETERS if p in fit.free_parameters]
    if shown:
        out.append(
            (f"Joint posterior of {', '.join(shown)} (pair plot).", lambda: plots.plot_pair(fit, shown))
        )
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


def html_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], escaped: bool = False, text_columns: int = 1
) -> str:
    """A table with one header row and no index: cells are text, escaped unless ``escaped``.

    The first ``text_columns`` columns hold labels (left-aligned); the others numbers (right-aligned).
    """
    cell = (lambda v: v) if escaped else _e

    def tag(name: str, i: int, value: str) -> str:
        return f'<{name} class="l">{value}</{name}>' if i < text_columns else f"<{name}>{value}</{name}>"

    head = "".join(tag("th", i, _e(h)) for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(tag("td", i, cell(v)) for i, v in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _interval_cell(median: float, lower: float, upper: float) -> str:
    """The median, and the interval below it in small print (escaped HTML)."""
    return f"{_e(number(median))}<br><small>[{_e(number(lower))}, {_e(number(upper))}]</small>"


def _data_section(fit: Fit) -> str:
    frame = fit.runs.frame
    columns = [c for c in ("params", "tokens", "unique_tokens", "compute", "loss") if c in frame]
    rows = [[c, number(frame[c].min()), number(frame[c].median()), number(frame[c].max())] for c in columns]
    return (
        f"<p>{_e(len(frame))} runs from <code>{_e(fit.runs.source)}</code>; "
        "units: counts, FLOPs and nats/token.</p>" + html_table(["column", "min", "median", "max"], rows)
    )


def _parameter_section(fit: Fit, prob: float) -> str:
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
    return html_table(header, rows)


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


#: Quantities of the plan table: column of :meth:`Fit.optimal` and header.
_PLAN_COLUMNS = {
    "params": "N_opt [parameters]",
    "tokens": "D_opt [tokens]",
    "tokens_per_param": "D/N",
    "loss": "loss [nats/token]",
}


def _budgets(fit: Fit, compute: Sequence[float] | None) -> np.ndarray:
    return np.asarray(compute if compute is not None else default_budgets(fit), dtype=float)


def _plan_section(fit: Fit, compute: Sequence[float] | None, prob: float) -> str:
    if not _has_allocation(fit):
        return f"<p>The {_e(fit.law.name)} law has no closed-form compute-optimal allocation.</p>"
    table = fit.optimal(_budgets(fit, compute), prob=prob)
    header = ["compute [FLOPs]", *_PLAN_COLUMNS.values(), "beyond the runs"]
    rows = []
    for _, row in table.iterrows():
        cells = [_e(number(row["compute"], 3))]
        cells += [
            _interval_cell(*(row[f"{q}_{s}"] for s in ("median", "lower", "upper"))) for q in _PLAN_COLUMNS
        ]
        beyond = f"{number(row['compute_multiple'], 3)}x compute, {number(row['params_multiple'], 3)}x N"
        if row["tokens_per_param_outside"] > 1:
            beyond += f", D/N {number(row['tokens_per_param_outside'], 3)}x outside"
        rows.append([*cells, _e(beyond)])
    text = (
        "<p>Compute-optimal allocation at C = 6ND: posterior median and, "
        f"below it, the {_e(format(prob, '.0%'))} interval. &ldquo;Beyond the runs&rdquo;: the budget over "
        "the largest run's compute, and N_opt over the largest run's N.</p>"
    )
    exponents = [e for e in ("a", "b") if f"{e}_median" in table]
    constant = all(
        np.allclose(table[f"{e}_{s}"], table[f"{e}_{s}"].iloc[0], rtol=1e-6)
        for e in exponents
        for s in ("median", "lower", "upper")
    )
    if exponents and constant:
        first = table.iloc[0]
        text += (
            "<p>N_opt &prop; C<sup>a</sup>, D_opt &prop; C<sup>b</sup>: "
            + ", ".join(
                f"{e} = {_e(number(first[f'{e}_median']))} [{_e(number(first[f'{e}_lower']))}, "
                f"{_e(number(first[f'{e}_upper']))}]"
                for e in exponents
            )
            + ".</p>"
        )
    elif exponents:
        header[-1:-1] = exponents
        for row, (_, values) in zip(rows, table.iterrows(), strict=True):
            row[-1:-1] = [
                _interval_cell(*(values[f"{e}_{s}"] for s in ("median", "lower", "upper"))) for e in exponents
            ]
    text += html_table(header, rows, escaped=True)
    warning = table.attrs.get("extrapolation_warning")
    if warning:
        text += f'<p class="warning">warning: {_e(warning)}</p>'
    return text


def _figure(caption: str, drawn: Any) -> str:
    return (
        f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{_png(drawn)}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _variant(fit: Fit) -> Fit | None:
    """The second law fitted to the same runs (the one averaged in beyond them), if there is one."""
    return fit.variant_fit() if fit.averages_beyond else None


def _comparison_section(fit: Fit, variant: Fit | None) -> str:
    """PSIS-LOO of the fitted law against the variant law on the same runs, table and figure."""
    from bayescale.questions.compare import LooWarning, compare

    if variant is None:
        return (
            f"<p>No second law is fitted to compare the {_e(fit.law.name)} law with (it is the variant "
            "law itself, has pooled parameters, or the variant could not be fitted to these runs); "
            "compare laws with <code>bayescale compare</code>.</p>"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LooWarning)
        table = compare({fit.law.name: fit, variant.law.name: variant})
    rows = [
        [str(name), f"{r['elpd_loo']:.1f} ± {r['se']:.1f}",
         "best" if i == 0 else f"{r['elpd_diff']:.1f} ± {r['dse']:.1f}",
         f"{r['weight']:.3f}", f"{r['pareto_k_max']:.2f}"]
        for i, (name, r) in enumerate(table.iterrows())
    ]  # fmt: skip
    best, other = table.index[0], table.index[-1]
    diff, dse = float(table["elpd_diff"].iloc[-1]), float(table["dse"].iloc[-1])
    verdict = (
        f"{best} predicts the runs better by {diff:.1f} nats, {diff / dse:.1f} standard errors"
        if dse > 0 and diff > 2 * dse
        else f"the runs do not separate {best} from {other} (difference {diff:.1f} ± {dse:.1f} nats)"
    )
    text = (
        f"<p>Expected log predictive density by PSIS-LOO of the fitted law and of {_e(variant.law.title)} "
        f"(<code>{_e(variant.law.name)}</code>), fitted to the same runs with the same settings; the second "
        f"law is the one averaged into answers beyond the runs. {_e(verdict)}.</p>"
        + html_table(
            ["law", "ELPD (LOO) ± se", "difference to best ± se", "stacking weight", "max Pareto k"], rows
        )
    )
    loo = [w for w in caught if issubclass(w.category, LooWarning)]
    for w in caught:  # the others as they would have been
        if w not in loo:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    text += "".join(f'<p class="warning">warning: {_e(w.message)}</p>' for w in loo)
    from bayescale import plots

    return text + _figure("Law comparison: ELPD of each law with its standard error.", plots.plot_elpd(table))


def _extrapolation_section(
    fit: Fit, variant: Fit | None, compute: Sequence[float] | None, train_below: float | None
) -> str:
    """How far the plan lies beyond the runs, what each law says there, and an optional held-out check."""
    parts: list[str] = []
    if _has_allocation(fit) and variant is not None:
        budgets = _budgets(fit, compute)
        own = fit.optimal(budgets, average_beyond=False)
        other = variant.optimal(budgets, average_beyond=False)
        answer = fit.optimal(budgets)
        names = (fit.law.name, variant.law.name, "answer (both laws beyond the runs)")
        rows = []
        for i, c in enumerate(budgets):
            for what, table in zip(names, (own, other, answer), strict=True):
                row = table.iloc[i]
                cells = [
                    _interval_cell(*(row[f"{q}_{s}"] for s in ("median", "lower", "upper")))
                    for q in ("params", "loss")
                ]
                rows.append([_e(number(c, 3)) if what == names[0] else "", _e(what), *cells])
        header = ["compute [FLOPs]", "law", _PLAN_COLUMNS["params"], _PLAN_COLUMNS["loss"]]
        parts.append(
            "<p>At the plan's budgets: each law alone, and the answer the plan gives (beyond the runs, "
            "half its draws from each law). Where the laws disagree the runs do not decide the answer; "
            "a run at a larger budget would.</p>" + html_table(header, rows, escaped=True, text_columns=2)
        )
    if train_below is not None:
        from bayescale.plots import kinds

        parts.append(
            _figure(
                f"Held-out check: the {fit.law.name} law refitted on the runs below {number(train_below, 3)} "
                "FLOPs with the same priors and settings, predicting the larger runs (90% intervals).",
                kinds.draw("extrapolation", fit, kinds.PlotOptions(train_below=train_below)),
            )
        )
    else:
        parts.append(
            "<p>A held-out check (refit on the smaller runs, predict the larger ones): "
            "<code>bayescale report ... --train-below C</code> or <code>bayescale extrapolate</code>.</p>"
        )
    return "".join(parts)


def build_report(
    fit: Fit,
    compute: Sequence[float] | None = None,
    prob: float = 0.9,
    train_below: float | None = None,
) -> str:
    """The HTML text of the report.

    Sections: the law, data, diagnostics, parameters, plan, law comparison,
    extrapolation and figures. Tables have one header row and fit a page of
    :data:`PAGE_WIDTH` pixels; intervals are printed below their medians.

    Parameters
    ----------
    fit
        A fitted law.
    compute
        Budgets [FLOPs] to plan; default the decades 10x to 1000x above the largest run.
    prob
        Probability of the credible intervals in the tables.
    train_below
        When given, a held-out check: the law refitted on the runs below this compute [FLOPs]
        predicts the others (one more fit).
    """
    if compute is not None:
        values = np.atleast_1d(np.asarray(compute, dtype=float))
        if values.ndim != 1 or not np.all(np.isfinite(values)) or np.any(values <= 0):
            raise BayescaleError(f"compute budgets must be finite and > 0, got {compute!r}")
    if train_below is not None and not (np.isfinite(train_below) and train_below > 0):
        raise BayescaleError(f"train_below must be a finite compute > 0, got {train_below!r}")
    law = fit.law
    fixed = ", ".join(f"{k} = {v:.4g}" for k, v in fit.fixed.items()) or "none"
    variant = _variant(fit)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>bayescale report: {_e(law.name)} law</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_e(law.title)}</h1>",
        f"<p><code>{_e(law.formula)}</code><br>{_e(law.reference)}<br>"
        f"likelihood on log loss: {_e(fit.likelihood)}; fixed parameters: {_e(fixed)}</p>",
        "<h2>Data</h2>", _data_section(fit),
        "<h2>Diagnostics</h2>", _diagnostics_section(fit),
        f"<h2>Parameters ({_e(format(prob, '.0%'))} credible intervals)</h2>", _parameter_section(fit, prob),
        "<h2>Plan</h2>", _plan_section(fit, compute, prob),
        "<h2>Law comparison</h2>", _comparison_section(fit, variant),
        "<h2>Extrapolation</h2>", _extrapolation_section(fit, variant, compute, train_below),
        "<h2>Figures</h2>",
    ]  # fmt: skip
    parts += [_figure(caption, draw()) for caption, draw in figures(fit)]
    parts.append(f"<p><small>made by bayescale {_e(__version__)}</small></p></body></html>")
    return "\n".join(parts)


def write_report(
    fit: Fit,
    path: str | Path,
    compute: Sequence[float] | None = None,
    prob: float = 0.9,
    train_below: float | None = None,
) -> Path:
    """Write :func:`build_report` to ``path`` (HTML) atomically and return the path.

    Refuses to replace a file that is not an HTML report (a saved fit, a runs table).
    """
    path = Path(path)
    if not path.parent.exists():
        raise BayescaleError(f"cannot write the report: folder {str(path.parent)!r} does not exist")
    refuse_to_replace_data(path, "the report")
    text = build_report(fit, compute, prob, train_below)
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
