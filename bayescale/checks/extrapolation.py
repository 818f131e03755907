"""Extrapolation scores: fit a law on the small runs, score its predictions of the large ones.

- :func:`extrapolate` fits a law on the runs below a threshold (compute,
  params, tokens or epochs) and scores its predictions of the runs above;
  :func:`rolling_extrapolation` repeats this over laws and thresholds;
  :func:`extrapolation_weights` turns held-out scores into weights for
  :func:`bayescale.average`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from bayescale.data.runs import Runs
from bayescale.errors import BayescaleError
from bayescale.methods.front import fit as fit_law
from bayescale.methods.parametric import Fit
from bayescale.model.pymc_model import predictive_cdf, with_run_effects
from bayescale.questions.compare import log_likelihood, stacking_weights
from bayescale.questions.plan import predict_draws

#: Quantities a training-set threshold can be put on, and the runs column each needs.
SPLIT_BY = {"compute": "compute", "params": "params", "tokens": "tokens", "epochs": "unique_tokens"}

#: Central predictive intervals scored by extrapolation; the table reports the first.
SCORED_PROBS = (0.9, 0.5)


@dataclass
class Extrapolation:
    """A law fitted on small runs and scored on the larger runs it did not see.

    Attributes
    ----------
    law
        Name of the law.
    by, threshold
        The split: runs with ``by < threshold`` trained the fit, the rest test it.
    fit
        The fit on the training runs.
    runs
        One row per run: ``params``, ``tokens`` (and ``unique_tokens``,
        ``compute`` where known), ``loss``, ``split`` (``"train"``/``"test"``),
        ``loss_predictive_{median,lower,upper}`` (central 90% predictive
        interval), ``loss_predictive_{lower,upper}_50``,
        ``log_predictive_density`` (of the run's log loss) and ``pit`` (the
        predictive probability of a loss below the observed one).
    """

    law: str
    by: str
    threshold: float
    fit: Fit
    runs: pd.DataFrame

    @property
    def test(self) -> pd.DataFrame:
        """The held-out rows of :attr:`runs`."""
        return self.runs[self.runs["split"] == "test"]

    @property
    def scores(self) -> dict[str, Any]:
        """Scores on the held-out runs.

        ``elpd_test`` (sum of log predictive densities of their log loss) and
        its mean per run ``elpd_test_per_run``; ``coverage`` and
        ``coverage_50`` (fractions inside the central 90% and 50% predictive
        intervals); ``median_abs_pct_error`` (median of
        ``|predictive median - loss| / loss``, in percent).
        """
        test = self.test
        loss = test["loss"].to_numpy()
        inside_90 = (test["loss_predictive_lower"] <= test["loss"]) & (
            test["loss"] <= test["loss_predictive_upper"]
        )
        inside_50 = (test["loss_predictive_lower_50"] <= test["loss"]) & (
            test["loss"] <= test["loss_predictive_upper_50"]
        )
        lpd = test["log_predictive_density"].to_numpy()
        return {
            "law": self.law,
            "by": self.by,
            "threshold": self.threshold,
            "n_train": int((self.runs["split"] == "train").sum()),
            "n_test": len(test),
            "coverage": float(inside_90.mean()),
            "coverage_50": float(inside_50.mean()),
            "elpd_test": float(lpd.sum()),
            "elpd_test_per_run": float(lpd.mean()),
            "median_abs_pct_error": float(
                100 * np.median(np.abs(test["loss_predictive_median"].to_numpy() - loss) / loss)
            ),
        }


def split_values(runs: Runs, by: str) -> np.ndarray:
    """The per-run value a training threshold applies to (epochs = tokens / unique_tokens)."""
    if by not in SPLIT_BY:
        raise BayescaleError(f"cannot split runs by {by!r}; use one of {list(SPLIT_BY)}")
    runs.require([SPLIT_BY[by]], f"splitting runs by {by}")
    if by == "epochs":
        return runs.column("tokens") / runs.column("unique_tokens")
    return runs.column(by)


def _split(runs: Runs, by: str, threshold: float) -> np.ndarray:
    """Mask of the training runs (``by < threshold``), checking both sides are non-empty."""
    if not np.isfinite(threshold) or threshold <= 0:
        raise BayescaleError(f"threshold must be a finite number > 0, got {threshold!r}")
    values = split_values(runs, by)
    train = values < threshold
    if not train.any():
        raise BayescaleError(
            f"no runs with {by} below {threshold:.3g} to train on (smallest is {values.min():.3g})"
        )
    if train.all():
        raise BayescaleError(
            f"no runs with {by} at or above {threshold:.3g} to test on (largest is {values.max():.3g})"
        )
    return train


def score_runs(
    fit: Fit, runs: Any, random_seed: int | None = None, average_beyond: bool = True
) -> pd.DataFrame:
    """Predictions of a fit for each run, scored against the run's observed loss.

    The intervals are those of the fit's answers (``average_beyond``: beyond the
    training runs, averaged with the variant law; see ``Fit.predict``); the log
    predictive density is the fitted law's own. Returns the per-run columns of
    :attr:`Extrapolation.runs` except ``split``.
    """
    runs_obj = Runs.from_any(runs)
    unique = runs_obj.column("unique_tokens") if "unique_tokens" in fit.law.required_columns else None
    draws = predict_draws(
        fit,
        runs_obj.column("params"),
        runs_obj.column("tokens"),
        unique,
        random_seed=random_seed,
        average_beyond=average_beyond,
    )["loss_predictive"]
    columns = [c for c in ("params", "tokens", "unique_tokens", "compute", "loss") if c in runs_obj.frame]
    table = runs_obj.frame[columns].reset_index(drop=True).copy()
    table["loss_predictive_median"] = draws.median(dim=("chain", "draw")).values
    for prob in SCORED_PROBS:
        tail = (1 - prob) / 2
        bounds = draws.quantile([tail, 1 - tail], dim=("chain", "draw")).values
        suffix = "" if prob == SCORED_PROBS[0] else f"_{round(prob * 100)}"
        table[f"loss_predictive_lower{suffix}"] = bounds[0]
        table[f"loss_predictive_upper{suffix}"] = bounds[1]
    ll = log_likelihood(fit, runs_obj)
    n_draws = ll.sizes["chain"] * ll.sizes["draw"]
    table["log_predictive_density"] = logsumexp(ll.values.reshape(n_draws, -1), axis=0) - np.log(n_draws)
    theta = with_run_effects(fit.theta(), fit.posterior)
    table["pit"] = predictive_cdf(fit.law, fit.likelihood, theta, runs_obj).values
    return table


def extrapolate(
    runs: Any,
    law: str = "chinchilla",
    *,
    threshold: float,
    by: str = "compute",
    random_seed: int | None = None,
    average_beyond: bool = True,
    **fit_kwargs: Any,
) -> Extrapolation:
    """Fit a law on the runs below a threshold and score its predictions of the runs above.

    Parameters
    ----------
    runs
        Anything :meth:`Runs.from_any` reads.
    law
        Name of the law to fit.
    threshold, by
        Runs with ``by < threshold`` train the fit; the others are held out.
        ``by`` is ``"compute"`` (default), ``"params"``, ``"tokens"`` or
        ``"epochs"`` (tokens / unique tokens).
    random_seed
        Seed of the fit and of the predictive draws.
    average_beyond
        Score the intervals the fit answers with (default: beyond the training
        runs, the law averaged with the variant law), or with ``False`` the law's own.
    **fit_kwargs
        Passed to :func:`bayescale.fit` (priors, fix, likelihood, sampler, progressbar,
        warn, ...).

    Returns
    -------
    Extrapolation
        With ``scores`` (held-out log predictive density, 50% and 90% coverage,
        median absolute percentage error) and the per-run table ``runs``.
    """
    runs_obj = Runs.from_any(runs)
    train = _split(runs_obj, by, threshold)
    fitted = fit_law(runs_obj.subset(train), law, random_seed=random_seed, **fit_kwargs)
    table = score_runs(fitted, runs_obj, random_seed=random_seed, average_beyond=average_beyond)
    table.insert(table.columns.get_loc("loss") + 1, "split", np.where(train, "train", "test"))
    return Extrapolation(law=fitted.law.name, by=by, threshold=float(threshold), fit=fitted, runs=table)


def rolling_extrapolation(
    runs: Any,
    laws: Sequence[str],
    thresholds: Sequence[float],
    *,
    by: str = "compute",
    random_seed: int | None = None,
    **fit_kwargs: Any,
) -> pd.DataFrame:
    """Extrapolation scores of each law at each threshold, to see a law improve as the ladder grows.

    Each (law, threshold) is one :func:`extrapolate` (one fit). With a single
    threshold this is the extrapolation comparison of the laws.

    Returns
    -------
    pandas.DataFrame
        One row per (threshold, law), in that order: the keys of
        :attr:`Extrapolation.scores`.
    """
    if not laws or not thresholds:
        raise BayescaleError("give at least one law and one threshold")
    runs_obj = Runs.from_any(runs)
    rows = []
    for threshold in sorted(thresholds):
        for law in laws:
            result = extrapolate(
                runs_obj, law, threshold=threshold, by=by, random_seed=random_seed, **fit_kwargs
            )
            rows.append(result.scores)
    return pd.DataFrame(rows)


def extrapolation_weights(results: Sequence[Extrapolation] | Mapping[str, Extrapolation]) -> pd.Series:
    """Stacking weights of laws from their held-out log predictive densities.

    The results must share the split (same runs, ``by`` and threshold).
    """
    named = dict(results) if isinstance(results, Mapping) else {r.law: r for r in results}
    first = next(iter(named.values()), None)
    if first is None:
        raise BayescaleError("no extrapolation results to weight")
    for name, r in named.items():
        if (r.by, r.threshold) != (first.by, first.threshold) or not r.runs["loss"].equals(
            first.runs["loss"]
        ):
            raise BayescaleError(
                f"extrapolation of {name!r} used a different split or runs than {first.law!r}; "
                "weights need the same held-out runs"
            )
    pointwise = pd.DataFrame({name: r.test["log_predictive_density"].to_numpy() for name, r in named.items()})
    return stacking_weights(pointwise)
