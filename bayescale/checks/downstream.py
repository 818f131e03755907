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


def link_mean(link: str, theta: Mapping[str, float], loss: Any, params: Any = None) -> np.ndarray:
    """The link's mean target at input loss ``loss`` (and model size ``params``, for a link that reads it)."""
    values = {k: np.asarray(v, dtype=float) for k, v in theta.items()}
    x = {f"log_{LINK_COVARIATE}": np.log(np.asarray(loss, dtype=float))}
    if params is not None:
        x["log_params"] = np.log(np.asarray(params, dtype=float))
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
    error = link_mean(link, link_truth, loss, params) * np.exp(rng.normal(0.0, link_sigma, params.shape))
    return pd.DataFrame({"params": params, "tokens": tokens, "loss": loss, "error": error})


def chained_coverage(
    seeds: Sequence[int],
    prob: float = 0.9,
    sampler: Mapping[str, Any] | None = None,
    link: str = "link-exponential",
    link_truth: Mapping[str, float] = TRUE_EXPONENTIAL,
    fitted_link: Any = None,
    **fit_kwargs: Any,
) -> pd.DataFrame:
    """Fit the chain on a simulated ladder per seed and score the held-out run's loss and error.

    The ladder's target is drawn through ``link`` at ``link_truth`` (:func:`simulate_chain`); the
    chain is fitted with ``fitted_link`` (default ``link``; ``"auto"`` chooses by LOO), and
    ``fit_kwargs`` go to :func:`~bayescale.fit_downstream`.

    Returns
    -------
    pandas.DataFrame
        One row per seed: the held-out run's ``loss`` and ``error``, each chained interval's
        bounds and whether it covers them (``loss_covered``, ``error_covered``).
    """
    rows = []
    for seed in seeds:
        ladder = simulate_chain(seed, link=link, link_truth=link_truth)
        truth = simulate_chain(seed + 10_000, *HELD_OUT, link=link, link_truth=link_truth).iloc[0]
        options: dict[str, Any] = {
            "link": fitted_link or link,
            "sampler": dict(sampler or {}),
            "random_seed": seed,
        }
        model = fit_downstream(ladder, ["error"], "loss", **(options | {"warn": False} | fit_kwargs))
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


#: A task whose size backtest misses more of its held-out targets than a calibrated interval
#: would with probability :data:`MISS_ALPHA` is flagged ``backtest_missed``.
MISS_ALPHA = 0.1
#: A task whose backtest intervals are wider than this (absolute, in accuracy or error, mean
#: over the held-out targets) is flagged ``wide``: 10 points is more than most ladders' change.
MAX_WIDTH = 0.10


def allowed_misses(targets: int, prob: float = 0.9, alpha: float = MISS_ALPHA) -> int:
    """The most misses of ``targets`` intervals at ``prob`` that are not flagged.

    The smallest ``m`` with ``P(misses > m) <= alpha`` when each interval misses with
    probability ``1 - prob`` (independently): at 90%, 1 of 4, 2 of 6, 3 of 12.
    """
    from scipy import stats

    return int(stats.binom.ppf(1.0 - alpha, targets, 1.0 - prob))


def size_backtest(
    runs: pd.DataFrame,
    tasks: Sequence[str],
    input_loss: str = "loss",
    *,
    loss_rows: Any = None,
    link_rows: Any = None,
    target_rows: Any = None,
    prob: float = 0.9,
    random_seed: int | None = None,
    average_beyond: bool = True,
    **fit_kwargs: Any,
) -> pd.DataFrame:
    """Leave the ladder's largest model size out, fit both steps on the rest, predict it.

    A diagnostic of each task inside the ladder: a task whose chain cannot forecast the
    largest rung from the smaller ones is unlikely to forecast a rung beyond the ladder.

    Parameters
    ----------
    runs, tasks, input_loss
        As for :func:`~bayescale.fit_downstream`.
    loss_rows, link_rows
        Rows of each step (default all), as for :func:`~bayescale.fit_downstream`; the rows of
        the largest ``params`` among ``loss_rows`` are removed from both.
    target_rows
        Rows scored (default ``loss_rows``); only those of the largest size are.
    prob
        Probability of the intervals.
    random_seed, fit_kwargs
        Passed to :func:`~bayescale.fit_downstream`.
    average_beyond
        Answer as :meth:`~bayescale.Downstream.predict` does with it: step 1 mixed with its variant
        law beyond the runs.

    Returns
    -------
    pandas.DataFrame
        One row per task: ``targets``, ``misses``, ``coverage``, ``mae`` (of the median),
        ``width`` (mean interval width), ``backtest_missed`` (more misses than
        :func:`allowed_misses`), ``wide`` (``width`` above :data:`MAX_WIDTH`) and
        ``backtest_ok`` (neither). ``attrs["held_out_params"]`` is the size left out.
    """
    frame = runs.reset_index(drop=True)
    every = np.ones(len(frame), dtype=bool)
    on_loss = every if loss_rows is None else np.asarray(loss_rows, dtype=bool)
    on_link = every if link_rows is None else np.asarray(link_rows, dtype=bool)
    scored = on_loss if target_rows is None else np.asarray(target_rows, dtype=bool)
    params = pd.to_numeric(frame["params"]).to_numpy(dtype=float)
    largest = float(params[on_loss].max())
    held = params == largest
    if not (on_loss & ~held).any() or not (scored & held).any():
        raise ValueError(f"the backtest needs rows below the largest size ({largest:g}) and targets at it")
    model = fit_downstream(
        frame, tasks, input_loss, loss_rows=on_loss & ~held, link_rows=on_link & ~held,
        random_seed=random_seed, **fit_kwargs,
    )  # fmt: skip
    targets = frame[scored & held]
    params_at, tokens_at = targets["params"].to_numpy(), targets["tokens"].to_numpy()
    table = model.predict(params_at, tokens_at, prob, random_seed=random_seed, average_beyond=average_beyond)
    rows = []
    for task in tasks:
        actual = pd.to_numeric(targets[task]).to_numpy(dtype=float)
        lower, median, upper = (table[f"{task}_{s}"].to_numpy() for s in ("lower", "median", "upper"))
        misses = int(np.sum((actual < lower) | (actual > upper)))
        width = float(np.mean(upper - lower))
        missed = misses > allowed_misses(len(actual), prob)
        rows.append(
            {
                "task": str(task),
                "targets": len(actual),
                "misses": misses,
                "coverage": 1.0 - misses / len(actual),
                "mae": float(np.mean(np.abs(median - actual))),
                "width": width,
                "backtest_missed": missed,
                "wide": width > MAX_WIDTH,
                "backtest_ok": not (missed or width > MAX_WIDTH),
            }
        )
    out = pd.DataFrame(rows).set_index("task")
    out.attrs["held_out_params"] = largest
    return out
