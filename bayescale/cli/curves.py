"""The ``curves`` command: the multi-power law fitted to loss curves under their LR schedules.

``bayescale curves TABLE --schedules FILE`` fits :func:`bayescale.fit_curves` to a table of
checkpoints (``run``, ``step``, ``loss``, optionally ``params``) and, with ``--predict``, answers
the final loss of a new run (or of a fitted run continued, ``--run``) under a described schedule.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bayescale.cli.options import (
    Subcommands,
    _add_sampler_options,
    _column_option,
    _positive_float,
    _probability,
    _sampler_kwargs,
)
from bayescale.cli.render import _emit
from bayescale.errors import BayescaleError, RunsError

#: What ``--predict`` reads: ``Schedule``'s fields, ``key=value`` joined by commas.
PREDICT_HELP = (
    "a new run's schedule, e.g. 'shape=cosine,peak_lr=3e-4,horizon=72000,warmup=2160,final_fraction=0.1' "
    "(fields of bayescale.Schedule; shapes constant, cosine, linear, wsd, two_stage with decay_start=); "
    "answers the loss at its last step (repeatable)"
)

_INTEGER_FIELDS = ("horizon", "warmup", "decay_start")
_TEXT_FIELDS = ("shape", "wsd_decay")


def add_curves(sub: Subcommands) -> None:
    """Add ``bayescale curves`` to the subcommands ``sub``."""
    p = sub.add_parser(
        "curves",
        help="the multi-power law on loss curves under their LR schedules; the final loss of a new schedule",
    )
    p.add_argument("table", type=Path, help="CSV/Parquet of checkpoints: run, step, loss[, params]")
    p.add_argument(
        "--schedules",
        type=Path,
        default=None,
        help="JSON file {run: {peak_lr, horizon, warmup, shape, final_fraction, decay_start}} "
        "(the fields of bayescale.Schedule)",
    )
    p.add_argument(
        "--lr-table",
        type=Path,
        default=None,
        help="CSV/Parquet of the LR at every step 0 .. T-1 of each run: run, step, lr "
        "(instead of --schedules)",
    )
    _column_option(p, "which table column is run, step, loss or params, e.g. run=schedule (repeatable)")
    p.add_argument("--predict", action="append", default=[], metavar="SCHEDULE", help=PREDICT_HELP)
    p.add_argument(
        "--params", type=_positive_float, default=None, help="N of the new run (fits of several sizes)"
    )
    p.add_argument("--run", default=None, help="continue this fitted run (its own offset) under --predict")
    p.add_argument(
        "--max-points", type=int, default=100, help="checkpoints per curve in the fit (default 100)"
    )
    p.add_argument(
        "--walk",
        action="store_true",
        help="each curve's discrepancy from the law walks along it (bands widen along a new run's curve)",
    )
    p.add_argument(
        "--save",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the fit to FILE (NetCDF; bayescale.load_fit)",
    )
    p.add_argument("--prob", type=_probability, default=0.9)
    _add_sampler_options(p, "--seed", "--draws", "--tune", "--chains", "--progress")
    p.add_argument("--json", action="store_true")


def parse_schedule(text: str) -> Any:
    """A :class:`~bayescale.Schedule` from ``key=value,...`` (``--predict``), errors naming the field."""
    from bayescale.data.schedule import Schedule

    values: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not value.strip():
            raise BayescaleError(f"schedule {text!r}: {part!r} is not key=value")
        if key in _TEXT_FIELDS:
            values[key] = value.strip()
            continue
        try:
            number = float(value)
        except ValueError:
            raise BayescaleError(f"schedule {text!r}: {key}={value!r} is not a number") from None
        if key in _INTEGER_FIELDS:
            if not number.is_integer():
                raise BayescaleError(f"schedule {text!r}: {key}={value!r} must be a whole number of steps")
            number = int(number)
        values[key] = number
    for needed in ("peak_lr", "horizon"):
        if needed not in values:
            raise BayescaleError(f"schedule {text!r} needs {needed}=...")
    return Schedule.from_dict(values)


def _read_schedules(args: argparse.Namespace) -> dict[str, Any]:
    from bayescale.data.runs import read_table
    from bayescale.data.schedule import Schedule, per_step_lr

    if (args.schedules is None) == (args.lr_table is None):
        raise BayescaleError(
            "give the runs' learning rates with --schedules FILE.json or --lr-table FILE (one of them): a "
            "checkpoint in the middle of a decay is not a run trained to that step, and the curve law "
            "reads the LR at every step so far"
        )
    if args.lr_table is not None:
        return dict(per_step_lr(read_table(args.lr_table)))
    try:
        given = json.loads(args.schedules.read_text())
    except json.JSONDecodeError as exc:
        raise BayescaleError(f"{args.schedules}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(given, dict) or not all(isinstance(v, dict) for v in given.values()):
        raise BayescaleError(f"{args.schedules}: expected a JSON object {{run: {{peak_lr: ..., ...}}}}")
    out = {}
    for run, fields in given.items():
        try:
            out[str(run)] = Schedule.from_dict(fields)
        except TypeError as exc:
            raise RunsError(f"{args.schedules}: run {run!r}: {exc}") from None
        except RunsError as exc:
            raise RunsError(f"{args.schedules}: run {run!r}: {exc}") from None
    return out


def _read_curves(args: argparse.Namespace) -> Any:
    from bayescale.data.runs import read_table

    table = read_table(args.table)
    mapping = {}
    for item in args.column_map:
        name, sep, source = item.partition("=")
        if not sep or name not in ("run", "step", "loss", "params"):
            raise BayescaleError(
                f"--column {item!r}: expected NAME=SOURCE with NAME one of run, step, loss, params"
            )
        if source not in table.columns:
            raise RunsError(
                f"--column {item}: the table has no column {source!r} (it has {list(table.columns)})"
            )
        mapping[source] = name
    return table.rename(columns=mapping)


def cmd_curves(args: argparse.Namespace) -> int:
    """``bayescale curves``: fit the curves, print the law's parameters and any predicted final losses."""
    from bayescale.methods.curves import fit_curves

    predictions = [parse_schedule(text) for text in args.predict]
    if args.max_points < 2:
        raise BayescaleError(f"--max-points must be at least 2; got {args.max_points}")
    if args.save is not None and not args.save.parent.is_dir():
        raise BayescaleError(f"--save {args.save}: folder {str(args.save.parent)!r} does not exist")
    fit = fit_curves(
        _read_curves(args),
        _read_schedules(args),
        max_points=args.max_points,
        walk=args.walk,
        **_sampler_kwargs(args),
    )
    if args.run is not None and args.run not in fit.data.runs:
        raise BayescaleError(f"--run {args.run!r} is not a fitted run; the runs are {fit.data.runs}")
    if args.save is not None:
        fit.save(args.save)
    payload, summary_text = curves_text(args, fit)
    rows = []
    for text, schedule in zip(args.predict, predictions, strict=True):
        band = fit.predict(schedule, [schedule.horizon - 1], prob=args.prob, run=args.run, size=args.params)
        row = band.iloc[0]
        rows.append({"schedule": text, **{k: float(row[k]) for k in ("step", "median", "lower", "upper")}})
    payload["predictions"] = rows
    lines = [summary_text]
    if args.save is not None:
        payload["saved"] = str(args.save)
        lines.append(f"saved to {args.save}")
    for r in rows:
        lines.append(
            f"final loss at step {int(r['step'])} under {r['schedule']}: {r['median']:.4g} "
            f"[{r['lower']:.4g}, {r['upper']:.4g}] ({args.prob:.0%} interval)"
        )
    args.failed_diagnostics = not fit.diagnostics["ok"]
    _emit(args, payload, "\n".join(lines))
    return 0


def curves_text(args: argparse.Namespace, fit: Any) -> tuple[dict[str, Any], str]:
    """A curves fit's parameters (``args.prob`` intervals) and diagnostics, as JSON and as text.

    Used by ``bayescale curves`` and by ``bayescale summary`` of a saved curves fit.
    """
    summary = fit.parameters(args.prob)
    d = fit.diagnostics
    payload = {
        "parameters": {k: dict(summary.loc[k]) for k in summary.index},
        "walk": fit.walk,
        "prob": args.prob,
        "diagnostics": {k: d[k] for k in ("ok", "max_r_hat", "min_ess_bulk", "divergences") if k in d},
    }
    lines = [f"multi-power law on {len(fit.data.runs)} curves ({len(fit.data.frame)} checkpoints)"]
    lines += [
        f"  {k:28s} {r['median']:.4g} [{r['lower']:.4g}, {r['upper']:.4g}]" for k, r in summary.iterrows()
    ]
    lines.append(
        f"diagnostics: {'ok' if d['ok'] else 'FAILED'} (max r_hat {d['max_r_hat']:.3f}, "
        f"min ESS {d['min_ess_bulk']:.0f}, {d['divergences']} divergences)"
    )
    return payload, "\n".join(lines)
