"""Units of a loss column: stated, checked against the column's name, and labelled in outputs.

A validation loss is in nats per token; a task loss (the OLMo ladder's) is in bits per byte
of the correct answer. Both fit the same laws, but they are different quantities: a link fitted
on bits per byte cannot read a loss in nats per token, and a bits-per-byte column silently taken
as nats per token gives every planning answer the wrong scale. So a runs table carries its loss
unit (default nats per token), and a loss column whose name says otherwise is refused until
the unit is stated.
"""

from __future__ import annotations

import re

from bayescale.errors import RunsError

#: Loss units by name, with their label.
LOSS_UNITS = {
    "nats_per_token": "nats per token",
    "bits_per_token": "bits per token",
    "bits_per_byte": "bits per byte",
    "nats_per_byte": "nats per byte",
}
DEFAULT_LOSS_UNIT = "nats_per_token"

#: What a column's name says about its unit (matched as words, case-insensitively).
_NAME_PATTERNS = (
    (re.compile(r"(^|[^a-z])(bpb|bits?[_ -]?per[_ -]?byte)([^a-z]|$)"), "bits_per_byte"),
    (re.compile(r"(^|[^a-z])(bpt|bits?[_ -]?per[_ -]?token)([^a-z]|$)"), "bits_per_token"),
    (re.compile(r"(^|[^a-z])(nats?[_ -]?per[_ -]?byte)([^a-z]|$)"), "nats_per_byte"),
)


def check_loss_unit(unit: str) -> str:
    """``unit`` if it is one of :data:`LOSS_UNITS`; a RunsError listing them otherwise."""
    if unit not in LOSS_UNITS:
        raise RunsError(f"unknown loss unit {unit!r}; use one of {list(LOSS_UNITS)}")
    return unit


def unit_in_name(column: str) -> str | None:
    """The loss unit a column's name states (``task_bpb`` -> ``bits_per_byte``), or ``None``."""
    name = str(column).strip().lower()
    for pattern, unit in _NAME_PATTERNS:
        if pattern.search(name):
            return unit
    return None


def check_loss_column(column: str, unit: str) -> None:
    """Refuse a loss column whose name states a unit other than ``unit``.

    Raises
    ------
    RunsError
        Naming the column, the unit its name states and how to say so.
    """
    check_loss_unit(unit)
    named = unit_in_name(column)
    if named is not None and named != unit:
        raise RunsError(
            f"loss column {str(column)!r} is named as {LOSS_UNITS[named]}, but the runs' loss unit is "
            f"{LOSS_UNITS[unit]}; if it is in {LOSS_UNITS[named]}, say loss_unit={named!r} "
            f"(a task loss fits the same laws; only a loss in {LOSS_UNITS[DEFAULT_LOSS_UNIT]} is comparable "
            "with published validation losses)"
        )


def loss_label(unit: str) -> str:
    """``"loss [nats per token]"``: the axis and column label of a loss in ``unit``."""
    return f"loss [{LOSS_UNITS[check_loss_unit(unit)]}]"
