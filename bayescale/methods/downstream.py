"""Downstream accuracy in two steps: a loss law, then a link from that loss to each task's score.

:func:`fit_link` fits a link (:mod:`bayescale.model.laws.downstream`) to a table of runs with
an input-loss column and a target column (a task's error or accuracy, or an average over
tasks) with the parametric method's sampler (JAX fast path included): it is
``bs.fit(table, method="link", target=..., input_loss=...)``. :func:`fit_downstream` fits both
steps and returns a :class:`Downstream`, whose :meth:`~Downstream.predict` chains them
(:mod:`bayescale.questions.downstream`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.data.runs import Runs
from bayescale.data.units import DEFAULT_LOSS_UNIT, check_loss_column, unit_in_name
from bayescale.errors import BayescaleError, RunsError
from bayescale.inference.diagnostics import Diagnostics
from bayescale.inference.sampling import SamplerSettings
from bayescale.methods import io
from bayescale.methods.parametric import Fit, fit_parametric
from bayescale.model.laws.downstream import LINK_COVARIATE, LinkLaw, get_link
from bayescale.model.likelihoods import Likelihood
from bayescale.model.priors import Prior
from bayescale.posterior.residuals import spearman
from bayescale.posterior.result import finite_or_none, html_card, json_record, short_repr
from bayescale.questions import downstream as chain

#: What a task's column measures: its top-1 error or its accuracy.
Score = Literal["error", "accuracy"]

#: The links ``link="auto"`` chooses from, per task, by PSIS-LOO of the accuracy
#: (:func:`~bayescale.questions.downstream.compare_links`): label -> (link, fixed values). The
#: sigmoid's floor is held at the task's ``chance`` when given.
AUTO_LINKS: dict[str, tuple[str, dict[str, float]]] = {
    "exponential": ("link-exponential", {}),
    "sigmoid": ("link-sigmoid", {}),
    "sigmoid, ceiling 1": ("link-sigmoid", {"headroom": 1.0}),
    "sigmoid, midpoint with size": ("link-sigmoid-size", {}),
}


def link_table(frame: pd.DataFrame, target: str, input_loss: str) -> pd.DataFrame:
    """The runs table a link is fitted to: ``loss`` holds ``target``, ``input_loss`` its covariate.

    ``params`` and ``tokens`` (any accepted spelling) come along, as do ``run`` and ``group``.

    Raises
    ------
    RunsError
        A missing column, or a target outside (0, 1] (the link's noise is on its log),
        naming the column and row.
    """
    if not isinstance(frame, pd.DataFrame):
        raise RunsError(f"a link is fitted to a DataFrame of runs, got {type(frame).__name__}")
    for name, role in ((target, "target"), (input_loss, "input loss")):
        if name not in frame.columns:
            raise RunsError(f"{role} column {name!r} is not in the runs; columns are {list(frame.columns)}")
    values = pd.to_numeric(frame[target], errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~((values > 0) & (values <= 1)))
    if bad.size:
        row = int(bad[0])
        raise RunsError(
            f"column {target!r} row {row}: {values[row]:g} is not an error or accuracy in (0, 1] "
            f"({bad.size} such row(s)); a link's noise is on the log of its target, so a task scored 0 "
            "cannot be fitted: model its error (1 - accuracy) or leave it out"
        )
    out = frame.drop(columns=[c for c in ("loss", LINK_COVARIATE) if c in frame.columns and c != target])
    out = out.rename(columns={target: "loss"})
    out[LINK_COVARIATE] = pd.to_numeric(frame[input_loss], errors="coerce").to_numpy(dtype=float)
    loss_in = out[LINK_COVARIATE].to_numpy()
    bad = np.flatnonzero(~(np.isfinite(loss_in) & (loss_in > 0)))
    if bad.size:
        row = int(bad[0])
        raise RunsError(f"column {input_loss!r} row {row}: {loss_in[row]:g} is not a loss (finite, > 0)")
    return out


def fit_link(
    runs: pd.DataFrame,
    target: str,
    input_loss: str = "loss",
    link: str | LinkLaw = "link-exponential",
    *,
    loss_unit: str | None = None,
    priors: Mapping[str, Prior | Mapping[str, Any]] | None = None,
    fix: Mapping[str, float] | None = None,
    likelihood: Likelihood = "normal",
    sampler: SamplerSettings | None = None,
    random_seed: int | None = None,
    progressbar: bool = True,
    warn: bool = True,
) -> Fit:
    """Fit a link from a loss to a task's error or accuracy: ``bs.fit(runs, method="link", ...)``.

    Parameters
    ----------
    runs
        A DataFrame with ``params``, ``tokens``, the input-loss column and the target column
        (checkpoints of a run may share a ``run`` label, as for a loss fit).
    target
        The column of the task's top-1 error (``link-exponential``) or accuracy
        (``link-sigmoid``), in (0, 1].
    input_loss
        The column of the loss the link reads (a validation loss, a task's loss).
    link
        ``"link-exponential"`` (Gadre et al. 2024), ``"link-sigmoid"`` (the OLMo ladder) or a
        :class:`~bayescale.model.laws.downstream.LinkLaw`.
    loss_unit
        Unit of the input loss (:data:`~bayescale.data.units.LOSS_UNITS`); default the one its
        column's name states (``arc_bpb``: bits per byte), else nats per token. Kept in the
        fit's ``input_loss_unit`` attribute: a chain refuses a loss fit in another unit.
    priors, fix, sampler, random_seed, progressbar, warn
        As for :func:`~bayescale.methods.parametric.fit_parametric`; e.g.
        ``fix={"floor": 0.25}`` holds a 4-choice task's sigmoid at chance.
    likelihood
        Noise on the log target: ``"normal"`` (default: a link sees a handful of runs, too few
        to learn a Student-t's degrees of freedom) or ``"student_t"``.

    Returns
    -------
    Fit
        A fit whose law is the link and whose runs' ``loss`` column is the target.
    """
    law = get_link(link)
    unit = input_unit(input_loss, loss_unit)
    table = Runs.from_frame(link_table(runs, target, input_loss), f"link {target} <- {input_loss}")
    fit = fit_parametric(
        table,
        law,
        priors=priors,
        fix=fix,
        likelihood=likelihood,
        sampler=sampler,
        random_seed=random_seed,
        progressbar=progressbar,
        warn=warn,
    )
    fit.input_loss_unit = unit  # type: ignore[attr-defined]  # (a link's own attribute)
    no_second_law(fit)
    return fit


def no_second_law(fit: Fit) -> None:
    """Mark a link fit as having no second law: a loss law fitted to a task's score means nothing."""
    fit._variants[fit.variant_law] = None


def input_unit(column: str, loss_unit: str | None) -> str:
    """The unit of loss column ``column``: ``loss_unit`` checked against its name, or the name's."""
    if loss_unit is None:
        return unit_in_name(column) or DEFAULT_LOSS_UNIT
    check_loss_column(column, loss_unit)
    return loss_unit


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
        The label of each task's link (:data:`AUTO_LINKS`' keys when chosen by LOO).
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

        loss = _fit_settings(self.loss_fit)
        tree = with_variant(self.loss_fit, _with_runs(self.loss_fit), loss)
        links = []
        for i, (task, fit) in enumerate(self.link_fits.items()):
            idata = _with_runs(fit)
            for name in container.group_names(idata):
                tree = container.with_group(tree, f"{LINK_GROUP}{i}_{name}", container.group(idata, name))
            links.append(
                {
                    "task": task,
                    "score": self.scores.get(task, cast(LinkLaw, fit.law).target),
                    "label": self.link_labels.get(task, fit.law.name),
                    "fit": _fit_settings(fit),
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
        loss_fit = _fit_from_settings(idata, own, "", settings["loss"], "loss")
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
            fit = _fit_from_settings(
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
        choice = _choice_from_settings(settings.get("choice"), list(link_fits))
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


def fit_downstream(
    runs: pd.DataFrame,
    tasks: Sequence[str],
    input_loss: str = "loss",
    *,
    loss_unit: str | None = None,
    law: str = "chinchilla-tied",
    link: str | LinkLaw | Sequence[str] = "auto",
    score: Score | None = None,
    chance: float | Mapping[str, float] | None = None,
    loss_rows: Any = None,
    link_rows: Any = None,
    loss_priors: Mapping[str, Prior | Mapping[str, Any]] | None = None,
    link_priors: Mapping[str, Prior | Mapping[str, Any]] | None = None,
    link_fix: Mapping[str, Mapping[str, float]] | None = None,
    loss_likelihood: Likelihood = "student_t",
    link_likelihood: Likelihood = "normal",
    sampler: SamplerSettings | None = None,
    random_seed: int | None = None,
    progressbar: bool = False,
    warn: bool = True,
) -> Downstream:
    """Fit a loss law and one link per task: the two steps of a downstream forecast.

    Parameters
    ----------
    runs
        One row per run (or checkpoint): ``params``, ``tokens``, the ``input_loss`` column and
        one column per task.
    tasks
        Columns of the tasks' errors or accuracies (or of averages over tasks).
    input_loss
        The loss column step 1 fits and step 2 reads.
    loss_unit
        Its unit (:data:`~bayescale.data.units.LOSS_UNITS`): default the one the column's name
        states (``arc_bpb``: bits per byte), else nats per token; a name that contradicts a
        stated unit is refused.
    law
        Step 1's law (default Gadre et al.'s ``"chinchilla-tied"``).
    link
        Step 2's link: ``"auto"`` (default) fits every link of :data:`AUTO_LINKS` to each task
        and keeps the one PSIS-LOO of the accuracy prefers on the link's rows
        (:func:`~bayescale.questions.downstream.compare_links`; the table is kept in
        :attr:`Downstream.choice`), or a link's name (``"link-exponential"``, ``"link-sigmoid"``)
        for every task, or a list of :data:`AUTO_LINKS`' labels to choose among.
    score
        What the task columns measure, ``"error"`` or ``"accuracy"``. Default: with a named
        link, that link's target; with ``"auto"``, read from the ladder (a column that rises
        with the input loss is an error) and shown in :meth:`Downstream.links`. A link that
        fits the other one is fitted to ``1 -`` the column, and answers in the column's terms.
    chance
        The tasks' chance accuracy (one for all, or by task): holds the sigmoid's floor there.
    loss_rows, link_rows
        Boolean masks of the rows each step is fitted on (default all): Gadre et al. fit the
        loss on 5 runs and the error law on those plus one larger run.
    loss_priors, link_priors
        Priors overriding the defaults of each step.
    link_fix
        Fixed link parameters by task, e.g. ``{"arc_easy": {"floor": 0.25}}``.
    loss_likelihood, link_likelihood
        Noise of each step.
    sampler, random_seed, progressbar, warn
        As for :func:`~bayescale.fit`; task ``i``'s link gets seed ``random_seed + 1 + i`` (the
        ``j``-th candidate of ``"auto"``: ``+ 1000 j``).

    Returns
    -------
    Downstream
        Both steps; :meth:`Downstream.links` says which link each task got and why.
    """
    frame = runs if isinstance(runs, pd.DataFrame) else Runs.from_any(runs).frame
    missing = [t for t in tasks if t not in frame.columns]
    if not tasks or missing:
        raise RunsError(
            f"tasks {missing or list(tasks)} are not columns of the runs; columns: {list(frame.columns)}"
        )
    if score is not None and score not in ("error", "accuracy"):
        raise RunsError(f"score must be 'error' or 'accuracy', got {score!r}")
    every = np.ones(len(frame), dtype=bool)
    on_loss = frame.loc[every if loss_rows is None else np.asarray(loss_rows, dtype=bool)]
    on_link = frame.loc[every if link_rows is None else np.asarray(link_rows, dtype=bool)]
    loss_table = on_loss.drop(columns=[c for c in ("loss",) if c != input_loss and c in on_loss.columns])
    loss_table = loss_table.rename(columns={input_loss: "loss"})
    unit = input_unit(input_loss, loss_unit)
    loss_fit = fit_parametric(
        Runs.from_frame(loss_table.reset_index(drop=True), f"loss {input_loss}", loss_unit=unit),
        law,
        priors=loss_priors,
        likelihood=loss_likelihood,
        sampler=sampler,
        random_seed=random_seed,
        progressbar=progressbar,
        warn=warn,
    )
    given = (
        get_link(link) if isinstance(link, LinkLaw) or (isinstance(link, str) and link != "auto") else None
    )
    auto = given is None
    pool = AUTO_LINKS if isinstance(link, (str, LinkLaw)) else _candidates(link)
    links: dict[str, Fit] = {}
    scores: dict[str, str] = {}
    labels: dict[str, str] = {}
    choices = []
    candidate_fits: dict[str, dict[str, Fit]] = {}
    rows = on_link.reset_index(drop=True)
    for i, task in enumerate(tasks):
        name = str(task)
        kind = score or (given.target if given is not None else _score_of(rows, name, input_loss))
        floor = chance.get(name) if isinstance(chance, Mapping) else chance
        fixed = dict((link_fix or {}).get(name) or {})
        seed = None if random_seed is None else random_seed + 1 + i
        candidates: Mapping[str, tuple[str | LinkLaw, dict[str, float]]] = (
            pool if given is None else {given.name: (given, {})}
        )
        known = {p.name for candidate, _ in candidates.values() for p in get_link(candidate).parameters}
        if auto and set(fixed) - known:
            raise RunsError(
                f"link_fix of {name!r} names {sorted(set(fixed) - known)}, which no candidate link has; "
                f"their parameters: {sorted(known)}"
            )
        fits = {}
        for j, (label, (candidate, held)) in enumerate(candidates.items()):
            law_j = get_link(candidate)
            names = {p.name for p in law_j.parameters}
            # With "auto", a fixed value binds the candidates that have that parameter.
            fix_j = ({k: v for k, v in fixed.items() if k in names} if auto else fixed) | held
            if floor is not None and "floor" in names:
                fix_j.setdefault("floor", float(floor))
            column = rows[name] if law_j.target == kind else 1.0 - pd.to_numeric(rows[name], errors="coerce")
            fits[label] = fit_link(
                rows.assign(**{name: column}),
                name,
                input_loss,
                law_j,
                loss_unit=unit,
                priors={k: v for k, v in (link_priors or {}).items() if k in names} if auto else link_priors,
                fix=fix_j or None,
                likelihood=link_likelihood,
                sampler=sampler,
                random_seed=None if seed is None else seed + 1000 * j,
                progressbar=progressbar,
                warn=warn,
            )
        if auto:
            table = chain.compare_links(fits)
            choices.append(table.assign(task=name).reset_index().set_index(["task", "link"]))
            best = str(table.index[0])
        else:
            best = next(iter(fits))
        links[name], scores[name], labels[name] = fits[best], kind, best
        if auto:
            candidate_fits[name] = fits
    choice = pd.concat(choices) if choices else None
    return Downstream(loss_fit, links, scores, labels, choice, candidate_fits)


#: The prefix of the groups of a saved Downstream that hold task ``i``'s link: ``link<i>_posterior`` ...
LINK_GROUP = "link"


def _fit_settings(fit: Fit) -> dict[str, str]:
    """A step's attrs as a saved Fit has them (law, priors, sampler ...), plus its draws' checksum."""
    from bayescale.methods.file_format import posterior_checksum
    from bayescale.methods.fit_file import fit_attrs

    return {
        **fit_attrs(fit),
        "sampler": json.dumps(fit.sampler.to_dict(), sort_keys=True),
        "random_seed": json.dumps(fit.random_seed),
        "diagnostics": json.dumps(dict(fit.diagnostics), sort_keys=True),
        "posterior_checksum": posterior_checksum(fit.posterior),
    }


def _with_runs(fit: Fit) -> Any:
    """A copy of the fit's draws with its runs and observed log target, as a sampled fit keeps them."""
    from bayescale.data.storage import runs_to_dataset
    from bayescale.methods.saved import with_data
    from bayescale.model.pymc_model import OBSERVED

    observed = xr.Dataset(
        {OBSERVED: (("run",), np.log(fit.runs.column("loss")))}, coords={"run": np.arange(len(fit.runs))}
    )
    return with_data(fit.idata.copy(), runs_to_dataset(fit.runs), observed)


def _fit_from_settings(idata: Any, groups: Sequence[str], prefix: str, attrs: Any, step: str) -> Fit:
    """A step's Fit from its ``groups`` of a saved Downstream (``prefix`` stripped) and its attrs."""
    from bayescale.inference import container
    from bayescale.methods.file_format import posterior_checksum
    from bayescale.methods.fit_file import fit_from_file

    if not (isinstance(attrs, dict) and all(isinstance(v, str) for v in attrs.values())):
        raise TypeError(f"the saved settings of step {step!r} must be a JSON object of text")
    tree = container.from_groups(**{g[len(prefix) :]: container.group(idata, g) for g in groups})
    missing = [g for g in ("posterior", "constant_data") if not container.has_group(tree, g)]
    if missing:
        raise TypeError(f"the saved step {step!r} lacks its group(s) {missing}")
    if attrs.get("posterior_checksum") != posterior_checksum(container.posterior(tree)):
        raise TypeError(f"the draws of step {step!r} do not match their recorded checksum")
    return cast(Fit, fit_from_file(Fit, tree, attrs, container.group(tree, "constant_data")))


#: The columns of :attr:`Downstream.choice` (its index, then the LOO table's).
CHOICE_COLUMNS = (
    "task",
    "link",
    "rank",
    "elpd_loo",
    "p_loo",
    "se",
    "elpd_diff",
    "dse",
    "weight",
    "pareto_k_max",
)


def _choice_from_settings(records: Any, tasks: Sequence[str]) -> pd.DataFrame | None:
    """The saved LOO table of ``link="auto"`` (``None`` when the links were given)."""
    if records is None:
        return None
    if not (isinstance(records, list) and records and all(isinstance(r, dict) for r in records)):
        raise TypeError(f"the saved LOO table must be a list of rows, got {type(records).__name__}")
    for row in records:
        if set(row) != set(CHOICE_COLUMNS):
            raise TypeError(
                f"a row of the saved LOO table has columns {sorted(row)}, not {list(CHOICE_COLUMNS)}"
            )
        if not (isinstance(row["task"], str) and row["task"] in tasks and isinstance(row["link"], str)):
            raise TypeError(
                f"a row of the saved LOO table names task {row['task']!r} and link {row['link']!r}"
            )
        for key in CHOICE_COLUMNS[2:]:
            value = row[key]
            if not (value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))):
                raise TypeError(f"the saved LOO table's {key!r} holds {value!r}, not a number")
    table = pd.DataFrame(records, columns=list(CHOICE_COLUMNS)).set_index(["task", "link"])
    return table.astype(float).astype({"rank": int})


def _candidates(labels: Sequence[str]) -> dict[str, tuple[str, dict[str, float]]]:
    """The candidate links called ``labels`` (keys of :data:`AUTO_LINKS`), or an error naming the unknown."""
    unknown = [label for label in labels if label not in AUTO_LINKS]
    if unknown or len(labels) < 2:
        raise RunsError(
            f"links to choose among must be two or more of {list(AUTO_LINKS)}, got {list(labels)}"
        )
    return {label: AUTO_LINKS[label] for label in labels}


def _score_of(rows: pd.DataFrame, task: str, input_loss: str) -> str:
    """``"error"`` when column ``task`` rises with the input loss across ``rows``, else ``"accuracy"``."""
    x = pd.to_numeric(rows[input_loss], errors="coerce").to_numpy(dtype=float)
    y = pd.to_numeric(rows[task], errors="coerce").to_numpy(dtype=float)
    rho = spearman(x, y)[0] if len(x) > 2 else float("nan")
    if not np.isfinite(rho):
        raise RunsError(
            f"cannot tell whether column {task!r} is an error or an accuracy (it does not move with "
            f"{input_loss!r}); pass score='error' or score='accuracy'"
        )
    return "error" if rho > 0 else "accuracy"
