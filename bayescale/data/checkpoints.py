"""What a runs table's checkpoints mean: a warning when they may sit in the middle of a decay.

A run's rows (a ``run`` label on several rows) are checkpoints of one model. A checkpoint in the
middle of a learning-rate decay is not a run trained to that many tokens: it has seen a higher
learning rate than a run that ends there, and its loss is higher. The (N, D) laws know no schedule,
so they read every checkpoint as the end of a run. :func:`mid_decay_problem` says so when the table
cannot show otherwise (no ``lr`` column) or shows it (rows whose ``lr`` is well above the run's last).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from bayescale.errors import RunsWarning

#: A checkpoint whose ``lr`` is within this factor of its run's last ``lr`` counts as the end of
#: the decay (on the OLMo ladder: the last ~7% of each cosine run).
END_OF_DECAY = 1.10

#: What to give or do: keep the end-of-decay checkpoints, or model the schedule.
_KEEP = "keep the checkpoints at the end of each run's decay (lr within {factor:g}x of the run's last)"
_CURVES = "fit the whole curves under their schedule with bayescale.fit_curves (docs/guides/checkpoints.md)"


def mid_decay_problem(frame: Any) -> str | None:
    """Why the checkpoints of ``frame`` (a runs table) may be mid-decay, or ``None``.

    ``None`` without checkpoints (no ``run`` column, or every run on one row) and when every
    checkpoint's ``lr`` is within :data:`END_OF_DECAY` of its run's last (the row with the most
    tokens).
    """
    frame = getattr(frame, "frame", frame)
    if "run" not in frame.columns:
        return None
    sizes = frame.groupby("run", sort=False)["run"].transform("size").to_numpy()
    if not np.any(sizes > 1):
        return None
    runs = int(frame.loc[sizes > 1, "run"].nunique())
    keep = _KEEP.format(factor=END_OF_DECAY)
    if "lr" not in frame.columns:
        return (
            f"{runs} runs have checkpoints (several rows of one 'run') and the table has no 'lr' "
            "column: a checkpoint in the middle of a learning-rate decay is not a run trained to "
            "that many tokens (it has seen a higher learning rate than a run that ends there, and "
            "its loss is higher), but the law reads every checkpoint as the end of a run; give an "
            f"'lr' column (the learning rate at each checkpoint) and {keep}, or {_CURVES}"
        )
    ordered = frame.sort_values("tokens", kind="stable")
    last = ordered.groupby("run", sort=False)["lr"].transform("last")
    lr = ordered["lr"].to_numpy(dtype=float)
    high = lr > END_OF_DECAY * last.to_numpy(dtype=float)
    if not np.any(high):
        return None
    first = str(ordered["run"].to_numpy()[np.flatnonzero(high)[0]])
    return (
        f"{int(high.sum())} of {len(frame)} checkpoints (in {ordered.loc[high, 'run'].nunique()} runs, "
        f"e.g. {first!r}) have an lr above {END_OF_DECAY:g}x their run's last: they are in the middle "
        f"of the decay, not runs trained to their tokens, and the law reads them as the end of a "
        f"run; {keep}, or {_CURVES}"
    )


def warn_mid_decay(frame: Any, stacklevel: int = 3) -> None:
    """Emit :func:`mid_decay_problem` as a :class:`~bayescale.errors.RunsWarning`, if any."""
    problem = mid_decay_problem(frame)
    if problem:
        warnings.warn(problem, RunsWarning, stacklevel=stacklevel + 1)
