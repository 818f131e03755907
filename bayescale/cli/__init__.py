"""The ``bayescale`` command line: a thin client of the library.

Every subcommand prints a readable table, or JSON with ``--json``. A user
mistake prints ``error: ...`` on stderr and exits with status 2, without a
traceback (``--debug`` shows one).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bayescale.cli.exits import (
    EXIT_BROKEN_PIPE,
    EXIT_DIAGNOSTICS,
    EXIT_INTERRUPTED,
    EXIT_USER_ERROR,
    _one_line,
)
from bayescale.cli.files import (
    METHOD_NAMES,
    _check_out,
    _load,
    _load_runs,
    _refuse_input_as_output,
    _save_or_keep,
)
from bayescale.cli.options import (
    FLOPS_HELP,
    _add_sampler_options,
    _fix_pair,
    _flops_k,
    _group_option,
    _loader_options,
    _out_option,
    _Parser,
    _plan_tuple,
    _planning_options,
    _positive_float,
    _positive_int,
    _probability,
    _sampler_kwargs,
    _seed,
    _window,
)
from bayescale.cli.render import (
    _distance_payload,
    _emit,
    _envelope_text,
    _finite_or_none,
    _interval_payload,
    _intervals_text,
    _isoflop_text,
    _json,
    _rows_text,
    _steps_text,
    _summary_payload,
    _summary_text,
    _warn_beyond,
)
from bayescale.errors import BayescaleError, RunsWarning
from bayescale.inference.diagnostics import FitWarning
from bayescale.posterior.extrapolation import VARIANT_LAW

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
#: Help of --bracketed (isoflop and compare-methods).
BRACKETED_HELP = (
    "leave out budgets whose lowest loss is at (within 10%% of) their smallest or largest size "
    "(minimum not bracketed; --no-bracketed keeps them)"
)


#: Most budgets ``frontier`` evaluates (each is a full pass over the posterior draws).
MAX_POINTS = 1000


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``bayescale`` command."""
    parser = _Parser(prog="bayescale", description="Bayesian fitting of language-model scaling laws.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fit", help="fit a law to runs and save the posterior")
    p.add_argument("runs", help="CSV/Parquet file of runs, or a bundled data set name")
    _loader_options(p)
    p.add_argument("--law", default="chinchilla", help="law name (default: chinchilla)")
    p.add_argument("--out", required=True, type=Path, help="where to write the fit (NetCDF)")
    _add_sampler_options(p, "--seed")
    p.add_argument(
        "--fix",
        action="append",
        type=_fix_pair,
        default=[],
        metavar="NAME=VALUE",
        help="hold a parameter fixed (repeatable)",
    )
    p.add_argument("--priors", type=Path, default=None, help="JSON or TOML file of priors by parameter")
    p.add_argument(
        "--priors-from",
        default=None,
        metavar="SET",
        help="informed priors centred on a published fit (`bayescale laws` lists the sets); "
        "--priors entries override it",
    )
    p.add_argument(
        "--widen",
        type=_positive_float,
        default=None,
        help="factor on the published standard errors of --priors-from (default 2)",
    )
    p.add_argument(
        "--prior-params",
        default=None,
        metavar="A,B,...",
        help="borrow only these parameters from --priors-from (e.g. A,B,alpha_N,alpha_D: E is left out)",
    )
    _add_sampler_options(
        p, "--likelihood", "--draws", "--tune", "--chains", "--backend", backends=FIT_BACKENDS
    )
    p.add_argument("--strict", action="store_true", help="exit non-zero when diagnostics fail")
    _add_sampler_options(p, "--progress", progress="show the fit's stages on stderr (a bar on long fits)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    p = sub.add_parser("fit-many", help="run many fits from a JSON list of jobs, locally or on Dask")
    p.add_argument("jobs", type=Path, help="JSON list of jobs: fit() keywords plus a 'name' each")
    p.add_argument("--out-dir", required=True, type=Path, help="folder for the fits (NAME.nc)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS", help="Dask scheduler address")
    p.add_argument(
        "--workers", type=_positive_int, default=None, help="local worker processes (default: CPUs)"
    )
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("summary", help="posterior table and diagnostics of a saved fit")
    p.add_argument("--strict", action="store_true", help="exit non-zero when the fit failed its diagnostics")
    p.add_argument("fit", type=Path)
    p.add_argument("--prob", type=_probability, default=0.9)
    p.add_argument("--json", action="store_true")

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

    p = sub.add_parser("frontier", help="optimal allocation over a range of budgets")
    p.add_argument("fit", type=Path)
    p.add_argument("--from", dest="start", type=_positive_float, required=True, help="smallest budget")
    p.add_argument("--to", dest="stop", type=_positive_float, required=True, help="largest budget")
    p.add_argument(
        "--points", type=int, default=7, help=f"budgets, log-spaced (default 7, at most {MAX_POINTS})"
    )
    _planning_options(p)
    _group_option(p)

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
    p.add_argument("--prob", type=_probability, default=0.9)
    p.add_argument("--kind", choices=["eti", "hdi"], default="eti", help="interval kind (default eti)")
    p.add_argument("--flops-per-param-token", type=_flops_k, default=6.0, help=FLOPS_HELP)
    p.add_argument("--json", action="store_true")

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

    p = sub.add_parser("predict", help="loss at new (params, tokens)")
    p.add_argument("--strict", action="store_true", help="exit non-zero when the fit failed its diagnostics")
    p.add_argument("fit", type=Path)
    p.add_argument("--params", type=_positive_float, help="model parameters N")
    p.add_argument("--tokens", type=_positive_float, help="training tokens D")
    p.add_argument("--queries", type=Path, help="CSV with columns params, tokens (one prediction per row)")
    p.add_argument("--prob", type=_probability, default=0.9)
    p.add_argument("--seed", type=_seed, default=None)
    _group_option(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("plot", help="draw a standard figure of a saved fit")
    p.add_argument("fit", type=Path)
    p.add_argument("kind", choices=sorted(PLOTS), help="which figure")
    p.add_argument("--out", type=Path, required=True, help="image file to write (.png, .pdf, .svg)")

    p = sub.add_parser("compare", help="rank laws on the same runs by PSIS-LOO, with stacking weights")
    p.add_argument(
        "sources", nargs="+", help="one runs file or bundled data set (with --laws), or saved fits"
    )
    p.add_argument("--laws", default=None, help="comma-separated laws to fit, e.g. chinchilla,kaplan")
    _add_sampler_options(p, "--seed", "--likelihood", "--draws", "--tune", "--chains", "--backend")
    p.add_argument("--json", action="store_true")

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
    _add_sampler_options(p, "--seed", "--likelihood", "--draws", "--tune", "--chains", "--backend")
    p.add_argument("--json", action="store_true")

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
    _method_options(p)
    _out_option(p)

    p = sub.add_parser(
        "envelope", help="training-curve envelope (Approach 1): exponents a, b and the optimum"
    )
    p.add_argument("curves", help="CSV/Parquet of checkpoints (run, params, tokens, loss) or a bundled name")
    p.add_argument("--compute", type=_positive_float, default=None, help="budget for the optimum (FLOPs)")
    p.add_argument("--correlation", default="ar1", choices=["ar1", "none"], help="within-run residuals")
    _method_options(p)
    _out_option(p)

    p = sub.add_parser(
        "steps", help="Kaplan's L(N, S_min) and critical batch size B_crit(L) from loss curves"
    )
    p.add_argument(
        "curves", help="CSV/Parquet of checkpoints (run, params, step, tokens, loss) or a bundled name"
    )
    p.add_argument(
        "--critical-batch",
        default="auto",
        choices=["auto", "yes", "no"],
        help="fit B*, alpha_B: auto (when batch sizes differ), yes (error if they cannot be), no",
    )
    p.add_argument("--correlation", default="ar1", choices=["ar1", "none"], help="within-run residuals")
    p.add_argument("--min-step", type=float, default=0.0, help="leave out checkpoints before this step")
    p.add_argument(
        "--compute",
        type=_positive_float,
        default=None,
        help="budget for the compute-optimal model (FLOPs; C_min on Kaplan's frontier when B_crit is fitted)",
    )
    _method_options(p)
    _out_option(p)

    p = sub.add_parser("compare-methods", help="Approaches 1, 2, 3 side by side (Hoffmann et al. Table 2)")
    p.add_argument("data", help="runs or curves: CSV/Parquet or a bundled name")
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
    return parser


#: Sampler backends of ``bayescale fit``.
FIT_BACKENDS = ["auto", "jax", "numpyro", "nutpie", "pymc"]


def _method_options(p: argparse.ArgumentParser) -> None:
    """The options of a method's fit: --prob, the sampler options with --progress, --json."""
    p.add_argument("--prob", type=_probability, default=0.9)
    _add_sampler_options(p, "--seed", "--draws", "--tune", "--chains", "--backend", "--progress")
    p.add_argument("--json", action="store_true")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    if argv is None and threading.current_thread() is threading.main_thread():
        _handle_interrupts()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        return _interrupted(argv)
    try:
        with warnings.catch_warnings():
            # The CLI reports failed diagnostics itself (see _load and cmd_fit).
            warnings.simplefilter("ignore", FitWarning)
            warnings.simplefilter("always", RunsWarning)
            warnings.showwarning = _show_warning
            code = COMMANDS[args.command](args)
        if code == 0 and getattr(args, "strict", False) and getattr(args, "failed_diagnostics", False):
            print("error: the fit failed its diagnostics (--strict)", file=sys.stderr)
            return EXIT_DIAGNOSTICS
        sys.stdout.flush()  # a closed pipe (`| head -1`) shows here, not at exit
        return code
    except KeyboardInterrupt:
        if args.debug:
            raise
        return _interrupted(argv)
    except BrokenPipeError:
        # The reader went away (`summary | head -1`): nothing more to say, and no one to say it to.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except (BayescaleError, OSError, UnicodeDecodeError) as exc:
        if args.debug:
            raise
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR


_REPORTED = threading.Lock()


def _interrupted(argv: Sequence[str] | None) -> int:
    """Ctrl-C: one line and exit 130, without a traceback.

    Run as the ``bayescale`` command (``argv`` None) the process ends here, without the
    interpreter's shutdown, which can crash while compiler or sampler threads still run.
    """
    if not _REPORTED.acquire(blocking=False):
        return EXIT_INTERRUPTED
    print("error: interrupted", file=sys.stderr)
    if argv is None:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(EXIT_INTERRUPTED)
    _REPORTED.release()
    return EXIT_INTERRUPTED


#: Seconds between Ctrl-C and the exit when the KeyboardInterrupt was swallowed (see below).
INTERRUPT_GRACE = 3.0


def _handle_interrupts() -> None:
    """Make Ctrl-C end the command within seconds, with one line and no traceback.

    A KeyboardInterrupt raised while a library runs a callback (JAX's garbage-collection
    hook) is swallowed and printed as a traceback, and the fit goes on. So SIGINT raises
    the KeyboardInterrupt (files being written are cleaned up as it unwinds), such swallowed
    interrupts are not printed, and a timer ends the process if it is still running after
    :data:`INTERRUPT_GRACE` seconds. A second Ctrl-C ends it at once.
    """
    default_hook = sys.unraisablehook

    def quiet_hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            return
        default_hook(unraisable)

    def exit_soon() -> None:
        time.sleep(INTERRUPT_GRACE)
        _interrupted(None)

    def on_sigint(signum: int, frame: Any) -> None:
        if getattr(on_sigint, "seen", False):
            _interrupted(None)
        on_sigint.seen = True  # type: ignore[attr-defined]
        threading.Thread(target=exit_soon, daemon=True).start()
        raise KeyboardInterrupt

    sys.unraisablehook = quiet_hook
    signal.signal(signal.SIGINT, on_sigint)


def _show_warning(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
    """Print a warning as ``warning: ...`` on stderr, without file and line."""
    print(f"warning: {message}", file=sys.stderr)


def cmd_fit(args: argparse.Namespace) -> int:
    """``bayescale fit``: fit, save, print the summary."""
    import warnings

    from bayescale.inference.diagnostics import FitWarning
    from bayescale.methods.io import check_writable
    from bayescale.methods.parametric import fit
    from bayescale.model.prior_sets import DEFAULT_WIDEN, published_priors
    from bayescale.model.priors import read_priors_file

    if not args.out.parent.exists():
        raise BayescaleError(f"cannot save the fit: folder {str(args.out.parent)!r} does not exist")
    _refuse_input_as_output(args.out, [args.runs, args.priors])
    check_writable(args.out)  # before sampling: a fit must not be lost for want of a folder
    repeated = sorted({name for name, _ in args.fix if sum(n == name for n, _ in args.fix) > 1})
    if repeated:
        raise BayescaleError(f"--fix given more than once for {repeated}; give each parameter once")
    fixed = dict(args.fix)
    priors = {}
    if args.priors_from:
        widen = DEFAULT_WIDEN if args.widen is None else args.widen
        chosen = None if args.prior_params is None else [p.strip() for p in args.prior_params.split(",")]
        published = published_priors(args.priors_from, widen=widen, parameters=chosen)
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
        result = fit(
            _load_runs(args, args.runs),
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
    path = _save_or_keep(result, args.out)
    payload = _summary_payload(result, 0.9)
    payload["saved_to"] = str(path)
    _emit(args, payload, _summary_text(payload) + f"\nsaved fit to {path}")
    if args.strict and not result.diagnostics["ok"]:
        print("error: the fit failed its diagnostics (--strict)", file=sys.stderr)
        return EXIT_DIAGNOSTICS
    return 0


def cmd_fit_many(args: argparse.Namespace) -> int:
    """``bayescale fit-many``: run every job, save each fit, print one line per job."""
    from bayescale.methods.io import check_writable
    from bayescale.methods.many import dask_executor, fit_many

    if not args.jobs.is_file():
        raise BayescaleError(f"jobs file {str(args.jobs)!r} does not exist")
    if not args.out_dir.is_dir():
        raise BayescaleError(f"output folder {str(args.out_dir)!r} does not exist")
    try:
        jobs = json.loads(args.jobs.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BayescaleError(f"jobs file {str(args.jobs)!r} is not valid JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise BayescaleError(
            f"jobs file {str(args.jobs)!r} is not UTF-8 text: {exc.reason} at byte {exc.start}"
        ) from None
    if not isinstance(jobs, list) or not all(isinstance(j, dict) for j in jobs):
        raise BayescaleError("the jobs file must hold a JSON list of objects (fit() keywords)")
    names = [str(job.pop("name", f"job{i}")) for i, job in enumerate(jobs)]
    if len(set(names)) != len(names):
        raise BayescaleError("job names must be unique: each names its output file")
    outputs = [_job_output(args.out_dir, name, i) for i, name in enumerate(names)]
    for i, (job, out) in enumerate(zip(jobs, outputs, strict=True)):
        if isinstance(job.get("runs"), str):
            _refuse_input_as_output(out, [job["runs"]])
        check_writable(out, f"job {i} ({names[i]!r})")
    for job in jobs:
        if "seed" in job:
            job["random_seed"] = job.pop("seed")
        job.setdefault("warn", False)
    executor = dask_executor(args.scheduler) if args.scheduler else None
    results = fit_many(jobs, executor=executor, max_workers=args.workers)
    rows = []
    for name, out, result in zip(names, outputs, results, strict=True):
        row: dict[str, Any] = {"name": name, "ok": result.ok, "error": result.error}
        if result.ok:
            try:  # one job that cannot be saved must not stop the saving of the others
                row["saved_to"] = str(_save_or_keep(result.fit, out))
            except BayescaleError as exc:
                row.update(ok=False, error=str(exc))
            row["diagnostics_ok"] = result.fit.diagnostics["ok"]
        rows.append(row)
    lines = [
        f"{r['name']:<20} " + (f"saved to {r['saved_to']}" if r["ok"] else f"FAILED: {r['error']}")
        for r in rows
    ]
    _emit(args, rows, "\n".join(lines))
    failed = sum(not r["ok"] for r in rows)
    if failed:
        print(f"error: {failed} of {len(rows)} jobs failed", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


def _job_output(out_dir: Path, name: str, index: int) -> Path:
    """``out_dir/NAME.nc``, refusing a job name that is not a plain file name.

    A shared jobs file must not write outside ``--out-dir``: no ``..``, no absolute
    path, no folder separator, no NUL or other control character.
    """
    bad = None
    if not name or name in (".", ".."):
        bad = "is empty or a folder reference"
    elif any(sep in name for sep in ("/", "\\", os.sep)) or (os.altsep and os.altsep in name):
        bad = "contains a folder separator"
    elif any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        bad = "contains a control character"
    elif name.startswith("."):
        bad = "starts with '.' (hidden file)"
    elif len(f"{name}.nc".encode()) > 255:
        bad = "is too long for a file name"
    if bad:
        raise BayescaleError(
            f"job {index} has name {name!r}, which {bad}; a name must be a plain file name "
            f"(the fit is saved as NAME.nc in --out-dir)"
        )
    out = out_dir / f"{name}.nc"
    if out.resolve().parent != out_dir.resolve():
        raise BayescaleError(f"job {index} has name {name!r}, which would be saved outside --out-dir")
    return out


def cmd_summary(args: argparse.Namespace) -> int:
    """``bayescale summary``: of a parametric fit, or of a saved IsoFLOP, envelope or L(N, S) fit."""
    fit = _load(args.fit, args, methods=True)
    if type(fit).__name__ != "Fit":
        _method_output(args, fit)
        return 0
    payload = _summary_payload(fit, args.prob)
    _emit(args, payload, _summary_text(payload))
    return 0


def _allocation_output(args: argparse.Namespace, fit: Any, compute: Any) -> None:
    import numpy as np

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an absurd budget is refused just below
        table = fit.optimal(
            compute,
            args.unique_tokens,
            args.prob,
            args.kind,
            flops_per_param_token=args.flops_per_param_token,
            group=args.group,
        )
    _check_allocation(table, args.flops_per_param_token)
    _warn_beyond(table)
    names = ["params", "tokens", "tokens_per_param", "loss", "a", "b"]
    if args.unique_tokens is not None:
        names[2:2] = ["epochs"]
        names += ["loss_reduction_more_unique", "dloss_dlog_unique"]
    payloads = []
    for _, row in table.iterrows():
        payload: dict[str, Any] = {"compute": float(row["compute"]), "prob": args.prob, "kind": args.kind}
        if args.unique_tokens is not None:
            payload["unique_tokens"] = args.unique_tokens
        payloads.append({**payload, **_interval_payload(row, names), "distance": _distance_payload(row)})
    where = "" if args.unique_tokens is None else f" with U = {args.unique_tokens:.3g} unique tokens"
    interval = f"{args.prob:.0%} {args.kind.upper()} intervals"
    if len(payloads) == 1:
        from bayescale.posterior.intervals import row_to_intervals

        title = f"compute-optimal plan at C = {payloads[0]['compute']:.3g} FLOPs{where} ({interval})"
        text = _intervals_text(title, row_to_intervals(table.iloc[0], names))
        if args.unique_tokens is None:
            text += _averaging_note(fit, table)
        _emit(args, payloads[0], text)
        return
    title = f"compute-optimal plans{where} ({interval}); a, b: N_opt ~ C^a, D_opt ~ C^b"
    _emit(args, payloads, _rows_text(title, table, ["compute"], names))


def _averaging_note(fit: Any, table: Any) -> str:
    """A line saying that answers beyond the runs average the fitted law with the variant law."""
    multiple = float(table["compute_multiple"].max())
    if not (multiple > 1 and fit.averages_beyond):
        return ""
    where = f"up to {multiple:.3g}x" if multiple < float("inf") else "beyond"
    return (
        f"\n{where} the largest run's compute: beyond the runs, answers average the "
        f"fitted law with {VARIANT_LAW} fitted to the same runs (README: 'Answers beyond your runs')"
    )


def _check_allocation(table: Any, flops_per_param_token: float) -> None:
    """Raise when a budget is too small or too large for a meaningful plan.

    That is, when the plan is not at least one parameter and one token, or not finite: the
    answer would otherwise be inf, NaN or 1e-150 parameters.
    """
    import numpy as np

    for _, row in table.iterrows():
        cells = [row[f"{q}_{s}"] for q in ("params", "tokens") for s in ("median", "lower", "upper")]
        values = np.asarray([*cells, row["loss_median"]], dtype=float)
        if not np.all(np.isfinite(values)) or min(cells) < 1:
            raise BayescaleError(
                f"no meaningful plan at C = {row['compute']:.3g} FLOPs with {flops_per_param_token:g} FLOPs "
                f"per parameter per token: the optimum is N = {row['params_median']:.3g} parameters, "
                f"D = {row['tokens_median']:.3g} tokens; give a budget (and FLOPs per parameter-token) "
                "that buys at least one parameter and one token"
            )


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
    table = fit.target_compute(
        args.target_loss, args.unique_tokens, args.prob, args.kind, args.flops_per_param_token
    )
    _warn_beyond(table)
    names = ["compute", "params", "tokens"]
    payloads = [
        {
            "target_loss": float(row["target_loss"]),
            "prob": args.prob,
            "kind": args.kind,
            **_interval_payload(row, names),
            "fraction_unreachable": float(row["fraction_unreachable"]),
        }
        for _, row in table.iterrows()
    ]
    title = (
        f"compute to reach each target loss ({args.prob:.0%} {args.kind.upper()} intervals; "
        "inf: the target is below the reachable floor in that share of draws)"
    )
    text = _rows_text(title, table, ["target_loss", "fraction_unreachable"], names)
    if args.unique_tokens is None:
        text += _averaging_note(fit, table)
    _emit(args, payloads[0] if len(payloads) == 1 else payloads, text)
    return 0


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


def cmd_compare_plans(args: argparse.Namespace) -> int:
    """``bayescale compare-plans``: P(lowest loss) and expected regret of each plan."""
    fit = _load(args.fit, args)
    table = fit.compare_plans(args.plans, args.prob, args.kind, args.flops_per_param_token)
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
        print(f"note: {note}", file=sys.stderr)
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


def cmd_predict(args: argparse.Namespace) -> int:
    """``bayescale predict``: loss at one (N, D) or at every row of a CSV."""
    from bayescale.data.runs import read_table
    from bayescale.data.schema import canonical_columns
    from bayescale.posterior.intervals import row_to_intervals

    fit = _load(args.fit, args)
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
        if frame.empty:
            raise BayescaleError(f"queries file {str(args.queries)!r} has a header but no rows")
        for column in ("params", "tokens"):
            frame[column] = _query_column(frame[column], column)
        table = fit.predict(
            frame["params"], frame["tokens"], prob=args.prob, random_seed=args.seed, group=args.group
        )
        _warn_beyond(table)
        if args.json:
            print(table.to_json(orient="records", indent=2))
        else:
            print(table.to_string(index=False, float_format=lambda v: f"{v:.5g}"))
        return 0
    if args.params is None or args.tokens is None:
        raise BayescaleError("give --params and --tokens (or --queries FILE)")
    table = fit.predict(args.params, args.tokens, prob=args.prob, random_seed=args.seed, group=args.group)
    _warn_beyond(table)
    row = table.iloc[0]
    intervals = row_to_intervals(row, ["loss", "loss_predictive"])
    payload = {"params": args.params, "tokens": args.tokens, "prob": args.prob, **intervals}
    payload["distance"] = _distance_payload(row)
    title = f"loss at N = {args.params:.3g}, D = {args.tokens:.3g} ({args.prob:.0%} intervals)"
    _emit(args, payload, _intervals_text(title, intervals))
    return 0


def _query_column(series: Any, column: str) -> Any:
    """The column as positive finite floats, or an error naming the first bad row."""
    import pandas as pd

    values = pd.to_numeric(series, errors="coerce").astype(float)
    bad = ~(values.notna() & (values > 0) & (values < float("inf")))
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise BayescaleError(
            f"queries file column {column!r} row {row}: {series.iloc[row]!r} is not a finite number > 0 "
            f"({int(bad.sum())} such row(s))"
        )
    return values


def cmd_datasets(args: argparse.Namespace) -> int:
    """``bayescale datasets``: bundled data sets, one line each."""
    from bayescale.data import datasets

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
    from matplotlib.figure import Figure

    from bayescale import plots
    from bayescale.methods.io import check_writable
    from bayescale.report import refuse_to_replace_data, write_atomically

    formats = Figure().canvas.get_supported_filetypes()
    suffix = args.out.suffix.lower().lstrip(".")
    if suffix not in formats:
        raise BayescaleError(
            f"cannot write a figure as {str(args.out)!r}: unknown image type {suffix!r}; "
            f"use one of {', '.join('.' + f for f in sorted(formats))}"
        )
    if not args.out.parent.exists():
        raise BayescaleError(f"folder {str(args.out.parent)!r} does not exist")
    refuse_to_replace_data(args.out, "the figure")
    check_writable(args.out, "the figure")
    fit = _load(args.fit, args)
    drawn = getattr(plots, PLOTS[args.kind])(fit, **PLOT_OPTIONS.get(args.kind, {}))
    figure = drawn if hasattr(drawn, "savefig") else drawn.figure  # multi-panel kinds return a Figure
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format=suffix, dpi=120)
    write_atomically(args.out, buffer.getvalue())
    print(f"wrote {args.kind} figure to {args.out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``bayescale report``: write the self-contained HTML report."""
    import matplotlib

    matplotlib.use("Agg")
    from bayescale.methods.io import check_writable
    from bayescale.report import refuse_to_replace_data, write_report

    if args.out.parent.exists():
        refuse_to_replace_data(args.out, "the report")
        check_writable(args.out, "the report")
    fit = _load(args.fit, args)
    path = write_report(fit, args.out, compute=args.compute, prob=args.prob)
    print(f"wrote report to {path}")
    return 0


def cmd_laws(args: argparse.Namespace) -> int:
    """``bayescale laws``: each law with its formula, parameters and default priors."""
    from bayescale.model.laws import get_law, list_laws
    from bayescale.model.prior_sets import list_prior_sets, prior_set_info

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
    print("informed prior sets (fit --priors-from SET):")
    for name in list_prior_sets():
        info = prior_set_info(name)
        print(f"  {name} [law {info['law']}]: {info['description']}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """``bayescale compare``: fit each law (or load saved fits) and rank them by PSIS-LOO."""
    import warnings

    from bayescale.methods.parametric import fit
    from bayescale.questions.compare import LooWarning, compare

    if args.laws is not None:
        if len(args.sources) != 1:
            raise BayescaleError(f"with --laws give one runs file or data set, got {len(args.sources)}")
        laws = [name.strip() for name in args.laws.split(",") if name.strip()]
        fits = {law: fit(args.sources[0], law=law, **_sampler_kwargs(args)) for law in laws}
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
            print(f"warning: {w.message}", file=sys.stderr)
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
        payload[key] = _finite_or_none(scores[key])
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


def _method_output(args: argparse.Namespace, result: Any) -> None:
    """Print a method's fit (fitted now or loaded), saving it first to ``--out`` when given."""
    from bayescale.methods.io import kind_of

    render = {"isoflop": _isoflop_text, "envelope": _envelope_text, "steps": _steps_text}[kind_of(result)]
    payload, text = render(args, result)
    if getattr(args, "out", None) is not None:
        path = _save_or_keep(result, args.out)
        payload["saved_to"] = str(path)
        text += f"\nsaved fit to {path}"
    _emit(args, payload, text)


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
    head = {"prob": args.prob, "kind": args.kind}
    payloads = [
        {"compute": float(row["compute"]), **head, **_interval_payload(row, names)}
        for _, row in table.iterrows()
    ]
    title = (
        f"compute-optimal model from {METHOD_NAMES[kind_of(result)]} "
        f"({args.prob:.0%} {args.kind.upper()} intervals)"
    )
    _emit(args, payloads[0] if len(payloads) == 1 else payloads, _rows_text(title, table, ["compute"], names))


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
        **_sampler_kwargs(args),
    )
    _method_output(args, result)
    return 0


def cmd_envelope(args: argparse.Namespace) -> int:
    """``bayescale envelope``: smoothed curves, their envelope, a and b."""
    from bayescale.methods.envelope import fit_envelope

    _check_out(args, args.curves)
    result = fit_envelope(args.curves, correlation=args.correlation, **_sampler_kwargs(args))
    _method_output(args, result)
    return 0


def cmd_steps(args: argparse.Namespace) -> int:
    """``bayescale steps``: Kaplan's L(N, S_min), with B_crit when the batch sizes allow."""
    from bayescale.methods.training_steps import fit_steps

    critical = {"auto": None, "yes": True, "no": False}[args.critical_batch]
    _check_out(args, args.curves)
    result = fit_steps(
        args.curves,
        critical_batch=critical,
        correlation=args.correlation,
        min_step=args.min_step,
        **_sampler_kwargs(args),
    )
    _method_output(args, result)
    return 0


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


COMMANDS = {
    "isoflop": cmd_isoflop,
    "envelope": cmd_envelope,
    "compare-methods": cmd_compare_methods,
    "steps": cmd_steps,
    "laws": cmd_laws,
    "plot": cmd_plot,
    "report": cmd_report,
    "fit": cmd_fit,
    "fit-many": cmd_fit_many,
    "summary": cmd_summary,
    "plan": cmd_plan,
    "frontier": cmd_frontier,
    "compare-plans": cmd_compare_plans,
    "design": cmd_design,
    "predict": cmd_predict,
    "datasets": cmd_datasets,
    "compare": cmd_compare,
    "extrapolate": cmd_extrapolate,
}


if __name__ == "__main__":
    sys.exit(main())
