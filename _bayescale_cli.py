"""The ``bayescale`` command's entry point: Ctrl-C stops it cleanly from its first instant.

The console script imports this module, not ``bayescale.cli``. The command line imports
pandas, xarray and SciPy (PyMC and JAX only when a fit needs them) for a second or more, and
a Ctrl-C in that time raised a KeyboardInterrupt out of some import with a traceback (issue 20,
item 9), before ``bayescale.cli.main`` could install its handling. This module imports only the
standard library (``import bayescale`` itself imports none of the package's modules, but
importing ``bayescale.cli`` does): it makes SIGINT end the process with the
command line's one line and status 130, then imports the command line, whose ``main``
replaces that with its own handling (``bayescale.cli.entry._handle_interrupts``: files
being written are cleaned up as the interrupt unwinds). Only the interpreter's own
start-up (``site``) comes before it.

It also hides Dask from the command (``_bayescale_cluster``), before xarray looks for it.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

from _bayescale_cluster import CLUSTER_MODULES, hide_cluster_modules, reveal_cluster_modules

__all__ = ["CLUSTER_MODULES", "EXIT_INTERRUPTED", "hide_cluster_modules", "main", "reveal_cluster_modules"]

#: 128 + SIGINT, as a shell reports a process ended by Ctrl-C (as ``bayescale.cli.EXIT_INTERRUPTED``).
EXIT_INTERRUPTED = 130


def _exit_interrupted(signum: int, frame: FrameType | None) -> None:
    """End the process at once, with the command line's message.

    Nothing has been written yet, and half-imported modules need no clean-up:
    ``os._exit`` skips the interpreter's shutdown, which can crash while
    compiler threads started by an import still run.
    """
    try:
        os.write(2, b"error: interrupted\n")
    finally:
        os._exit(EXIT_INTERRUPTED)


def main() -> int:
    """Run the ``bayescale`` command with Ctrl-C handled from its start; return the exit status.

    A SIGINT the parent set to be ignored (``nohup``, a background job) stays ignored.
    """
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _exit_interrupted)
    hide_cluster_modules()
    from bayescale.cli import main as cli_main

    return cli_main()
