"""Downstream accuracy in two steps: a loss law, then a link from that loss to each task's score.

:func:`fit_link` fits a link (:mod:`bayescale.model.laws.downstream`) to a table of runs with
an input-loss column and a target column (a task's error or accuracy, or an average over
tasks) with the parametric method's sampler (JAX fast path included): it is
``bs.fit(table, method="link", target=..., input_loss=...)``. :func:`fit_downstream` fits both
steps and returns a :class:`~bayescale.methods.downstream_result.Downstream`, whose
:meth:`~bayescale.methods.downstream_result.Downstream.predict` chains them
(:mod:`bayescale.questions.downstream`); its file is :mod:`bayescale.methods.downstream_file`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from bayescale.data.runs import Runs
from bayescale.data.units import DEFAULT_LOSS_UNIT, check_loss_column, unit_in_name
from bayescale.errors import RunsError
from bayescale.inference.sampling import SamplerSettings
from bayescale.methods.downstream_result import Downstream
from bayescale.methods.parametric import Fit, fit_parametric
from bayescale.model.laws.downstream import LINK_COVARIATE, LinkLaw, get_link
from bayescale.model.likelihoods import Likelihood
from bayescale.model.priors import Prior
from bayescale.posterior.residuals import spearman
from bayescale.questions import downstream as chain

__all__ = ["AUTO_LINKS", "Downstream", "Score", "fit_downstream", "fit_link", "input_unit", "link_table"]

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
