"""The downstream figure: each task's score against compute, with the chained bands and held-out runs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bayescale.data.schema import FLOPS_PER_PARAM_TOKEN
from bayescale.errors import BayescaleError
from bayescale.plots._common import figure

#: Points on the band's path of model sizes.
BAND_POINTS = 40


def plot_downstream(
    model: Any,
    held_out: pd.DataFrame | None = None,
    prob: float = 0.9,
    tokens_per_param: float | None = None,
    random_seed: int | None = 0,
) -> Any:
    """Each task's score against training compute: the ladder, the chained band, the held-out runs.

    Parameters
    ----------
    model
        A :class:`~bayescale.Downstream`.
    held_out
        Optional runs the fit did not see: ``params``, ``tokens`` and a column per task (any
        subset). Each gets its chained interval (an error bar at its compute) and its actual
        score (a red cross); the panel's title counts how many intervals hold it.
    prob
        Probability of the band and the intervals.
    tokens_per_param
        The band's path: model sizes from the ladder's smallest to beyond its largest (and the
        held-out runs'), each trained on this many tokens per parameter; default the median of
        the loss fit's runs.
    random_seed
        Seed of the chained draws.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per task. Grey dots: the rows each link was fitted on (checkpoints included).
        Line and band: the chained median and ``prob`` interval of a new run along the path.
    """
    tasks = model.tasks
    runs = model.loss_fit.runs
    n, d = runs.column("params"), runs.column("tokens")
    ratio = float(np.median(d / n)) if tokens_per_param is None else float(tokens_per_param)
    if not ratio > 0:
        raise BayescaleError(f"tokens_per_param must be > 0, got {tokens_per_param!r}")
    top = float(n.max()) * 4.0
    if held_out is not None:
        missing = [c for c in ("params", "tokens") if c not in held_out.columns]
        if missing:
            raise BayescaleError(f"held-out runs need columns {missing}; columns: {list(held_out.columns)}")
        top = max(top, float(held_out["params"].max()) * 1.5)
    sizes = np.geomspace(float(n.min()), top, BAND_POINTS)
    path = model.predict(sizes, sizes * ratio, prob=prob, random_seed=random_seed)
    compute = FLOPS_PER_PARAM_TOKEN * sizes * sizes * ratio
    if held_out is not None:
        held = held_out.reset_index(drop=True)
        at = model.predict(held["params"].to_numpy(float), held["tokens"].to_numpy(float), prob=prob,
                           random_seed=random_seed)  # fmt: skip
        held_compute = FLOPS_PER_PARAM_TOKEN * held["params"].to_numpy(float) * held["tokens"].to_numpy(float)
    links = model.links()
    cols = min(4, len(tasks))
    rows = -(-len(tasks) // cols)
    fig, grid = figure(rows, cols, (max(3.6 * cols, 6.0), 3.0 * rows))
    for ax in grid.ravel()[len(tasks) :]:
        ax.set_visible(False)
    for ax, task in zip(grid.ravel(), tasks, strict=False):
        fit = model.link_fits[task]
        score = links.loc[task, "score"]
        seen = fit.runs.column("loss")
        if score != fit.law.target:
            seen = 1.0 - seen
        seen_compute = FLOPS_PER_PARAM_TOKEN * fit.runs.column("params") * fit.runs.column("tokens")
        ax.scatter(seen_compute, seen, s=6, color="0.6", label="ladder (fitted rows)", zorder=1)
        ax.fill_between(compute, path[f"{task}_lower"], path[f"{task}_upper"], color="C0", alpha=0.25,
                        label=f"{prob:.0%} interval, {ratio:.0f} tokens/param")  # fmt: skip
        ax.plot(compute, path[f"{task}_median"], color="C0", lw=1.5, label="median")
        title = f"{task}: {links.loc[task, 'link']}"
        if held_out is not None and task in held.columns:
            actual = held[task].to_numpy(float)
            lower, median, upper = (at[f"{task}_{s}"].to_numpy() for s in ("lower", "median", "upper"))
            ax.errorbar(held_compute, median, yerr=[median - lower, upper - median], fmt="o", ms=3,
                        color="C1", capsize=2, label="held-out run's interval", zorder=3)  # fmt: skip
            ax.scatter(held_compute, actual, marker="x", color="red", s=25, label="held-out actual", zorder=4)
            inside = int(np.sum((lower <= actual) & (actual <= upper)))
            title += f" ({inside}/{len(actual)} inside)"
        ax.set_xscale("log")
        ax.set_xlabel("training compute 6ND [FLOPs]")
        ax.set_ylabel(f"{score} [fraction]")
        ax.set_title(title, fontsize="small")
    grid.ravel()[0].legend(fontsize="x-small", loc="best")
    fig.suptitle(
        f"Each task's {prob:.0%} chained interval for a new run (loss law, link, both noises)",
        fontsize="small",
    )
    return fig
