"""Exit statuses of the ``bayescale`` command and its one-line error messages."""

from __future__ import annotations

from bayescale.errors import printable

EXIT_USER_ERROR = 2
EXIT_DIAGNOSTICS = 3
#: 128 + the signal's number, as a shell reports a process ended by SIGINT or SIGPIPE.
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


def _one_line(exc: BaseException) -> str:
    """The error's message on one line (OS errors with their file name)."""
    text = str(exc)
    if isinstance(exc, UnicodeDecodeError):
        text = f"a file is not UTF-8 text ({exc.reason} at byte {exc.start})"
    return printable(" ".join(text.split())) or type(exc).__name__
