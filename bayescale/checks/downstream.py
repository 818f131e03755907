"""Simulated downstream ladders and the coverage of chained intervals on them.

A ladder is simulated as the chain of :mod:`bayescale.questions.downstream` assumes: each
run's loss is the loss law's mean times log-normal noise, and its task error is the link at
that *observed* loss times the link's log-normal noise. A held-out run is drawn the same way,
so a calibrated chained interval covers it at its nominal rate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bayescale.methods.downstream import fit_downstream
from bayescale.model.laws import get_law, ops
from bayescale.model.laws.downstream import LINK_COVARIATE, get_link

#: Gadre-like truth of the simulated chains: the tied law at Chinchilla-like values, and an
#: error law whose error runs from ~0.66 at the smallest run to ~0.45 at the largest.
TRUE_TIED = {"E": 1.8, "A": 480.0, "B": 2100.0, "alpha": 0.36}
TRUE_EXPONENTIAL = {"eps": 0.8, "k": 2.0, "gamma": 0.7}
#: The simulated ladder: 5 sizes x 3 tokens per parameter, and the held-out run (4x the largest).
SIZES = np.geomspace(5e7, 1e9, 5)
TOKENS_PER_PARAM = (10.0, 20.0, 40.0)
HELD_OUT = (4e9, 8e10)


def link_mean(link: str, theta: Mapping[str, float], loss: Any) -> np.ndarray:
    """The link's mean target at input loss ``loss``, at fixed parameter values."""
    values = {k: np.asarray(v, dtype=float) for k, v in theta.items()}
    x = {f"log_{LINK_COVARIATE}": np.log(np.asarray(loss, dtype=float))}
    return np.exp(get_link(link).log_loss(values, x, ops.NUMPY))


def simulate_chain(
    seed: int,
    params: Any = None,
    tokens: Any = None,
    law: str = "chinchilla-tied",
    truth: Mapping[str, float] = TRUE_TIED,
    link: str = "link-exponential",
    link_truth: Mapping[str, float] = TRUE_EXPONENTIAL,
    sigma: float = 0.01,
    link_sigma: float = 0.01,
) -> pd.DataFrame:
    """Runs at (params, tokens) with a loss and a task error drawn through the chain.

    Default (params, tokens): :data:`SIZES` x :data:`TOKENS_PER_PARAM`. Columns ``params``,
    ``tokens``, ``loss`` and ``error``.
    """
    rng = np.random.default_rng(seed)
    if params is None:
        n, m = np.meshgrid(SIZES, np.asarray(TOKENS_PER_PARAM))
        params, tokens = n.ravel(), (n * m).ravel()
    params, tokens = np.atleast_1d(np.asarray(params, float)), np.atleast_1d(np.asarray(tokens, float))
    loss = get_law(law).loss(truth, params, tokens) * np.exp(rng.normal(0.0, sigma, params.shape))
    error = link_mean(link, link_truth, loss) * np.exp(rng.normal(0.0, link_sigma, params.shape))
    return pd.DataFrame({"params": params, "tokens": tokens, "loss": loss, "error": error})


def chained_coverage(
    seeds: Sequence[int], prob: float = 0.9, sampler: Mapping[str, Any] | None = None
) -> pd.DataFrame:
    """Fit the chain on a simulated ladder per seed and score the held-out run's loss and error.

    Returns
    -------
    pandas.DataFrame
        One row per seed: the held-out run's ``loss`` and ``error``, each chained interval's
        bounds and whether it covers them (``loss_covered``, ``error_covered``).
    """
    rows = []
    for seed in seeds:
        ladder = simulate_chain(seed)
        truth = simulate_chain(seed + 10_000, *HELD_OUT).iloc[0]
        model = fit_downstream(
            ladder, ["error"], "loss", sampler=dict(sampler or {}), random_seed=seed, warn=False
        )
        row = model.predict(*HELD_OUT, prob=prob, random_seed=seed).iloc[0]
        out = {"seed": seed}
        for name in ("loss", "error"):
            lower, upper = row[f"{name}_lower"], row[f"{name}_upper"]
            out.update(
                {
                    name: truth[name],
                    f"{name}_median": row[f"{name}_median"],
                    f"{name}_lower": lower,
                    f"{name}_upper": upper,
                    f"{name}_covered": bool(lower <= truth[name] <= upper),
                }
            )
        rows.append(out)
    return pd.DataFrame(rows)
