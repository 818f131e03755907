"""The ``bayescale`` command line: a thin client of the library.

Every subcommand prints a readable table, or JSON with ``--json``. A user
mistake prints ``error: ...`` on stderr and exits with status 2, without a
traceback (``--debug`` shows one).

The package: :mod:`~bayescale.cli.entry` assembles the parser and runs a command
(``main``, error handling, exit statuses); :mod:`~bayescale.cli.options` holds the
option types and the option groups, the sampler options defined once;
:mod:`~bayescale.cli.render` renders results to text and JSON;
:mod:`~bayescale.cli.files` reads runs and saved fits and writes outputs; one
module per group of commands (``fit``, ``many``, ``plan``, ``predict``,
``methods``, ``compare``, ``plot``, ``report``, ``catalog``).
"""

from bayescale.cli.entry import COMMANDS, build_parser, main
from bayescale.cli.exits import EXIT_BROKEN_PIPE, EXIT_DIAGNOSTICS, EXIT_INTERRUPTED, EXIT_USER_ERROR
from bayescale.cli.plot import PLOTS

__all__ = [
    "COMMANDS",
    "EXIT_BROKEN_PIPE",
    "EXIT_DIAGNOSTICS",
    "EXIT_INTERRUPTED",
    "EXIT_USER_ERROR",
    "PLOTS",
    "build_parser",
    "main",
]
