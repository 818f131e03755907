"""A ladder too small for a law's default priors fits with the law's population prior.

With 3-7 runs the Chinchilla law's seven free parameters (five in the mean, sigma and nu) are
more than the runs can constrain on the default priors. Rather than refuse, such a ladder
borrows the population prior learnt from the public ladders (``published-ladders``,
:data:`~bayescale.model.prior_sets.SMALL_LADDER_SETS`), and the fit says, parameter by parameter,
how much of the answer is the runs' and how much the prior's
(:func:`~bayescale.posterior.contraction.prior_contraction`).

A user who gives priors of their own (``priors=``, ``--priors``, ``--priors-from``; e.g. the same
set with ``widen`` or some parameters left out) is taken at their word: nothing is borrowed.

A ladder with no more runs than the law's mean has free parameters cannot measure its own
scatter either: :func:`unmeasured_scatter` says why, and what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bayescale.data.columns import count_constrained
from bayescale.errors import RunsError
from bayescale.model.laws import ScalingLaw
from bayescale.model.prior_sets import SMALL_LADDER_SETS, prior_set_info, published_priors
from bayescale.model.priors import Prior

#: Fewer runs than this are refused even with the population prior: two points draw no curve.
MIN_RUNS = 3


def borrow_for_small_ladder(
    law: ScalingLaw,
    runs: int,
    free: Mapping[str, Prior],
    fixed: Mapping[str, float],
    priors: Mapping[str, Any] | None,
) -> tuple[dict[str, Prior], str | None]:
    """The priors to fit ``runs`` runs with, and the name of the prior set borrowed (or ``None``).

    Parameters
    ----------
    law
        The law being fitted.
    runs
        How many runs the ladder has.
    free
        The prior of every free parameter after the user's priors and fixed values.
    fixed
        The fixed parameters (never given a prior).
    priors
        The priors the user gave (``None`` or empty: the law's defaults).

    Returns
    -------
    priors, borrowed
        ``free`` unchanged and ``None`` when the runs outnumber the free parameters the user's
        priors leave unconstrained; else ``free`` with the population prior on every parameter
        it covers, and the set's name.

    Raises
    ------
    RunsError
        Too few runs, and either the user chose priors, the law has no population prior, or
        even the population prior leaves too many parameters free.
    """
    informed = count_constrained(priors, free)
    unconstrained = [n for n in free if n not in informed]
    if runs > len(unconstrained):
        return dict(free), None
    name = SMALL_LADDER_SETS.get(law.name)
    if name is not None and not priors and runs >= MIN_RUNS:
        available = prior_set_info(name)["estimates"]
        borrowed = published_priors(name, parameters=[p for p in available if p in free and p not in fixed])
        still_free = [n for n in free if n not in borrowed]
        if runs > len(still_free):
            return {**free, **borrowed}, name
    hint = (
        f"; a ladder of {MIN_RUNS} or more runs with no priors of its own fits with the population prior "
        f"{name!r}"
        if name is not None
        else ""
    )
    raise RunsError(
        f"{runs} runs cannot constrain {len(unconstrained)} free parameters "
        f"({', '.join(unconstrained)}){' on default priors' if informed else ''}; "
        "add runs or fix parameters, or give informed priors on some (priors=published_priors(...); "
        "CLI --priors-from SET --prior-params A,B,alpha_N,alpha_D)" + hint
    )


def borrowed_note(name: str, runs: int, free: Mapping[str, Prior]) -> str:
    """What was borrowed, from where, and how to choose otherwise."""
    info = prior_set_info(name)
    parameters = [p for p in info["estimates"] if p in free]
    return (
        f"{runs} runs are too few for the law's default priors: fitting with the population prior {name!r} "
        f"on {', '.join(parameters)} ({len(info.get('ladders', {}))} public ladders; "
        "`bayescale laws` lists it). To choose otherwise give priors of your own: "
        f"priors=bs.published_priors({name!r}, widen=2, parameters=[...]) "
        f"(CLI --priors-from {name} --widen 2 --prior-params ...), or another set"
    )


def unmeasured_scatter(
    runs: int, law: ScalingLaw, free: Mapping[str, Prior], priors: Mapping[str, Any] | None
) -> str | None:
    """Why ``runs`` runs cannot measure their own scatter ``sigma``, or ``None`` when they can.

    With no more runs than free parameters in the law's mean, the law can pass through every
    run (or nearly: informed priors only bend it), so the likelihood keeps rising as ``sigma``
    falls and the posterior of ``sigma`` slides into its prior's tail near 0: every interval
    narrows, and NUTS fights the funnel (seen on 5 simulated runs at one ratio, true scatter
    0.01: sigma's median 0.0008, 81% of draws at the maximum tree depth; with sigma fixed at the
    truth, 63 leapfrog steps and none).
    """
    if "sigma" not in free or "sigma" in (priors or {}):
        return None
    mean = [p.name for p in law.parameters if p.name in free]
    if runs > len(mean):
        return None
    return (
        f"{runs} runs and {len(mean)} free parameters in the law's mean ({', '.join(mean)}): the law can "
        "pass through every run, so the runs cannot measure their own scatter. sigma's posterior then "
        "slides toward 0, which narrows every interval and slows sampling. Give sigma a prior from the "
        "spread of your seeds, e.g. priors={'sigma': Prior('LogNormal', mu=log(0.01), sigma=0.5)} "
        "(CLI --priors FILE), fix it (--fix sigma=...), or add runs"
    )
