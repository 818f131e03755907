"""Simulated ladders from a law with known parameters, for recovery tests, calibration and benchmarks."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from bayescale.methods.training_steps import KAPLAN_2020, loss_at_steps
from bayescale.model.laws import get_law

#: Muennighoff et al. (2023): Chinchilla coefficients fitted on Chinchilla's C4 IsoFLOP points
#: (alpha tied to beta) and the R_D*, R_N* fitted with them held fixed (anchors: datablations).
MUENNIGHOFF_C4 = {
    "E": np.exp(0.6254804),
    "A": np.exp(6.255414),
    "B": np.exp(7.3049974),
    "alpha_N": 0.3526596,
    "alpha_D": 0.3526596,
    "R_D_star": 15.387756,
    "R_N_star": 5.309743,
}

TRUE_CHINCHILLA = {"E": 1.8, "A": 480.0, "B": 2100.0, "alpha_N": 0.35, "alpha_D": 0.37}


#: Kaplan et al. (2020) eq. 1.5 constants (Table 2 / section 1.2).
KAPLAN = {"N_c": 8.8e13, "D_c": 5.4e13, "alpha_N": 0.076, "alpha_D": 0.095}


#: Kaplan-form law with an irreducible term, at Chinchilla-like values (A = N_c^alpha_N ~ 415,
#: B = D_c^alpha_D ~ 2100).
KAPLAN_E = {"E": 1.8, "N_c": 5e7, "D_c": 1e9, "alpha_N": 0.34, "alpha_D": 0.37}

#: True values per law for recovery tests and simulated ladders.
REFERENCE_VALUES: dict[str, dict[str, float]] = {
    "chinchilla": TRUE_CHINCHILLA,
    "kaplan": KAPLAN,
    "kaplan-n": {k: KAPLAN[k] for k in ("N_c", "alpha_N")},
    "kaplan-d": {k: KAPLAN[k] for k in ("D_c", "alpha_D")},
    "data-constrained": MUENNIGHOFF_C4,
    "kaplan-e": KAPLAN_E,
}


def simulate_ladder(
    law: str,
    params: dict[str, float],
    seed: int,
    sigma: float = 0.01,
    sizes: np.ndarray | None = None,
    multipliers: tuple[float, ...] = (5, 10, 20, 40, 80),
) -> pd.DataFrame:
    """Runs simulated from a law: a ladder of sizes x tokens-per-parameter, noise on log loss."""
    rng = np.random.default_rng(seed)
    sizes = np.geomspace(5e7, 2e9, 8) if sizes is None else sizes
    N, M = np.meshgrid(sizes, np.asarray(multipliers, dtype=float))
    N, D = N.ravel(), (N * M).ravel()
    mean = get_law(law).loss(params, N, D)
    loss = mean * np.exp(rng.normal(0.0, sigma, size=N.shape))
    return pd.DataFrame({"params": N, "tokens": D, "loss": loss})


#: Misspecified ladders (:func:`misspecified_ladder`): 6 sizes x 5 tokens per parameter, 1% noise.
MISSPECIFIED_SIZES = np.geomspace(3e7, 3e9, 6)
MISSPECIFIED_TOKENS_PER_PARAM = (5.0, 10.0, 20.0, 40.0, 80.0)
MISSPECIFIED_KINDS = ("kaplan-e", "data-constrained", "bending")


def misspecified_ladder(kind: str, seed: int, sigma: float = 0.01) -> pd.DataFrame:
    """A ladder drawn from a law other than the Chinchilla law, with jittered parameters.

    For testing intervals off the runs' range where the fitted law is wrong by
    construction. ``kind``: ``"kaplan-e"`` (Kaplan's form with an irreducible
    loss), ``"data-constrained"`` (each run at 1, 4 and 16 epochs of its tokens;
    the returned table omits ``unique_tokens``, so a Chinchilla fit cannot see
    the repetition) or ``"bending"`` (the data term grows by ``(1 + D / D_b)^g``,
    g ~ 0.12, D_b ~ 2e10: the data exponent flattens past D_b). Columns
    ``params``, ``tokens``, ``loss``; Gaussian noise of sd ``sigma`` on log loss.
    """
    if kind not in MISSPECIFIED_KINDS:
        raise ValueError(f"kind must be one of {MISSPECIFIED_KINDS}, got {kind!r}")
    rng = np.random.default_rng([16, seed, len(kind)])
    epochs = (1.0, 4.0, 16.0) if kind == "data-constrained" else (1.0,)
    grid = np.array(
        [(n, n * m, e) for n in MISSPECIFIED_SIZES for m in MISSPECIFIED_TOKENS_PER_PARAM for e in epochs]
    )
    N, D, U = grid[:, 0], grid[:, 1], grid[:, 1] / grid[:, 2]

    def jitter(value: float, sd: float) -> float:
        return float(value * np.exp(sd * rng.standard_normal()))

    if kind == "kaplan-e":
        theta = {
            "E": jitter(1.7, 0.1),
            "N_c": float(np.exp(17.7 + 0.5 * rng.standard_normal())),
            "D_c": float(np.exp(21 + 0.5 * rng.standard_normal())),
            "alpha_N": jitter(0.34, 0.1),
            "alpha_D": jitter(0.28, 0.1),
        }
        mean = get_law("kaplan-e").loss(theta, N, D)
    elif kind == "data-constrained":
        theta = {
            "E": jitter(1.87, 0.05),
            "A": jitter(406.4, 0.2),
            "B": jitter(410.7, 0.2),
            "alpha_N": jitter(0.34, 0.05),
            "alpha_D": jitter(0.28, 0.05),
            "R_D_star": jitter(15.4, 0.2),
            "R_N_star": jitter(5.3, 0.2),
        }
        mean = get_law("data-constrained").loss(theta, N, D, U)
    else:
        E, A, B = jitter(1.8, 0.05), jitter(406.4, 0.2), jitter(410.7, 0.2)
        alpha_N, alpha_D, g = jitter(0.34, 0.05), jitter(0.28, 0.05), jitter(0.12, 0.2)
        D_b = jitter(2e10, 0.5)
        mean = E + A / N**alpha_N + B / D**alpha_D * (1 + D / D_b) ** g
    loss = mean * np.exp(sigma * rng.standard_normal(len(N)))
    return pd.DataFrame({"params": N, "tokens": D, "loss": loss})


def simulate_curves(
    seed: int,
    theta: Mapping[str, float] = KAPLAN_2020,
    sizes: tuple[float, ...] = (3e7, 1.5e8, 7e8),
    batches: tuple[float, ...] = (3e4, 2.5e5, 2e6),
    n_points: int = 16,
    sigma: float = 0.005,
    rho: float = 0.5,
    batch_penalty: bool = True,
) -> pd.DataFrame:
    """Loss curves from Kaplan's L(N, S_min) with B_crit(L): a run per (size, batch), AR(1) log-loss noise.

    ``batch_penalty=False``: S_min = S (the law a fit without B_crit assumes).
    """
    rng = np.random.default_rng(seed)
    steps = np.geomspace(2e3, 2e5, n_points).round()
    rows = []
    for n in sizes:
        for b in batches:
            eps = np.empty(steps.size)
            eps[0] = rng.normal(0, sigma / np.sqrt(1 - rho**2))
            for t in range(1, steps.size):
                eps[t] = rho * eps[t - 1] + rng.normal(0, sigma)
            mean = loss_at_steps(n, steps, b if batch_penalty else None, theta)
            loss = mean * np.exp(eps)
            rows += [
                {"run": f"n{n:.2g}_b{b:.2g}", "params": n, "step": s, "tokens": s * b, "loss": lo}
                for s, lo in zip(steps, loss, strict=True)
            ]
    return pd.DataFrame(rows)


# --- formulas with fixed parameters ------------------------------------------------------------
