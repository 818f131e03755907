"""What a runs table's checkpoints mean: a warning when they may sit in the middle of a decay.

A run's rows (a ``run`` label on several rows) are checkpoints of one model. A checkpoint in the
middle of a learning-rate decay is not a run trained to that many tokens: it has seen a higher
learning rate than a run that ends there, and its loss is higher. The (N, D) laws know no schedule,
so they read every checkpoint as the end of a run. :func:`mid_decay_problem` says so when the table
cannot show otherwise (no ``lr`` column) or shows it (rows whose ``lr`` is well above the run's last).

Nor is a warm-up checkpoint (the first steps of a run, loss up to 8 nats on the OLMo ladder against
3-4 at its end) a run trained to its D. :func:`select_checkpoints` chooses the checkpoints a fit of
an (N, D) law reads, by a named policy (:data:`CHECKPOINT_POLICIES`): by default, when the table has
``lr``, those at the end of each run's decay (from its lr peak on); it drops the rest with a
:class:`~bayescale.errors.RunsWarning` that counts them and says how to keep them.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from bayescale.errors import BayescaleError, RunsWarning

#: A checkpoint whose ``lr`` is within this factor of its run's last ``lr`` counts as the end of
#: the decay (on the OLMo ladder: the last ~7% of each cosine run).
END_OF_DECAY = 1.10

#: Under ``"after-warmup"``, a checkpoint before this fraction of its run's tokens (those of its last
#: checkpoint) is warm-up too: OLMo's ladder drops the first 10% of each run's checkpoints before
#: fitting them (Bhagia et al. 2024, step 2); its runs' lr peaks at 1.4%-5.5% of their tokens.
WARMUP_FRACTION = 0.10

#: Which checkpoints of each run a fit of an (N, D) law reads: ``"end-of-decay"`` (the default)
#: those from the run's lr peak on whose ``lr`` is within :data:`END_OF_DECAY` of the run's last
#: (without an ``lr`` column every one: the data layer's warning says what to give),
#: ``"after-warmup"`` those from :data:`WARMUP_FRACTION` of the run's tokens and (with ``lr``) its lr
#: peak on, ``"all"`` every one.
CHECKPOINT_POLICIES = ("end-of-decay", "after-warmup", "all")

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


def checkpoints_kept(frame: Any, policy: str = "end-of-decay") -> tuple[np.ndarray, str | None]:
    """The rows of ``frame`` (a runs table) a fit reads under ``policy``, and why others are dropped.

    Rows of a run on one row, and every row of a table without checkpoints, are kept. A run's
    last checkpoint (most tokens) is always kept. Returns the mask and ``None`` when nothing is
    dropped, else a message counting the dropped rows by reason, with how to keep them.

    Raises
    ------
    BayescaleError
        ``policy`` is not one of :data:`CHECKPOINT_POLICIES`.
    """
    if policy not in CHECKPOINT_POLICIES:
        raise BayescaleError(f"unknown checkpoints policy {policy!r}; use one of {list(CHECKPOINT_POLICIES)}")
    frame = getattr(frame, "frame", frame)
    keep = np.ones(len(frame), dtype=bool)
    if policy == "all" or "run" not in frame.columns:
        return keep, None
    runs = frame["run"].astype(str)
    several = runs.groupby(runs).transform("size").to_numpy() > 1
    tokens = frame["tokens"].to_numpy(dtype=float)
    last = pd.Series(tokens).groupby(runs.to_numpy()).transform("max").to_numpy()
    # The token cut is a rule of thumb, asked for by name only: a table of cooldowns branched off
    # at 10-100% of a run (Gemstones) has decayed checkpoints at 10% that are no warm-up.
    warmup = tokens < WARMUP_FRACTION * last if policy == "after-warmup" else np.zeros(len(frame), dtype=bool)
    has_lr = "lr" in frame.columns
    if has_lr:
        lr = frame["lr"].to_numpy(dtype=float)
        table = pd.DataFrame({"run": runs.to_numpy(), "tokens": tokens, "lr": lr})
        by_run = table.sort_values("tokens", kind="stable").groupby("run", sort=False)["lr"]
        # the run's first row at its largest lr (rows labelled by position), and its last row's lr
        peak = tokens[by_run.transform("idxmax").sort_index().to_numpy()]
        final = by_run.transform("last").sort_index().to_numpy()
        warmup |= tokens < peak
    warmup &= several
    mid = np.zeros(len(frame), dtype=bool)
    if policy == "end-of-decay" and has_lr:
        mid = several & ~warmup & (lr > END_OF_DECAY * final)
    keep = ~(warmup | mid)
    if keep.all():
        return keep, None
    loss = frame["loss"].to_numpy(dtype=float)
    parts = []
    if warmup.any():
        rules = [f"the first {WARMUP_FRACTION:.0%} of their run's tokens"] * (policy == "after-warmup")
        rule = " or ".join(rules + ["before their run's lr peak"] * has_lr)
        parts.append(f"{int(warmup.sum())} in warm-up ({rule}; loss up to {loss[warmup].max():.3g})")
    if mid.any():
        parts.append(f"{int(mid.sum())} mid-decay (lr above {END_OF_DECAY:g}x their run's last)")
    kept = "at the end of each run's decay" if mid.any() else "after the warm-up"
    how = "checkpoints='after-warmup' (the mid-decay ones too) or 'all'" if mid.any() else "checkpoints='all'"
    return keep, (
        f"{int((~keep).sum())} of {len(frame)} checkpoints (in {runs[~keep].nunique()} runs) are left out: "
        f"{' and '.join(parts)}, where a law of final losses does not hold; the fit reads the "
        f"{int(keep.sum())} {kept}. Keep them with {how} (bayescale fit --checkpoints), or {_CURVES}"
    )


def select_checkpoints(runs: Any, policy: str = "end-of-decay", stacklevel: int = 3) -> Any:
    """``runs`` (a :class:`~bayescale.Runs`) less the checkpoints ``policy`` leaves out, with a warning.

    See :func:`checkpoints_kept`; the :class:`~bayescale.errors.RunsWarning` counts what was left
    out and says how to keep it. Returns ``runs`` itself when nothing is.
    """
    keep, message = checkpoints_kept(runs, policy)
    if message is None:
        return runs
    warnings.warn(message, RunsWarning, stacklevel=stacklevel + 1)
    return runs.subset(keep)
