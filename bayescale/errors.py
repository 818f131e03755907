"""The exceptions and warnings bayescale raises for user mistakes.

Every user-facing error derives from :class:`BayescaleError`, so callers (and the
command line) can tell a mistake in the input from a bug in the library.
Input that is legal but suspicious (duplicate runs, units that look wrong)
gets a :class:`RunsWarning` instead, naming the evidence.
"""

from __future__ import annotations

import unicodedata


class BayescaleError(ValueError):
    """Base class of every error bayescale raises for bad input or bad state."""


class RunsError(BayescaleError):
    """A runs table is missing a column or holds a value that cannot be used."""


class PriorError(BayescaleError):
    """A prior specification names an unknown distribution or bad arguments."""


class LawError(BayescaleError):
    """An unknown law, parameter, or a law applied to data it cannot use."""


class FitFileError(BayescaleError):
    """A saved fit is missing, corrupt, truncated, foreign or incompatible."""


class DatasetError(BayescaleError):
    """An unknown bundled data set name."""


class CacheWarning(UserWarning):
    """The compilation cache is left unused: others could change the programs in it."""


class RunsWarning(UserWarning):
    """A runs table that loads but looks wrong: duplicate runs or implausible units."""


def printable(text: str, keep: str = "\n") -> str:
    r"""``text`` safe for a terminal: each non-printable character (except those in ``keep``) escaped.

    Control characters (ESC starts the sequences that retitle a terminal, clear it or move the
    cursor over an earlier line) and Unicode format characters (U+202E turns the text after it
    around) become their Python escapes (``\x1b``, ``\u202e``), as ``repr`` shows them. Every
    string read from a file or a table goes through this before it reaches a terminal.
    """
    if text.isprintable():  # every Cc and Cf character is non-printable to Python
        return text
    return "".join(ch if ch in keep or ch.isprintable() else repr(ch)[1:-1] for ch in text)


def has_format_or_control(text: str) -> bool:
    """Whether ``text`` holds a control (Cc) or format (Cf, e.g. U+202E) character."""
    return any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text)
