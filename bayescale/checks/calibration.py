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
"""

from __future__ import annotations

import hashlib
import multiprocessing
import time
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.data.runs import MAX_LOSS_NATS
from bayescale.errors import BayescaleError
from bayescale.methods.front import fit
from bayescale.methods.many import fit_many
from bayescale.model.laws import ScalingLaw, covariates, get_law, ops
from bayescale.model.likelihoods import Likelihood
from bayescale.model.priors import Prior
from bayescale.model.pymc_model import draw_log_noise, resolve_priors
from bayescale.posterior.intervals import interval
from bayescale.questions import plan

#: Model sizes of the simulated ladder; the largest is held out for extrapolation.
LADDER_SIZES = tuple(np.geomspace(3e7, 3e9, 6))
#: Tokens per parameter at each size.
LADDER_TOKENS_PER_PARAM = (5.0, 20.0, 80.0)
#: Epochs over the unique data, for laws that read unique tokens.
LADDER_EPOCHS = (1.0, 4.0, 16.0)
#: Budget at which the derived compute-optimal model size N_opt is ranked.
N_OPT_BUDGET = 1e23


def simulation_rng(law: str | ScalingLaw, seed: int) -> np.random.Generator:
    """The random stream of ``law``'s SBC simulations (prior draws and noise) at ``seed``.

    Each law has a stream of its own: a :class:`numpy.random.SeedSequence` of ``seed``
    with a spawn key from the law's name (SHA-256, stable across processes and Python
    versions, unlike ``hash``). Laws that share parameter names and priors (E, A and B
    of ``chinchilla`` and ``data-constrained``) would otherwise draw the same truths at
    a seed, so one unlucky seed failed both studies together.
    """
    name = get_law(law).name
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(key,)))


def ladder(law: str | ScalingLaw, sizes: Any = LADDER_SIZES) -> pd.DataFrame:
    """Covariates of a simulated ladder: sizes x tokens per parameter (x epochs when the law needs U).

    Returns
    -------
    pandas.DataFrame
        Columns ``params``, ``tokens`` and, for laws reading unique tokens,
        ``unique_tokens``; one row per run.
    """
    law_obj = get_law(law)
    epochs = LADDER_EPOCHS if "unique_tokens" in law_obj.required_columns else (1.0,)
    grid = np.array(
        [(n, n * m, n * m / e) for n in sizes for m in LADDER_TOKENS_PER_PARAM for e in epochs], dtype=float
    )
    frame = pd.DataFrame({"params": grid[:, 0], "tokens": grid[:, 1]})
    if "unique_tokens" in law_obj.required_columns:
        frame["unique_tokens"] = grid[:, 2]
    return frame


def simulate_losses(
    law: str | ScalingLaw,
    theta: Mapping[str, float],
    design: pd.DataFrame,
    rng: np.random.Generator,
    likelihood: Likelihood = "student_t",
) -> tuple[np.ndarray, np.ndarray]:
    """Mean loss and one noisy loss per run of ``design``, at parameters ``theta``.

    Noise is drawn on log loss exactly as the fitted model assumes (see
    :func:`bayescale.model.pymc_model.draw_log_noise`).

    Returns
    -------
    mean, observed
        Arrays with one value per row of ``design``.
    """
    law_obj = get_law(law)
    x = covariates(design["params"], design["tokens"], design.get("unique_tokens"))
    values = {k: np.asarray(v, dtype=float) for k, v in theta.items()}
    with np.errstate(over="ignore", invalid="ignore"):
        log_mean = np.asarray(law_obj.log_loss(values, x, ops.NUMPY), dtype=float)
        noise = draw_log_noise(rng, likelihood, values, (len(design),))
        return np.exp(log_mean), np.exp(log_mean + noise)


def prior_draws(
    law: str | ScalingLaw,
    n: int,
    rng: np.random.Generator,
    likelihood: Likelihood = "student_t",
    priors: Mapping[str, Prior] | None = None,
) -> list[dict[str, float]]:
    """``n`` draws of every parameter of the law and the noise from the default priors.

    ``priors`` replace some of the defaults (e.g. a population prior). Drawn in one batch per
    parameter (each :meth:`Prior.sample` call compiles a small graph, so one call per draw would
    dominate a cheap simulation).
    """
    free, fixed = resolve_priors(get_law(law), likelihood, priors)
    batch = {name: np.asarray(prior.sample(rng, n), dtype=float) for name, prior in free.items()}
    return [{**{k: float(v[i]) for k, v in batch.items()}, **fixed} for i in range(n)]


def rank_of_truth(draws: xr.DataArray, truth: float, ess: float) -> tuple[int, int]:
    """Rank of ``truth`` among posterior draws thinned to about ``ess`` draws.

    Autocorrelated draws make ranks lumpy; thinning each chain by
    ``ceil(draws / ess)`` keeps them close to independent (Talts et al. 2018).

    Returns
    -------
    rank, n
        Number of kept draws below the truth, and the number kept.
    """
    values = np.asarray(draws.transpose("chain", "draw").values, dtype=float)
    step = max(1, int(np.ceil(values.size / max(float(ess), 1.0))))
    kept = values[:, ::step].ravel()
    return int(np.sum(kept < truth)), int(kept.size)


def uniformity(ranks: np.ndarray, sizes: np.ndarray, rng: np.random.Generator, bins: int = 0) -> dict:
    """Tests of SBC ranks for uniformity.

    Each rank ``r`` out of ``n`` is mapped to ``u = (r + V) / (n + 1)`` with
    ``V ~ U(0, 1)``, which is exactly uniform on (0, 1) when the ranks are.

    Returns
    -------
    dict
        ``ks_pvalue`` (Kolmogorov-Smirnov against U(0, 1)), ``chi2_pvalue``
        (counts in ``bins`` equal bins; default about five expected per bin),
        ``edge_fraction`` (share of u below 0.05 or above 0.95, 0.1 when
        calibrated: high means overconfident), ``mean_u`` (0.5 when unbiased).
    """
    from scipy import stats

    ranks, sizes = np.asarray(ranks, dtype=float), np.asarray(sizes, dtype=float)
    u = (ranks + rng.uniform(size=ranks.shape)) / (sizes + 1)
    bins = bins or int(np.clip(len(u) // 5, 2, 20))
    counts = np.histogram(u, bins=bins, range=(0.0, 1.0))[0]
    return {
        "n": len(u),
        "ks_pvalue": float(stats.kstest(u, "uniform").pvalue),
        "chi2_pvalue": float(stats.chisquare(counts).pvalue),
        "edge_fraction": float(np.mean((u < 0.05) | (u > 0.95))),
        "mean_u": float(np.mean(u)),
    }


@dataclass
class SBCResult:
    """Outcome of :func:`sbc` for one law.

    Attributes
    ----------
    law
        Law name.
    ranks
        One row per accepted simulation: ``sim``, then for each quantity
        ``<name>_rank`` and ``<name>_n`` (thinned draws), then diagnostics
        (``divergences``, ``max_r_hat``, ``min_ess_bulk``, ``ok``), held-out
        coverage (``heldout_covered``, ``heldout_n``, ``mean_covered``) and
        ``seconds``.
    rejected
        Simulations rejected by the training-loss rule (see module docstring).
    quantities
        Names of the ranked quantities (free parameters, and ``N_opt`` when
        the law has a closed-form compute-optimal allocation).
    """

    law: str
    ranks: pd.DataFrame
    rejected: int
    quantities: list[str]
    settings: dict[str, Any] = field(default_factory=dict)

    def uniformity(self, seed: int = 0) -> pd.DataFrame:
        """One row per quantity: the tests of :func:`uniformity` on its ranks."""
        rng = np.random.default_rng(seed)
        rows = {
            q: uniformity(self.ranks[f"{q}_rank"].to_numpy(), self.ranks[f"{q}_n"].to_numpy(), rng)
            for q in self.quantities
        }
        return pd.DataFrame(rows).T

    @staticmethod
    def combine(parts: list[SBCResult]) -> SBCResult:
        """Pool studies of one law run with different seeds (e.g. rounds of a time-boxed benchmark)."""
        if len({p.law for p in parts}) != 1:
            raise BayescaleError("combine SBC results of one law only")
        ranks = pd.concat([p.ranks for p in parts], ignore_index=True)
        settings = {
            **parts[0].settings,
            "n_sims": sum(p.settings.get("n_sims", 0) for p in parts),
            "seeds": [p.settings.get("seed") for p in parts],
            "fit_errors": [e for p in parts for e in p.settings.get("fit_errors", [])],
        }
        return SBCResult(parts[0].law, ranks, sum(p.rejected for p in parts), parts[0].quantities, settings)

    def summary(self, seed: int = 0, alpha: float = 0.01) -> dict[str, Any]:
        """What the closing note reports for one law.

        ``failed_diagnostics`` counts fits whose diagnostics failed (they stay
        in the ranks: dropping them would condition on the sampler and bias
        the test); ``min_pvalue`` is the smallest KS or chi-square p-value over
        the quantities and ``uniform`` whether it clears the Bonferroni level
        ``alpha / (2 * quantities)``.
        """
        table = self.uniformity(seed)
        ok = self.ranks["ok"].astype(bool) if len(self.ranks) else pd.Series(dtype=bool)
        smallest = float(np.min(table[["ks_pvalue", "chi2_pvalue"]].to_numpy()))
        return {
            "law": self.law,
            "sims": len(self.ranks),
            "rejected": self.rejected,
            "fit_errors": len(self.settings.get("fit_errors", [])),
            "failed_diagnostics": int((~ok).sum()),
            "fits_with_divergences": int((self.ranks["divergences"] > 0).sum()),
            "fits_r_hat_over_1_05": int((self.ranks["max_r_hat"] > 1.05).sum()),
            "min_pvalue": smallest,
            "uniform": smallest > alpha / (2 * len(table)),
            "coverage": self.coverage(),
            "uniformity": table.to_dict(orient="index"),
        }

    def coverage(self) -> dict[str, Any]:
        """Coverage of the held-out runs by the 90% intervals, pooled over simulations.

        ``predictive``: noisy held-out losses inside the predictive interval,
        with ``predictive_95ci`` (Clopper-Pearson, runs as independent) and
        ``predictive_95ci_ladders`` (:func:`cluster_interval`, ladders as the
        independent units); ``mean``: the true mean loss inside the interval
        of the law's mean.
        """
        n = int(self.ranks["heldout_n"].sum())
        covered = int(self.ranks["heldout_covered"].sum())
        low, high = binomial_interval(covered, n)
        return {
            "predictive": covered / n,
            "predictive_95ci": [low, high],
            "predictive_95ci_ladders": list(
                cluster_interval(self.ranks["heldout_covered"].to_numpy(), self.ranks["heldout_n"].to_numpy())
            ),
            "mean": float(self.ranks["mean_covered"].sum()) / n,
            "runs": n,
            "simulations": len(self.ranks),
        }


def binomial_interval(successes: int, trials: int, prob: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval of a binomial proportion.

    Held-out runs of one simulated ladder share its parameters, so their
    coverages are correlated and this interval is somewhat too narrow.
    """
    from scipy import stats

    tail = (1 - prob) / 2
    low = stats.beta.ppf(tail, successes, trials - successes + 1) if successes > 0 else 0.0
    high = stats.beta.ppf(1 - tail, successes + 1, trials - successes) if successes < trials else 1.0
    return float(low), float(high)


def cluster_interval(successes: Any, trials: Any, prob: float = 0.95) -> tuple[float, float]:
    """Interval of a pooled proportion whose trials come in correlated clusters (one per ladder).

    The ratio estimator ``sum(successes) / sum(trials)`` with its cluster-robust
    (between-cluster) standard error and a Student-t quantile on ``clusters - 1``
    degrees of freedom, clipped to [0, 1]. Unlike :func:`binomial_interval` it
    does not assume the held-out runs of one ladder are independent.
    """
    from scipy import stats

    successes, trials = np.asarray(successes, dtype=float), np.asarray(trials, dtype=float)
    m = len(trials)
    if m < 2:
        return 0.0, 1.0
    p = successes.sum() / trials.sum()
    residual = (successes - p * trials) / trials.mean()
    se = float(np.sqrt(np.sum(residual**2) / (m * (m - 1))))
    half = float(stats.t.ppf(0.5 + prob / 2, m - 1)) * se
    return float(max(p - half, 0.0)), float(min(p + half, 1.0))


@dataclass
class Simulation:
    """One accepted SBC simulation: the true parameters and the simulated ladder."""

    theta: dict[str, float]
    mean: np.ndarray
    observed: np.ndarray


def simulate(
    law: str | ScalingLaw,
    n_sims: int,
    rng: np.random.Generator,
    design: pd.DataFrame,
    train: np.ndarray,
    likelihood: Likelihood = "student_t",
    min_loss: float = 0.2,
    max_loss: float = 10.0,
    max_tries: int | None = None,
    priors: Mapping[str, Prior] | None = None,
) -> tuple[list[Simulation], int]:
    """``n_sims`` accepted simulations of ``design`` from prior draws, and the count rejected.

    A draw is rejected when a training loss (rows where ``train`` is true)
    leaves ``[min_loss, max_loss]`` (see the module docstring for why that
    keeps SBC valid).
    """
    if not 0 < min_loss < max_loss <= MAX_LOSS_NATS:
        raise BayescaleError(f"need 0 < min_loss < max_loss <= {MAX_LOSS_NATS}, got {min_loss}, {max_loss}")
    law_obj = get_law(law)
    max_tries = max_tries or 50 * n_sims
    sims: list[Simulation] = []
    pending: list[dict[str, float]] = []
    rejected, tries = 0, 0
    while len(sims) < n_sims:
        tries += 1
        if tries > max_tries:
            raise BayescaleError(
                f"SBC of {law_obj.name!r}: {rejected} of {tries - 1} prior draws gave training losses "
                f"outside [{min_loss}, {max_loss}]; widen the range or use other priors"
            )
        if not pending:
            pending = prior_draws(law_obj, max(4 * n_sims, 50), rng, likelihood, priors)
        theta = pending.pop()
        mean, observed = simulate_losses(law_obj, theta, design, rng, likelihood)
        if np.all((observed[train] >= min_loss) & (observed[train] <= max_loss)):
            sims.append(Simulation(theta, mean, observed))
        else:
            rejected += 1
    return sims, rejected


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
