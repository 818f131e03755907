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
    _loader_options,
    _positive_float,
    _sampler_kwargs,
)
from bayescale.cli.render import _emit
from bayescale.errors import BayescaleError, printable
from bayescale.posterior.result import finite_or_none


def add_compare(sub: Subcommands) -> None:
    """Add ``bayescale compare`` to the subcommands ``sub``."""
    p = sub.add_parser("compare", help="rank laws on the same runs by PSIS-LOO, with stacking weights")
    p.add_argument(
        "sources", nargs="+", help="one runs file or bundled data set (with --laws), or saved fits"
    )
    p.add_argument("--laws", default=None, help="comma-separated laws to fit, e.g. chinchilla,kaplan")
    _add_sampler_options(
        p, "--seed", "--likelihood", "--draws", "--tune", "--chains", "--backend", "--target-accept"
    )
    p.add_argument("--json", action="store_true")


def cmd_compare(args: argparse.Namespace) -> int:
    """``bayescale compare``: fit each law (or load saved fits) and rank them by PSIS-LOO."""
    from bayescale.methods.parametric import fit_parametric
    from bayescale.questions.compare import LooWarning, compare

    if args.laws is not None:
        if len(args.sources) != 1:
            raise BayescaleError(f"with --laws give one runs file or data set, got {len(args.sources)}")
        laws = [name.strip() for name in args.laws.split(",") if name.strip()]
        fits = {law: fit_parametric(args.sources[0], law=law, **_sampler_kwargs(args)) for law in laws}
    else:
        if not all(Path(s).suffix == ".nc" for s in args.sources):
            raise BayescaleError("give --laws to fit runs, or only saved fits (.nc files) to compare them")
        loaded = [_load(Path(s)) for s in args.sources]
        fits = {f.law.name: f for f in loaded}
        if len(fits) != len(loaded):
            fits = {Path(s).stem: f for s, f in zip(args.sources, loaded, strict=True)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LooWarning)
        table = compare(fits)
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
        }
        for law, row in table.iterrows()
    ]
    lines = [
        f"{'law':<18} {'elpd_loo':>10} {'se':>7} {'elpd_diff':>10} {'dse':>7} {'weight':>7} {'max k':>6}"
    ]
    for r in payload:
        lines.append(
            f"{r['law']:<18} {r['elpd_loo']:>10.1f} {r['se']:>7.1f} {r['elpd_diff']:>10.1f} "
            f"{r['dse']:>7.1f} {r['weight']:>7.3f} {r['pareto_k_max']:>6.2f}"
        )
    _emit(args, payload, "\n".join(lines))
    return 0


def add_extrapolate(sub: Subcommands) -> None:
    """Add ``bayescale extrapolate`` to the subcommands ``sub``."""
    p = sub.add_parser("extrapolate", help="fit a law on small runs, score its predictions of the large ones")
    p.add_argument("runs", help="CSV/Parquet file of runs, or a bundled data set name")
    _loader_options(p)
    p.add_argument("--law", default="chinchilla")
    for by in ("compute", "params", "tokens", "epochs"):
        p.add_argument(
            f"--train-below-{by}",
            type=_positive_float,
            default=None,
            metavar="X",
            help=f"train on runs with {by} below X, test on the rest",
        )
    _add_sampler_options(
        p, "--seed", "--likelihood", "--draws", "--tune", "--chains", "--backend", "--target-accept"
    )
    p.add_argument("--json", action="store_true")


def cmd_extrapolate(args: argparse.Namespace) -> int:
    """``bayescale extrapolate``: fit below a threshold, score the held-out runs."""
    from bayescale.checks.extrapolation import extrapolate

    given = {by: getattr(args, f"train_below_{by}") for by in ("compute", "params", "tokens", "epochs")}
    given = {by: value for by, value in given.items() if value is not None}
    if len(given) != 1:
        raise BayescaleError(
            "give exactly one of --train-below-compute, --train-below-params, --train-below-tokens, "
            "--train-below-epochs"
        )
    ((by, threshold),) = given.items()
    runs = _load_runs(args, args.runs)
    result = extrapolate(runs, args.law, threshold=threshold, by=by, **_sampler_kwargs(args))
    scores = result.scores
    payload = {key: scores[key] for key in ("law", "by", "threshold", "n_train", "n_test")}
    for key in ("coverage", "coverage_50", "elpd_test", "elpd_test_per_run", "median_abs_pct_error"):
        payload[key] = finite_or_none(scores[key])
    payload["runs"] = json.loads(result.runs.to_json(orient="records"))
    s = scores
    text = "\n".join(
        [
            f"law {s['law']} fit on {s['n_train']} runs with {by} < {threshold:.3g}, "
            f"tested on {s['n_test']}:",
            f"  coverage of 90% predictive interval {s['coverage']:.2f}, of 50% {s['coverage_50']:.2f}",
            f"  held-out log predictive density {s['elpd_test']:.2f} ({s['elpd_test_per_run']:.3f} per run)",
            f"  median absolute error of the predictive median {s['median_abs_pct_error']:.2f}%",
        ]
    )
    _emit(args, payload, text)
    return 0
