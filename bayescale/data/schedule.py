"""Learning-rate schedules as data, and the schedule features a curve law reads at each checkpoint.

A checkpoint in the middle of a cosine decay is not a run trained to that many tokens: its loss
depends on the learning rates seen so far, not only on the step. A curve law such as the
multi-power law (Luo et al. 2025) reads two features of the LR history up to checkpoint ``t``:

``S1(t) = sum_{tau=0..t} eta_tau``
    the summed learning rate, warm-up included (Luo et al.'s repository form);
the loss-drop term ``LD(t) = sum_{k=1..t} (eta_k - eta_{k-1}) G(eta_k, S1(t) - S1(k-1))``
    with ``G(eta, s) = 1 - (1 + C eta^-gamma s)^-beta``, which depends on parameters.

Both are computed once here, in numpy, from the LR at every step: either logged (columns ``run``,
``step``, ``lr``) or generated from a :class:`Schedule`. ``LD`` needs a sum over the whole history
for every checkpoint; :func:`curve_features` aggregates it into a fixed number of bins per
checkpoint so a sampler evaluates ``(checkpoints x bins)`` terms instead of ``(checkpoints x
steps)``: exact where the LR does not change (those steps add nothing), and exact step by step
over the most recent steps, where ``G`` changes fastest. :func:`loss_drop_exact` is the reference
the binned sum is measured against (``tests/data/test_schedule.py``, ``docs/guides/curves.md``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from bayescale.errors import RunsError

#: Decay shapes a :class:`Schedule` describes.
SHAPES = ("constant", "cosine", "linear", "wsd", "two_stage")

#: How the decay of a WSD schedule interpolates from the peak to the final LR.
WSD_DECAYS = ("exponential", "linear", "cosine")

#: Default number of bins of the loss-drop sum per checkpoint (see :func:`curve_features`).
BINS = 96


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule described by a few numbers, giving the LR at every step.

    Steps are 0-based; the schedule covers steps ``0 .. horizon - 1``. Warm-up is linear from 0 at
    step 0 to ``peak_lr`` at step ``warmup - 1`` (Luo et al.'s convention); after it:

    - ``constant``: ``peak_lr``;
    - ``cosine``: ``final + (peak - final) (1 + cos(pi (k - warmup) / (horizon - warmup))) / 2``;
    - ``linear``: from ``peak_lr`` at ``warmup`` to ``final`` at ``horizon``;
    - ``wsd`` (warmup-stable-decay): ``peak_lr`` until ``decay_start``, then a decay to ``final``
      at ``horizon``, ``wsd_decay`` exponential (geometric interpolation), linear or cosine;
    - ``two_stage``: ``peak_lr`` until ``decay_start``, then ``final`` to the end.

    ``final = final_fraction * peak_lr``.

    Parameters
    ----------
    peak_lr
        The LR after warm-up (> 0).
    horizon
        Number of steps of the run (> warmup).
    warmup
        Warm-up steps (0 for none).
    shape
        One of :data:`SHAPES`.
    final_fraction
        Final LR as a fraction of the peak (in [0, 1]; unused by ``constant``).
    decay_start
        Step where a ``wsd`` decay or the ``two_stage`` second stage starts.
    wsd_decay
        One of :data:`WSD_DECAYS`.

    Examples
    --------
    >>> Schedule(peak_lr=3e-4, horizon=24000, warmup=2160, shape="cosine", final_fraction=0.1).lr([0, 2159])
    array([0.    , 0.0003])
    """

    peak_lr: float
    horizon: int
    warmup: int = 0
    shape: str = "cosine"
    final_fraction: float = 0.1
    decay_start: int | None = None
    wsd_decay: str = "exponential"

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise RunsError(f"schedule shape {self.shape!r} is not one of {list(SHAPES)}")
        if not (self.peak_lr > 0 and math.isfinite(self.peak_lr)):
            raise RunsError(f"schedule peak_lr {self.peak_lr!r} must be a finite number > 0")
        if not (0 <= self.warmup < self.horizon):
            raise RunsError(f"schedule warmup {self.warmup} must be in [0, horizon={self.horizon})")
        if not (0.0 <= self.final_fraction <= 1.0):
            raise RunsError(f"schedule final_fraction {self.final_fraction!r} must be in [0, 1]")
        if self.wsd_decay not in WSD_DECAYS:
            raise RunsError(f"schedule wsd_decay {self.wsd_decay!r} is not one of {list(WSD_DECAYS)}")
        if self.shape in ("wsd", "two_stage"):
            if self.decay_start is None or not (self.warmup <= self.decay_start < self.horizon):
                raise RunsError(
                    f"a {self.shape} schedule needs decay_start in [warmup={self.warmup}, "
                    f"horizon={self.horizon}); got {self.decay_start!r}"
                )
            if self.shape == "wsd" and self.wsd_decay == "exponential" and self.final_fraction == 0:
                raise RunsError("an exponential wsd decay needs final_fraction > 0 (it interpolates log LR)")

    def lr(self, steps: Any) -> np.ndarray:
        """The learning rate at each of ``steps`` (0-based, below :attr:`horizon`)."""
        k = np.asarray(steps, dtype=float)
        if np.any((k < 0) | (k >= self.horizon)):
            raise RunsError(f"steps must be in [0, {self.horizon}) for this schedule")
        peak, final = self.peak_lr, self.final_fraction * self.peak_lr
        w, T = self.warmup, self.horizon
        if self.shape == "constant":
            after = np.full_like(k, peak)
        elif self.shape == "cosine":
            after = final + 0.5 * (peak - final) * (1 + np.cos(np.pi * (k - w) / (T - w)))
        elif self.shape == "linear":
            after = peak + (final - peak) * (k - w) / (T - w)
        else:
            s = float(self.decay_start)  # type: ignore[arg-type]  # checked in __post_init__
            frac = np.clip((k - s) / (T - s), 0.0, 1.0)
            if self.shape == "two_stage":
                decayed = np.full_like(k, final)
            elif self.wsd_decay == "exponential":
                decayed = peak ** (1 - frac) * final**frac
            elif self.wsd_decay == "linear":
                decayed = peak + (final - peak) * frac
            else:
                decayed = final + 0.5 * (peak - final) * (1 + np.cos(np.pi * frac))
            after = np.where(k < s, peak, decayed)
        if w <= 1:
            return np.asarray(after)
        return np.where(k < w, peak * k / (w - 1), after)

    def per_step(self) -> np.ndarray:
        """The LR at every step, from 0 to ``horizon - 1``."""
        return self.lr(np.arange(self.horizon))

    def to_dict(self) -> dict[str, Any]:
        """The schedule as a JSON-ready dict (:meth:`from_dict` reads it back)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Schedule:
        """A schedule from :meth:`to_dict`'s dict; unknown keys are refused by name."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise RunsError(f"unknown schedule fields {unknown}; known: {sorted(known)}")
        return cls(**dict(values))


def per_step_lr(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """The LR at every step of each run of a per-step table (columns ``run``, ``step``, ``lr``).

    Raises
    ------
    RunsError
        A missing column, a run whose steps are not exactly ``0 .. T - 1``, or a negative or
        non-finite LR (naming the run and step).
    """
    missing = [c for c in ("run", "step", "lr") if c not in table.columns]
    if missing:
        raise RunsError(f"a per-step LR table needs columns run, step, lr; missing {missing}")
    out = {}
    for run, rows in table.groupby("run", sort=False):
        rows = rows.sort_values("step")
        steps = rows["step"].to_numpy()
        if not np.array_equal(steps, np.arange(len(steps))):
            raise RunsError(
                f"run {run!r}: the per-step LR table must give every step 0 .. T-1 once; "
                f"it has {len(steps)} rows with steps {steps.min()} .. {steps.max()}"
            )
        lr = rows["lr"].to_numpy(dtype=float)
        bad = np.flatnonzero(~(np.isfinite(lr) & (lr >= 0)))
        if bad.size:
            raise RunsError(
                f"run {run!r} step {int(steps[bad[0]])}: lr {lr[bad[0]]!r} must be finite and >= 0"
            )
        out[str(run)] = lr
    return out


def summed_lr(lr: np.ndarray, steps: Any) -> np.ndarray:
    """``S1(t) = sum_{tau=0..t} eta_tau`` at each checkpoint step ``t``."""
    steps = _checked_steps(lr, steps)
    return np.cumsum(lr)[steps]


def loss_drop_exact(lr: np.ndarray, steps: Any, C: float, beta: float, gamma: float) -> np.ndarray:
    """The multi-power loss-drop sum ``LD(t)`` at each checkpoint step, exactly, step by step.

    ``LD(t) = sum_{k=1..t} (eta_k - eta_{k-1}) [1 - (1 + C eta_k^-gamma (S1(t) - S1(k-1)))^-beta]``:
    negative when the LR decays (the law adds ``B * LD``). Only steps where the LR changes add.
    """
    steps = _checked_steps(lr, steps)
    cum = np.cumsum(lr)
    delta = np.diff(lr)  # delta[k-1] = eta_k - eta_{k-1}
    k = np.flatnonzero(delta) + 1
    out = np.zeros(len(steps))
    if k.size == 0:
        return out
    with np.errstate(divide="ignore"):
        scale = C * lr[k] ** (-gamma)
    for i, t in enumerate(steps):
        keep = k <= t
        s = cum[t] - cum[k[keep] - 1]
        out[i] = np.sum(delta[k[keep] - 1] * (1 - (1 + scale[keep] * s) ** (-beta)))
    return out


@dataclass(frozen=True)
class CurveFeatures:
    """What the multi-power law reads at each checkpoint of one or more curves.

    Attributes
    ----------
    s1
        Summed LR up to each checkpoint, shape ``(n,)``.
    weight
        Per checkpoint and bin, the LR change summed over the bin's steps, ``(n, bins)``; 0 in
        an empty bin.
    lr
        The bin's LR (its steps' ``eta_k``, geometric mean weighted by ``|eta_k - eta_{k-1}|``).
    area
        The bin's ``S1(t) - S1(k - 1)`` (its steps' mean, same weights).
    """

    s1: np.ndarray
    weight: np.ndarray
    lr: np.ndarray
    area: np.ndarray

    def loss_drop(self, C: Any, beta: Any, gamma: Any, xp: Any = np) -> Any:
        """The binned ``LD`` at each checkpoint (parameters broadcast before the last axis)."""
        C, beta, gamma = (xp.asarray(v)[..., None, None] for v in (C, beta, gamma))
        g = 1 - (1 + C * self.lr ** (-gamma) * self.area) ** (-beta)
        return xp.sum(self.weight * g, axis=-1)

    def cells(self) -> dict[str, np.ndarray]:
        """The non-empty bins only, flattened: what the sampler evaluates (see :func:`loss_drop_cells`).

        Most bins of most checkpoints are empty (no LR change at those lags: on the multi-power
        curves 13 of 64 bins are used on average), and an empty bin adds nothing, so the sum over
        the non-empty cells is the binned sum exactly, for about a fifth of the work. Keys:
        ``log_s1`` (per checkpoint); ``weight``, ``log_lr``, ``log_area`` (per cell, checkpoint by
        checkpoint); ``start`` and ``end``, each checkpoint's cells ``start .. end - 1`` in the
        cumulative sum ``[0, c_1, c_1 + c_2, ...]``.
        """
        used = self.weight != 0
        counts = used.sum(axis=1)
        end = np.cumsum(counts)
        with np.errstate(divide="ignore"):
            return {
                "log_s1": np.log(self.s1),
                "weight": self.weight[used],
                "log_lr": np.log(self.lr[used]),
                "log_area": np.log(self.area[used]),
                "start": end - counts,
                "end": end,
            }

    @staticmethod
    def concat(parts: Sequence[CurveFeatures]) -> CurveFeatures:
        """The features of several curves, checkpoints stacked (all with the same number of bins)."""
        return CurveFeatures(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in ("s1", "weight", "lr", "area"))
        )


def loss_drop_cells(cells: Mapping[str, Any], C: Any, beta: Any, gamma: Any, xp: Any = np) -> Any:
    """The binned ``LD`` at each checkpoint from :meth:`CurveFeatures.cells`.

    Parameters are scalars or arrays of shape ``(..., 1)`` (draws), against the cells' axis.
    ``G = 1 - (1 + C eta^-gamma s)^-beta`` is written
    ``-expm1(-beta softplus(log C - gamma log eta + log s))``: two transcendental calls per cell in
    place of two powers. The per-checkpoint sum is a difference of one cumulative sum over
    the cells (in float64: its rounding, ~1e-16 of the summed |terms|, is far below the binning's
    own error), so the same code runs on numpy with a draws axis and in JAX.
    """
    C, beta, gamma = (xp.asarray(v) for v in (C, beta, gamma))
    x = xp.log(C) - gamma * cells["log_lr"] + cells["log_area"]
    g = -xp.expm1(-beta * xp.logaddexp(0.0, x))
    terms = cells["weight"] * g
    total = xp.concatenate([xp.zeros((*terms.shape[:-1], 1)), xp.cumsum(terms, axis=-1)], axis=-1)
    return xp.take(total, cells["end"], axis=-1) - xp.take(total, cells["start"], axis=-1)


def curve_features(lr: np.ndarray, steps: Any, bins: int = BINS) -> CurveFeatures:
    """:class:`CurveFeatures` of one run at its checkpoint ``steps`` from its per-step ``lr``.

    The loss-drop sum of checkpoint ``t`` runs over the steps ``k <= t`` where the LR changes.
    They are grouped by lag ``t - k`` into ``bins`` bins with geometric edges (the first lags one
    step each: ``G`` changes fastest there), rising and falling LR apart; a bin's term is its
    summed LR change times ``G`` at its weighted mean LR and area. With no change in a bin the
    bin is exact (empty); with one step per bin it is exact.

    Parameters
    ----------
    lr
        The LR at every step ``0 .. T - 1`` (``T`` beyond the last checkpoint).
    steps
        Checkpoint steps (0-based, increasing or not).
    bins
        Bins per checkpoint (half for rising, half for falling LR).
    """
    lr = np.asarray(lr, dtype=float)
    steps = _checked_steps(lr, steps)
    if bins < 2 or bins % 2:
        raise RunsError(f"bins must be an even number >= 2; got {bins}")
    half = bins // 2
    cum = np.cumsum(lr)
    delta = np.diff(lr)
    changed = np.flatnonzero(delta) + 1
    n = len(steps)
    weight = np.zeros((n, bins))
    lr_b = np.ones((n, bins))
    area = np.zeros((n, bins))
    # Lag edges: geometric from 1 to the longest history, rounded; duplicates removed, so the
    # first lags get a bin each.
    top = max(int(steps.max()), 1)
    edges = np.unique(np.round(np.geomspace(1, top + 1, half + 1)).astype(int))
    edges[0], edges[-1] = 0, top + 1
    for i, t in enumerate(steps):
        k = changed[changed <= t]
        if k.size == 0:
            continue
        d = delta[k - 1]
        lag_bin = np.searchsorted(edges, t - k, side="right") - 1
        column = lag_bin + np.where(d > 0, 0, half)
        a = np.abs(d)
        total = np.bincount(column, weights=a, minlength=bins)
        seen = total > 0
        weight[i] = np.bincount(column, weights=d, minlength=bins)
        log_lr = np.bincount(column, weights=a * np.log(lr[k]), minlength=bins)
        mean_area = np.bincount(column, weights=a * (cum[t] - cum[k - 1]), minlength=bins)
        lr_b[i, seen] = np.exp(log_lr[seen] / total[seen])
        area[i, seen] = mean_area[seen] / total[seen]
    return CurveFeatures(s1=cum[steps], weight=weight, lr=lr_b, area=area)


def _checked_steps(lr: np.ndarray, steps: Any) -> np.ndarray:
    steps = np.asarray(steps)
    if steps.ndim != 1 or steps.size == 0:
        raise RunsError("checkpoint steps must be a non-empty 1-d array")
    if not np.all(np.equal(np.mod(steps, 1), 0)):
        raise RunsError(f"checkpoint steps must be whole numbers; got {steps[np.mod(steps, 1) != 0][0]!r}")
    steps = steps.astype(int)
    bad = np.flatnonzero((steps < 0) | (steps >= len(lr)))
    if bad.size:
        raise RunsError(
            f"checkpoint step {int(steps[bad[0]])} is outside the schedule's steps 0 .. {len(lr) - 1}"
        )
    return steps
