"""Figures of other modules' tables: law comparison (ELPD), extrapolation scoring, the laws' plans.

They take plain DataFrames so any producer of the same columns can use them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bayescale.data.schema import FLOPS_PER_PARAM_TOKEN
from bayescale.errors import BayescaleError
from bayescale.plots._common import LABELS, axes, check_columns, figure, fmt, plain_log_ticks

ELPD_COLUMNS = ("elpd_loo", "se", "elpd_diff", "dse")
EXTRAPOLATION_COLUMNS = (
    "params",
    "tokens",
    "loss",
    "split",
    "loss_predictive_median",
    "loss_predictive_lower",
    "loss_predictive_upper",
)


def plot_elpd(table: Any, ax: Any = None) -> Any:
    """Expected log predictive density of each law, with standard errors (arviz.compare layout).

    Parameters
    ----------
    table
        DataFrame indexed by law with columns ``elpd_loo``, ``se``, ``elpd_diff``, ``dse``.
    ax
        Matplotlib axes; a new figure when ``None``.

    Notes
    -----
    Circles: each law's ELPD +- se. Triangles (below every law but the best): the
    best law's ELPD minus the difference, +- the standard error of the difference,
    which is what decides whether two laws are distinguishable.
    """
    check_columns(table, ELPD_COLUMNS, "plot_elpd")
    ax = axes(ax, figsize=(6.4, 1.2 + 0.6 * len(table)))
    table = table.sort_values("elpd_loo", ascending=False)
    y = np.arange(len(table))[::-1].astype(float)
    best = float(table["elpd_loo"].iloc[0])
    ax.errorbar(table["elpd_loo"], y, xerr=table["se"], fmt="o", color="C0", capsize=3, label="ELPD +- se")
    rest = table.iloc[1:]
    if len(rest):
        ax.errorbar(best - rest["elpd_diff"], y[1:] - 0.25, xerr=rest["dse"], fmt="^", color="0.4",
                    capsize=3, label="difference to best +- dse")  # fmt: skip
    ax.axvline(best, color="0.5", ls="--", lw=1)
    ax.set_yticks(y, [str(i) for i in table.index])
    ax.set_ylim(y.min() - 0.7, y.max() + 0.5)
    ax.set_xlabel("ELPD (leave-one-out) [nats, higher is better]")
    ax.set_ylabel("law")
    ax.set_title("Law comparison by expected log predictive density")
    ax.legend(fontsize="small", loc="lower left")
    return ax


def plot_extrapolation(table: Any, prob: float | None = None, ax: Any = None) -> Any:
    """Runs used to fit (train) and held out (test), with predictive intervals on the held-out ones.

    Parameters
    ----------
    table
        Per-run DataFrame with ``params``, ``tokens``, ``loss``, ``split`` ("train"/"test")
        and ``loss_predictive_{median,lower,upper}`` (needed on test rows); ``compute`` is
        6ND when absent.
    prob
        Probability of the intervals, for the legend only.
    ax
        Matplotlib axes; a new figure when ``None``.
    """
    check_columns(table, EXTRAPOLATION_COLUMNS, "plot_extrapolation")
    bad = sorted(set(table["split"]) - {"train", "test"})
    if bad:
        raise BayescaleError(f"split must be 'train' or 'test', got {bad}")
    ax = axes(ax)
    frame = table.copy()
    if "compute" not in frame:
        frame["compute"] = FLOPS_PER_PARAM_TOKEN * frame["params"] * frame["tokens"]
    train, test = frame[frame["split"] == "train"], frame[frame["split"] == "test"]
    ax.scatter(train["compute"], train["loss"], s=12, color="0.55", label="train runs (fitted)")
    if len(test):
        med, lo, hi = (test[f"loss_predictive_{s}"].to_numpy() for s in ("median", "lower", "upper"))
        inside = (test["loss"] >= lo) & (test["loss"] <= hi)
        text = f"{prob:.0%} " if prob else ""
        ax.errorbar(test["compute"], med, yerr=[med - lo, hi - med], fmt="_", ms=10, color="C0", capsize=3,
                    label=f"{text}predictive interval (median)")  # fmt: skip
        ax.scatter(test["compute"], test["loss"], s=22, color=np.where(inside, "C2", "C3"), marker="D",
                   zorder=4, label="held-out runs (observed)")  # fmt: skip
        ax.set_title(f"Extrapolation: {int(inside.sum())} of {len(test)} held-out runs inside their interval")
    if len(train):
        ax.axvline(train["compute"].max(), color="0.5", ls=":", lw=1, label="largest training run")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(LABELS["compute"])
    ax.set_ylabel(LABELS["loss"])
    plain_log_ticks(ax)
    ax.legend(fontsize="small")
    return ax


#: The panels of :func:`plot_plans`: column prefix, axis label, log scale.
PLAN_PANELS = (
    ("params", "N_opt [parameters]", True),
    ("tokens", "D_opt [tokens]", True),
    ("loss", LABELS["loss"], False),
    ("epochs", "epochs D / U", True),
)


def plot_plans(plans: Any, believe: str | None = None, title: str | None = None) -> Any:
    """The laws' plans at one budget side by side: N_opt, D_opt, loss (and epochs), median and interval.

    Parameters
    ----------
    plans
        A :class:`~bayescale.Verdict` (its ``plans``, the believed law highlighted), or a DataFrame
        indexed by law with ``{params,tokens,loss}_{median,lower,upper}`` and optionally
        ``epochs_*`` (:func:`bayescale.checks.verdict.plan_table`). Rows without a plan
        (NaN, e.g. a law with no compute-optimal allocation) are listed but not drawn.
    believe
        The law to highlight; default the verdict's choice.
    title
        The figure's title; default the budget (and U) from the table's ``attrs``.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per quantity, one row per law; the same law on the same line in every panel,
        so how far the laws' answers lie apart (and whether their intervals overlap) reads across.
    """
    table = getattr(plans, "plans", plans)
    if believe is None:
        believe = getattr(plans, "believe", None)
    columns = [f"{q}_{s}" for q in ("params", "tokens", "loss") for s in ("median", "lower", "upper")]
    check_columns(table, columns, "plot_plans")
    panels = [p for p in PLAN_PANELS if f"{p[0]}_median" in table and table[f"{p[0]}_median"].notna().any()]
    fig, grid = figure(1, len(panels), (2.9 * len(panels) + 0.8, 1.3 + 0.45 * len(table)), sharey=True)
    y = np.arange(len(table))[::-1].astype(float)
    names = [str(i) for i in table.index]
    for ax, (q, label, log) in zip(grid[0], panels, strict=True):
        med, lo, hi = (table[f"{q}_{s}"].to_numpy(dtype=float) for s in ("median", "lower", "upper"))
        for i, name in enumerate(names):
            if not np.isfinite(med[i]):
                continue
            colour = "C3" if name == believe else "C0"
            ax.plot([lo[i], hi[i]], [y[i], y[i]], color=colour, lw=2.2, solid_capstyle="butt")
            ax.plot(med[i], y[i], "o", color=colour, ms=6, mec="k", mew=0.5)
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(axis="x", color="0.9")
        plain_log_ticks(ax)
    first = grid[0][0]
    first.set_yticks(y, [f"{n} (believed)" if n == believe else n for n in names])
    first.set_ylim(y.min() - 0.6, y.max() + 0.6)
    if title is None:
        attrs = table.attrs
        title = "The laws' plans side by side"
        if "budget" in attrs:
            title += f" at C = {fmt(attrs['budget'])} FLOPs"
        if attrs.get("unique_tokens") is not None:
            title += f", U = {fmt(attrs['unique_tokens'])} unique tokens"
        if "prob" in attrs:
            title += f" (median, {attrs['prob']:.0%} interval)"
    fig.suptitle(title, fontsize="medium")
    return fig
