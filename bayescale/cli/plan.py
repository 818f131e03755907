"""The planning commands: ``plan``, ``frontier``, ``compare-plans`` and ``design``."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

from bayescale.cli.files import _load
from bayescale.cli.methods import _method_plan
from bayescale.cli.options import (
    FLOPS_HELP,
    Subcommands,
    _flops_k,
    _group_option,
    _plan_tuple,
    _planning_options,
    _positive_float,
    _probability,
    _seed,
    _single_law_option,
)
from bayescale.cli.render import (
    _distance_payload,
    _emit,
    _interval_payload,
    _intervals_text,
    _rows_text,
    _warn_beyond,
)
from bayescale.errors import BayescaleError, printable
from bayescale.posterior.extrapolation import VARIANT_LAW

#: Most budgets ``frontier`` evaluates (each is a full pass over the posterior draws).
MAX_POINTS = 1000


def add_plan(sub: Subcommands) -> None:
    """Add ``bayescale plan`` to the subcommands ``sub``."""
    p = sub.add_parser("plan", help="optimal allocation at budget(s), or the budget for a target loss")
    p.add_argument("--strict", action="store_true", help="exit non-zero when the fit failed its diagnostics")
    p.add_argument("fit", type=Path)
    p.add_argument(
        "--compute", type=_positive_float, nargs="+", action="extend", help="budget(s) in FLOPs (repeatable)"
    )
    p.add_argument(
        "--target-loss", type=_positive_float, nargs="+", action="extend", help="loss(es) to reach instead"
    )
    _planning_options(p)
    _group_option(p)


def cmd_plan(args: argparse.Namespace) -> int:
    """``bayescale plan``: optimal allocation at budget(s), or the compute for target loss(es)."""
    if (args.compute is None) == (args.target_loss is None):
        raise BayescaleError("give either --compute C [C ...] or --target-loss L [L ...]")
    if args.target_loss is not None and args.group is not None:
        raise BayescaleError(
            "--group goes with --compute (the compute for a target loss is not per group yet)"
        )
    fit = _load(args.fit, args, methods=True)
    if type(fit).__name__ != "Fit":
        _method_plan(args, fit)
        return 0
    if args.compute is not None:
        _allocation_output(args, fit, args.compute)
        return 0
    targets, unique = _grid(args.target_loss, args.unique_tokens)
    table = fit.target_compute(
        targets,
        unique,
        args.prob,
        args.kind,
        args.flops_per_param_token,
        average_beyond=not args.single_law,
    )
    check_question(table, args.flops_per_param_token)
    _warn_beyond(table)
    names = ["compute", "params", "tokens"]
    inputs = ["target_loss", *(["unique_tokens"] if unique is not None else [])]
    payloads = [
        {
            **{c: float(row[c]) for c in inputs},
            "prob": args.prob,
            "kind": args.kind,
            **_interval_payload(row, names),
            "fraction_unreachable": float(row["fraction_unreachable"]),
            "distance": _distance_payload(row),
            **fit.information(),
        }
        for _, row in table.iterrows()
    ]
    title = (
        f"compute to reach each target loss ({args.prob:.0%} {args.kind.upper()} intervals; "
        "inf: the target is below the reachable floor in that share of draws)"
    )
    text = _rows_text(title, table, [*inputs, "fraction_unreachable"], names)
    if args.unique_tokens is None and not args.single_law:
        text += _averaging_note(fit, table)
    _emit(args, payloads[0] if len(payloads) == 1 else payloads, text)
    return 0


def add_frontier(sub: Subcommands) -> None:
    """Add ``bayescale frontier`` to the subcommands ``sub``."""
    p = sub.add_parser("frontier", help="optimal allocation over a range of budgets")
    p.add_argument("fit", type=Path)
    p.add_argument("--from", dest="start", type=_positive_float, required=True, help="smallest budget")
    p.add_argument("--to", dest="stop", type=_positive_float, required=True, help="largest budget")
    p.add_argument(
        "--points", type=int, default=7, help=f"budgets, log-spaced (default 7, at most {MAX_POINTS})"
    )
    _planning_options(p)
    _group_option(p)


def cmd_frontier(args: argparse.Namespace) -> int:
    """``bayescale frontier``: the optimal allocation over log-spaced budgets."""
    import numpy as np

    if args.stop <= args.start:
        raise BayescaleError(f"--to ({args.stop:g}) must be larger than --from ({args.start:g})")
    if not 2 <= args.points <= MAX_POINTS:
        raise BayescaleError(f"--points must be from 2 to {MAX_POINTS}, got {args.points}")
    fit = _load(args.fit, args)
    _allocation_output(args, fit, np.geomspace(args.start, args.stop, args.points))
    return 0


def _grid(values: Any, unique_tokens: list[float] | None) -> tuple[Any, Any]:
    """Every value (budget or target loss) at each unique-token count: the two columns of the grid.

    Rows run over the values first, then over U within a value, so one budget's rows sit together.
    """
    import numpy as np

    values = np.asarray(values, dtype=float)
    if unique_tokens is None:
        return values, None
    unique = np.asarray(unique_tokens, dtype=float)
    return np.repeat(values, unique.size), np.tile(unique, values.size)


def _allocation_output(args: argparse.Namespace, fit: Any, compute: Any) -> None:
    import numpy as np

    compute, unique = _grid(compute, args.unique_tokens)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an absurd budget is refused just below
        table = fit.optimal(
            compute,
            unique,
            args.prob,
            args.kind,
            flops_per_param_token=args.flops_per_param_token,
            average_beyond=not args.single_law,
            group=args.group,
        )
    check_question(table, args.flops_per_param_token)
    _warn_beyond(table)
    names = ["params", "tokens", "tokens_per_param", "loss", "a", "b"]
    if unique is not None:
        names[2:2] = ["epochs"]
        names += ["loss_reduction_more_unique", "dloss_dlog_unique"]
    payloads = []
    for _, row in table.iterrows():
        payload: dict[str, Any] = {"compute": float(row["compute"]), "prob": args.prob, "kind": args.kind}
        if unique is not None:
            payload["unique_tokens"] = float(row["unique_tokens"])
        payloads.append({**payload, **_interval_payload(row, names), "distance": _distance_payload(row)})
    information = fit.information()  # where the answers' information comes from (the prior's share)
    payloads = [{**p, **information} for p in payloads]
    several_u = unique is not None and len(args.unique_tokens) > 1
    where = "" if unique is None or several_u else f" with U = {args.unique_tokens[0]:.3g} unique tokens"
    interval = f"{args.prob:.0%} {args.kind.upper()} intervals"
    if len(payloads) == 1:
        from bayescale.posterior.intervals import row_to_intervals

        title = f"compute-optimal plan at C = {payloads[0]['compute']:.3g} FLOPs{where} ({interval})"
        text = _intervals_text(title, row_to_intervals(table.iloc[0], names))
        if args.unique_tokens is None and not args.single_law:
            text += _averaging_note(fit, table)
        _emit(args, payloads[0], text)
        return
    title = f"compute-optimal plans{where} ({interval}); a, b: N_opt ~ C^a, D_opt ~ C^b"
    text = _rows_text(title, table, ["compute", *(["unique_tokens"] if several_u else [])], names)
    if args.unique_tokens is None and not args.single_law:
        text += _averaging_note(fit, table)
    _emit(args, payloads, text)


def _averaging_note(fit: Any, table: Any) -> str:
    """A line saying that answers beyond the runs average the fitted law with the variant law."""
    multiple = float(table["compute_multiple"].max())
    if not (multiple > 1 and fit.averages_beyond):
        return ""
    where = f"up to {multiple:.3g}x" if multiple < float("inf") else "beyond"
    return (
        f"\n{where} the largest run's compute: beyond the runs, answers blend the fitted law with "
        f"{VARIANT_LAW} fitted to the same runs, more as the distance grows (--single-law: the fitted "
        "law alone; docs/guides/beyond-the-runs.md)"
    )


def check_question(table: Any, flops_per_param_token: float) -> None:
    """Raise when a budget or a target loss is too small or too large for a meaningful plan.

    That is, when the plan is not at least one parameter and one token, or not finite: the
    answer would otherwise be inf, NaN or 1e-150 parameters. The one check of every command that
    plans (``plan --compute``, ``plan --target-loss``, ``frontier``, ``report --compute``). For a
    target loss, a plan that is infinite (the target below the reachable floor in some draws) is
    an answer, said by ``fraction_unreachable``.
    """
    import numpy as np

    for _, row in table.iterrows():
        cells = np.asarray(
            [row[f"{q}_{s}"] for q in ("params", "tokens") for s in ("median", "lower", "upper")], dtype=float
        )
        if "target_loss" in row.index:
            finite = cells[np.isfinite(cells)]
            if finite.size and finite.min() < 1:
                raise BayescaleError(
                    f"no meaningful plan for a target loss of {row['target_loss']:.4g}: it is reached at "
                    f"N = {row['params_median']:.3g} parameters, D = {row['tokens_median']:.3g} tokens "
                    "(less than one); give a lower target loss"
                )
            continue
        values = np.asarray([*cells, row["loss_median"]], dtype=float)
        if not np.all(np.isfinite(values)) or cells.min() < 1:
            raise BayescaleError(
                f"no meaningful plan at C = {row['compute']:.3g} FLOPs with {flops_per_param_token:g} FLOPs "
                f"per parameter per token: the optimum is N = {row['params_median']:.3g} parameters, "
                f"D = {row['tokens_median']:.3g} tokens; give a budget (and FLOPs per parameter-token) "
                "that buys at least one parameter and one token"
            )


def add_compare_plans(sub: Subcommands) -> None:
    """Add ``bayescale compare-plans`` to the subcommands ``sub``."""
    p = sub.add_parser("compare-plans", help="probability that each plan has the lowest loss, and regret")
    p.add_argument("fit", type=Path)
    p.add_argument(
        "--plan",
        dest="plans",
        type=_plan_tuple,
        action="append",
        required=True,
        metavar="N,D[,U]",
        help="a plan: parameters, tokens and (data-constrained law) unique tokens; give two or more",
    )
    p.add_argument(
        "--unique-tokens",
        type=_positive_float,
        default=None,
        help="unique tokens available to every plan given as N,D (data-constrained law)",
    )
    p.add_argument("--prob", type=_probability, default=0.9)
    p.add_argument("--kind", choices=["eti", "hdi"], default="eti", help="interval kind (default eti)")
    p.add_argument("--flops-per-param-token", type=_flops_k, default=6.0, help=FLOPS_HELP)
    _single_law_option(p)
    p.add_argument("--json", action="store_true")


def cmd_compare_plans(args: argparse.Namespace) -> int:
    """``bayescale compare-plans``: P(lowest loss) and expected regret of each plan."""
    fit = _load(args.fit, args)
    table = fit.compare_plans(
        args.plans,
        args.prob,
        args.kind,
        args.flops_per_param_token,
        average_beyond=not args.single_law,
        unique_tokens=args.unique_tokens,
    )
    _warn_beyond(table)
    inputs = [c for c in ("params", "tokens", "unique_tokens", "compute") if c in table.columns]
    payloads = [
        {
            **{c: float(row[c]) for c in inputs},
            "prob": args.prob,
            "kind": args.kind,
            **_interval_payload(row, ["loss"]),
            "prob_best": float(row["prob_best"]),
            "regret_mean": float(row["regret_mean"]),
            **_interval_payload(row, ["regret"]),
            "distance": _distance_payload(row),
        }
        for _, row in table.iterrows()
    ]
    title = (
        f"plans compared ({args.prob:.0%} {args.kind.upper()} intervals); prob_best: posterior probability "
        "of the lowest loss; regret: loss above the optimum at the plan's own budget"
    )
    text = _rows_text(title, table, [*inputs, "prob_best", "regret_mean"], ["loss", "regret"])
    _emit(args, payloads, text)
    return 0


def add_design(sub: Subcommands) -> None:
    """Add ``bayescale design`` to the subcommands ``sub``."""
    p = sub.add_parser("design", help="rank candidate runs by what they would teach about the plan")
    p.add_argument("fit", type=Path)
    p.add_argument("--compute", type=_positive_float, required=True, help="target budget in FLOPs")
    p.add_argument(
        "--candidates", type=Path, required=True, help="CSV: params, tokens[, unique_tokens, cost]"
    )
    p.add_argument("--unique-tokens", type=_positive_float, default=None, help="unique tokens at the target")
    p.add_argument("--quantity", choices=["params", "tokens", "loss"], default="params")
    p.add_argument("--outcomes", type=int, default=256, help="simulated outcomes per candidate")
    p.add_argument("--budget", type=_positive_float, default=None, help="experiment budget in FLOPs")
    p.add_argument("--rank-by", choices=["budget", "per_flop", "run"], default="budget")
    p.add_argument("--flops-per-param-token", type=_flops_k, default=6.0, help=FLOPS_HELP)
    p.add_argument("--seed", type=_seed, default=None)
    p.add_argument("--json", action="store_true")


def cmd_design(args: argparse.Namespace) -> int:
    """``bayescale design``: rank candidate runs for the plan at a target budget."""
    fit = _load(args.fit, args)
    table = fit.design(
        args.compute,
        args.candidates,
        args.unique_tokens,
        args.quantity,
        args.outcomes,
        args.seed,
        budget=args.budget,
        rank_by=args.rank_by,
        flops_per_param_token=args.flops_per_param_token,
    )
    for note in table.attrs.get("notes", []):
        print(f"note: {printable(note)}", file=sys.stderr)
    if args.json:
        print(table.to_json(orient="records", indent=2))
        return 0
    print(
        f"candidate runs ranked by expected reduction of the posterior variance of log {args.quantity}_opt "
        f"at C = {args.compute:.3g} FLOPs (rank by {args.rank_by}; ess: effective sample size of the "
        "importance weights as a share of the draws, distrust rows below ~0.05)"
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0
