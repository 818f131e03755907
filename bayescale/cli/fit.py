"""``bayescale fit`` and ``bayescale summary``: fit a law to runs and save it; show a saved fit."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

from bayescale.cli.exits import EXIT_DIAGNOSTICS
from bayescale.cli.files import _load, _load_runs, _refuse_input_as_output, _save_or_keep
from bayescale.cli.methods import _method_output
from bayescale.cli.options import (
    Subcommands,
    _add_sampler_options,
    _fix_option,
    _fixed_values,
    _loader_options,
    _positive_float,
    _priors_option,
    _probability,
    _sampler_kwargs,
)
from bayescale.cli.render import _emit, _summary_text
from bayescale.data.checkpoints import CHECKPOINT_POLICIES
from bayescale.errors import BayescaleError
from bayescale.inference.diagnostics import FitWarning

#: Sampler backends of ``bayescale fit``.
FIT_BACKENDS = ["auto", "jax", "numpyro", "nutpie", "pymc"]


def add_fit(sub: Subcommands) -> None:
    """Add ``bayescale fit`` to the subcommands ``sub``."""
    p = sub.add_parser("fit", help="fit a law to runs and save the posterior")
    p.add_argument("runs", help="CSV/Parquet file of runs, or a bundled data set name")
    _loader_options(p)
    p.add_argument("--law", default="chinchilla", help="law name (default: chinchilla)")
    p.add_argument("--out", required=True, type=Path, help="where to write the fit (NetCDF)")
    _add_sampler_options(p, "--seed")
    _fix_option(p)
    _priors_option(p)
    p.add_argument(
        "--priors-from",
        default=None,
        metavar="SET",
        help="informed priors centred on a published fit or learnt from public ladders (`bayescale laws` "
        "lists the sets; a chinchilla ladder of 3-7 runs with no priors of its own gets published-ladders); "
        "--priors entries override it",
    )
    p.add_argument(
        "--widen",
        type=_positive_float,
        default=None,
        help="factor on the standard errors of --priors-from (default: the set's own, 2 for a published "
        "fit, 1 for published-ladders)",
    )
    p.add_argument(
        "--prior-params",
        default=None,
        metavar="A,B,...",
        help="borrow only these parameters from --priors-from (e.g. A,B,alpha_N,alpha_D: E is left out)",
    )
    _add_sampler_options(
        p,
        "--likelihood",
        "--draws",
        "--tune",
        "--chains",
        "--backend",
        "--target-accept",
        backends=FIT_BACKENDS,
    )
    p.add_argument("--strict", action="store_true", help="exit non-zero when diagnostics fail")
    p.add_argument(
        "--checkpoints",
        choices=CHECKPOINT_POLICIES,
        default=CHECKPOINT_POLICIES[0],
        help="which checkpoints of each run (rows sharing a 'run') to fit: end-of-decay (default; with an "
        "'lr' column, from the run's lr peak on with lr within 1.1x of the run's last), after-warmup (from "
        "10%% of the run's tokens and its lr peak on) or all; rows left out are counted in a warning",
    )
    p.add_argument(
        "--single-law",
        action="store_true",
        help="do not fit and save the second law that answers beyond the runs are blended with "
        "(faster; predict and plan then fit it on first use unless given --single-law too)",
    )
    _add_sampler_options(p, "--progress", progress="show the fit's stages on stderr (a bar on long fits)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def cmd_fit(args: argparse.Namespace) -> int:
    """``bayescale fit``: fit, save, print the summary."""
    from bayescale.methods.io import check_writable
    from bayescale.methods.parametric import fit_parametric
    from bayescale.model.prior_sets import published_priors
    from bayescale.model.priors import read_priors_file

    if not args.out.parent.exists():
        raise BayescaleError(f"cannot save the fit: folder {str(args.out.parent)!r} does not exist")
    _refuse_input_as_output(args.out, [args.runs, args.priors])
    check_writable(args.out)  # before sampling: a fit must not be lost for want of a folder
    fixed = _fixed_values(args.fix)
    priors = {}
    if args.priors_from is not None:
        chosen = None if args.prior_params is None else [p.strip() for p in args.prior_params.split(",")]
        published = published_priors(args.priors_from, widen=args.widen, parameters=chosen)
        priors.update({k: v for k, v in published.items() if k not in fixed})
    elif args.widen is not None:
        raise BayescaleError("--widen goes with --priors-from")
    elif args.prior_params is not None:
        raise BayescaleError("--prior-params goes with --priors-from")
    if args.priors:
        given = read_priors_file(args.priors)
        clash = sorted(set(given) & set(fixed))
        if clash:
            raise BayescaleError(
                f"the priors file gives a prior for {clash}, fixed by --fix; a fixed parameter has no prior"
            )
        priors.update(given)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)  # reported in the summary below
        runs = _load_runs(args, args.runs)
        note_long_fit(len(runs), _sampler_kwargs(args)["sampler"])
        result = fit_parametric(
            runs,
            law=args.law,
            priors=priors,
            fix=fixed,
            checkpoints=args.checkpoints,
            **_sampler_kwargs(args, warn=True),
        )
    # The second law answers beyond the runs are blended with is fitted once, here, and saved.
    path = _save_or_keep(result, args.out, variant=not args.single_law)
    payload = result.to_dict(0.9)
    payload["saved_to"] = str(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        payload["caveats"] = result.caveats(fit_variant=False)  # the second law is fitted by now
    for caveat in payload["caveats"]:
        print(f"warning: {caveat}", file=sys.stderr)
    _emit(args, payload, _summary_text(payload) + f"\nsaved fit to {path}")
    if args.strict and not result.diagnostics["ok"]:
        print("error: the fit failed its diagnostics (--strict)", file=sys.stderr)
        return EXIT_DIAGNOSTICS
    return 0


#: CPU seconds per run, per iteration (draw or tune) and per chain of the sampler: 44 s for 1,000,000
#: runs x 100 iterations x 1 chain (benchmarks/results/scale_1e6_runs.txt). A rough guide, not a promise.
SECONDS_PER_RUN_ITERATION = 4.4e-7
#: A fit expected to take longer than this many seconds is announced before it starts.
LONG_FIT_SECONDS = 60.0


def note_long_fit(n_runs: int, sampler: dict[str, Any]) -> float:
    """Print a note on stderr before a fit expected to take long; return the estimate in seconds.

    The sampler evaluates the law on every run at each of its ~10-30 leapfrog steps per
    iteration, so the time grows with runs x (draws + tune) x chains.
    """
    from bayescale.inference.sampling import SAMPLER_DEFAULTS

    settings = {**SAMPLER_DEFAULTS, **sampler}
    iterations = int(settings["draws"]) + int(settings["tune"])
    estimate = SECONDS_PER_RUN_ITERATION * n_runs * iterations * int(settings["chains"])
    if estimate > LONG_FIT_SECONDS:
        print(
            f"note: {n_runs} runs x {iterations} iterations x {settings['chains']} chains: this fit may take "
            f"{estimate / 60:.0f} min or more on a quiet machine (fewer --draws/--tune, or --best-of/--where "
            "to keep fewer runs, shorten it)",
            file=sys.stderr,
        )
    return estimate


def add_summary(sub: Subcommands) -> None:
    """Add ``bayescale summary`` to the subcommands ``sub``."""
    p = sub.add_parser("summary", help="posterior table and diagnostics of a saved fit")
    p.add_argument("--strict", action="store_true", help="exit non-zero when the fit failed its diagnostics")
    p.add_argument("fit", type=Path)
    p.add_argument("--prob", type=_probability, default=0.9)
    p.add_argument("--json", action="store_true")


def cmd_summary(args: argparse.Namespace) -> int:
    """``bayescale summary``: of a parametric fit, or of a saved IsoFLOP, envelope or L(N, S) fit."""
    fit = _load(args.fit, args, methods=True)
    if type(fit).__name__ != "Fit":
        _method_output(args, fit)
        return 0
    payload = fit.to_dict(args.prob)
    _emit(args, payload, _summary_text(payload))
    return 0
