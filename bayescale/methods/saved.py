"""Helpers the method results share to save themselves and to show themselves.

:class:`~bayescale.IsoflopFit`, :class:`~bayescale.EnvelopeFit` and :class:`~bayescale.StepsFit`
keep their data tables beside the runs (or curves) in ``constant_data`` (variables named
``_<table>_<column>``, which no runs column can be named) and check every setting read
back from a file (:func:`check_setting`), as :func:`bayescale.methods.io.load_fit` does for a Fit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import xarray as xr

from bayescale.errors import BayescaleError
from bayescale.inference import container
from bayescale.model.priors import Prior, priors_from_json
from bayescale.posterior.result import draws_text, html_card, intervals_frame, short_repr, verdict

#: Interval of the parameter tables shown by ``_repr_html_`` (the summaries' default).
SHOWN_PROB = 0.9


def check_setting(name: str, value: Any, ok: bool) -> None:
    """Raise TypeError naming a saved setting whose value is not one bayescale writes."""
    if not ok:
        raise TypeError(f"setting {name!r} has a value bayescale does not write: {value!r}")


def priors_setting(settings: Mapping[str, Any]) -> dict[str, Prior] | None:
    """The priors in a method's saved settings (:func:`~bayescale.model.priors.priors_to_json`).

    ``None`` for a file written before the method's priors could be given: it used the defaults.
    """
    saved = settings.get("priors")
    check_setting("priors", saved, saved is None or isinstance(saved, str))
    return None if saved is None else priors_from_json(saved)


def frame_to_variables(frame: pd.DataFrame, prefix: str, dim: str) -> dict[str, Any]:
    """A table's columns as variables ``prefix + column`` along ``dim`` (``prefix`` starts with ``_``)."""
    return {f"{prefix}{col}": ((dim,), frame[col].to_numpy()) for col in frame.columns}


def frame_from_variables(ds: xr.Dataset, prefix: str, columns: Any) -> pd.DataFrame:
    """Inverse of :func:`frame_to_variables` for the listed ``columns``."""
    if not (isinstance(columns, list) and all(isinstance(c, str) for c in columns)):
        raise TypeError(f"the saved table's columns must be a list of names, got {columns!r}")
    return pd.DataFrame({col: ds[f"{prefix}{col}"].values for col in columns})


def with_data(idata: Any, constant_data: xr.Dataset, observed: xr.Dataset | None = None) -> Any:
    """A copy of ``idata`` with ``constant_data`` (and ``observed_data`` when it has none) set."""
    tree = container.with_group(idata, "constant_data", constant_data)
    if not container.has_group(tree, "observed_data") and observed is not None:
        tree = container.with_group(tree, "observed_data", observed)
    return tree


def _common_facts(result: Any) -> dict[str, Any]:
    return {
        "draws": draws_text(result.posterior),
        "backend": result.sampler.backend,
        "seed": result.random_seed,
        "diagnostics": verdict(result.diagnostics),
    }


def method_repr(name: str, facts: Mapping[str, Any], result: Any) -> str:
    """One line: the method's facts, the draws and the diagnostics verdict."""
    shown = {k: repr(v) if k == "data" else v for k, v in facts.items()}
    shown["draws"] = draws_text(result.posterior)
    shown["diagnostics"] = "ok" if result.diagnostics.get("ok") else "FAILED"
    return short_repr(name, shown)


def method_card(
    title: str,
    facts: Mapping[str, Any],
    result: Any,
    intervals: Callable[[], Mapping[str, Mapping[str, float]]],
) -> str:
    """The HTML of a method's result: its facts, the draws, diagnostics and ``intervals()``.

    An answer the fit cannot give (e.g. no exponents without an interior envelope point)
    is said in the caption instead of the table.
    """
    caption = f"{SHOWN_PROB:.0%} equal-tailed credible intervals"
    try:
        rows: Mapping[str, Mapping[str, float]] = intervals()
    except BayescaleError as exc:
        rows, caption = {}, f"no parameter table: {exc}"
    problems: Sequence[str] = result.diagnostics.get("problems", [])
    return html_card(
        title,
        list({**facts, **_common_facts(result)}.items()),
        rows,
        ["median", "lower", "upper"],
        problems,
        caption,
    )


class MethodResult:
    """``summary``, ``save``, ``__repr__`` and ``_repr_html_`` of a method's result.

    A subclass sets :attr:`title` and defines ``to_dict`` (what the fit is and says, with its
    intervals), ``_facts`` (what the fit is: data, counts, options) and ``_intervals`` (the
    parameter table of the HTML card); being a dataclass, it is declared with ``repr=False``
    so this ``__repr__`` is kept.
    """

    title: ClassVar[str] = "fit"

    def to_dict(self, prob: float = 0.9, kind: str = "eti") -> dict[str, Any]:
        """What the fit is and says, JSON-ready: data, options, intervals, diagnostics."""
        raise NotImplementedError

    def summary(self, prob: float = 0.9, kind: str = "eti") -> Any:
        """The intervals of :meth:`to_dict` as a table: a row per quantity; median, lower, upper."""
        return intervals_frame(self.to_dict(prob, kind))

    def _facts(self) -> dict[str, Any]:
        raise NotImplementedError

    def _intervals(self) -> Mapping[str, Mapping[str, float]]:
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        """Write the fit to NetCDF atomically; :func:`bayescale.load_fit` reads it back."""
        from bayescale.methods import io

        return io.save_fit(self, path)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return method_repr(type(self).__name__, self._facts(), self)

    def _repr_html_(self) -> str:
        """The fit as a compact table in Jupyter: data, draws, diagnostics verdict, parameters."""
        return method_card(self.title, self._facts(), self, self._intervals)
