"""The ``bayescale`` command line: a thin client of the library.

Every subcommand prints a readable table, or JSON with ``--json``. A user
mistake prints ``error: ...`` on stderr and exits with status 2, without a
traceback (``--debug`` shows one).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bayescale.errors import BayescaleError, RunsWarning
from bayescale.inference.diagnostics import FitWarning
from bayescale.inference.diagnostics import summary_lines as diagnostics_lines
from bayescale.posterior.extrapolation import DISTANCE_COLUMNS, VARIANT_LAW

EXIT_USER_ERROR = 2
EXIT_DIAGNOSTICS = 3
#: 128 + the signal's number, as a shell reports a process ended by SIGINT or SIGPIPE.
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

#: Figure kinds of ``bayescale plot`` (drawn by ``bayescale.plots.kinds``, not imported here: slow).
PLOTS = (
    "allocation", "epochs", "extrapolation", "frontier", "isoflop", "isoflop-fit", "loss", "loss-frontier",
    "loss-params", "loss-tokens", "pair", "ppc", "prior-posterior", "prior-predictive", "repeated-value",
    "residuals",
)  # fmt: skip
#: Help of --bracketed (isoflop and compare-methods).
BRACKETED_HELP = (
    "leave out budgets whose lowest loss is at (within 10%% of) their smallest or largest size "
    "(minimum not bracketed; --no-bracketed keeps them)"
)


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


#: Most seeds every backend accepts (numpy's legacy generators stop at 2**32 - 1).
MAX_SEED = 2**32 - 1
#: Most budgets ``frontier`` evaluates (each is a full pass over the posterior draws).
MAX_POINTS = 1000


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {MAX_SEED}, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """An argument parser whose mistakes are one ``error:`` line (exit 2), like every other error."""

    def error(self, message: str) -> Any:
        self.exit(EXIT_USER_ERROR, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _probability(text: str) -> float:
    value = _positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be a probability in (0, 1), got {text!r}")
    return value


def _add_sampler_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=_seed, default=None, help="random seed")
    p.add_argument("--likelihood", default="student_t", choices=["student_t", "normal"])
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--backend", default="auto", choices=["auto", "numpyro", "nutpie", "pymc"])


def _sampler_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Sampler settings shared by the commands that fit; ``likelihood`` only where the command has it."""
    kwargs: dict[str, Any] = {
        "random_seed": args.seed,
        "draws": args.draws,
        "tune": args.tune,
        "chains": args.chains,
        "backend": args.backend,
        "progressbar": getattr(args, "progress", False),
        "warn": False,
    }
    if getattr(args, "likelihood", None) is not None:
        kwargs["likelihood"] = args.likelihood
    return kwargs


def _window(text: str) -> float | None:
    return None if text.strip().lower() == "none" else _positive_float(text)


def _plan_tuple(text: str) -> tuple[float, ...]:
    parts = [part.strip() for part in text.split(",")]
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(f"expected N,D or N,D,U, got {text!r}")
    return tuple(_positive_float(part) for part in parts)


def _group_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--group", default=None, help="a grouped law's group to answer for (default: a typical group)"
    )


def _planning_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--unique-tokens", type=_positive_float, default=None, help="unique tokens available")
    p.add_argument("--prob", type=_probability, default=0.9)
    p.add_argument("--kind", choices=["eti", "hdi"], default="eti", help="interval kind (default eti)")
    p.add_argument("--flops-per-param-token", type=_flops_k, default=6.0, help=FLOPS_HELP)
    p.add_argument("--json", action="store_true")


#: Help of --flops-per-param-token where a fit is planned.
FLOPS_HELP = "k in C = k N D (default 6), or 'estimate': the median of compute / (N D) of the fit's runs"


def _flops_k(text: str) -> float | str:
    if text.strip().lower() == "estimate":
        return "estimate"
    try:
        return _positive_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a number > 0 or 'estimate', got {text!r}") from None


def _loader_options(p: argparse.ArgumentParser) -> None:
    """Options reading a raw runs table: column mapping, row filters, derived columns, best-of-sweep."""
    p.add_argument(
        "--column",
        dest="column_map",
        action="append",
        default=[],
        metavar="NAME=SOURCE",
        help="which source column is a runs column, e.g. params=N_no_emb (repeatable; "
        "NAME= uses no column for NAME)",
    )
    p.add_argument(
        "--columns",
        dest="columns_file",
        type=Path,
        default=None,
        help="JSON/TOML file mapping NAME to SOURCE",
    )
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="'COLUMN OP VALUE'",
        help="keep rows where COLUMN OP VALUE holds, OP one of < <= > >= == != (repeatable: all must hold)",
    )
    p.add_argument(
        "--best-of",
        default=None,
        metavar="COLUMN",
        help="a sweep column (e.g. peak_lr): keep the lowest loss per (params, tokens[, group])",
    )
    p.add_argument(
        "--flops-per-param-token",
        dest="loader_k",
        type=_positive_float,
        default=None,
        metavar="K",
        help="FLOP convention C = K N D of the table: derives params (tokens) from compute and tokens "
        "(params) and checks a compute column against it (default 6)",
    )


def _load_runs(args: argparse.Namespace, source: Any) -> Any:
    """The runs of ``source`` read with the loader options; prints what the options did."""
    from bayescale.data.columns import parse_column_items, read_column_file
    from bayescale.data.runs import Runs

    columns = read_column_file(args.columns_file) if args.columns_file is not None else {}
    columns.update(parse_column_items(args.column_map))
    options = {
        "columns": columns or None,
        "where": args.where or None,
        "best_of": args.best_of,
        "flops_per_param_token": args.loader_k,
    }
    runs = Runs.from_any(source, **{k: v for k, v in options.items() if v is not None})
    for note in runs.notes:
        print(f"note: {note}", file=sys.stderr)
    return runs


def _resolve_flops(fit: Any, args: argparse.Namespace | None) -> None:
    """Replace ``--flops-per-param-token estimate`` with the median compute / (N D) of the fit's runs."""
    if args is None or getattr(args, "flops_per_param_token", None) != "estimate":
        return
    from bayescale.data.columns import estimate_flops_per_param_token

    args.flops_per_param_token = estimate_flops_per_param_token(fit.runs)
    print(
        f"note: FLOP convention estimated from the runs: k = compute / (N D) = "
        f"{args.flops_per_param_token:.4g} (median)",
        file=sys.stderr,
    )


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
    p.add_argument("--seed", type=_seed, default=None, help="random seed")
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
    p.add_argument("--likelihood", default="student_t", choices=["student_t", "normal"])
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--backend", default="auto", choices=["auto", "jax", "numpyro", "nutpie", "pymc"])
    p.add_argument("--strict", action="store_true", help="exit non-zero when diagnostics fail")
    p.add_argument(
        "--progress", action="store_true", help="show the fit's stages on stderr (a bar on long fits)"
    )
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
    p.add_argument("kind", choices=PLOTS, help="which figure")
    p.add_argument("--out", type=Path, required=True, help="image file to write (.png, .pdf, .svg)")
    p.add_argument("--compute", type=_positive_float, action="append", help="budget [FLOPs] (isoflop)")
    p.add_argument(
        "--params", type=_positive_float, action="append", help="model size N, one curve each (loss, epochs)"
    )
    p.add_argument("--unique-tokens", type=_positive_float, help="unique tokens U repeated (epochs)")
    p.add_argument(
        "--x-range", type=_positive_float, nargs=2, metavar=("LO", "HI"), help="x axis from LO to HI"
    )
    p.add_argument("--train-below", type=_positive_float, help="refit below this compute (extrapolation)")

    p = sub.add_parser("compare", help="rank laws on the same runs by PSIS-LOO, with stacking weights")
    p.add_argument(
        "sources", nargs="+", help="one runs file or bundled data set (with --laws), or saved fits"
    )
    p.add_argument("--laws", default=None, help="comma-separated laws to fit, e.g. chinchilla,kaplan")
    _add_sampler_arguments(p)
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
    _add_sampler_arguments(p)
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
    p.add_argument(
        "--train-below", type=_positive_float, help="add a held-out check: refit below this compute [FLOPs]"
    )

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
    _sampler_arguments(p)
    _out_option(p)

    p = sub.add_parser(
        "envelope", help="training-curve envelope (Approach 1): exponents a, b and the optimum"
    )
    p.add_argument("curves", help="CSV/Parquet of checkpoints (run, params, tokens, loss) or a bundled name")
    p.add_argument("--compute", type=_positive_float, default=None, help="budget for the optimum (FLOPs)")
    p.add_argument("--correlation", default="ar1", choices=["ar1", "none"], help="within-run residuals")
    _sampler_arguments(p)
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
    _sampler_arguments(p)
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
    _sampler_arguments(p)
    return parser


def _sampler_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prob", type=_probability, default=0.9)
    p.add_argument("--seed", type=_seed, default=None, help="random seed")
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--backend", default="auto", choices=["auto", "numpyro", "nutpie", "pymc"])
    p.add_argument("--progress", action="store_true", help="show the sampler's progress on stderr")
    p.add_argument("--json", action="store_true")


def _out_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", type=Path, default=None, help="also save the fit (NetCDF) for `summary` and `plan` later"
    )


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


def _one_line(exc: BaseException) -> str:
    """The error's message on one line (OS errors with their file name)."""
    text = str(exc)
    if isinstance(exc, UnicodeDecodeError):
        text = f"a file is not UTF-8 text ({exc.reason} at byte {exc.start})"
    return " ".join(text.split()) or type(exc).__name__


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


def _emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    print(_json(payload) if args.json else text)


def _json(payload: Any) -> str:
    """JSON with null for NaN and infinities (bare NaN is not JSON; strict parsers reject it)."""
    return json.dumps(_json_safe(payload), indent=2, allow_nan=False)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and hasattr(value, "dtype"):  # numpy scalars
        return _json_safe(value.item())
    return value


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
    from bayescale.posterior.residuals import trend_message

    trends = fit.residual_trends()
    residuals = {
        str(column): {
            "spearman_rho": _number(row["spearman_rho"]),
            "pvalue": _number(row["pvalue"]),
            "trend": bool(row["trend"]),
            "curvature_rho": _number(row["curvature_rho"]),
            "curvature_pvalue": _number(row["curvature_pvalue"]),
            "curvature": bool(row["curvature"]),
        }
        for column, row in trends.iterrows()
    }
    return {
        "law": fit.law.name,
        "n_runs": len(fit.runs),
        "prob": prob,
        "parameters": params,
        "diagnostics": {
            "divergences": diag["divergences"],
            "max_r_hat": None if math.isnan(diag["max_r_hat"]) else diag["max_r_hat"],
            "min_ess_bulk": diag["min_ess_bulk"],
            "median_steps": _finite_or_none(diag.get("median_steps", math.nan)),
            "max_tree_depth_share": _finite_or_none(diag.get("max_tree_depth_share", math.nan)),
            "ok": diag["ok"],
            "problems": diag["problems"],
            "warnings": diag.get("warnings", []),
        },
        "residual_trends": residuals,
        "misfit": trend_message(trends),
    }


def _summary_text(payload: dict[str, Any]) -> str:
    prob = payload["prob"]
    lines = [
        f"law {payload['law']} on {payload['n_runs']} runs; {prob:.0%} credible intervals",
        f"{'parameter':<10} {'median':>12} {'lower':>12} {'upper':>12} {'r_hat':>7} {'ess_bulk':>9}",
    ]
    for name, p in payload["parameters"].items():
        # r_hat is undefined (None) for a single chain.
        r_hat = "fixed" if p["fixed"] else "n/a" if p["r_hat"] is None else f"{p['r_hat']:.3f}"
        ess = "" if p["fixed"] or p["ess_bulk"] is None else f"{p['ess_bulk']:.0f}"
        lines.append(
            f"{name:<10} {p['median']:>12.5g} {p['lower']:>12.5g} {p['upper']:>12.5g} {r_hat:>7} {ess:>9}"
        )
    lines += diagnostics_lines(payload["diagnostics"])
    if payload.get("misfit"):
        lines.append(f"residuals: {payload['misfit']}")
    elif payload.get("residual_trends"):
        lines.append("residuals: no trend with " + ", ".join(payload["residual_trends"]) + " (p >= 0.01)")
    return "\n".join(lines)


def _intervals_text(title: str, intervals: dict[str, dict[str, float]]) -> str:
    lines = [title, f"{'quantity':<18} {'median':>12} {'lower':>12} {'upper':>12}"]
    for name, iv in intervals.items():
        lines.append(f"{name:<18} {iv['median']:>12.5g} {iv['lower']:>12.5g} {iv['upper']:>12.5g}")
    return "\n".join(lines)


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


def _refuse_input_as_output(out: Path, inputs: Sequence[Any]) -> None:
    """Raise when ``out`` is one of the input files (writing it would destroy the input)."""
    if not out.exists():
        return
    for source in inputs:
        if source is None or not isinstance(source, (str, Path)) or not Path(source).is_file():
            continue
        if os.path.samefile(out, source):
            raise BayescaleError(f"--out {str(out)!r} is an input file; it would be replaced; choose another")


def _save_or_keep(result: Any, out: Path) -> Path:
    """Save the fit to ``out``; if that fails, keep it in the temporary folder and say where.

    A finished fit is never lost to a write error: the error names the copy.
    """
    import tempfile

    try:
        return result.save(out)
    except (OSError, BayescaleError) as exc:
        reason = _one_line(exc)
    name = None
    try:
        fd, name = tempfile.mkstemp(prefix=f"bayescale-{out.stem}-", suffix=".nc")
        os.close(fd)
        kept = result.save(name)
    except (OSError, BayescaleError) as exc:
        if name is not None:
            Path(name).unlink(missing_ok=True)
        raise BayescaleError(
            f"cannot save the fit to {str(out)!r}: {reason}; keeping a copy failed too: {_one_line(exc)}"
        ) from None
    raise BayescaleError(
        f"cannot save the fit to {str(out)!r}: {reason}; the fit is kept at {str(kept)!r} "
        "(move it from there)"
    )


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


def _load(path: Path, args: argparse.Namespace | None = None, methods: bool = False) -> Any:
    """Load a saved fit, printing a warning (and noting it for --strict) if it failed diagnostics.

    With ``methods``, an IsoFLOP, envelope or L(N, S) fit is accepted too; else only a
    parametric fit (the other commands' questions need a law).
    """
    from bayescale.methods.io import kind_of, load_fit, probe_hdf5

    if path.is_file():
        probe_hdf5(path)  # a damaged file can hang or crash HDF5: find out in a child process
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        fit = load_fit(path)
    kind = kind_of(fit)
    if kind != "fit" and not methods:
        command = f"`bayescale {args.command}`" if args is not None else "this command"
        raise BayescaleError(
            f"{str(path)!r} holds {METHOD_NAMES[kind]}; {command} needs a parametric fit "
            "(bayescale fit RUNS --out FILE); a saved method fit answers `summary` and `plan --compute`"
        )
    if kind == "fit":
        _resolve_flops(fit, args)
    if not fit.diagnostics["ok"]:
        print(
            "warning: this fit failed its diagnostics: " + "; ".join(fit.diagnostics["problems"]),
            file=sys.stderr,
        )
        if args is not None:
            args.failed_diagnostics = True  # main() exits non-zero under --strict
    return fit


def cmd_summary(args: argparse.Namespace) -> int:
    """``bayescale summary``: of a parametric fit, or of a saved IsoFLOP, envelope or L(N, S) fit."""
    fit = _load(args.fit, args, methods=True)
    if type(fit).__name__ != "Fit":
        _method_output(args, fit)
        return 0
    payload = _summary_payload(fit, args.prob)
    _emit(args, payload, _summary_text(payload))
    return 0


def _number(value: Any) -> float | None:
    """A float for JSON: ``None`` for inf or NaN (JSON has neither)."""
    value = float(value)
    return value if math.isfinite(value) else None


def _distance_payload(row: Any) -> dict[str, float | None]:
    """The extrapolation guard's columns of one answer row (see ``bayescale.posterior.extrapolation``)."""
    return {name: _number(row[name]) for name in DISTANCE_COLUMNS if name in row.index}


def _warn_beyond(table: Any) -> None:
    """Print the guard's warning when an answer lies beyond the distance where coverage was measured."""
    message = table.attrs.get("extrapolation_warning")
    if message:
        print(f"warning: {message}", file=sys.stderr)


def _interval_payload(row: Any, names: list[str]) -> dict[str, dict[str, float | None]]:
    from bayescale.posterior.intervals import row_to_intervals

    return {n: {k: _number(v) for k, v in iv.items()} for n, iv in row_to_intervals(row, names).items()}


def _rows_text(title: str, table: Any, inputs: list[str], names: list[str]) -> str:
    """One line per row: the inputs, then ``median [lower, upper]`` of each quantity."""
    head = [f"{c:>11}" for c in inputs] + [f"{n:>33}" for n in names]
    lines = [title, " ".join(head)]
    for _, row in table.iterrows():
        cells = [f"{row[c]:>11.4g}" for c in inputs]
        for n in names:
            iv = f"{row[n + '_median']:.4g} [{row[n + '_lower']:.4g}, {row[n + '_upper']:.4g}]"
            cells.append(f"{iv:>33}")
        lines.append(" ".join(cells))
    return "\n".join(lines)


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

    from bayescale.methods.io import check_writable
    from bayescale.plots import kinds
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
    fit = _load(args.fit, args, methods=True)  # kinds.draw says which figures a method fit has
    keys = ("compute", "params", "unique_tokens", "x_range", "train_below")
    drawn = kinds.draw(args.kind, fit, kinds.PlotOptions(**{k: getattr(args, k) for k in keys}))
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
    path = write_report(fit, args.out, compute=args.compute, prob=args.prob, train_below=args.train_below)
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


def _finite_or_none(value: float) -> float | None:
    return None if not math.isfinite(value) else float(value)


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


def _method_text(title: str, payload: dict[str, Any]) -> str:
    lines = [_intervals_text(title, {k: payload[k] for k in ("a", "b")})]
    if payload.get("optimum"):
        opt = payload["optimum"]
        lines.append(_intervals_text(f"optimum at C = {opt['compute']:.3g} FLOPs", opt["intervals"]))
    lines += diagnostics_lines(payload["diagnostics"])
    return "\n".join(lines)


def _optimum(result: Any, compute: float | None, prob: float) -> dict[str, Any] | None:
    from bayescale.posterior.intervals import row_to_intervals

    if compute is None:
        return None
    row = result.optimal(compute, prob=prob).iloc[0]
    return {"compute": compute, "intervals": row_to_intervals(row, ["params", "tokens", "tokens_per_param"])}


#: What a saved fit of each kind is, in an error message.
METHOD_NAMES = {
    "fit": "a parametric fit",
    "isoflop": "an IsoFLOP fit (bayescale isoflop)",
    "envelope": "a training-curve envelope fit (bayescale envelope)",
    "steps": "a Kaplan L(N, S) fit (bayescale steps)",
}


def _check_out(args: argparse.Namespace, source: Any) -> None:
    """Before a method's fit: refuse an --out that is the input or cannot be written."""
    from bayescale.methods.io import check_writable

    if args.out is not None:
        _refuse_input_as_output(args.out, [source])
        check_writable(args.out)


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


def _isoflop_text(args: argparse.Namespace, result: Any) -> tuple[dict[str, Any], str]:
    payload = result.summary(args.prob)
    payload["optimum"] = _optimum(result, getattr(args, "compute", None), args.prob)
    budgets = "\n".join(
        f"  budget {b['budget']:.3g}: {b['n_runs']} runs ({b['compute_min']:.3g}-{b['compute_max']:.3g})"
        + _budget_unused(b)
        for b in payload["budgets"]
    )
    title = (
        f"IsoFLOP fit ({payload['shape']} profiles) on {payload['n_runs']} runs; {args.prob:.0%} intervals"
    )
    return payload, f"budget levels:\n{budgets}\n" + _method_text(title, payload)


def _budget_unused(budget: dict[str, Any]) -> str:
    """Why an IsoFLOP budget level was left out of the fit ('' when it was used)."""
    from bayescale.methods.isoflop import EDGE_SIZE_TOL, MIN_SIZES, left_out_unbracketed

    if budget["used"]:
        return ""
    if left_out_unbracketed(budget):
        return (
            f", not used: lowest loss at (within {EDGE_SIZE_TOL:.0%} of) its smallest or largest size "
            "(minimum not bracketed)"
        )
    return f", not used: {budget['n_in_window']} size(s) in the window < {MIN_SIZES}"


def cmd_envelope(args: argparse.Namespace) -> int:
    """``bayescale envelope``: smoothed curves, their envelope, a and b."""
    from bayescale.methods.envelope import fit_envelope

    _check_out(args, args.curves)
    result = fit_envelope(args.curves, correlation=args.correlation, **_sampler_kwargs(args))
    _method_output(args, result)
    return 0


def _envelope_text(args: argparse.Namespace, result: Any) -> tuple[dict[str, Any], str]:
    payload = result.summary(args.prob)
    payload["optimum"] = _optimum(result, getattr(args, "compute", None), args.prob)
    title = (
        f"training-curve envelope on {payload['n_runs']} curves, {payload['n_points']} checkpoints "
        f"({payload['correlation']} residuals); {args.prob:.0%} intervals"
    )
    return payload, _method_text(title, payload)


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


def _steps_text(args: argparse.Namespace, result: Any) -> tuple[dict[str, Any], str]:
    payload = result.summary(args.prob)
    compute = getattr(args, "compute", None)
    if compute is not None:
        from bayescale.posterior.intervals import row_to_intervals

        row = result.optimal(compute, prob=args.prob).iloc[0]
        columns = [c[: -len("_median")] for c in row.index if c.endswith("_median")]
        payload["optimum"] = {"compute": compute, "intervals": row_to_intervals(row, columns)}
    names = result.parameter_names
    title = (
        f"Kaplan L(N, S_min) on {payload['n_runs']} curves, {payload['n_points']} checkpoints "
        f"({payload['correlation']} residuals); {args.prob:.0%} intervals"
    )
    lines = [_intervals_text(title, {k: payload[k] for k in names})]
    lines.append(
        "Kaplan et al. 2020: " + ", ".join(f"{k} {v:.3g}" for k, v in payload["kaplan_2020"].items())
    )
    lines.append(f"batch: {payload['batch_note']}")
    if "a" in payload:
        lines.append(
            _intervals_text(
                f"compute-optimal exponents, {payload['plan']}", {k: payload[k] for k in ("a", "b")}
            )
        )
    else:
        lines.append(f"no compute-optimal plan: {payload['plan']}")
    if payload.get("optimum"):
        opt = payload["optimum"]
        lines.append(_intervals_text(f"optimum at C = {opt['compute']:.3g} FLOPs", opt["intervals"]))
    lines += diagnostics_lines(payload["diagnostics"])
    return payload, "\n".join(lines)


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
