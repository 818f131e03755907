"""Loss curves made ready for the multi-power law: validated, thinned, with schedule features.

:func:`prepare_curves` checks a table of checkpoints (``run``, ``step``, ``loss``, optionally
``params``) against each run's LR schedule and computes every checkpoint's features once, in
numpy (:func:`~bayescale.data.schedule.curve_features`), stacked run by run (:class:`CurvesData`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bayescale.data.schedule import BINS, CurveFeatures, Schedule, curve_features
from bayescale.errors import BayescaleError, RunsError

#: What a schedule may be given as: a description, or the LR at every step 0 .. T-1.
type ScheduleLike = Schedule | np.ndarray | list[float]


def lr_of(run: str, schedules: Mapping[str, ScheduleLike]) -> np.ndarray:
    """The LR at every step of ``run``'s schedule; RunsError for a run without one or a bad one."""
    if run not in schedules:
        raise RunsError(
            f"run {run!r} has no learning-rate schedule. A checkpoint in the middle of a decay is not "
            "a run trained to that step: its loss depends on the learning rates seen so far. Give "
            "schedules={run: Schedule(peak_lr=..., horizon=..., warmup=..., shape=...)} or the LR at "
            f"every step; schedules were given for {sorted(schedules)}"
        )
    given = schedules[run]
    lr = given.per_step() if isinstance(given, Schedule) else np.asarray(given, dtype=float)
    if lr.ndim != 1 or not np.all(np.isfinite(lr) & (lr >= 0)):
        raise RunsError(f"run {run!r}: the LR at every step must be a 1-d array of finite values >= 0")
    return lr


@dataclass(frozen=True)
class CurvesData:
    """Checkpoints of the fitted curves, stacked run by run in step order, with their features."""

    frame: pd.DataFrame
    features: CurveFeatures
    curve_index: np.ndarray
    bins: int
    sizes: tuple[str, ...] = ("",)
    log_size: np.ndarray = field(default_factory=lambda: np.zeros(1))
    source: str = "DataFrame"

    @property
    def runs(self) -> list[str]:
        """The curves' run names, in the order of :attr:`curve_index`."""
        return list(dict.fromkeys(self.frame["run"]))

    @property
    def group(self) -> np.ndarray:
        """Each checkpoint's model size, an index into :attr:`sizes`."""
        if "params" not in self.frame.columns:
            return np.zeros(len(self.frame), dtype=int)
        index = {label: i for i, label in enumerate(self.sizes)}
        return self.frame["params"].map(lambda n: index.get(size_label(n), 0)).to_numpy(dtype=int)

    def size_of(self, run: str) -> int:
        """The index in :attr:`sizes` of a fitted run's model size."""
        return int(self.group[np.flatnonzero(self.frame["run"].to_numpy() == run)[0]])

    @property
    def log_s1_ref(self) -> float:
        """Where every curve's random walk starts: the lowest ``log S1`` of the fitted checkpoints."""
        return float(np.log(self.features.s1).min())

    @property
    def lr_ref(self) -> float:
        """The peak LR: the largest LR at which the LR changed (a warm-up's end), else the mean LR."""
        changed = self.features.lr[self.features.weight != 0]
        steps = self.frame["step"].to_numpy() + 1
        return float(changed.max()) if changed.size else float(np.median(self.features.s1 / steps))


def size_label(params: float) -> str:
    """The label of a model size of ``params`` parameters in the names of per-size parameters."""
    return f"{float(params):.4g}"


def thinned(curves: pd.DataFrame, most: int | None) -> pd.DataFrame:
    """At most ``most`` checkpoints of each run, evenly spaced by index, each run's last kept.

    Checkpoints logged every few steps are strongly correlated along a curve (an AR(1) fit of the
    multi-power residuals gives rho 0.99 at 128 steps), so the few hundred that remain carry
    nearly all the information on the law, for a fraction of the cost per gradient.
    """
    if most is None:
        return curves
    if most < 2:
        raise BayescaleError(f"max_points must be at least 2 per curve; got {most}")
    keep = []
    for _, rows in curves.sort_values(["run", "step"], kind="stable").groupby("run", sort=False):
        pick = np.unique(np.linspace(len(rows) - 1, 0, min(len(rows), most)).round().astype(int))
        keep.append(rows.iloc[pick])
    return pd.concat(keep)


def prepare_curves(
    curves: pd.DataFrame, schedules: Mapping[str, ScheduleLike], bins: int = BINS
) -> CurvesData:
    """Validate ``curves`` (columns ``run``, ``step``, ``loss``) and compute each run's features.

    An optional ``params`` column (N, one value per run) makes each distinct N a model size of
    its own (:class:`CurvesData`'s ``sizes``, ordered by N).

    Raises
    ------
    RunsError
        A missing column, a non-positive or non-finite loss, a repeated step in a run, a step
        outside its schedule, a run without a schedule (naming it), or a run with two N.
    """
    if not isinstance(curves, pd.DataFrame):
        raise RunsError(f"curves must be a pandas DataFrame, got {type(curves).__name__}")
    missing = [c for c in ("run", "step", "loss") if c not in curves.columns]
    if missing:
        raise RunsError(
            f"curves need columns run, step, loss; missing {missing} (found {list(curves.columns)})"
        )
    frame = curves.assign(run=curves["run"].astype(str)).sort_values(["run", "step"], kind="stable")
    loss = frame["loss"].to_numpy(dtype=float)
    bad = np.flatnonzero(~(np.isfinite(loss) & (loss > 0)))
    if bad.size:
        row = frame.iloc[bad[0]]
        raise RunsError(
            f"run {row['run']!r} step {row['step']}: loss {row['loss']!r} must be a finite number > 0"
        )
    sizes: tuple[str, ...] = ("",)
    log_size = np.zeros(1)
    if "params" in frame.columns:
        params = frame["params"].to_numpy(dtype=float)
        if not np.all(np.isfinite(params) & (params > 0)):
            raise RunsError("column 'params' (N of each run) must hold finite numbers > 0")
        per_run = frame.groupby("run")["params"].nunique()
        if (per_run > 1).any():
            raise RunsError(f"run {per_run[per_run > 1].index[0]!r} has rows with different params")
        distinct = np.unique(params)
        if len(distinct) > 1:
            sizes = tuple(size_label(n) for n in distinct)
            log_size = np.log(distinct) - np.log(distinct).mean()
    parts, index = [], []
    for i, (run, rows) in enumerate(frame.groupby("run", sort=False)):
        if rows["step"].duplicated().any():
            raise RunsError(
                f"run {run!r} has two checkpoints at step {rows['step'][rows['step'].duplicated()].iloc[0]}"
            )
        parts.append(curve_features(lr_of(str(run), schedules), rows["step"].to_numpy(), bins))
        index.append(np.full(len(rows), i))
    return CurvesData(
        frame.reset_index(drop=True),
        CurveFeatures.concat(parts),
        np.concatenate(index),
        bins,
        sizes,
        log_size,
    )
