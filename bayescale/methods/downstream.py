"""Downstream accuracy in two steps: a loss law, then a link from that loss to each task's score.

:func:`fit_link` fits a link (:mod:`bayescale.model.laws.downstream`) to a table of runs with
an input-loss column and a target column (a task's error or accuracy, or an average over
tasks) with the parametric method's sampler (JAX fast path included): it is
``bs.fit(table, method="link", target=..., input_loss=...)``. :func:`fit_downstream` fits both
steps and returns a :class:`Downstream`, whose :meth:`~Downstream.predict` chains them
(:mod:`bayescale.questions.downstream`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.data.runs import Runs
from bayescale.data.units import DEFAULT_LOSS_UNIT, check_loss_column, unit_in_name
from bayescale.errors import RunsError
from bayescale.inference.sampling import SamplerSettings
from bayescale.methods.parametric import Fit, fit_parametric
from bayescale.model.laws.downstream import LINK_COVARIATE, LinkLaw, get_link
from bayescale.model.likelihoods import Likelihood
from bayescale.model.priors import Prior
from bayescale.questions import downstream as chain


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
        Step 2 by task (or average) name: the target in step 1's loss.
    """

    loss_fit: Fit
    link_fits: dict[str, Fit]

    @property
    def tasks(self) -> list[str]:
        """Names of the tasks, in fitting order."""
        return list(self.link_fits)

    def predict_draws(
        self, params: Any, tokens: Any, random_seed: int | None = None, average_beyond: bool = False
    ) -> xr.Dataset:
        """Draws of the chained answer (see :func:`bayescale.questions.downstream.chained_draws`)."""
        return chain.chained_draws(self.loss_fit, self.link_fits, params, tokens, random_seed, average_beyond)

    def predict(
        self,
        params: Any,
        tokens: Any,
        prob: float = 0.9,
        kind: str = "eti",
        random_seed: int | None = None,
        average_beyond: bool = False,
    ) -> pd.DataFrame:
        """The loss and each task's score at new (N, D), with both steps' uncertainty and noise.

        Returns
        -------
        pandas.DataFrame
            One row per query: ``params``, ``tokens``, then ``loss_{median,lower,upper}``
            (step 1's predictive loss), ``<task>_{median,lower,upper}`` per task (the
            predictive error or accuracy of a new run) and, with several tasks,
            ``average_*`` (their mean).
        """
        return chain.chained_predict(
            self.loss_fit, self.link_fits, params, tokens, prob, kind, random_seed, average_beyond
        )

    def diagnostics(self) -> pd.DataFrame:
        """Which tasks scale predictably (see :func:`bayescale.questions.downstream.task_diagnostics`)."""
        return chain.task_diagnostics(self.link_fits)

    def summary(self, prob: float = 0.9, kind: str = "eti") -> pd.DataFrame:
        """Both steps' parameter summaries, indexed by (``step``, ``parameter``)."""
        parts = {"loss": self.loss_fit.summary(prob, kind)}
        parts.update({f"link:{task}": fit.summary(prob, kind) for task, fit in self.link_fits.items()})
        return pd.concat(parts, names=["step", "parameter"])


def fit_downstream(
    runs: pd.DataFrame,
    tasks: Sequence[str],
    input_loss: str = "loss",
    *,
    loss_unit: str | None = None,
    law: str = "chinchilla-tied",
    link: str | LinkLaw = "link-exponential",
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
        Step 2's link (default ``"link-exponential"``).
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
        As for :func:`~bayescale.fit`; each task's link gets seed ``random_seed + 1 + i``.
    """
    frame = runs if isinstance(runs, pd.DataFrame) else Runs.from_any(runs).frame
    missing = [t for t in tasks if t not in frame.columns]
    if not tasks or missing:
        raise RunsError(
            f"tasks {missing or list(tasks)} are not columns of the runs; columns: {list(frame.columns)}"
        )
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
    links = {}
    for i, task in enumerate(tasks):
        links[str(task)] = fit_link(
            on_link.reset_index(drop=True),
            task,
            input_loss,
            link,
            loss_unit=unit,
            priors=link_priors,
            fix=(link_fix or {}).get(str(task)),
            likelihood=link_likelihood,
            sampler=sampler,
            random_seed=None if random_seed is None else random_seed + 1 + i,
            progressbar=progressbar,
            warn=warn,
        )
    return Downstream(loss_fit, links)
