"""A parametric fit as tables, as methods of :class:`bayescale.Fit` (a mixin).

The posterior table (:meth:`FitTables.summary`), the JSON record (:meth:`FitTables.to_dict`) and
the card Jupyter shows (``_repr_html_``); each reads the fit through :class:`TabledFit`.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import pandas as pd

from bayescale.inference.settings import SamplerConfig
from bayescale.model.pymc_model import group_variable
from bayescale.posterior.contraction import prior_contraction
from bayescale.posterior.intervals import interval_dict
from bayescale.posterior.protocol import FitLike
from bayescale.posterior.residuals import TREND_ALPHA, trend_message
from bayescale.posterior.result import draws_text, finite_or_none, html_card, json_record, verdict


class TabledFit(FitLike, Protocol):
    """What the tables read of a fit beyond :class:`~bayescale.posterior.protocol.FitLike`."""

    @property
    def parameter_names(self) -> list[str]:
        """Law parameters then noise parameters, in order."""
        ...

    @property
    def groups(self) -> list[str]:
        """Labels of the groups a pooled law was fitted to."""
        ...

    @property
    def sampler(self) -> SamplerConfig:
        """The sampler configuration used."""
        ...

    @property
    def random_seed(self) -> int | None:
        """Seed of the sampler."""
        ...

    @property
    def prior_set(self) -> str | None:
        """The population prior set a small ladder borrowed, or ``None``."""
        ...

    def residual_trends(self, alpha: float = TREND_ALPHA) -> pd.DataFrame:
        """Whether the residuals on the fit's own runs trend with params, tokens or epochs."""
        ...

    def summary(self, prob: float = 0.9, kind: str = "eti") -> pd.DataFrame:
        """Posterior table, one row per parameter."""
        ...

    def prior_contraction(self) -> pd.DataFrame:
        """How far the runs narrowed each free parameter's prior."""
        ...

    def information(self) -> dict[str, Any]:
        """The prior set borrowed and each parameter's prior contraction, JSON-ready."""
        ...


class FitTables:
    """The posterior table, the JSON record and the Jupyter card of a fitted law.

    A mixin of :class:`bayescale.Fit`: its methods read the fit through :class:`TabledFit`.
    """

    def summary(self: TabledFit, prob: float = 0.9, kind: str = "eti") -> pd.DataFrame:
        """Posterior table, one row per parameter.

        Columns: ``median``, ``lower``, ``upper``, ``r_hat``, ``ess_bulk`` and
        whether the parameter was ``fixed``.
        """
        rows = []
        for name in self.parameter_names:
            row: dict[str, Any] = {"parameter": name, **interval_dict(self.posterior[name], prob, kind)}
            row["r_hat"] = self.diagnostics["r_hat"].get(name, float("nan"))
            row["ess_bulk"] = self.diagnostics["ess_bulk"].get(name, float("nan"))
            row["fixed"] = name in self.fixed
            rows.append(row)
        for name in self.law.pooled:
            values = self.posterior[group_variable(name)]
            for group in self.groups:
                row = {"parameter": f"{name}[{group}]", **interval_dict(values.sel(group=group), prob, kind)}
                rows.append({**row, "r_hat": float("nan"), "ess_bulk": float("nan"), "fixed": False})
        return pd.DataFrame(rows).set_index("parameter")

    def prior_contraction(self: TabledFit) -> pd.DataFrame:
        """How far the runs narrowed each free parameter's prior: :func:`bayescale.prior_contraction`.

        Computed from the posterior and the priors, both saved with the fit, so a loaded fit gives
        the same table; with :attr:`prior_set` (saved too) it says where the answers' information
        comes from.
        """
        table = prior_contraction(self.posterior, self.priors)
        # in the law's order (a loaded fit's priors come back sorted by name)
        order = {name: i for i, name in enumerate(self.parameter_names)}
        return table.iloc[sorted(range(len(table)), key=lambda i: order.get(table.index[i], len(order)))]

    def information(self: TabledFit) -> dict[str, Any]:
        """JSON-ready: the prior set borrowed (or ``None``) and each free parameter's prior contraction."""
        table = self.prior_contraction()
        columns = {"numbers": ("prior_sd", "posterior_sd", "contraction")}
        return {
            "prior_set": self.prior_set,
            "prior_contraction": {
                str(name): {"scale": row["scale"], **json_record(row, **columns)}
                for name, row in table.iterrows()
            },
        }

    def to_dict(self: TabledFit, prob: float = 0.9, kind: str = "eti") -> dict[str, Any]:
        """JSON-ready: the law, the runs, the priors, each parameter's interval, diagnostics, residual trends.

        r_hat and ESS are ``None`` where undefined (fixed parameters, a single chain).
        """
        table = self.summary(prob, kind)
        columns = {"numbers": ("median", "lower", "upper", "r_hat", "ess_bulk"), "flags": ("fixed",)}
        parameters = {str(name): json_record(row, **columns) for name, row in table.iterrows()}
        diag = self.diagnostics
        found = self.residual_trends()
        trend_columns = {
            "numbers": ("spearman_rho", "pvalue", "curvature_rho", "curvature_pvalue"),
            "flags": ("trend", "curvature"),
        }
        residuals = {str(column): json_record(row, **trend_columns) for column, row in found.iterrows()}
        return {
            "law": self.law.name,
            "n_runs": len(self.runs),
            "prob": prob,
            "priors": {name: prior.to_dict() for name, prior in sorted(self.priors.items())},
            "parameters": parameters,
            "diagnostics": {
                "divergences": diag["divergences"],
                "max_r_hat": finite_or_none(diag["max_r_hat"]),
                "min_ess_bulk": diag["min_ess_bulk"],
                "median_steps": finite_or_none(diag.get("median_steps", math.nan)),
                "max_tree_depth_share": finite_or_none(diag.get("max_tree_depth_share", math.nan)),
                "ok": diag["ok"],
                "problems": diag["problems"],
                "warnings": diag.get("warnings", []),
                "sampler_path": diag.get("sampler_path"),
            },
            "residual_trends": residuals,
            "misfit": trend_message(found),
            **self.information(),
        }

    def _repr_html_(self: TabledFit) -> str:
        """The fit as a compact table in Jupyter: law, data, runs, draws, diagnostics, parameters."""
        facts = [
            ("law", self.law.name),
            ("data", self.runs.source),
            ("runs", len(self.runs)),
            ("likelihood", self.likelihood),
            ("draws", draws_text(self.posterior)),
            ("backend", self.sampler.backend),
            ("seed", self.random_seed),
            ("diagnostics", verdict(self.diagnostics)),
        ]
        table = self.summary()
        rows = {str(name): dict(row) for name, row in table.iterrows()}
        return html_card(
            "Scaling-law fit",
            facts,
            rows,
            ["median", "lower", "upper", "r_hat", "ess_bulk", "fixed"],
            self.diagnostics.get("problems", []),
            "90% equal-tailed credible intervals",
        )
