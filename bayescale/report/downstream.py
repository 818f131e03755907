"""The HTML report of a downstream model: both steps, the LOO choice of each link, forecasts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from markupsafe import Markup

from bayescale._version import __version__
from bayescale.errors import BayescaleError
from bayescale.report.page import (
    STYLE,
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
    from collections.abc import Sequence

    import pandas as pd

    from bayescale.methods.downstream import Downstream

#: The downstream report's template, in ``bayescale/templates``.
DOWNSTREAM_TEMPLATE = "downstream.html.j2"


def _flag(value: Any) -> str:
    return "yes" if bool(value) else ""


def _links_rows(model: Downstream) -> tuple[list[list[str]], list[str]]:
    """One row per task: score, link, how chosen, the LOO margin and weight, the fit's diagnostics."""
    rows, warnings_ = [], []
    for task, row in model.links().iterrows():
        fit = model.link_fits[str(task)]
        ok = bool(fit.diagnostics.get("ok"))
        if not ok:
            warnings_.append(
                f"the link of {task!r} failed its diagnostics: {diagnostics_line(fit.diagnostics)}"
            )
        margin = (
            ""
            if not np.isfinite(row["elpd_margin"])
            else f"{row['elpd_margin']:.1f} ± {row['margin_se']:.1f}"
        )
        weight = "" if not np.isfinite(row["weight"]) else f"{row['weight']:.2f}"
        rows.append(
            [str(task), str(row["score"]), str(row["link"]), str(row["chosen_by"]), margin, weight,
             "passed" if ok else "FAILED"]
        )  # fmt: skip
    return rows, warnings_


def _choice_rows(model: Downstream) -> dict[str, Any] | None:
    if model.choice is None:
        return None
    rows = [
        [str(task), str(link), f"{r['elpd_loo']:.1f} ± {r['se']:.1f}",
         f"{r['elpd_diff']:.1f} ± {r['dse']:.1f}", f"{r['weight']:.2f}", f"{r['pareto_k_max']:.2f}"]
        for (task, link), r in model.choice.iterrows()
    ]  # fmt: skip
    header = ["task", "link", "ELPD (LOO) ± se", "difference to best ± se", "stacking weight", "max Pareto k"]
    return {"header": header, "rows": rows}


def _interval_rows(model: Downstream, table: pd.DataFrame, names: Sequence[str]) -> list[list[Any]]:
    return [
        [number(r["params"]), number(r["tokens"])]
        + [interval_cell(r[f"{n}_median"], r[f"{n}_lower"], r[f"{n}_upper"]) for n in names]
        for _, r in table.iterrows()
    ]


def build_downstream_report(
    model: Downstream,
    held_out: pd.DataFrame | None = None,
    queries: pd.DataFrame | None = None,
    prob: float = 0.9,
    random_seed: int | None = 0,
) -> str:
    """The HTML text of a downstream model's report (template ``bayescale/templates/downstream.html.j2``).

    Sections: step 1's law and parameters, step 2's links (with the LOO evidence of each choice),
    the per-task diagnostics, forecasts at ``queries``, the ``held_out`` runs against their
    intervals, and :func:`~bayescale.plots.downstream.plot_downstream`'s figure.

    Parameters
    ----------
    model
        A :class:`~bayescale.Downstream`.
    held_out
        Runs the fits did not see: ``params``, ``tokens`` and any task columns.
    queries
        (``params``, ``tokens``) to forecast.
    prob
        Probability of the intervals.
    random_seed
        Seed of the chained draws.
    """
    from bayescale.plots.downstream import plot_downstream

    names = ["loss", *model.tasks]
    loss_fit = model.loss_fit
    unit = loss_fit.runs.loss_unit
    link_rows, link_warnings = _links_rows(model)
    diagnostics = model.task_diagnostics()
    diag_rows = [
        [str(t), f"{r['change']:.3f}", f"{r['signal_to_noise']:.1f}", f"{r['monotone_rho']:.2f}",
         _flag(r["flat"]), _flag(r["noisy"]), _flag(r["non_monotone"]), "yes" if r["predictable"] else "NO"]
        for t, r in diagnostics.iterrows()
    ]  # fmt: skip
    context: dict[str, Any] = {
        "style": Markup(STYLE),
        "tasks": ", ".join(model.tasks),
        "loss_name": "loss",
        "loss_unit": unit.replace("_", " "),
        "prob_text": format(prob, ".0%"),
        "law": {"name": loss_fit.law.name, "formula": loss_fit.law.formula},
        "loss": {
            "n_runs": len(loss_fit.runs),
            "likelihood": loss_fit.likelihood,
            "ok": bool(loss_fit.diagnostics.get("ok")),
            "line": diagnostics_line(loss_fit.diagnostics),
            **parameter_section(loss_fit, prob),
        },
        "links": {
            "header": ["task", "score", "link", "chosen by", "elpd margin ± se", "weight", "diagnostics"],
            "rows": link_rows,
            "warnings": link_warnings,
        },
        "choice": _choice_rows(model),
        "diagnostics": {
            "header": [
                "task",
                "change",
                "signal/noise",
                "rank corr.",
                "flat",
                "noisy",
                "non-monotone",
                "predictable",
            ],
            "rows": diag_rows,
        },
        "queries": None,
        "held_out": None,
        "version": __version__,
    }
    if queries is not None:
        table = model.predict(queries["params"], queries["tokens"], prob=prob, random_seed=random_seed)
        context["queries"] = {
            "header": ["params", "tokens", f"loss [{unit.replace('_', ' ')}]", *model.tasks],
            "rows": _interval_rows(model, table, names),
        }
    if held_out is not None:
        table = model.predict(held_out["params"], held_out["tokens"], prob=prob, random_seed=random_seed)
        rows = []
        for task in [t for t in model.tasks if t in held_out.columns]:
            actual = held_out[task].to_numpy(dtype=float)
            lower, median, upper = (table[f"{task}_{s}"].to_numpy() for s in ("lower", "median", "upper"))
            inside = (lower <= actual) & (actual <= upper)
            rows.append(
                [task, str(len(actual)), f"{int(inside.sum())}/{len(actual)}",
                 number(float(np.mean(np.abs(median - actual)))), number(float(np.mean(upper - lower)))]
            )  # fmt: skip
        context["held_out"] = {
            "header": ["task", "runs", f"inside the {prob:.0%} interval", "mean abs. error", "mean width"],
            "rows": rows,
        }
    drawn = plot_downstream(model, held_out=held_out, prob=prob, random_seed=random_seed)
    context["figure_"] = embedded_figure(
        f"Each task's score against training compute: the ladder's rows (grey), the chained median and "
        f"{prob:.0%} band of a new run (blue), and any held-out run's interval (orange) and actual "
        "score (red).",
        drawn,
    )
    return environment().get_template(DOWNSTREAM_TEMPLATE).render(context)


def write_downstream_report(model: Downstream, path: str | Path, **kwargs: Any) -> Path:
    """Write :func:`build_downstream_report` to ``path`` (HTML) atomically and return the path."""
    path = Path(path)
    if not path.parent.exists():
        raise BayescaleError(f"cannot write the report: folder {str(path.parent)!r} does not exist")
    refuse_to_replace_data(path, "the report")
    write_atomically(path, build_downstream_report(model, **kwargs).encode("utf-8"))
    return path
