"""The exceptions and warnings bayescale raises for user mistakes.

Every user-facing error derives from :class:`BayescaleError`, so callers (and the
command line) can tell a mistake in the input from a bug in the library.
Input that is legal but suspicious (duplicate runs, units that look wrong)
gets a :class:`RunsWarning` instead, naming the evidence.
"""

from __future__ import annotations


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


class RunsWarning(UserWarning):
    """A runs table that loads but looks wrong: duplicate runs or implausible units."""
