"""Published runs shipped with bayescale, loaded as validated tables.

What is bundled, with provenance cards, is in :mod:`bayescale.data.catalog`.
"""

from __future__ import annotations

from bayescale.data.catalog import DatasetInfo, card, curves_frame, describe, frame, info, names
from bayescale.data.curves import Curves
from bayescale.data.runs import Runs

__all__ = ["DatasetInfo", "card", "describe", "info", "load", "load_curves", "names"]


def load(name: str) -> Runs:
    """Load a bundled data set as validated :class:`~bayescale.Runs`."""
    return Runs.from_frame(frame(info(name)), source=name)


def load_curves(name: str) -> Curves:
    """Load a bundled data set of loss curves as validated :class:`~bayescale.data.curves.Curves`."""
    return Curves.from_frame(curves_frame(name), source=name)
