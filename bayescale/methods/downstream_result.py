"""The two-step downstream model (:class:`Downstream`): a loss fit and a link fit per task.

Its answers chain the steps (:mod:`bayescale.questions.downstream`): each task's score at new
(N, D), which link each task got and why, which tasks scale predictably. It is fitted by
:func:`~bayescale.methods.downstream.fit_downstream` and saved as kind ``"downstream"``
(:mod:`bayescale.methods.downstream_file`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.errors import BayescaleError
from bayescale.inference.diagnostics import Diagnostics
from bayescale.methods import io
from bayescale.methods.downstream_file import (
    LINK_GROUP,
    choice_from_settings,
    fit_from_settings,
    fit_settings,
    with_runs,
)
from bayescale.methods.parametric import Fit
from bayescale.model.laws.downstream import LinkLaw
from bayescale.posterior.result import finite_or_none, html_card, json_record, short_repr
from bayescale.questions import downstream as chain


@dataclass
class Downstream:
    """A two-step downstream model: a loss fit and a link fit per task.

    Attributes
    ----------
    loss_fit
        Step 1: the input loss in (N, D).
    link_fits
        Step 2 by task (or average) name: the link's target in step 1's loss.
    scores
        What each task's column measures (``"error"`` or ``"accuracy"``); a task missing here
        measures its link's target. A task whose link fits the other one answers ``1 -`` it.
    link_labels
        The label of each task's link (the keys of
        :data:`~bayescale.methods.downstream.AUTO_LINKS` when chosen by LOO).
    choice
        With ``link="auto"``: every candidate link's PSIS-LOO row per task, indexed
        (``task``, ``link``), best first (:func:`~bayescale.questions.downstream.compare_links`).
    candidates
        With ``link="auto"``: every candidate's link fit, by task and label (the chosen one included).
    """

    loss_fit: Fit
    link_fits: dict[str, Fit]
    scores: dict[str, str] = field(default_factory=dict)
    link_labels: dict[str, str] = field(default_factory=dict)
    choice: pd.DataFrame | None = None
    candidates: dict[str, dict[str, Fit]] = field(default_factory=dict, repr=False)

    @property
    def tasks(self) -> list[str]:
        """Names of the tasks, in fitting order."""
        return list(self.link_fits)

    # The result protocol (:class:`~bayescale.posterior.result.Result`): step 1 stands for the
    # draws and settings, the diagnostics are every step's.

    @property
    def idata(self) -> Any:
        """Step 1's draws (each link's are in :attr:`link_fits`)."""
        return self.loss_fit.idata

    @property
    def posterior(self) -> xr.Dataset:
        """Step 1's posterior draws."""
        return self.loss_fit.posterior

    @property
    def sampler(self) -> Any:
        """Step 1's sampler settings (the links were sampled alike)."""
        return self.loss_fit.sampler

    @property
    def random_seed(self) -> int | None:
        """Step 1's seed (task ``i``'s link had ``random_seed + 1 + i``)."""
        return self.loss_fit.random_seed

    @property
    def diagnostics(self) -> Diagnostics:
        """Every step's sampler diagnostics in one: ``ok`` when all are, each problem named by its step."""
        steps = {"loss": self.loss_fit} | {f"link:{t}": f for t, f in self.link_fits.items()}
        diags = {name: fit.diagnostics for name, fit in steps.items()}
        return Diagnostics.from_dict(
            {
                "divergences": sum(int(d["divergences"]) for d in diags.values()),
                "max_r_hat": max(float(d["max_r_hat"]) for d in diags.values()),
                "min_ess_bulk": min(float(d["min_ess_bulk"]) for d in diags.values()),
                "ok": all(bool(d["ok"]) for d in diags.values()),
                "problems": [f"{name}: {p}" for name, d in diags.items() for p in d["problems"]],
                "r_hat": {
                    f"{name}.{k}": float(v) for name, d in diags.items() for k, v in d["r_hat"].items()
                },
                "ess_bulk": {
                    f"{name}.{k}": float(v) for name, d in diags.items() for k, v in d["ess_bulk"].items()
                },
            }
        )

    def to_dict(self, prob: float = 0.9, kind: str = "eti") -> dict[str, Any]:
        """JSON-ready: step 1's fit, each task's link (how chosen, its fit) and the task diagnostics."""
        links = self.links()
        diagnostics = self._task_diagnostics_records()
        tasks = {}
        for task, fit in self.link_fits.items():
            row = links.loc[task]
            tasks[task] = {
                "score": str(row["score"]),
                "link": str(row["link"]),
                "chosen_by": str(row["chosen_by"]),
                "candidates": int(row["candidates"]),
                **json_record(row, numbers=("elpd_margin", "margin_se", "weight")),
                "fit": fit.to_dict(prob, kind),
            }
        return {
            "kind": "downstream",
            "loss_unit": self.loss_fit.runs.loss_unit,
            "loss": self.loss_fit.to_dict(prob, kind),
            "tasks": tasks,
            "task_diagnostics": diagnostics,
            "ok": bool(self.diagnostics["ok"]),
        }

    def _task_diagnostics_records(self) -> list[dict[str, Any]]:
        """:meth:`task_diagnostics` as JSON-ready records, one per task."""
        table = self.task_diagnostics()
        numbers = ("change", "noise", "signal_to_noise", "monotone_rho")
        flags = ("flat", "noisy", "non_monotone", "predictable")
        return [
            {"task": str(task), "runs": int(row["runs"]), **json_record(row, numbers, flags)}
            for task, row in table.iterrows()
        ]

    def save(self, path: str | Path) -> Path:
        """Write both steps to one NetCDF file atomically; :func:`bayescale.load_fit` reads it back.

        Step 1's variant law is fitted first if it has not been and saved with it, as
        :meth:`bayescale.Fit.save` does, so that answers beyond the runs from the loaded model
        refit nothing. Each task's chosen link is saved; the other candidates of ``link="auto"``
        are not (their LOO table is).
        """
        self.loss_fit.variant_fit()
        return io.save_fit(self, path)  # type: ignore[arg-type]

    def saved_parts(self) -> tuple[Any, dict[str, Any]]:
        """Step 1's groups (and its variant law's), each link's as ``link<i>_*`` groups; the settings."""
        from bayescale.inference import container
        from bayescale.methods.fit_file import with_variant

        loss = fit_settings(self.loss_fit)
        tree = with_variant(self.loss_fit, with_runs(self.loss_fit), loss)
        links = []
        for i, (task, fit) in enumerate(self.link_fits.items()):
            idata = with_runs(fit)
            for name in container.group_names(idata):
                tree = container.with_group(tree, f"{LINK_GROUP}{i}_{name}", container.group(idata, name))
            links.append(
                {
                    "task": task,
                    "score": self.scores.get(task, cast(LinkLaw, fit.law).target),
                    "label": self.link_labels.get(task, fit.law.name),
                    "fit": fit_settings(fit),
                }
            )
        choice = None
        if self.choice is not None:
            choice = [
                {k: (v if isinstance(v, str) else finite_or_none(v)) for k, v in row.items()}
                for row in self.choice.reset_index().to_dict("records")
            ]
        return tree, {"loss": loss, "links": links, "choice": choice}

    @classmethod
    def from_saved(cls, idata: Any, settings: dict[str, Any], common: dict[str, Any]) -> Downstream:
        """Rebuild the model from :meth:`saved_parts`; TypeError for a setting of the wrong type."""
        from bayescale.inference import container
        from bayescale.methods.saved import check_setting

        names = container.group_names(idata)
        links = settings["links"]
        check_setting("links", links, isinstance(links, list) and len(links) > 0)
        own = [g for g in names if not g.startswith(LINK_GROUP)]
        loss_fit = fit_from_settings(idata, own, "", settings["loss"], "loss")
        link_fits, scores, labels = {}, {}, {}
        for i, entry in enumerate(links):
            check_setting(
                "links", entry, isinstance(entry, dict) and {"task", "score", "label", "fit"} <= set(entry)
            )
            task, score, label = entry["task"], entry["score"], entry["label"]
            check_setting("task", task, isinstance(task, str) and task not in link_fits)
            check_setting("score", score, score in ("error", "accuracy"))
            check_setting("label", label, isinstance(label, str))
            prefix = f"{LINK_GROUP}{i}_"
            fit = fit_from_settings(
                idata, [g for g in names if g.startswith(prefix)], prefix, entry["fit"], task
            )
            if not isinstance(fit.law, LinkLaw):
                raise TypeError(f"the saved link of {task!r} is law {fit.law.name!r}, not a link")
            link_fits[task], scores[task], labels[task] = fit, score, label
        extra = [
            g
            for g in names
            if g.startswith(LINK_GROUP)
            and not g.startswith(tuple(f"{LINK_GROUP}{i}_" for i in range(len(links))))
        ]
        if extra:
            raise TypeError(f"the file has groups {extra} of no saved link")
        choice = choice_from_settings(settings.get("choice"), list(link_fits))
        return cls(loss_fit, link_fits, scores, labels, choice)

    def predict_draws(
        self, params: Any, tokens: Any, random_seed: int | None = None, average_beyond: bool = True
    ) -> xr.Dataset:
        """Draws of the chained answer (see :func:`bayescale.questions.downstream.chained_draws`)."""
        return chain.chained_draws(
            self.loss_fit, self.link_fits, params, tokens, random_seed, average_beyond, self.scores
        )

    def predict(
        self,
        params: Any,
        tokens: Any,
        prob: float = 0.9,
        kind: str = "eti",
        random_seed: int | None = None,
        average_beyond: bool = True,
    ) -> pd.DataFrame:
        """The loss and each task's score at new (N, D), with both steps' uncertainty and noise.

        Returns
        -------
        pandas.DataFrame
            One row per query: ``params``, ``tokens``, then ``loss_{median,lower,upper}``
            (step 1's predictive loss), ``<task>_{median,lower,upper}`` per task (the
            predictive error or accuracy of a new run) and, with several tasks,
            ``average_*`` (their mean). With ``average_beyond`` (default, as for
            :meth:`bayescale.Fit.predict`, by the same code) step 1 answers a query beyond its
            runs' range by the equal mixture of its law and the loss fit's variant law.
        """
        return chain.chained_predict(
            self.loss_fit,
            self.link_fits,
            params,
            tokens,
            prob,
            kind,
            random_seed,
            average_beyond,
            self.scores,
        )

    def task_diagnostics(self) -> pd.DataFrame:
        """Which tasks scale predictably (see :func:`bayescale.questions.downstream.task_diagnostics`)."""
        return chain.task_diagnostics(self.link_fits)

    def with_links(self, labels: Mapping[str, str]) -> Downstream:
        """The same model with other candidates' links for some tasks: ``{task: label}`` (see :attr:`choice`).

        For a second look at a task whose LOO choice was close; the LOO table is kept as it was.
        """
        links, chosen = dict(self.link_fits), dict(self.link_labels)
        for task, label in labels.items():
            have = list(self.candidates.get(task, {}))
            if label not in have:
                raise BayescaleError(
                    f"task {task!r} has no candidate link {label!r}; it has {have}"
                    + ("" if have else " (a loaded model keeps each task's chosen link only: fit again)")
                )
            links[task], chosen[task] = self.candidates[task][label], label
        return Downstream(self.loss_fit, links, dict(self.scores), chosen, self.choice, self.candidates)

    def links(self) -> pd.DataFrame:
        """Per task: what it measures, its link, and how that link was chosen.

        Returns
        -------
        pandas.DataFrame
            Index ``task``: ``score`` (error or accuracy), ``link`` (its label), ``law`` (the
            link law), ``chosen_by`` (``"LOO"`` or ``"given"``) and, with a LOO table,
            ``candidates``, ``elpd_margin`` (the link's PSIS-LOO elpd minus the best other
            candidate's: negative for a candidate taken by :meth:`with_links` that LOO ranks
            below the best), ``margin_se`` (its standard error) and ``weight`` (its stacking weight).
        """
        rows = []
        for task, fit in self.link_fits.items():
            row: dict[str, Any] = {
                "task": task,
                "score": self.scores.get(task, cast(LinkLaw, fit.law).target),
                "link": self.link_labels.get(task, fit.law.name),
                "law": fit.law.name,
                "chosen_by": "given",
                "candidates": 1,
                "elpd_margin": np.nan,
                "margin_se": np.nan,
                "weight": np.nan,
            }
            if self.choice is not None and task in self.choice.index.get_level_values("task"):
                table = self.choice.loc[task]
                label = row["link"]
                row.update(chosen_by="LOO", candidates=len(table), weight=float(table.loc[label, "weight"]))
                if (
                    label != table.index[0]
                ):  # another candidate (with_links): behind the best by its elpd_diff
                    row.update(
                        chosen_by="given",
                        elpd_margin=-float(table.loc[label, "elpd_diff"]),
                        margin_se=float(table.loc[label, "dse"]),
                    )
                elif len(table) > 1:
                    row.update(
                        elpd_margin=float(table["elpd_diff"].iloc[1]), margin_se=float(table["dse"].iloc[1])
                    )
            rows.append(row)
        return pd.DataFrame(rows).set_index("task")

    def summary(self, prob: float = 0.9, kind: str = "eti") -> pd.DataFrame:
        """Both steps' parameter summaries, indexed by (``step``, ``parameter``).

        Columns as :meth:`~bayescale.Fit.summary`, then ``link`` (each step's law or link label)
        and ``loo_weight`` (a link chosen by LOO: its stacking weight among the candidates).
        """
        parts = {
            "loss": self.loss_fit.summary(prob, kind).assign(link=self.loss_fit.law.name, loo_weight=np.nan)
        }
        links = self.links()
        for task, fit in self.link_fits.items():
            parts[f"link:{task}"] = fit.summary(prob, kind).assign(
                link=links.loc[task, "link"], loo_weight=links.loc[task, "weight"]
            )
        return pd.concat(parts, names=["step", "parameter"])

    def _repr_html_(self) -> str:
        """Both steps as a compact table in Jupyter: law, runs, each task's link, the parameters."""
        links = self.links()
        facts: list[tuple[str, Any]] = [
            ("law", self.loss_fit.law.name),
            ("data", self.loss_fit.runs.source),
            ("runs", len(self.loss_fit.runs)),
            ("loss unit", self.loss_fit.runs.loss_unit),
        ]
        facts += [
            (f"task {task}", f"{row['link']} ({row['score']}, by {row['chosen_by']})")
            for task, row in links.iterrows()
        ]
        facts.append(("diagnostics", "ok" if self.diagnostics["ok"] else "FAILED"))
        table = self.summary()
        rows = {f"{step}: {name}": dict(row) for (step, name), row in table.iterrows()}
        return html_card(
            "downstream",
            facts,
            rows,
            ["median", "lower", "upper"],
            self.diagnostics["problems"],
            "90% equal-tailed credible intervals",
        )

    def __repr__(self) -> str:
        links = self.links()
        chosen = []
        for task, row in links.iterrows():
            text = f"{task}: {row['link']}"
            if row["chosen_by"] == "LOO":
                text += (
                    f" (LOO over {row['candidates']}, weight {row['weight']:.2f}"
                    + (
                        f", elpd +{row['elpd_margin']:.1f} ± {row['margin_se']:.1f}"
                        if row["candidates"] > 1
                        else ""
                    )
                    + ")"
                )
            chosen.append(text)
        facts = {
            "law": repr(self.loss_fit.law.name),
            "runs": len(self.loss_fit.runs),
            "tasks": "[" + "; ".join(chosen) + "]",
        }
        return short_repr("Downstream", facts)
