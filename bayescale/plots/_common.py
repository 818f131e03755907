"""Helpers shared by the figures: new axes, credible bands, colours, published points."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bayescale.errors import BayescaleError, LawError
from bayescale.posterior.intervals import interval

if TYPE_CHECKING:
    from bayescale.methods.parametric import Fit

#: Default credible bands: 50% (dark) inside 90% (light).
BAND_PROBS = (0.5, 0.9)

#: Axis labels with units, by canonical column.
LABELS = {
    "compute": "training compute C [FLOPs]",
    "params": "parameters N [count]",
    "tokens": "training tokens D [count]",
    "unique_tokens": "unique tokens U [count]",
    "loss": "loss [nats/token]",
}
SYMBOL = {"compute": "C", "params": "N", "tokens": "D", "unique_tokens": "U"}


def axes(ax: Any, figsize: tuple[float, float] = (6.4, 4.4)) -> Any:
    """``ax`` itself, or the axes of a new figure."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def figure(nrows: int, ncols: int, size: tuple[float, float], **kwargs: Any) -> tuple[Any, Any]:
    """A new figure with a grid of axes (always a 2-d array)."""
    import matplotlib.pyplot as plt

    return plt.subplots(nrows, ncols, figsize=size, layout="constrained", squeeze=False, **kwargs)


def band(
    ax: Any,
    x: np.ndarray,
    draws: Any,
    color: Any,
    probs: Sequence[float] = BAND_PROBS,
    label: str | None = None,
    band_label: bool = False,
) -> None:
    """Posterior median of ``draws`` (dims chain, draw, query) over ``x``, and nested credible bands."""
    for i, prob in enumerate(sorted(probs, reverse=True)):
        iv = interval(draws, prob)
        alpha = 0.18 + 0.17 * i
        text = f"{prob:.0%} credible band" if band_label else None
        ax.fill_between(x, iv["lower"], iv["upper"], color=color, alpha=alpha, lw=0, label=text)
    ax.plot(x, interval(draws, 0.5)["median"], color=color, lw=1.6, label=label)


def fmt(value: float) -> str:
    """A count or budget in short scientific form, e.g. ``7e+10`` -> ``7e10``."""
    mantissa, exponent = f"{value:.1e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def needs_allocation(fit: Fit, what: str) -> None:
    """Raise unless the fit's law plans a budget alone (as ``Fit.optimal``: closed form or numerical)."""
    columns = set(fit.law.required_columns)
    if not {"params", "tokens"} <= columns:
        raise LawError(
            f"law {fit.law.name!r} has no allocation between parameters and tokens, needed for {what}"
        )
    if "unique_tokens" in columns:
        raise LawError(
            f"law {fit.law.name!r} has no compute-optimal allocation without unique tokens (its optimum "
            f"moves with U), needed for {what}; plot_epochs shows it at a given U"
        )


def needs_unique_tokens(fit: Fit, what: str) -> None:
    """Raise when the fit's law does not model repeated data."""
    if "unique_tokens" not in fit.law.required_columns:
        raise LawError(
            f"law {fit.law.name!r} does not model repeated data (unique_tokens), needed for {what}"
        )


def is_chinchilla_data(fit: Fit, references: bool | None) -> bool:
    """Whether to overlay the published Chinchilla estimates: by default when the runs are Chinchilla's."""
    if references is not None:
        return references
    return fit.runs.source == "chinchilla" and fit.law.name == "chinchilla"


def check_columns(table: Any, columns: Sequence[str], what: str) -> None:
    """Raise when a DataFrame lacks any of ``columns``."""
    import pandas as pd

    if not isinstance(table, pd.DataFrame):
        raise BayescaleError(f"{what} needs a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise BayescaleError(f"{what} needs column(s) {missing}; found {list(table.columns)}")
    if len(table) == 0:
        raise BayescaleError(f"{what} needs at least one row")


def check_range(value: Sequence[float] | None, what: str) -> tuple[float, float] | None:
    """``value`` as a (low, high) pair of finite positive numbers with low < high, or ``None``."""
    if value is None:
        return None
    pair = tuple(float(v) for v in value)
    if len(pair) != 2 or not all(np.isfinite(pair)) or not 0 < pair[0] < pair[1]:
        raise BayescaleError(
            f"{what} must be two finite numbers 0 < low < high (the axis is logarithmic), got {value!r}"
        )
    return pair[0], pair[1]


def decades(lo: float, hi: float, most: int = 6) -> np.ndarray:
    """Powers of ten from below ``lo`` to above ``hi``, thinned to at most ``most`` values."""
    powers = np.arange(np.floor(np.log10(lo)), np.ceil(np.log10(hi)) + 1)
    step = int(np.ceil(len(powers) / most))
    return 10.0 ** powers[::step]


def log_colours(values: np.ndarray, cmap: str = "viridis") -> tuple[Any, Any]:
    """A colormap and a log10 norm spanning ``values``."""
    import matplotlib as mpl

    logs = np.log10(np.asarray(values, dtype=float))
    lo, hi = float(logs.min()), float(logs.max())
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    return mpl.colormaps[cmap], mpl.colors.Normalize(lo, hi)


def plain_log_ticks(ax: Any) -> None:
    """Label log axes spanning less than a decade with plain numbers (2, 3, 4) instead of 2x10^0."""
    from matplotlib.ticker import FormatStrFormatter

    for axis, scale, (lo, hi) in ((ax.xaxis, ax.get_xscale(), ax.get_xlim()),
                                  (ax.yaxis, ax.get_yscale(), ax.get_ylim())):  # fmt: skip
        if scale == "log" and 0 < lo and hi / lo < 10:
            axis.set_major_formatter(FormatStrFormatter("%g"))
            axis.set_minor_formatter(FormatStrFormatter("%g"))
