"""The ``bayescale`` command line: a thin client of the library.

Every subcommand prints a readable table, or JSON with ``--json``. A user
mistake prints ``error: ...`` on stderr and exits with status 2, without a
traceback (``--debug`` shows one).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bayescale.errors import BayescaleError

EXIT_USER_ERROR = 2
EXIT_DIAGNOSTICS = 3

#: Figure kinds of ``bayescale plot`` and the function drawing each.
PLOTS = {
    "frontier": "plot_frontier",
    "allocation": "plot_allocation",
    "loss": "plot_loss",
    "loss-params": "plot_loss",
    "loss-tokens": "plot_loss",
    "isoflop": "plot_isoflop",
    "pair": "plot_pair",
    "prior-posterior": "plot_prior_posterior",
    "residuals": "plot_residuals",
    "ppc": "plot_ppc",
    "epochs": "plot_epochs",
    "repeated-value": "plot_repeated_value",
}
#: Keyword arguments of the kinds that share a function.
PLOT_OPTIONS: dict[str, dict[str, Any]] = {"loss-params": {"x": "params"}, "loss-tokens": {"x": "tokens"}}


def _fix_pair(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"value of {name!r} is not a number: {value!r}") from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def _probability(text: str) -> float:
    value = _positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be a probability in (0, 1), got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``bayescale`` command."""
    parser = argparse.ArgumentParser(
        prog="bayescale", description="Bayesian fitting of language-model scaling laws."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fit", help="fit a law to runs and save the posterior")
    p.add_argument("runs", help="CSV/Parquet file of runs, or a bundled data set name")
    p.add_argument("--law", default="chinchilla", help="law name (default: chinchilla)")
    p.add_argument("--out", required=True, type=Path, help="where to write the fit (NetCDF)")
    p.add_argument("--seed", type=int, default=None, help="random seed")
    p.add_argument(
        "--fix",
        action="append",
        type=_fix_pair,
        default=[],
        metavar="NAME=VALUE",
        help="hold a parameter fixed (repeatable)",
    )
    p.add_argument("--priors", type=Path, default=None, help="JSON or TOML file of priors by parameter")
    p.add_argument("--likelihood", default="student_t", choices=["student_t", "normal"])
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--backend", default="auto", choices=["auto", "numpyro", "nutpie", "pymc"])
    p.add_argument("--strict", action="store_true", help="exit non-zero when diagnostics fail")
    p.add_argument("--progress", action="store_true", help="show the sampler's progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    p = sub.add_parser("summary", help="posterior table and diagnostics of a saved fit")
    p.add_argument("fit", type=Path)
    p.add_argument("--prob", type=_probability, default=0.9)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("plan", help="compute-optimal allocation at a budget")
    p.add_argument("fit", type=Path)
    p.add_argument("--compute", type=_positive_float, required=True, help="budget in FLOPs")
    p.add_argument("--prob", type=_probability, default=0.9)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("predict", help="loss at new (params, tokens)")
    p.add_argument("fit", type=Path)
    p.add_argument("--params", type=_positive_float, help="model parameters N")
    p.add_argument("--tokens", type=_positive_float, help="training tokens D")
    p.add_argument("--queries", type=Path, help="CSV with columns params, tokens (one prediction per row)")
    p.add_argument("--prob", type=_probability, default=0.9)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("plot", help="draw a standard figure of a saved fit")
    p.add_argument("fit", type=Path)
    p.add_argument("kind", choices=sorted(PLOTS), help="which figure")
    p.add_argument("--out", type=Path, required=True, help="image file to write (.png, .pdf, .svg)")

    p = sub.add_parser("report", help="self-contained HTML report of a saved fit")
    p.add_argument("fit", type=Path)
    p.add_argument("--out", type=Path, required=True, help="HTML file to write")
    p.add_argument(
        "--compute",
        type=_positive_float,
        action="append",
        default=None,
        help="budget in FLOPs to plan (repeatable; default 10x-1000x the largest run)",
    )
    p.add_argument("--prob", type=_probability, default=0.9)

    p = sub.add_parser("laws", help="list the laws, their parameters and default priors")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("datasets", help="list the bundled data sets")
    p.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (BayescaleError, FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR


def _emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    print(json.dumps(payload, indent=2) if args.json else text)


def _summary_payload(fit: Any, prob: float) -> dict[str, Any]:
    table = fit.summary(prob)
    params = {
        name: {
            "median": row["median"],
            "lower": row["lower"],
            "upper": row["upper"],
            "r_hat": None if math.isnan(row["r_hat"]) else row["r_hat"],
            "ess_bulk": None if math.isnan(row["ess_bulk"]) else row["ess_bulk"],
            "fixed": bool(row["fixed"]),
        }
        for name, row in table.iterrows()
    }
    diag = fit.diagnostics
    return {
        "law": fit.law.name,
        "n_runs": len(fit.runs),
        "prob": prob,
        "parameters": params,
        "diagnostics": {
            "divergences": diag["divergences"],
            "max_r_hat": diag["max_r_hat"],
            "min_ess_bulk": diag["min_ess_bulk"],
            "ok": diag["ok"],
            "problems": diag["problems"],
        },
    }


def _summary_text(payload: dict[str, Any]) -> str:
    prob = payload["prob"]
    lines = [
        f"law {payload['law']} on {payload['n_runs']} runs; {prob:.0%} credible intervals",
        f"{'parameter':<10} {'median':>12} {'lower':>12} {'upper':>12} {'r_hat':>7} {'ess_bulk':>9}",
    ]
    for name, p in payload["parameters"].items():
        r_hat = "fixed" if p["fixed"] else f"{p['r_hat']:.3f}"
        ess = "" if p["fixed"] else f"{p['ess_bulk']:.0f}"
        lines.append(
            f"{name:<10} {p['median']:>12.5g} {p['lower']:>12.5g} {p['upper']:>12.5g} {r_hat:>7} {ess:>9}"
        )
    d = payload["diagnostics"]
    lines.append(
        f"diagnostics: {d['divergences']} divergences, max r_hat {d['max_r_hat']:.3f}, "
        f"min bulk ESS {d['min_ess_bulk']:.0f} -> {'ok' if d['ok'] else 'FAILED'}"
    )
    lines += [f"  problem: {p}" for p in d["problems"]]
    return "\n".join(lines)


def _intervals_text(title: str, intervals: dict[str, dict[str, float]]) -> str:
    lines = [title, f"{'quantity':<18} {'median':>12} {'lower':>12} {'upper':>12}"]
    for name, iv in intervals.items():
        lines.append(f"{name:<18} {iv['median']:>12.5g} {iv['lower']:>12.5g} {iv['upper']:>12.5g}")
    return "\n".join(lines)


def cmd_fit(args: argparse.Namespace) -> int:
    """``bayescale fit``: fit, save, print the summary."""
    import warnings

    from bayescale.diagnostics import FitWarning
    from bayescale.fit import fit
    from bayescale.priors import read_priors_file

    if not args.out.parent.exists():
        raise BayescaleError(f"cannot save the fit: folder {str(args.out.parent)!r} does not exist")
    priors = read_priors_file(args.priors) if args.priors else None
    fixed = dict(args.fix)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)  # reported in the summary below
        result = fit(
            args.runs,
            law=args.law,
            priors=priors,
            fix=fixed,
            likelihood=args.likelihood,
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            backend=args.backend,
            random_seed=args.seed,
            progressbar=args.progress,
        )
    path = result.save(args.out)
    payload = _summary_payload(result, 0.9)
    payload["saved_to"] = str(path)
    _emit(args, payload, _summary_text(payload) + f"\nsaved fit to {path}")
    if args.strict and not result.diagnostics["ok"]:
        print("error: the fit failed its diagnostics (--strict)", file=sys.stderr)
        return EXIT_DIAGNOSTICS
    return 0


def _load(path: Path) -> Any:
    import warnings

    from bayescale.diagnostics import FitWarning
    from bayescale.io import load_fit

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        fit = load_fit(path)
    if not fit.diagnostics["ok"]:
        print(
            "warning: this fit failed its diagnostics: " + "; ".join(fit.diagnostics["problems"]),
            file=sys.stderr,
        )
    return fit


def cmd_summary(args: argparse.Namespace) -> int:
    """``bayescale summary``."""
    payload = _summary_payload(_load(args.fit), args.prob)
    _emit(args, payload, _summary_text(payload))
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """``bayescale plan``: compute-optimal allocation at a budget."""
    from bayescale.intervals import row_to_intervals

    fit = _load(args.fit)
    row = fit.optimal(args.compute, prob=args.prob).iloc[0]
    quantities = ["params", "tokens", "tokens_per_param", "loss"]
    payload = {"compute": args.compute, "prob": args.prob, **row_to_intervals(row, quantities)}
    title = f"compute-optimal plan at C = {args.compute:.3g} FLOPs ({args.prob:.0%} intervals)"
    _emit(args, payload, _intervals_text(title, row_to_intervals(row, quantities)))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """``bayescale predict``: loss at one (N, D) or at every row of a CSV."""
    from bayescale.intervals import row_to_intervals
    from bayescale.runs import canonical_columns, read_table

    fit = _load(args.fit)
    if args.queries is not None:
        if args.params is not None or args.tokens is not None:
            raise BayescaleError("give either --queries or --params/--tokens, not both")
        if not args.queries.is_file():
            raise BayescaleError(f"queries file {str(args.queries)!r} does not exist")
        frame = read_table(args.queries)
        frame = frame.rename(columns=canonical_columns(frame.columns))
        missing = [c for c in ("params", "tokens") if c not in frame.columns]
        if missing:
            raise BayescaleError(f"queries file needs column(s) {missing}; found {list(frame.columns)}")
        table = fit.predict(frame["params"], frame["tokens"], prob=args.prob, random_seed=args.seed)
        if args.json:
            print(table.to_json(orient="records", indent=2))
        else:
            print(table.to_string(index=False, float_format=lambda v: f"{v:.5g}"))
        return 0
    if args.params is None or args.tokens is None:
        raise BayescaleError("give --params and --tokens (or --queries FILE)")
    row = fit.predict(args.params, args.tokens, prob=args.prob, random_seed=args.seed).iloc[0]
    intervals = row_to_intervals(row, ["loss", "loss_predictive"])
    payload = {"params": args.params, "tokens": args.tokens, "prob": args.prob, **intervals}
    title = f"loss at N = {args.params:.3g}, D = {args.tokens:.3g} ({args.prob:.0%} intervals)"
    _emit(args, payload, _intervals_text(title, intervals))
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    """``bayescale datasets``: bundled data sets, one line each."""
    from bayescale import datasets

    table = datasets.describe()
    if args.json:
        print(table.to_json(orient="records", indent=2))
    else:
        for _, row in table.iterrows():
            print(f"{row['name']:<16} {row['description']}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """``bayescale plot``: write one standard figure."""
    import matplotlib

    matplotlib.use("Agg")
    from bayescale import plots

    fit = _load(args.fit)
    if not args.out.parent.exists():
        raise BayescaleError(f"folder {str(args.out.parent)!r} does not exist")
    drawn = getattr(plots, PLOTS[args.kind])(fit, **PLOT_OPTIONS.get(args.kind, {}))
    figure = drawn if hasattr(drawn, "savefig") else drawn.figure  # multi-panel kinds return a Figure
    figure.savefig(args.out, dpi=120)
    print(f"wrote {args.kind} figure to {args.out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``bayescale report``: write the self-contained HTML report."""
    import matplotlib

    matplotlib.use("Agg")
    from bayescale.report import write_report

    fit = _load(args.fit)
    path = write_report(fit, args.out, compute=args.compute, prob=args.prob)
    print(f"wrote report to {path}")
    return 0


def cmd_laws(args: argparse.Namespace) -> int:
    """``bayescale laws``: each law with its formula, parameters and default priors."""
    from bayescale.laws import get_law, list_laws

    described = [get_law(name).describe() for name in list_laws()]
    if args.json:
        print(json.dumps(described, indent=2))
        return 0
    for info in described:
        print(f"{info['name']}: {info['formula']}  [{info['reference']}]")
        print(f"  needs columns: {', '.join(info['required_columns'])}")
        for name, spec in info["parameters"].items():
            prior = {k: v for k, v in spec["prior"].items() if k != "distribution"}
            args_text = ", ".join(f"{k}={v:g}" for k, v in prior.items())
            print(f"  {name:<9} {spec['prior']['distribution']}({args_text}): {spec['reason']}")
    return 0


COMMANDS = {
    "laws": cmd_laws,
    "plot": cmd_plot,
    "report": cmd_report,
    "fit": cmd_fit,
    "summary": cmd_summary,
    "plan": cmd_plan,
    "predict": cmd_predict,
    "datasets": cmd_datasets,
}


if __name__ == "__main__":
    sys.exit(main())
