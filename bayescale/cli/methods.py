"""The methods' commands: ``isoflop``, ``envelope``, ``steps`` and ``compare-methods``."""

from __future__ import annotations

import argparse
from typing import Any

from bayescale.cli.files import (
    METHOD_NAMES,
    _check_out,
    _load_runs,
    _loader_kwargs,
    _method_priors,
    _save_or_keep,
)
from bayescale.cli.options import (
    Subcommands,
    _add_sampler_options,
    _loader_options,
    _out_option,
    _positive_float,
    _priors_option,
    _probability,
    _sampler_kwargs,
    _window,
)
from bayescale.cli.render import (
    _distance_payload,
    _emit,
    _envelope_text,
    _interval_payload,
    _isoflop_text,
    _json,
    _rows_text,
    _steps_text,
    _warn_beyond,
)
from bayescale.errors import BayescaleError
from bayescale.model.likelihoods import CORRELATIONS

#: Help of --bracketed (isoflop and compare-methods).
BRACKETED_HELP = (
    "leave out budgets whose lowest loss is at (within 10%% of) their smallest or largest size "
    "(minimum not bracketed; --no-bracketed keeps them)"
)


def _method_options(p: argparse.ArgumentParser) -> None:
    """The options of a method's fit: --prob, the sampler options with --progress, --json."""
    p.add_argument("--prob", type=_probability, default=0.9)
    _add_sampler_options(
        p, "--seed", "--draws", "--tune", "--chains", "--backend", "--target-accept", "--progress"
    )
    p.add_argument("--json", action="store_true")


def add_isoflop(sub: Subcommands) -> None:
    """Add ``bayescale isoflop`` to the subcommands ``sub``."""
    p = sub.add_parser("isoflop", help="IsoFLOP profiles (Approach 2): exponents a, b and the optimum")
    p.add_argument("runs", help="CSV/Parquet of runs (params, tokens, loss[, compute]) or a bundled name")
    _loader_options(p)
    p.add_argument("--group", default=None, help="the group of runs to fit (when the runs hold several)")
    p.add_argument("--compute", type=_positive_float, default=None, help="budget for the optimum (FLOPs)")
    p.add_argument("--budget-tol", type=float, default=0.1, help="relative gap joining budgets (default 0.1)")
    p.add_argument("--shape", default="skewed", choices=["skewed", "parabola"])
    p.add_argument(
        "--window",
        type=_window,
        default=0.1,
        help="fit each budget on runs within this log loss of its lowest ('none': all runs; default 0.1)",
    )
    p.add_argument(
        "--neighbours",
        type=int,
        default=None,
        help="also keep only runs within this many sizes of each budget's best, and drop budgets "
        "whose best is an end size (Porian et al.'s rule; default: no limit)",
    )
    p.add_argument("--bracketed", action=argparse.BooleanOptionalAction, default=True, help=BRACKETED_HELP)
    _priors_option(p)
    _method_options(p)
    _out_option(p)


def cmd_isoflop(args: argparse.Namespace) -> int:
    """``bayescale isoflop``: one hierarchical fit of the IsoFLOP profiles."""
    from bayescale.methods.isoflop import fit_isoflop

    _check_out(args, args.runs)
    result = fit_isoflop(
        _load_runs(args, args.runs),
        group=args.group,
        budget_tol=args.budget_tol,
        window=args.window,
        neighbours=args.neighbours,
        bracketed=args.bracketed,
        shape=args.shape,
        priors=_method_priors(args),
        **_sampler_kwargs(args),
    )
    _method_output(args, result)
    return 0


def add_envelope(sub: Subcommands) -> None:
    """Add ``bayescale envelope`` to the subcommands ``sub``."""
    p = sub.add_parser(
        "envelope", help="training-curve envelope (Approach 1): exponents a, b and the optimum"
    )
    p.add_argument("curves", help="CSV/Parquet of checkpoints (run, params, tokens, loss) or a bundled name")
    _loader_options(p)
    p.add_argument("--compute", type=_positive_float, default=None, help="budget for the optimum (FLOPs)")
    p.add_argument("--correlation", default="ar1", choices=list(CORRELATIONS), help="within-run residuals")
    _priors_option(p)
    _method_options(p)
    _out_option(p)


def cmd_envelope(args: argparse.Namespace) -> int:
    """``bayescale envelope``: smoothed curves, their envelope, a and b."""
    from bayescale.methods.envelope import fit_envelope

    _check_out(args, args.curves)
    result = fit_envelope(
        _load_runs(args, args.curves, curves=True),
        correlation=args.correlation,
        priors=_method_priors(args),
        **_sampler_kwargs(args),
    )
    _method_output(args, result)
    return 0


def add_steps(sub: Subcommands) -> None:
    """Add ``bayescale steps`` to the subcommands ``sub``."""
    p = sub.add_parser(
        "steps", help="Kaplan's L(N, S_min) and critical batch size B_crit(L) from loss curves"
    )
    p.add_argument(
        "curves", help="CSV/Parquet of checkpoints (run, params, step, tokens, loss) or a bundled name"
    )
    _loader_options(p)
    p.add_argument(
        "--critical-batch",
        default="auto",
        choices=["auto", "yes", "no"],
        help="fit B*, alpha_B: auto (when batch sizes differ), yes (error if they cannot be), no",
    )
    p.add_argument("--correlation", default="ar1", choices=list(CORRELATIONS), help="within-run residuals")
    p.add_argument("--min-step", type=float, default=0.0, help="leave out checkpoints before this step")
    p.add_argument(
        "--compute",
        type=_positive_float,
        default=None,
        help="budget for the compute-optimal model (FLOPs; C_min on Kaplan's frontier when B_crit is fitted)",
    )
    _priors_option(p)
    _method_options(p)
    _out_option(p)


def cmd_steps(args: argparse.Namespace) -> int:
    """``bayescale steps``: Kaplan's L(N, S_min), with B_crit when the batch sizes allow."""
    from bayescale.methods.training_steps import fit_steps

    critical = {"auto": None, "yes": True, "no": False}[args.critical_batch]
    _check_out(args, args.curves)
    result = fit_steps(
        _load_runs(args, args.curves, curves=True),
        critical_batch=critical,
        correlation=args.correlation,
        min_step=args.min_step,
        priors=_method_priors(args),
        **_sampler_kwargs(args),
    )
    _method_output(args, result)
    return 0


def add_compare_methods(sub: Subcommands) -> None:
    """Add ``bayescale compare-methods`` to the subcommands ``sub``."""
    p = sub.add_parser("compare-methods", help="Approaches 1, 2, 3 side by side (Hoffmann et al. Table 2)")
    p.add_argument("data", help="runs or curves: CSV/Parquet or a bundled name")
    _loader_options(p)
    p.add_argument("--compute", type=_positive_float, required=True, help="budget for the optimum (FLOPs)")
    p.add_argument("--group", default=None, help="the group of runs to use")
    p.add_argument(
        "--methods",
        default="envelope,isoflop,parametric",
        help="comma-separated subset of envelope, isoflop, parametric and steps (Kaplan's L(N, S), opt-in)",
    )
    p.add_argument(
        "--bracketed",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"Approach 2: {BRACKETED_HELP}",
    )
    _method_options(p)


def cmd_compare_methods(args: argparse.Namespace) -> int:
    """``bayescale compare-methods``: one row per method with a, b and the optimum."""
    from bayescale.methods.side_by_side import compare_methods

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    kwargs = {k: v for k, v in _sampler_kwargs(args).items() if k not in ("progressbar", "warn")}
    table = compare_methods(
        args.data,
        args.compute,
        group=args.group,
        methods=methods,
        prob=args.prob,
        bracketed=args.bracketed,
        **_loader_kwargs(args),
        **kwargs,
    )
    if args.json:
        records = []
        for rec in table.to_dict("records"):
            out = {k: rec[k] for k in ("method", "approach", "compute", "note") if k in rec}
            if "a_median" in rec and rec["a_median"] == rec["a_median"]:
                out.update({"n_points": int(rec["n_points"]), "seconds": rec["seconds"]})
                out["diagnostics_ok"] = bool(rec["diagnostics_ok"])
                for name in ("a", "b", "params", "tokens"):
                    out[name] = {s: rec[f"{name}_{s}"] for s in ("median", "lower", "upper")}
            records.append(out)
        print(_json({"prob": args.prob, "methods": records}))
        return 0
    print(f"compute-optimal exponents and plan at C = {args.compute:.3g} FLOPs ({args.prob:.0%} intervals)")
    for rec in table.to_dict("records"):
        if "a_median" not in rec or rec["a_median"] != rec["a_median"]:
            print(f"approach {rec['approach']} {rec['method']:<10}: {rec['note']}")
            continue
        print(
            f"approach {rec['approach']} {rec['method']:<10}: a {rec['a_median']:.3f} "
            f"[{rec['a_lower']:.3f}, {rec['a_upper']:.3f}]  b {rec['b_median']:.3f} "
            f"[{rec['b_lower']:.3f}, {rec['b_upper']:.3f}]  N_opt {rec['params_median']:.3g} "
            f"[{rec['params_lower']:.3g}, {rec['params_upper']:.3g}]  D_opt {rec['tokens_median']:.3g}  "
            f"({int(rec['n_points'])} points, {rec['seconds']} s"
            f"{'' if rec['diagnostics_ok'] else ', diagnostics FAILED'})"
            + (f"  {rec['note']}" if rec["note"] else "")
        )
    return 0


def _method_output(args: argparse.Namespace, result: Any) -> None:
    """Print a method's fit (fitted now or loaded), saving it first to ``--out`` when given."""
    from bayescale.cli.curves import curves_text
    from bayescale.methods.io import kind_of

    render = {
        "isoflop": _isoflop_text,
        "envelope": _envelope_text,
        "steps": _steps_text,
        "curves": curves_text,
    }[kind_of(result)]
    payload, text = render(args, result)
    if getattr(args, "out", None) is not None:
        path = _save_or_keep(result, args.out)
        payload["saved_to"] = str(path)
        text += f"\nsaved fit to {path}"
    _emit(args, payload, text)


def _guard_method_plan(table: Any, result: Any) -> None:
    """The extrapolation guard of a parametric fit's plans on a method's plan (in place).

    The span is that of the runs (IsoFLOP) or the curves' checkpoints (envelope, L(N, S)) the
    method was fitted to; curves without a tokens column are left unguarded.
    """
    from bayescale.data.schema import FLOPS_PER_PARAM_TOKEN
    from bayescale.posterior.extrapolation import RunSpan, guard

    runs = getattr(result, "runs", None)
    if runs is None:
        data = getattr(result, "data", None)
        runs = getattr(data, "runs", None) or getattr(data, "curves", None)
    frame = getattr(runs, "frame", None)
    if frame is None or not {"params", "tokens"} <= set(frame.columns):
        return
    n, d = frame["params"].to_numpy(dtype=float), frame["tokens"].to_numpy(dtype=float)
    c = (
        frame["compute"].to_numpy(dtype=float)
        if "compute" in frame.columns
        else FLOPS_PER_PARAM_TOKEN * n * d
    )
    guard(table, RunSpan.of(n, d, c))


def _method_plan(args: argparse.Namespace, result: Any) -> None:
    """``plan --compute`` of a saved IsoFLOP, envelope or L(N, S) fit: the compute-optimal model."""
    from bayescale.methods.io import kind_of

    other = [
        flag
        for flag, given in (
            ("--target-loss", args.target_loss is not None),
            ("--unique-tokens", args.unique_tokens is not None),
            ("--group", args.group is not None),
            ("--flops-per-param-token", args.flops_per_param_token != 6.0),
        )
        if given
    ]
    if other:
        raise BayescaleError(
            f"{', '.join(other)} needs a parametric fit; {str(args.fit)!r} holds "
            f"{METHOD_NAMES[kind_of(result)]}, which plans with --compute only"
        )
    table = result.optimal(args.compute, prob=args.prob, kind=args.kind)
    names = [c[: -len("_median")] for c in table.columns if c.endswith("_median")]
    _guard_method_plan(table, result)
    _warn_beyond(table)
    head = {"prob": args.prob, "kind": args.kind}
    payloads = [
        {
            "compute": float(row["compute"]),
            **head,
            **_interval_payload(row, names),
            **({"distance": _distance_payload(row)} if "compute_multiple" in row.index else {}),
        }
        for _, row in table.iterrows()
    ]
    title = (
        f"compute-optimal model from {METHOD_NAMES[kind_of(result)]} "
        f"({args.prob:.0%} {args.kind.upper()} intervals)"
    )
    _emit(args, payloads[0] if len(payloads) == 1 else payloads, _rows_text(title, table, ["compute"], names))
