"""Loss curves prepared for Kaplan's L(N, S_min): steps, batch sizes, and whether B_crit is identified."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayescale.data.curves import Curves
from bayescale.errors import RunsError, RunsWarning

#: Runs whose batch sizes (tokens per step) differ by less than this factor count as one batch size.
MIN_BATCH_RATIO = 1.1


@dataclass(frozen=True)
class StepsData:
    """Curves prepared for the model: run index, log N, log steps, log batch, log loss, AR(1) links."""

    curves: Curves
    run: np.ndarray
    log_params: np.ndarray
    log_steps: np.ndarray
    log_batch: np.ndarray
    log_loss: np.ndarray
    prev: np.ndarray
    first: np.ndarray
    batch_fitted: bool
    batch_note: str
    kappa: float = 6.0

    @property
    def covariates(self) -> dict[str, np.ndarray]:
        """``log_params``, ``log_steps`` and (when B_crit is fitted) ``log_batch``."""
        out = {"log_params": self.log_params, "log_steps": self.log_steps}
        if self.batch_fitted:
            out["log_batch"] = self.log_batch
        return out


def _check_tokens_grow_with_steps(frame: pd.DataFrame) -> None:
    """Raise when tokens do not rise with steps within a run (a batch size would come out <= 0)."""
    for run, checkpoints in frame.groupby("run", sort=False):
        ordered = checkpoints.sort_values("step", kind="stable")
        tokens, steps = ordered["tokens"].to_numpy(dtype=float), ordered["step"].to_numpy(dtype=float)
        bad = np.flatnonzero(np.diff(tokens) <= 0)
        if bad.size:
            i = int(bad[0])
            raise RunsError(
                f"run {run!r}: tokens do not grow with steps (step {steps[i]:.10g} has {tokens[i]:.10g} "
                f"tokens, step {steps[i + 1]:.10g} has {tokens[i + 1]:.10g}; {bad.size} such pair(s)); "
                "check the step and tokens columns"
            )


def batch_sizes(curves: Curves) -> np.ndarray:
    """Batch size of each checkpoint in tokens: ``tokens / step``, or the ``batch_size`` column.

    Raises
    ------
    RunsError
        When the curves have neither a ``step`` nor a ``batch_size`` column.
    """
    frame = curves.frame
    if "step" in frame.columns:
        _check_tokens_grow_with_steps(frame)
        return curves.column("tokens") / curves.column("step")
    if "batch_size" in frame.columns:
        return curves.column("batch_size")
    raise RunsError(
        "Kaplan's L(N, S) needs optimiser steps: the curves need a 'step' column (batch size in "
        "tokens is then tokens / step) or a 'batch_size' column in tokens (steps are then "
        f"tokens / batch_size); found {list(frame.columns)}"
    )


def prepare(curves: Curves, critical_batch: bool | None = None, min_step: float = 0.0) -> StepsData:
    """Arrays of ``curves`` for :func:`fit_steps`, deciding whether B_crit can be fitted.

    Parameters
    ----------
    critical_batch
        ``True``: fit B* and alpha_B, an error when the runs share one batch size;
        ``False``: fit L(N, S) with S_min = S; ``None``: fit B_crit when the batch
        sizes differ by more than :data:`MIN_BATCH_RATIO`, else warn and fit L(N, S).
    min_step
        Checkpoints at fewer steps are left out (Kaplan's law describes the curve after
        the early transient).
    """
    batch = batch_sizes(curves)
    steps = curves.column("step") if "step" in curves.frame.columns else curves.column("tokens") / batch
    keep = steps >= min_step
    if not keep.all():
        frame = curves.frame.loc[keep].reset_index(drop=True)
        try:
            curves = Curves.from_frame(frame, source=f"{curves.source} (steps >= {min_step:g})")
        except RunsError as exc:
            raise RunsError(f"after leaving out checkpoints below step {min_step:g}: {exc}") from None
        batch, steps = batch[keep], steps[keep]
    ratio = float(batch.max() / batch.min())
    per_run = pd.Series(batch).groupby(curves.run_index()).median()
    if ratio >= MIN_BATCH_RATIO:
        fitted, note = (
            True,
            (
                f"batch sizes {batch.min():.3g}-{batch.max():.3g} tokens across "
                f"{per_run.round(-1).nunique()} levels: B* and alpha_B fitted"
            ),
        )
    else:
        note = (
            f"every checkpoint has batch size {np.median(batch):.3g} tokens (tokens / step): B_crit is "
            "not identified, so S_min = S (the steps as run) and B*, alpha_B are not fitted; "
            "curves at two or more batch sizes are needed for them"
        )
        if critical_batch:
            raise RunsError(f"cannot fit the critical batch size: {note}")
        if critical_batch is None:
            warnings.warn(note, RunsWarning, stacklevel=3)
        fitted = False
    if critical_batch is False:
        fitted = False
        note = "critical_batch=False: S_min = S (the steps as run), B*, alpha_B not fitted"
    return _steps_data(curves, np.log(batch), np.log(steps), fitted, note)


def _steps_data(
    curves: Curves, log_batch: np.ndarray, log_steps: np.ndarray, fitted: bool, note: str
) -> StepsData:
    """The arrays of :class:`StepsData` from the (kept) checkpoints and their log batch sizes and steps."""
    run = curves.run_index()
    first = np.r_[True, run[1:] != run[:-1]]
    # FLOPs per parameter per token: 6 unless the curves carry their own compute column
    flops_ratio = curves.column("compute") / (curves.column("params") * curves.column("tokens"))
    return StepsData(
        curves=curves,
        run=run,
        log_params=np.log(curves.column("params")),
        log_steps=log_steps,
        log_batch=log_batch,
        log_loss=np.log(curves.column("loss")),
        prev=np.where(first, 0, np.arange(len(run)) - 1),
        first=first,
        batch_fitted=fitted,
        batch_note=note,
        kappa=float(np.exp(np.mean(np.log(flops_ratio)))),
    )
