"""Does a fit mean what it says? Simulation-based calibration and extrapolation coverage.

Simulation-based calibration (SBC; Talts et al. 2018, Modrák et al. 2023)
repeats: draw parameters from the prior, simulate a ladder of runs from the
law with run-to-run noise, fit with :func:`bayescale.fit`, and record the rank
of the true value among the (thinned) posterior draws. When the model and the
sampler are right, each rank is uniform; a posterior that is too narrow puts
ranks at the ends, a biased one piles them on one side.

Each simulated ladder is fitted on its smaller models only and the largest
size is held out, so the same fits also measure the coverage of 90%
predictive intervals under extrapolation.

Prior draws can make absurd ladders (losses of thousands of nats, or heavy
Student-t noise). A simulation is **rejected, and counted**, when any training
loss falls outside ``[min_loss, max_loss]``. The rule reads only the simulated
training data, never the parameters, so it conditions both the truth and the
posterior on the same event and leaves the ranks uniform and the held-out
predictive intervals calibrated (the held-out runs are not looked at).

The simulations are :mod:`bayescale.checks.sbc_simulations`, the statistics of the ranks and of
the coverage :mod:`bayescale.checks.sbc_ranks`; their names are importable from here as before.
"""

from __future__ import annotations

import multiprocessing
import time
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from bayescale.checks.sbc_ranks import (
    SBCResult,
    binomial_interval,
    cluster_interval,
    rank_of_truth,
    uniformity,
)
from bayescale.checks.sbc_simulations import (
    LADDER_EPOCHS,
    LADDER_SIZES,
    LADDER_TOKENS_PER_PARAM,
    Simulation,
    ladder,
    prior_draws,
    simulate,
    simulate_losses,
    simulation_rng,
)
from bayescale.errors import BayescaleError
from bayescale.methods.front import fit
from bayescale.methods.many import fit_many
from bayescale.model.laws import ScalingLaw, get_law
from bayescale.model.likelihoods import Likelihood
from bayescale.model.priors import Prior
from bayescale.model.pymc_model import resolve_priors
from bayescale.posterior.intervals import interval
from bayescale.questions import plan

__all__ = [
    "LADDER_EPOCHS",
    "LADDER_SIZES",
    "LADDER_TOKENS_PER_PARAM",
    "N_OPT_BUDGET",
    "SBCResult",
    "Simulation",
    "binomial_interval",
    "cluster_interval",
    "default_fitter",
    "ladder",
    "prior_draws",
    "rank_of_truth",
    "sbc",
    "score",
    "simulate",
    "simulate_losses",
    "simulation_rng",
    "uniformity",
]

#: Budget at which the derived compute-optimal model size N_opt is ranked.
N_OPT_BUDGET = 1e23


def score(
    result: Any,
    sim: Simulation,
    law: ScalingLaw,
    design: pd.DataFrame,
    train: np.ndarray,
    quantities: list[str],
    prob: float = 0.9,
    random_seed: int | None = None,
) -> dict[str, Any]:
    """Ranks of the truth, held-out coverage and diagnostics of one SBC fit: a row of ``SBCResult.ranks``."""
    row: dict[str, Any] = {}
    ess = result.diagnostics["ess_bulk"]
    for name in quantities:
        if name == "N_opt":
            truth = law.optimal_allocation({k: np.float64(v) for k, v in sim.theta.items()}, N_OPT_BUDGET)
            if truth is None:
                raise BayescaleError(f"law {law.name!r} has no closed-form optimum: N_opt cannot be ranked")
            # SBC checks the fitted law's own posterior: no averaging with the variant law.
            draws = plan.optimal_draws(result, N_OPT_BUDGET, average_beyond=False)["params"].isel(query=0)
            row["N_opt_rank"], row["N_opt_n"] = rank_of_truth(
                draws, float(truth["params"]), min(ess.values())
            )
        else:
            row[f"{name}_rank"], row[f"{name}_n"] = rank_of_truth(
                result.posterior[name], sim.theta[name], ess[name]
            )
    held = design.loc[~train]
    predicted = plan.predict_draws(
        result,
        held["params"],
        held["tokens"],
        held.get("unique_tokens"),
        random_seed=random_seed,
        average_beyond=False,
    )
    band = interval(predicted["loss_predictive"], prob)
    band_mean = interval(predicted["loss"], prob)
    obs, true_mean = sim.observed[~train], sim.mean[~train]
    row["heldout_covered"] = int(np.sum((band["lower"].values <= obs) & (obs <= band["upper"].values)))
    row["mean_covered"] = int(
        np.sum((band_mean["lower"].values <= true_mean) & (true_mean <= band_mean["upper"].values))
    )
    row["heldout_n"] = len(obs)
    diag = result.diagnostics
    row.update(
        divergences=diag["divergences"],
        max_r_hat=diag["max_r_hat"],
        min_ess_bulk=diag["min_ess_bulk"],
        ok=diag["ok"],
    )
    return row


def sbc(
    law: str | ScalingLaw,
    n_sims: int,
    *,
    seed: int = 0,
    likelihood: Likelihood = "student_t",
    sizes: Any = LADDER_SIZES,
    min_loss: float = 0.2,
    max_loss: float = 10.0,
    max_tries: int | None = None,
    prob: float = 0.9,
    fit_kwargs: Mapping[str, Any] | None = None,
    fitter: Callable[..., Any] | None = None,
    workers: int = 1,
    executor: Executor | None = None,
    chunk: int | None = None,
    progress: Callable[[str], None] | None = None,
    priors: Mapping[str, Prior] | None = None,
) -> SBCResult:
    """Simulation-based calibration of ``law`` fitted with :func:`bayescale.methods.parametric`.

    Parameters
    ----------
    law
        Law name or object.
    n_sims
        Accepted simulations to fit.
    seed
        Seeds the prior draws and the noise, through the law's own stream
        (:func:`simulation_rng`), and each fit (fit ``i`` gets ``seed + i``).
    likelihood
        Noise model used both to simulate and to fit.
    sizes
        Model sizes of the ladder (see :func:`ladder`); the largest is held out.
    min_loss, max_loss
        Rejection rule: a simulation whose training losses leave this range
        (nats per token) is redrawn and counted in ``rejected``.
    max_tries
        Give up with an error after this many draws (default ``50 * n_sims``).
    prob
        Probability of the held-out intervals.
    fit_kwargs
        Passed to the fitter (draws, tune, chains, backend, ...).
    fitter
        Defaults to :func:`bayescale.methods.parametric`; any callable with its signature.
        Used in this process, one fit after another (``workers`` and
        ``executor`` must then be left unset).
    workers
        With more than one, the fits run through :func:`bayescale.fit_many`
        on a pool of this many spawned processes, kept for the whole study.
    executor
        Run the fits through :func:`bayescale.fit_many` on this executor
        (e.g. a Dask cluster's) instead.
    chunk
        Fits sent to ``fit_many`` at a time (default ``4 * workers``):
        progress is reported after each chunk.
    progress
        Called with one line per fitted simulation.
    priors
        Priors the simulations are drawn from, replacing some of the law's defaults. The fit's
        priors are its own (``fit_kwargs``): pass the same ones, or none to check a default
        the fit picks itself (a small ladder's population prior,
        :mod:`bayescale.methods.small_ladder`).

    Returns
    -------
    SBCResult
        A fit that raised is not ranked: it is counted in
        ``settings["fit_errors"]`` with its message.
    """
    law_obj = get_law(law)
    pooled = executor is not None or workers > 1
    if pooled and fitter is not None:
        raise BayescaleError("a custom fitter runs in this process: leave workers and executor unset")
    fitter = fitter or default_fitter()
    kwargs = {"progressbar": False, "warn": False, **(fit_kwargs or {})}
    design = ladder(law_obj, sizes)
    train = (design["params"] < design["params"].max()).to_numpy()
    free, _ = resolve_priors(law_obj, likelihood)
    quantities = list(free)
    if law_obj.optimal_allocation(dict.fromkeys(law_obj.parameter_names, 1.0), 1e20) is not None:
        quantities.append("N_opt")
    rng = simulation_rng(law_obj, seed)
    sims, rejected = simulate(
        law_obj, n_sims, rng, design, train, likelihood, min_loss, max_loss, max_tries, priors
    )

    def job(i: int) -> dict[str, Any]:
        runs = design.loc[train].assign(loss=sims[i].observed[train]).reset_index(drop=True)
        return {
            "runs": runs,
            "law": law_obj.name,
            "likelihood": likelihood,
            "random_seed": seed + i,
            **kwargs,
        }

    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    own: Executor | None = None  # a pool this study starts, and so shuts down
    if pooled and executor is None:
        # Spawned, not forked (see bayescale.methods.many); one pool saves the start-up per chunk.
        own = executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    step = chunk or (4 * workers if pooled else 1)
    try:
        for first in range(0, n_sims, step):
            indices = range(first, min(first + step, n_sims))
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=RuntimeWarning)
                if pooled:
                    outcomes = [(r.fit, r.error) for r in fit_many([job(i) for i in indices], executor)]
                else:
                    outcomes = []
                    for i in indices:
                        spec = job(i)
                        outcomes.append((fitter(spec.pop("runs"), **{**spec, "law": law_obj}), None))
            seconds = (time.perf_counter() - start) / len(indices)
            for i, (result, error) in zip(indices, outcomes, strict=True):
                if error is not None:
                    errors.append(f"sim {i}: {error}")
                    continue
                with warnings.catch_warnings():
                    # A failed fit (e.g. a chain stranded at sigma ~ 0) can predict infinite losses;
                    # its interval is then degenerate, and the fit is counted in failed diagnostics.
                    warnings.simplefilter("ignore", category=RuntimeWarning)
                    row = score(result, sims[i], law_obj, design, train, quantities, prob, seed + i)
                row = {"sim": i, **row}
                row["seconds"] = seconds
                rows.append(row)
                if progress is not None:
                    progress(
                        f"{law_obj.name} sim {i}: {seconds:.1f}s, divergences {row['divergences']}, "
                        f"max r_hat {row['max_r_hat']:.3f}, "
                        f"held-out covered {row['heldout_covered']}/{row['heldout_n']}"
                    )
    finally:
        if own is not None:
            own.shutdown(wait=True, cancel_futures=True)
    settings = {
        "n_sims": n_sims,
        "seed": seed,
        "likelihood": likelihood,
        "train_runs": int(train.sum()),
        "heldout_runs": int((~train).sum()),
        "loss_range": [min_loss, max_loss],
        "fit_kwargs": {k: v for k, v in kwargs.items() if k not in ("progressbar", "warn")},
        "workers": workers if executor is None or own is not None else None,
        "fit_errors": errors,
    }
    return SBCResult(law_obj.name, pd.DataFrame(rows), rejected, quantities, settings)


def default_fitter() -> Callable[..., Any]:
    """The fitting function of a study unless told otherwise: :func:`bayescale.fit`."""
    return fit
