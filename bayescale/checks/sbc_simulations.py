"""The simulations of an SBC study: simulated ladders of runs from parameters drawn from the prior.

Each law draws from a random stream of its own (:func:`simulation_rng`); a simulation whose
training losses leave a range is rejected and counted (:func:`simulate`; see
:mod:`bayescale.checks.calibration` for why that keeps SBC valid).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bayescale.data.runs import MAX_LOSS_NATS
from bayescale.errors import BayescaleError
from bayescale.model.laws import ScalingLaw, covariates, get_law, ops
from bayescale.model.likelihoods import Likelihood
from bayescale.model.priors import Prior
from bayescale.model.pymc_model import draw_log_noise, resolve_priors

#: Model sizes of the simulated ladder; the largest is held out for extrapolation.
LADDER_SIZES = tuple(np.geomspace(3e7, 3e9, 6))
#: Tokens per parameter at each size.
LADDER_TOKENS_PER_PARAM = (5.0, 20.0, 80.0)
#: Epochs over the unique data, for laws that read unique tokens.
LADDER_EPOCHS = (1.0, 4.0, 16.0)


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
    leaves ``[min_loss, max_loss]`` (see :mod:`bayescale.checks.calibration` for why that
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
