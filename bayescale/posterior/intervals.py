"""Summaries of posterior draws: median and credible interval, vectorised."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from bayescale.errors import BayescaleError
from bayescale.posterior.query import make_query

INTERVAL_KINDS = ("eti", "hdi")
SAMPLE_DIMS = ("chain", "draw")


def check_interval(prob: float, kind: str) -> None:
    """Raise for a probability outside (0, 1) or an unknown interval kind."""
    if not isinstance(prob, (int, float)) or not 0 < prob < 1:
        raise BayescaleError(f"prob must be a probability in (0, 1), got {prob!r}")
    if kind not in INTERVAL_KINDS:
        raise BayescaleError(f"interval kind must be one of {list(INTERVAL_KINDS)}, got {kind!r}")


def interval(draws: xr.DataArray, prob: float = 0.9, kind: str = "eti") -> xr.Dataset:
    """Median, lower and upper bound over the ``chain`` and ``draw`` dims.

    Parameters
    ----------
    draws
        Posterior draws with dims ``chain``, ``draw`` and any others.
    prob
        Probability inside the interval.
    kind
        ``"eti"`` (equal-tailed) or ``"hdi"`` (highest density).
    """
    check_interval(prob, kind)
    median = draws.median(dim=SAMPLE_DIMS)
    if kind == "eti":
        tail = (1 - prob) / 2
        bounds = draws.quantile([tail, 1 - tail], dim=SAMPLE_DIMS)
        lower, upper = bounds.isel(quantile=0, drop=True), bounds.isel(quantile=1, drop=True)
    else:
        import arviz_stats as azs

        hdi = azs.hdi(draws.to_dataset(name="x"), prob=prob, dim=list(SAMPLE_DIMS))["x"]
        lower, upper = hdi.sel(ci_bound="lower", drop=True), hdi.sel(ci_bound="upper", drop=True)
    return xr.Dataset({"median": median, "lower": lower, "upper": upper})


def interval_dict(draws: Any, prob: float = 0.9, kind: str = "eti") -> dict[str, float]:
    """``{"median", "lower", "upper"}`` of a scalar quantity, as floats."""
    summary = interval(draws, prob, kind)
    return {k: float(np.asarray(summary[k])) for k in ("median", "lower", "upper")}


def interval_table(quantities: xr.Dataset, prob: float, kind: str, query: xr.Dataset | None = None) -> Any:
    """One row per ``query`` (or a single row), columns ``<quantity>_{median,lower,upper}``.

    Parameters
    ----------
    quantities
        Draws of each quantity, dims ``chain``, ``draw`` and optionally ``query``.
    query
        Inputs of each query (dim ``query``), put first in the table.
    """
    import pandas as pd

    columns: dict[str, Any] = {}
    if query is not None:
        for name, values in query.data_vars.items():
            columns[str(name)] = np.atleast_1d(values.values)
    for name, draws in quantities.data_vars.items():
        summary = interval(draws, prob, kind)
        for stat in ("median", "lower", "upper"):
            columns[f"{name}_{stat}"] = np.atleast_1d(summary[stat].values)
    return pd.DataFrame(columns)


def row_to_intervals(row: Any, names: list[str]) -> dict[str, dict[str, float]]:
    """From a table row, ``{name: {"median", "lower", "upper"}}`` for each name."""
    return {n: {s: float(row[f"{n}_{s}"]) for s in ("median", "lower", "upper")} for n in names}


class AllocationAnswers:
    """``exponents`` and ``optimal`` of a method's fit, from its ``exponent_draws`` and ``optimal_draws``.

    Shared by the IsoFLOP, envelope and L(N, S) fits, so each method answers the
    plan questions with the same intervals and table layout.
    """

    def exponent_draws(self) -> Any:
        """Draws of ``a`` and ``b`` (and whatever else the method derives)."""
        raise NotImplementedError

    def optimal_draws(self, compute: Any) -> Any:
        """Draws of the compute-optimal model at each budget (dim ``query``)."""
        raise NotImplementedError

    def exponents(self, prob: float = 0.9, kind: str = "eti") -> dict[str, dict[str, float]]:
        """``{"a": {"median", "lower", "upper"}, "b": {...}}``."""
        draws = self.exponent_draws()
        return {name: interval_dict(draws[name], prob, kind) for name in ("a", "b")}

    def optimal(
        self, compute: Any, prob: float = 0.9, kind: str = "eti", *, random_seed: int | None = None
    ) -> Any:
        """Compute-optimal ``params``, ``tokens``, ``tokens_per_param``... at budget(s), one row each.

        ``random_seed`` is accepted as by ``Fit.optimal``; the answer is a function of the
        posterior draws and draws no random numbers, so the seed leaves it unchanged.
        """
        check_interval(prob, kind)
        return interval_table(self.optimal_draws(compute), prob, kind, make_query(compute=compute))
