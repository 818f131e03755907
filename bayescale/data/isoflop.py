"""IsoFLOP runs prepared for the profiles' model: budget levels, the profile window, bracketed minima.

Runs are grouped into compute budgets (:func:`group_budgets`); within each, the runs near its
lowest loss enter the fit (:func:`in_window`, :func:`near_best`), and a budget enters when enough
sizes do and its minimum is bracketed by the sizes run (:func:`bracketed_levels`). The model of
the profiles is :mod:`bayescale.model.isoflop`, the method :mod:`bayescale.methods.isoflop`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bayescale.data.runs import Runs
from bayescale.errors import BayescaleError, RunsError

#: Budgets whose compute differs by less than this fraction are one budget level.
DEFAULT_BUDGET_TOL = 0.1

#: Default profile window: a budget's runs enter the fit when their log loss is within this of
#: the budget's lowest (loss at most ~10.5% above it). Far from the minimum no smooth bowl fits:
#: on Porian et al.'s final setting the loss of over-sized, under-trained models climbs to twice
#: the minimum, and fitting those points drove a Student-t fit to nu ~ 0.5 and poor mixing.
DEFAULT_WINDOW = 0.1

#: Fewest distinct model sizes (in the window) a budget needs to enter the fit.
MIN_SIZES = 3

#: With ``bracketed``, a budget's best size within this fraction of its smallest or largest size
#: counts as that end (the grouping tolerance of budgets, reused). On Gemstones' profiles read off
#: the curves it also catches best sizes 1.03e8 next to 1.04e8 and 1.92e9 next to 2.01e9; any
#: value in [0.045, 0.145) flags the same budgets there, and 0 and 0.1 flag the same on Chinchilla
#: and on all 15 Porian settings (benchmarks/results/isoflop_bracketed.txt).
EDGE_SIZE_TOL = 0.1


def group_budgets(compute: np.ndarray, tol: float = DEFAULT_BUDGET_TOL) -> tuple[np.ndarray, pd.DataFrame]:
    """Group runs into budget levels: sorted budgets closer than ``tol`` (relative) join one level.

    Returns
    -------
    level, table
        The level index of every run, and one row per level: ``budget`` (the
        geometric mean of its runs' compute), ``n_runs``, ``compute_min``,
        ``compute_max``.
    """
    if not 0 <= tol < 1:
        raise BayescaleError(f"budget tolerance must be in [0, 1), got {tol!r}")
    log_c = np.log(np.asarray(compute, dtype=float))
    order = np.argsort(log_c, kind="stable")
    gaps = np.diff(log_c[order]) > np.log1p(tol)
    level_sorted = np.concatenate([[0], np.cumsum(gaps)])
    level = np.empty_like(level_sorted)
    level[order] = level_sorted
    frame = pd.DataFrame({"level": level, "compute": np.exp(log_c)})
    table = frame.groupby("level")["compute"].agg(
        budget=lambda c: float(np.exp(np.mean(np.log(c)))),
        n_runs="size",
        compute_min="min",
        compute_max="max",
    )
    return level, table.reset_index(drop=True)


@dataclass(frozen=True)
class IsoflopData:
    """The runs prepared for the model: budgets, log sizes, log losses."""

    runs: Runs
    budgets: pd.DataFrame
    level: np.ndarray
    used: np.ndarray
    kappa: float
    kappa_spread: float
    window: float | None = None
    neighbours: int | None = None
    bracketed: bool = True


def in_window(level: np.ndarray, loss: np.ndarray, window: float | None) -> np.ndarray:
    """True for runs whose log loss is within ``window`` of their budget's lowest (all when None)."""
    if window is None:
        return np.ones(len(level), dtype=bool)
    if not window > 0:
        raise BayescaleError(f"profile window must be positive (a log-loss excess), got {window!r}")
    log_loss = np.log(np.asarray(loss, dtype=float))
    best = pd.Series(log_loss).groupby(level).transform("min").to_numpy()
    return log_loss <= best + window


def bracketed_levels(
    level: np.ndarray, params: np.ndarray, loss: np.ndarray, size_tol: float = 0.0
) -> pd.Series:
    """Per budget level: True when its lowest-loss size is neither its smallest nor its largest size.

    A best size within ``size_tol`` (relative) of the smallest or largest counts as that end:
    a run only 1% larger than the best does not show where the loss turns up. An unbracketed
    budget locates its minimum only by extrapolating the profile past the sizes run; a budget
    with one size is unbracketed.
    """
    if not 0 <= size_tol < 1:
        raise BayescaleError(f"size tolerance must be in [0, 1), got {size_tol!r}")
    frame = pd.DataFrame({"level": level, "params": params, "loss": loss})
    best = frame.loc[frame.groupby("level")["loss"].idxmin()].set_index("level")["params"]
    sizes = frame.groupby("level")["params"]
    return (best > sizes.min() * (1 + size_tol)) & (best * (1 + size_tol) < sizes.max())


def left_out_unbracketed(budgets: Any) -> Any:
    """Budgets (a ``budgets`` table or one of its records) left out for an unbracketed minimum alone.

    They are not used although enough sizes (:data:`MIN_SIZES`) are in their window: with the
    ``bracketed`` option that happens only to budgets whose minimum is not bracketed.
    """
    return ~np.asarray(budgets["used"], dtype=bool) & (np.asarray(budgets["n_in_window"]) >= MIN_SIZES)


def near_best(level: np.ndarray, params: np.ndarray, loss: np.ndarray, neighbours: int | None) -> np.ndarray:
    """True for runs within ``neighbours`` sizes (by rank) of their budget's lowest-loss size.

    A budget whose lowest loss is at its smallest or largest size keeps no runs: its
    minimum is not bracketed (:func:`bracketed_levels`). This is Porian et al.'s (2024) rule:
    they interpolate each budget's losses (Akima, a local cubic: each piece depends on two
    sizes either side) and drop budgets whose minimum falls at an end of the size range.
    ``None`` keeps every run.
    """
    if neighbours is None:
        return np.ones(len(level), dtype=bool)
    if not (isinstance(neighbours, int | np.integer) and neighbours >= 1):
        raise BayescaleError(f"neighbours must be a positive integer, got {neighbours!r}")
    frame = pd.DataFrame({"level": level, "params": params, "loss": loss})
    frame["rank"] = frame.groupby("level")["params"].rank(method="dense")
    best_rank = frame["level"].map(
        frame.loc[frame.groupby("level")["loss"].idxmin()].set_index("level")["rank"]
    )
    bracketed = frame["level"].map(bracketed_levels(level, params, loss))
    return ((frame["rank"] - best_rank).abs() <= neighbours).to_numpy() & bracketed.to_numpy(dtype=bool)


def prepare(
    runs: Runs,
    budget_tol: float = DEFAULT_BUDGET_TOL,
    min_sizes: int = MIN_SIZES,
    window: float | None = DEFAULT_WINDOW,
    neighbours: int | None = None,
    bracketed: bool = True,
) -> IsoflopData:
    """Group ``runs`` into budgets and keep the runs and budgets the profiles are fitted on.

    A run enters when its log loss is within ``window`` of its budget's lowest; a budget
    enters when at least ``min_sizes`` distinct sizes do. With ``neighbours``, a run must also
    be within that many sizes of the budget's best (:func:`near_best`). With ``bracketed`` (default), a
    budget must also have its lowest loss at neither its smallest nor its largest size, sizes
    within :data:`EDGE_SIZE_TOL` of an end counting as that end (:func:`bracketed_levels`; the
    ``bracketed`` column of ``budgets`` says which do, and ``used`` is false for those left out).

    ``kappa`` is the geometric mean of ``C / (N D)`` over the runs (6 when
    compute defaults to 6ND); ``kappa_spread`` is max/min of that ratio.
    """
    if "group" in runs.frame.columns and runs.frame["group"].nunique() > 1:
        groups = sorted(runs.frame["group"].unique())
        raise RunsError(
            f"the runs hold {len(groups)} groups {groups}; an IsoFLOP fit takes one: "
            "select it with group=... (CLI: --group)"
        )
    level, budgets = group_budgets(runs.column("compute"), budget_tol)
    near = in_window(level, runs.column("loss"), window) & near_best(
        level, runs.column("params"), runs.column("loss"), neighbours
    )
    params = pd.Series(runs.column("params"))
    budgets["n_sizes"] = params.groupby(level).nunique().to_numpy()
    budgets["n_in_window"] = params[near].groupby(level[near]).nunique().reindex(budgets.index, fill_value=0)
    edges = bracketed_levels(level, runs.column("params"), runs.column("loss"), EDGE_SIZE_TOL)
    budgets["bracketed"] = edges.to_numpy()
    budgets["used"] = (budgets["n_in_window"] >= min_sizes) & (budgets["bracketed"] | (not bracketed))
    if int(budgets["used"].sum()) < 2:
        raise RunsError(
            f"an IsoFLOP fit needs at least 2 budgets with >= {min_sizes} model sizes each"
            f"{' and a bracketed minimum' if bracketed else ''}; "
            f"found {int(budgets['used'].sum())} among {len(budgets)} budget level(s) "
            f"(grouping tolerance {budget_tol:g}, window {window}): "
            f"{budgets[['budget', 'n_sizes', 'n_in_window', 'bracketed']].to_dict('records')}"
        )
    ratio = runs.column("compute") / (runs.column("params") * runs.column("tokens"))
    return IsoflopData(
        runs=runs,
        budgets=budgets,
        level=level,
        used=budgets["used"].to_numpy()[level] & near,
        kappa=float(np.exp(np.mean(np.log(ratio)))),
        kappa_spread=float(ratio.max() / ratio.min()),
        window=window,
        neighbours=neighbours,
        bracketed=bracketed,
    )
