"""``bayescale compare`` (laws by PSIS-LOO) and ``bayescale extrapolate`` (held-out large runs)."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from bayescale.cli.files import _load, _load_runs
from bayescale.cli.options import (
    Subcommands,
    _add_sampler_options,
    _fix_option,
    _fixed_values,
    _loader_options,
    _positive_float,
    _sampler_kwargs,
)
from bayescale.cli.plot import check_figure_path, write_figure
from bayescale.cli.render import _emit
from bayescale.errors import BayescaleError, printable
from bayescale.model.likelihoods import Likelihood
from bayescale.posterior.result import finite_or_none

#: The quantities ``--train-below-*`` splits runs by.
SPLITS = ("compute", "params", "tokens", "epochs")


def add_compare(sub: Subcommands) -> None:
    """Add ``bayescale compare`` to the subcommands ``sub``."""
    p = sub.add_parser("compare", help="rank laws on the same runs by PSIS-LOO, with stacking weights")
    p.add_argument(
        "sources", nargs="+", help="one runs file or bundled data set (with --laws), or saved fits"
    )
    p.add_argument("--laws", default=None, help="comma-separated laws to fit, e.g. chinchilla,kaplan")
    _fix_option(p, "with --laws: hold a parameter fixed in every law that has it (repeatable), e.g. E=1.69")
    _add_sampler_options(
        p, "--seed", "--likelihood", "--draws", "--tune", "--chains", "--backend", "--target-accept"
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="refuse (exit 2) when a fit failed its diagnostics or its LOO is unreliable, instead of warning",
    )
    p.add_argument(
        "--verdict",
        action="store_true",
        help="with --laws: also backtest each law on the larger runs, say which law to believe and how "
        "confidently, and set the laws' plans at --budget side by side",
    )
    p.add_argument(
        "--budget", type=_positive_float, default=None, help="with --verdict: compute (FLOPs) to plan at"
    )
    p.add_argument(
        "--unique-tokens", type=_positive_float, default=None, help="with --verdict: unique tokens available"
    )
    p.add_argument(
        "--figure",
        type=Path,
        default=None,
        metavar="OUT",
        help="with --verdict --budget: write the laws' plans side by side to this image (.png, .pdf, .svg)",
    )
    _train_below_options(p, "with --verdict: ")
    p.add_argument("--json", action="store_true")


def _train_below_options(p: argparse.ArgumentParser, prefix: str = "") -> None:
    for by in SPLITS:
        p.add_argument(
            f"--train-below-{by}",
            type=_positive_float,
            default=None,
            metavar="X",
            help=f"{prefix}train on runs with {by} below X, test on the rest",
        )


def _split_given(args: argparse.Namespace, required: bool) -> tuple[str, float | None]:
    """The one ``--train-below-*`` given: (by, threshold); ("compute", None) when optional and absent."""
    given = {by: getattr(args, f"train_below_{by}") for by in SPLITS}
    given = {by: value for by, value in given.items() if value is not None}
    if len(given) > 1 or (required and not given):
        raise BayescaleError(
            f"give {'exactly' if required else 'at most'} one of "
            + ", ".join(f"--train-below-{by}" for by in SPLITS)
        )
    return next(iter(given.items())) if given else ("compute", None)


def _fixed_per_law(
    pairs: list[tuple[str, float]], laws: list[str], likelihood: Likelihood | None
) -> dict[str, dict[str, float]]:
    """``--fix`` values by law: each law holds the fixed parameters it has; every one must be someone's."""
    from bayescale.model.laws import get_law
    from bayescale.model.pymc_model import model_parameters

    fixed = _fixed_values(pairs)
    names = {law: {p.name for p in model_parameters(get_law(law), likelihood or "student_t")} for law in laws}
    unknown = sorted(n for n in fixed if not any(n in have for have in names.values()))
    if unknown:
        raise BayescaleError(f"--fix {unknown}: no law of {laws} has such a parameter")
    return {law: {n: v for n, v in fixed.items() if n in names[law]} for law in laws}


def cmd_compare(args: argparse.Namespace) -> int:
    """``bayescale compare``: fit each law (or load saved fits) and rank them by PSIS-LOO."""
    from bayescale.methods.parametric import fit_parametric
    from bayescale.questions.compare import LooWarning, compare

    if args.figure is not None:  # refused before any fit, not after
        if not args.verdict or args.budget is None:
            raise BayescaleError("--figure draws the laws' plans of --verdict: give --verdict --budget C")
        check_figure_path(args.figure)
    if args.laws is not None:
        if len(args.sources) != 1:
            raise BayescaleError(f"with --laws give one runs file or data set, got {len(args.sources)}")
        laws = [name.strip() for name in args.laws.split(",") if name.strip()]
        fixed = _fixed_per_law(args.fix, laws, args.likelihood)
        fits = {
            law: fit_parametric(args.sources[0], law=law, fix=fixed[law], **_sampler_kwargs(args))
            for law in laws
        }
    else:
        if args.fix:
            raise BayescaleError("--fix goes with --laws (saved fits are compared as they were fitted)")
        if not all(Path(s).suffix == ".nc" for s in args.sources):
            raise BayescaleError("give --laws to fit runs, or only saved fits (.nc files) to compare them")
        loaded = [_load(Path(s)) for s in args.sources]
        fits = {f.law.name: f for f in loaded}
        if len(fits) != len(loaded):
            fits = {Path(s).stem: f for s, f in zip(args.sources, loaded, strict=True)}
    if args.verdict:
        return _verdict(args, fits)
    if args.budget is not None or args.unique_tokens is not None or _split_given(args, False)[1] is not None:
        raise BayescaleError("--budget, --unique-tokens and --train-below-* go with --verdict")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LooWarning)
        table = compare(fits, strict=args.strict)
    for w in caught:
        if issubclass(w.category, LooWarning):
            print(f"warning: {printable(str(w.message))}", file=sys.stderr)
    payload = [
        {
            "law": str(law),
            "elpd_loo": float(row["elpd_loo"]),
            "se": float(row["se"]),
            "elpd_diff": float(row["elpd_diff"]),
            "dse": float(row["dse"]),
            "p_loo": float(row["p_loo"]),
            "weight": float(row["weight"]),
            "pareto_k_max": float(row["pareto_k_max"]),
            "influential_runs": list(row["influential_runs"]),
            "n_parameters": int(row["n_parameters"]),
            "diagnostics_ok": bool(row["diagnostics_ok"]),
            "reliable": bool(row["reliable"]),
            "checks": str(row["checks"]),
        }
        for law, row in table.iterrows()
    ]
    lines = [
        f"{'law':<18} {'elpd_loo':>10} {'se':>7} {'elpd_diff':>10} {'dse':>7} {'weight':>7} {'max k':>6} "
        f"{'p_loo':>6} {'trust':>5}"
    ]
    for r in payload:
        lines.append(
            f"{r['law']:<18} {r['elpd_loo']:>10.1f} {r['se']:>7.1f} {r['elpd_diff']:>10.1f} "
            f"{r['dse']:>7.1f} {r['weight']:>7.3f} {r['pareto_k_max']:>6.2f} "
            f"{r['p_loo']:>6.1f} {'yes' if r['reliable'] else 'NO':>5}"
        )
    for r in payload:
        if not r["reliable"]:
            lines.append(f"not reliable: {r['law']}: {r['checks']}")
    _emit(args, payload, "\n".join(lines))
    return 0


def _verdict(args: argparse.Namespace, fits: dict) -> int:
    """``compare --verdict``: the laws' LOO, backtest and plans, and which to believe."""
    from bayescale.checks.verdict import verdict

    if args.laws is None:
        raise BayescaleError("--verdict needs --laws and a runs file (the backtest refits each law)")
    by, threshold = _split_given(args, False)
    fixed = _fixed_per_law(args.fix, list(fits), args.likelihood)
    kwargs = _sampler_kwargs(args)
    if len({tuple(sorted(v.items())) for v in fixed.values()}) > 1:
        # One set of keywords serves every backtest fit: only a value every law has can be fixed there.
        raise BayescaleError("with --verdict, --fix only parameters every law has")
    result = verdict(
        next(iter(fits.values())).runs,  # the runs every law was fitted to
        fits,
        budget=args.budget,
        unique_tokens=args.unique_tokens,
        by=by,
        threshold=threshold,
        fix=next(iter(fixed.values())),
        **kwargs,
    )
    distrusted = [r for r in result.reasons if "not to be trusted" in r]
    if args.strict and distrusted:
        raise BayescaleError("cannot give a verdict: " + "; ".join(distrusted))
    _emit(args, result.to_dict(), str(result))
    if args.figure is not None:
        from bayescale.plots import plot_plans

        write_figure(plot_plans(result), args.figure)
        print(f"wrote the laws' plans to {args.figure}", file=sys.stderr if args.json else sys.stdout)
    return 0


def add_extrapolate(sub: Subcommands) -> None:
    """Add ``bayescale extrapolate`` to the subcommands ``sub``."""
    p = sub.add_parser("extrapolate", help="fit a law on small runs, score its predictions of the large ones")
    p.add_argument("runs", help="CSV/Parquet file of runs, or a bundled data set name")
    _loader_options(p)
    p.add_argument("--law", default="chinchilla")
    _fix_option(p, "hold a parameter of the law fixed (repeatable), e.g. E=1.69")
    _train_below_options(p)
    _add_sampler_options(
        p, "--seed", "--likelihood", "--draws", "--tune", "--chains", "--backend", "--target-accept"
    )
    p.add_argument("--json", action="store_true")


def cmd_extrapolate(args: argparse.Namespace) -> int:
    """``bayescale extrapolate``: fit below a threshold, score the held-out runs."""
    from bayescale.checks.extrapolation import extrapolate

    by, threshold = _split_given(args, True)
    assert threshold is not None  # required above
    fixed = _fixed_per_law(args.fix, [args.law], args.likelihood)[args.law]
    runs = _load_runs(args, args.runs)
    kwargs = {**_sampler_kwargs(args), **({"fix": fixed} if fixed else {})}
    result = extrapolate(runs, args.law, threshold=threshold, by=by, **kwargs)
    table = result.score_table()
    first = table.iloc[0]
    payload: dict[str, object] = {key: first[key] for key in ("law", "by", "threshold", "n_train", "n_test")}
    payload["n_train"], payload["n_test"] = int(first["n_train"]), int(first["n_test"])
    payload["fit_ok"] = bool(result.fit.diagnostics.get("ok", True))
    if not payload["fit_ok"]:
        problems = [str(p) for p in result.fit.diagnostics.get("problems", [])]
        payload["fit_problems"] = problems
        print(
            f"warning: the fit below the threshold failed its diagnostics; its scores describe a sampling "
            f"accident, not the law: {'; '.join(problems)}",
            file=sys.stderr,
        )
    keys = (
        "coverage",
        "coverage_50",
        "elpd_test",
        "elpd_test_per_run",
        "median_abs_pct_error",
        "interval_score",
    )
    # The flat keys are the law alone's (labelled); "scores" has every predictive's.
    payload["predictive"] = str(table.index[0])
    payload.update({key: finite_or_none(first[key]) for key in keys})
    payload["scores"] = {
        str(label): {key: finite_or_none(row[key]) for key in keys} for label, row in table.iterrows()
    }
    payload["runs"] = json.loads(result.runs.to_json(orient="records"))
    if result.averaged is not None:
        payload["runs_averaged"] = json.loads(result.averaged.to_json(orient="records"))
    lines = [
        f"law {first['law']} fit on {first['n_train']} runs with {by} < {threshold:.3g}, "
        f"tested on {first['n_test']}; each row scored on its own predictive:",
        f"  {'predictive':<10} {'cover 90%':>9} {'cover 50%':>9} {'log dens':>9} {'per run':>8} "
        f"{'med |err|%':>10} {'int score':>9}",
    ]
    for label, row in table.iterrows():
        lines.append(
            f"  {label:<10} {row['coverage']:>9.2f} {row['coverage_50']:>9.2f} {row['elpd_test']:>9.2f} "
            f"{row['elpd_test_per_run']:>8.3f} {row['median_abs_pct_error']:>10.2f} "
            f"{row['interval_score']:>9.4f}"
        )
    if result.averaged is not None:
        lines.append(
            "  'averaged' is what predict/plan answer by default (beyond the training runs, the law "
            "mixed with the variant law); 'law alone' is the fitted law's own predictive"
        )
    text = "\n".join(lines)
    _emit(args, payload, text)
    return 0
