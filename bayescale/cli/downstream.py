"""``bayescale downstream``: a task's error or accuracy at new (params, tokens), chained through two fits."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bayescale.cli.options import (
    Subcommands,
    _add_sampler_options,
    _positive_float,
    _probability,
    _single_law_option,
)
from bayescale.cli.render import _emit
from bayescale.errors import BayescaleError

LINK_CHOICES = ("auto", "link-exponential", "link-sigmoid")


def add_downstream(sub: Subcommands) -> None:
    """Add ``bayescale downstream`` to the subcommands ``sub``."""
    p = sub.add_parser(
        "downstream",
        help="task error or accuracy at new (params, tokens): loss law, then a link per task, chained",
    )
    p.add_argument(
        "runs", type=Path, help="CSV/Parquet: params, tokens, the input loss and one column per task"
    )
    p.add_argument("--input-loss", required=True, help="the loss column both steps use")
    p.add_argument("--task", action="append", required=True, help="a task's error/accuracy column (repeat)")
    p.add_argument("--params", type=_positive_float, required=True, help="model parameters N of the query")
    p.add_argument("--tokens", type=_positive_float, required=True, help="training tokens D of the query")
    p.add_argument("--law", default="chinchilla-tied", help="step 1's law (default chinchilla-tied)")
    p.add_argument(
        "--link",
        choices=LINK_CHOICES,
        default="auto",
        help="step 2's link (default auto: per task, the one PSIS-LOO prefers of the three links)",
    )
    p.add_argument(
        "--score",
        choices=("error", "accuracy"),
        default=None,
        help="what the task columns measure (default: the link's target; with auto, read from the ladder)",
    )
    p.add_argument(
        "--chance", type=_probability, default=None, help="the tasks' chance accuracy: the sigmoid's floor"
    )
    p.add_argument(
        "--loss-unit", default=None, help="unit of the input loss (default: from its name, else nats)"
    )
    p.add_argument("--loss-rows", help="a true/false column: the rows step 1 is fitted on (default all)")
    p.add_argument("--link-rows", help="a true/false column: the rows step 2 is fitted on (default all)")
    p.add_argument(
        "--held-out-rows",
        help="a true/false column: rows neither step is fitted on, scored against their intervals and drawn",
    )
    p.add_argument("--report", type=Path, help="also write an HTML report (tables, LOO choice, figure) here")
    p.add_argument(
        "--save", type=Path, help="also save both steps to this file (NetCDF), which `bayescale report` reads"
    )
    p.add_argument("--prob", type=_probability, default=0.9)
    _single_law_option(p)  # step 1 beyond its runs, as `bayescale predict` answers it
    _add_sampler_options(p, "--seed", "--draws", "--tune", "--chains")
    p.add_argument("--json", action="store_true")


def _mask(frame: Any, column: str | None) -> Any:
    """The boolean column ``column`` of ``frame`` (``None``: every row), or an error naming it."""
    if column is None:
        return None
    if column not in frame.columns:
        raise BayescaleError(f"rows column {column!r} is not in the runs; columns are {list(frame.columns)}")
    text = frame[column].astype(str).str.strip().str.lower()
    bad = ~text.isin(["true", "false", "1", "0"])
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise BayescaleError(
            f"rows column {column!r} row {row}: {frame[column].iloc[row]!r} is not true/false"
        )
    return text.isin(["true", "1"]).to_numpy()


def cmd_downstream(args: argparse.Namespace) -> int:
    """``bayescale downstream``: fit both steps, print the chained answer and the task diagnostics."""
    from bayescale.data.runs import read_table
    from bayescale.methods.downstream import fit_downstream

    if not args.runs.is_file():
        raise BayescaleError(f"runs file {str(args.runs)!r} does not exist")
    frame = read_table(args.runs)
    held_rows = _mask(frame, args.held_out_rows)
    if args.report is not None:
        from bayescale.report import refuse_to_replace_data

        if not args.report.parent.exists():
            raise BayescaleError(
                f"cannot write the report: folder {str(args.report.parent)!r} does not exist"
            )
        refuse_to_replace_data(args.report, "the report")
    if args.save is not None:  # refused before any fit, as `bayescale fit --out` is
        from bayescale.cli.files import _refuse_input_as_output
        from bayescale.methods.io import check_writable

        _refuse_input_as_output(args.save, [args.runs])
        check_writable(args.save, "the downstream fit")
    if held_rows is not None:
        frame, held_out = frame[~held_rows].reset_index(drop=True), frame[held_rows].reset_index(drop=True)
    else:
        held_out = None
    sampler = {k: getattr(args, k) for k in ("draws", "tune", "chains") if getattr(args, k) is not None}
    model = fit_downstream(
        frame,
        args.task,
        args.input_loss,
        loss_unit=args.loss_unit,
        law=args.law,
        link=args.link,
        score=args.score,
        chance=args.chance,
        loss_rows=_mask(frame, args.loss_rows),
        link_rows=_mask(frame, args.link_rows),
        sampler=sampler,
        random_seed=args.seed,
        warn=False,
    )
    table = model.predict(
        args.params, args.tokens, prob=args.prob, random_seed=args.seed, average_beyond=not args.single_law
    )
    diagnostics = model.task_diagnostics().reset_index()
    links = model.links().reset_index()
    row = table.iloc[0]
    names = ["loss", *model.tasks] + (["average"] if len(model.tasks) > 1 else [])
    answers = {n: {s: float(row[f"{n}_{s}"]) for s in ("median", "lower", "upper")} for n in names}
    payload = {
        "params": args.params,
        "tokens": args.tokens,
        "prob": args.prob,
        "loss_unit": table.attrs["loss_unit"],
        "answers": answers,
        "links": json.loads(links.to_json(orient="records")),
        "diagnostics": diagnostics.to_dict(orient="records"),
        "fits_ok": {"loss": bool(model.loss_fit.diagnostics["ok"])}
        | {t: bool(f.diagnostics["ok"]) for t, f in model.link_fits.items()},
    }
    lines = [
        f"chained answer at N = {args.params:.3g}, D = {args.tokens:.3g} ({args.prob:.0%} intervals; "
        f"loss in {table.attrs['loss_unit'].replace('_', ' ')})"
    ]
    for name, value in answers.items():
        lines.append(f"  {name:<24} {value['median']:.4g}  [{value['lower']:.4g}, {value['upper']:.4g}]")
    lines.append("links (chosen_by LOO: elpd_margin over the runner-up, its se, the stacking weight):")
    lines.append(links.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    lines.append("task diagnostics:")
    lines.append(diagnostics.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    failed = [name for name, ok in payload["fits_ok"].items() if not ok]
    if failed:
        lines.append(f"fits that failed their diagnostics: {failed}; treat their answers with care")
    if args.report is not None:
        import pandas as pd

        from bayescale.report import write_downstream_report

        queries = pd.DataFrame({"params": [args.params], "tokens": [args.tokens]})
        path = write_downstream_report(
            model, args.report, held_out=held_out, queries=queries, prob=args.prob, random_seed=args.seed
        )
        payload["report"] = str(path)
        lines.append(f"report written to {path}")
    if args.save is not None:
        payload["saved"] = str(model.save(args.save))
        lines.append(f"saved to {payload['saved']}")
    _emit(args, payload, "\n".join(lines))
    return 0
