"""The entry of the ``bayescale`` command: the parser's assembly, ``main``, errors and exit statuses.

Every subcommand prints a readable table, or JSON with ``--json``. A user
mistake prints ``error: ...`` on stderr and exits with status 2, without a
traceback (``--debug`` shows one).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from typing import Any

from bayescale.cli.catalog import add_datasets, add_laws, cmd_datasets, cmd_laws
from bayescale.cli.compare import add_compare, add_extrapolate, cmd_compare, cmd_extrapolate
from bayescale.cli.curves import add_curves, cmd_curves
from bayescale.cli.downstream import add_downstream, cmd_downstream
from bayescale.cli.exits import (
    EXIT_BROKEN_PIPE,
    EXIT_DIAGNOSTICS,
    EXIT_INTERRUPTED,
    EXIT_USER_ERROR,
    _one_line,
)
from bayescale.cli.fit import add_fit, add_summary, cmd_fit, cmd_summary
from bayescale.cli.many import add_fit_many, cmd_fit_many
from bayescale.cli.methods import (
    add_compare_methods,
    add_envelope,
    add_isoflop,
    add_steps,
    cmd_compare_methods,
    cmd_envelope,
    cmd_isoflop,
    cmd_steps,
)
from bayescale.cli.options import _Parser
from bayescale.cli.plan import (
    add_compare_plans,
    add_design,
    add_frontier,
    add_plan,
    cmd_compare_plans,
    cmd_design,
    cmd_frontier,
    cmd_plan,
)
from bayescale.cli.plot import add_plot, cmd_plot
from bayescale.cli.predict import add_predict, cmd_predict
from bayescale.cli.report import add_report, cmd_report
from bayescale.errors import BayescaleError, RunsWarning, printable
from bayescale.inference.diagnostics import FitWarning


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``bayescale`` command."""
    parser = _Parser(prog="bayescale", description="Bayesian fitting of language-model scaling laws.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True)
    add_fit(sub)
    add_fit_many(sub)
    add_summary(sub)
    add_plan(sub)
    add_frontier(sub)
    add_compare_plans(sub)
    add_design(sub)
    add_predict(sub)
    add_plot(sub)
    add_compare(sub)
    add_extrapolate(sub)
    add_report(sub)
    add_laws(sub)
    add_datasets(sub)
    add_isoflop(sub)
    add_envelope(sub)
    add_steps(sub)
    add_curves(sub)
    add_compare_methods(sub)
    add_downstream(sub)
    return parser


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
            code = _run_printable(args)
        announce_seed(args)
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
    except Exception as exc:
        if args.debug:
            raise
        # Ctrl-C while a C extension initialises surfaces as that import's error
        # (pybind11: "ImportError: initialization failed", caused by the KeyboardInterrupt).
        if _from_interrupt(exc):
            return _interrupted(argv)
        if not isinstance(exc, (BayescaleError, OSError, UnicodeDecodeError)):
            announce_seed(args)
            raise
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR


def announce_seed(args: argparse.Namespace) -> None:
    """Print the seed drawn for a command given no ``--seed`` (after its fits ran or crashed).

    Not after a user error (a bad file, an unknown law): nothing was fitted, and the error
    stays the one line on stderr.
    """
    seed = getattr(args, "drawn_seed", None)
    if seed is not None:
        print(f"bayescale: seed {seed} (drawn; --seed {seed} re-runs this fit)", file=sys.stderr)


def _from_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` comes from a Ctrl-C (SIGINT arrived, or a KeyboardInterrupt caused it)."""
    if _SIGINT_RECEIVED.is_set():
        return True
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        if isinstance(link, KeyboardInterrupt):
            return True
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    return False


_REPORTED = threading.Lock()
#: Set by the command's SIGINT handler: whatever error then ends the command is the interrupt's.
_SIGINT_RECEIVED = threading.Event()


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
    :data:`INTERRUPT_GRACE` seconds. A second Ctrl-C ends it at once. An ignored SIGINT stays ignored.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        return  # started with SIGINT ignored (nohup, a script's background job): it stays so
    default_hook = sys.unraisablehook

    def quiet_hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            return
        default_hook(unraisable)

    def exit_soon() -> None:
        time.sleep(INTERRUPT_GRACE)
        _interrupted(None)

    def on_sigint(signum: int, frame: Any) -> None:
        if _SIGINT_RECEIVED.is_set():
            _interrupted(None)
        _SIGINT_RECEIVED.set()
        threading.Thread(target=exit_soon, daemon=True).start()
        raise KeyboardInterrupt

    sys.unraisablehook = quiet_hook
    signal.signal(signal.SIGINT, on_sigint)


def _show_warning(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
    """Print a warning as ``warning: ...`` on stderr, without file and line."""
    print(f"warning: {printable(str(message))}", file=sys.stderr)


class _PrintableStream:
    """A text stream whose writes are made :func:`~bayescale.errors.printable` (newlines kept)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(printable(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _run_printable(args: argparse.Namespace) -> int:
    """Run the command with stdout made printable (an ESC in a group label cannot clear the screen).

    Group labels, run names, problems and paths read from a file reach the terminal escaped.

    stderr is left alone for the progress bar's own control sequences; what the command prints
    there from a file goes through ``printable`` where it is printed.
    """
    stdout = sys.stdout
    sys.stdout = _PrintableStream(stdout)  # type: ignore[assignment]
    try:
        return COMMANDS[args.command](args)
    finally:
        if isinstance(sys.stdout, _PrintableStream):
            sys.stdout = stdout


COMMANDS = {
    "isoflop": cmd_isoflop,
    "envelope": cmd_envelope,
    "compare-methods": cmd_compare_methods,
    "steps": cmd_steps,
    "curves": cmd_curves,
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
    "downstream": cmd_downstream,
}
