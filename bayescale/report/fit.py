"""A fit's self-contained HTML report: the law, data, diagnostics, parameters, plan, comparison.

Everything is in one file: figures are embedded as base64 PNG, there is no
script, stylesheet or image fetched from the network. The page is laid out by the
Jinja2 template ``bayescale/templates/report.html.j2`` with autoescape on: this
module computes plain values, the template escapes every one of them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from markupsafe import Markup

from bayescale import plots
from bayescale._version import __version__
from bayescale.errors import BayescaleError
from bayescale.plots._common import decades
from bayescale.plots.posterior import PAIR_PARAMETERS
from bayescale.posterior.residuals import trend_message
from bayescale.report.page import (
    STYLE,
    Interval,
    diagnostics_line,
    embedded_figure,
    environment,
    interval_cell,
    number,
    parameter_section,
    refuse_to_replace_data,
    write_atomically,
)

if TYPE_CHECKING:
    from bayescale.methods.parametric import Fit


#: The report's template, in ``bayescale/templates`` (autoescaped Jinja2).
TEMPLATE = "report.html.j2"


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


def _data_section(fit: Fit) -> dict[str, Any]:
    frame = fit.runs.frame
    columns = [c for c in ("params", "tokens", "unique_tokens", "compute", "loss") if c in frame]
    rows = [[c, number(frame[c].min()), number(frame[c].median()), number(frame[c].max())] for c in columns]
    return {"n_runs": len(frame), "source": fit.runs.source, "rows": rows}


def _diagnostics_section(fit: Fit) -> dict[str, Any]:
    d = fit.diagnostics
    config = fit.sampler.to_dict()
    trends = fit.residual_trends()
    return {
        "ok": bool(d["ok"]),
        "line": diagnostics_line(d),
        "sampler": ", ".join(f"{k}={v}" for k, v in config.items()),
        "random_seed": fit.random_seed,
        "problems": list(d["problems"]),
        "warnings": list(d.get("warnings", [])),
        "misfit": trend_message(trends),
        "trends": ", ".join(map(str, trends.index)) if len(trends) else "",
    }


#: Quantities of the plan table: column of :meth:`Fit.optimal` and header.
_PLAN_COLUMNS = {
    "params": "N_opt [parameters]",
    "tokens": "D_opt [tokens]",
    "tokens_per_param": "D/N",
    "loss": "loss [nats/token]",
}


def _budgets(fit: Fit, compute: Sequence[float] | None) -> np.ndarray:
    return np.asarray(compute if compute is not None else default_budgets(fit), dtype=float)


def _row_interval(row: Any, name: str) -> Interval:
    return interval_cell(*(row[f"{name}_{s}"] for s in ("median", "lower", "upper")))


def _plan_section(fit: Fit, compute: Sequence[float] | None, prob: float) -> dict[str, Any] | None:
    """The plan table; ``None`` for a law without a compute-optimal allocation."""
    if not _has_allocation(fit):
        return None
    table = fit.optimal(_budgets(fit, compute), prob=prob)
    header = ["compute [FLOPs]", *_PLAN_COLUMNS.values(), "beyond the runs"]
    rows: list[list[Any]] = []
    for _, row in table.iterrows():
        cells: list[Any] = [number(row["compute"], 3), *(_row_interval(row, q) for q in _PLAN_COLUMNS)]
        beyond = f"{number(row['compute_multiple'], 3)}x compute, {number(row['params_multiple'], 3)}x N"
        if row["tokens_per_param_outside"] > 1:
            beyond += f", D/N {number(row['tokens_per_param_outside'], 3)}x outside"
        rows.append([*cells, beyond])
    exponents = [e for e in ("a", "b") if f"{e}_median" in table]
    constant = all(
        np.allclose(table[f"{e}_{s}"], table[f"{e}_{s}"].iloc[0], rtol=1e-6)
        for e in exponents
        for s in ("median", "lower", "upper")
    )
    summary = []
    if exponents and constant:  # one line for the exponents, the same at every budget
        first = table.iloc[0]
        summary = [{"name": e, **_row_interval(first, e)._asdict()} for e in exponents]
    elif exponents:  # a column per exponent, before "beyond the runs"
        header[-1:-1] = exponents
        for cells, (_, values) in zip(rows, table.iterrows(), strict=True):
            cells[-1:-1] = [_row_interval(values, e) for e in exponents]
    return {
        "header": header,
        "rows": rows,
        "exponents": summary,
        "warning": table.attrs.get("extrapolation_warning"),
    }


def _variant(fit: Fit) -> Fit | None:
    """The second law fitted to the same runs (the one averaged in beyond them), if there is one."""
    return fit.variant_fit() if fit.averages_beyond else None


def _comparison_section(
    fit: Fit, variant: Fit | None, compute: Sequence[float] | None, prob: float
) -> dict[str, Any] | None:
    """PSIS-LOO of the fitted law against the variant law on the same runs, table and figure.

    Also the two laws' own plans side by side at the report's first budget.
    """
    from bayescale.questions.compare import LooWarning, compare

    if variant is None:
        return None
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
    loo = [w for w in caught if issubclass(w.category, LooWarning)]
    for w in caught:  # the others as they would have been
        if w not in loo:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    from bayescale import plots

    plans = None
    if _has_allocation(fit):
        from bayescale.checks.verdict import plan_table

        budget = float(_budgets(fit, compute)[0])
        side_by_side = plan_table({fit.law.name: fit, variant.law.name: variant}, budget, prob=prob)
        plans = embedded_figure(
            f"The two laws' own plans at C = {number(budget, 3)} FLOPs (each law alone, not blended): "
            f"N_opt, D_opt and loss, medians with {prob:.0%} intervals. How far apart they lie is how "
            "much the choice of law moves the plan.",
            plots.plot_plans(side_by_side, believe=str(table.index[0])),
        )
    return {
        "title": variant.law.title,
        "name": variant.law.name,
        "verdict": verdict,
        "rows": rows,
        "warnings": [str(w.message) for w in loo],
        "figure": embedded_figure(
            "Law comparison: ELPD of each law with its standard error.", plots.plot_elpd(table)
        ),
        "plans": plans,
    }


def _extrapolation_section(
    fit: Fit, variant: Fit | None, compute: Sequence[float] | None, train_below: float | None
) -> dict[str, Any]:
    """How far the plan lies beyond the runs, what each law says there, and an optional held-out check."""
    rows: list[list[Any]] = []
    if _has_allocation(fit) and variant is not None:
        budgets = _budgets(fit, compute)
        own = fit.optimal(budgets, average_beyond=False)
        other = variant.optimal(budgets, average_beyond=False)
        answer = fit.optimal(budgets)
        names = (fit.law.name, variant.law.name, "answer (blended beyond the runs)")
        for i, c in enumerate(budgets):
            for what, table in zip(names, (own, other, answer), strict=True):
                row = table.iloc[i]
                first = number(c, 3) if what == names[0] else ""
                rows.append([first, what, *(_row_interval(row, q) for q in ("params", "loss"))])
    figure = None
    if train_below is not None:
        from bayescale.plots import kinds

        figure = embedded_figure(
            f"Held-out check: the {fit.law.name} law refitted on the runs below {number(train_below, 3)} "
            "FLOPs with the same priors and settings, predicting the larger runs (90% intervals).",
            kinds.draw("extrapolation", fit, kinds.PlotOptions(train_below=train_below)),
        )
    header = ["compute [FLOPs]", "law", _PLAN_COLUMNS["params"], _PLAN_COLUMNS["loss"]]
    return {"header": header, "rows": rows, "figure": figure}


def build_report(
    fit: Fit,
    compute: Sequence[float] | None = None,
    prob: float = 0.9,
    train_below: float | None = None,
) -> str:
    """The HTML text of the report, from the template ``bayescale/templates/report.html.j2``.

    Sections: the law, data, diagnostics, parameters, plan, law comparison,
    extrapolation and figures. Tables have one header row and fit a page of
    :data:`PAGE_WIDTH` pixels; intervals are printed below their medians. Every
    value is escaped by the template engine (autoescape): a saved fit's text is
    not trusted.

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
    variant = _variant(fit)
    context = {
        "style": Markup(STYLE),  # the page's own stylesheet, not a value from the fit
        "law": {"name": law.name, "title": law.title, "formula": law.formula, "reference": law.reference},
        "likelihood": fit.likelihood,
        "fixed": ", ".join(f"{k} = {v:.4g}" for k, v in fit.fixed.items()) or "none",
        "prob_text": format(prob, ".0%"),
        "data": _data_section(fit),
        "diagnostics": _diagnostics_section(fit),
        "parameters": parameter_section(fit, prob),
        "plan": _plan_section(fit, compute, prob),
        "comparison": _comparison_section(fit, variant, compute, prob),
        "extrapolation": _extrapolation_section(fit, variant, compute, train_below),
        "figures": [embedded_figure(caption, draw()) for caption, draw in figures(fit)],
        "version": __version__,
    }
    return environment().get_template(TEMPLATE).render(context)


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
