"""Extrapolation scores: fit a law on the small runs, score its predictions of the large ones.

- :func:`extrapolate` fits a law on the runs below a threshold (compute,
  params, tokens or epochs) and scores its predictions of the runs above;
  :func:`rolling_extrapolation` repeats this over laws and thresholds;
  :func:`extrapolation_weights` turns held-out scores into weights for
  :func:`bayescale.average`.
"""

from __future__ import annotations

import warnings
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
from bayescale.questions.compare import LooWarning, input_checks, log_likelihood, stacking_weights
from bayescale.questions.plan import predict_draws

#: Quantities a training-set threshold can be put on, and the runs column each needs.
SPLIT_BY = {"compute": "compute", "params": "params", "tokens": "tokens", "epochs": "unique_tokens"}

#: Central predictive intervals scored by extrapolation; the table reports the first.
SCORED_PROBS = (0.9, 0.5)


#: Labels of the two predictives an extrapolation is scored on.
LAW_ALONE, AVERAGED = "law alone", "averaged"


@dataclass
class Extrapolation:
    """A law fitted on small runs and scored on the larger runs it did not see.

    Two predictives are scored, each on its own draws, so that every score of a
    row (log density, coverage, error, interval score) describes one distribution:
    the fitted law alone, and the answer the fit gives (``Fit.predict``'s
    default: beyond the training runs, the law blended with the variant law).

    Attributes
    ----------
    law
        Name of the law.
    by, threshold
        The split: runs with ``by < threshold`` trained the fit, the rest test it.
    fit
        The fit on the training runs.
    runs
        The law alone, one row per run: ``params``, ``tokens`` (and
        ``unique_tokens``, ``compute`` where known), ``loss``, ``split``
        (``"train"``/``"test"``), ``loss_predictive_{median,lower,upper}``
        (central 90% predictive interval), ``loss_predictive_{lower,upper}_50``,
        ``interval_score`` (of the 90% interval), ``log_predictive_density``
        (of the run's log loss) and ``pit`` (the predictive probability of a
        loss below the observed one).
    averaged
        The same columns for the averaged predictive, or ``None`` when the fit
        does not average beyond its runs (a fit of the variant law itself) or
        it was not asked for. Its density has no closed form: it is estimated on
        the held-out runs from its draws (:func:`fitted_log_density`, NaN on
        the training runs); on the law alone the estimate agrees with the exact
        density to about a tenth of a nat per run at 400 draws (tested).
    """

    law: str
    by: str
    threshold: float
    fit: Fit
    runs: pd.DataFrame
    averaged: pd.DataFrame | None = None

    @property
    def test(self) -> pd.DataFrame:
        """The held-out rows of :attr:`runs` (the law alone)."""
        return self.runs[self.runs["split"] == "test"]

    @property
    def scores(self) -> dict[str, Any]:
        """Scores of the law alone on the held-out runs (see :func:`held_out_scores`)."""
        return self._scores(self.runs, LAW_ALONE)

    @property
    def averaged_scores(self) -> dict[str, Any] | None:
        """Scores of the averaged predictive on the held-out runs, or ``None`` without one."""
        return None if self.averaged is None else self._scores(self.averaged, AVERAGED)

    def score_table(self) -> pd.DataFrame:
        """One row per predictive scored (``"law alone"``, then ``"averaged"`` if any)."""
        rows = [self.scores] + ([] if self.averaged_scores is None else [self.averaged_scores])
        return pd.DataFrame(rows).set_index("predictive")

    def _scores(self, table: pd.DataFrame, predictive: str) -> dict[str, Any]:
        return {
            "law": self.law,
            "predictive": predictive,
            "by": self.by,
            "threshold": self.threshold,
            "n_train": int((table["split"] == "train").sum()),
            **held_out_scores(table[table["split"] == "test"]),
            "fit_ok": bool(self.fit.diagnostics.get("ok", True)),
        }


def held_out_scores(test: pd.DataFrame) -> dict[str, Any]:
    """Scores of one predictive on held-out runs (rows of a :func:`score_runs` table).

    ``n_test``; ``coverage`` and ``coverage_50`` (fractions inside the central
    90% and 50% predictive intervals); ``elpd_test`` (sum of log predictive
    densities of their log loss) and its mean per run ``elpd_test_per_run``;
    ``median_abs_pct_error`` (median of ``|predictive median - loss| / loss``,
    in percent); ``interval_score`` (mean interval score of the 90% interval,
    Gneiting and Raftery 2007: its width plus 20 times any miss, in nats per
    token; lower is better, rewarding narrow intervals that still cover).
    """
    loss = test["loss"].to_numpy()
    inside_90 = (test["loss_predictive_lower"] <= test["loss"]) & (
        test["loss"] <= test["loss_predictive_upper"]
    )
    inside_50 = (test["loss_predictive_lower_50"] <= test["loss"]) & (
        test["loss"] <= test["loss_predictive_upper_50"]
    )
    lpd = test["log_predictive_density"].to_numpy()
    return {
        "n_test": len(test),
        "coverage": float(inside_90.mean()),
        "coverage_50": float(inside_50.mean()),
        "elpd_test": float(lpd.sum()),
        "elpd_test_per_run": float(lpd.mean()),
        "median_abs_pct_error": float(
            100 * np.median(np.abs(test["loss_predictive_median"].to_numpy() - loss) / loss)
        ),
        "interval_score": float(test["interval_score"].mean()),
    }


def interval_score(lower: Any, upper: Any, observed: Any, prob: float) -> np.ndarray:
    """Interval score of central ``prob`` intervals (Gneiting and Raftery 2007, eq. 43).

    ``(upper - lower) + 2 / (1 - prob) * (distance of observed outside the interval)``.
    """
    lo, hi, y = (np.asarray(v, dtype=float) for v in (lower, upper, observed))
    alpha = 1 - prob
    return (hi - lo) + 2 / alpha * (np.maximum(lo - y, 0.0) + np.maximum(y - hi, 0.0))


def fitted_log_density(draws: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Log density at ``observed`` of a Student-t fitted by maximum likelihood to ``draws`` (samples, runs).

    The density of a predictive known only by its draws (the averaged answers
    beyond the runs have no closed form). A kernel estimate is exact in the bulk
    but its Gaussian tails put a poorly predicted run tens of nats too low; a
    fitted Student-t keeps the predictive's heavy tails: against the exact
    density of a Student-t law's predictive, its error is a few hundredths of a
    nat per run at 4000 draws (about 0.1 at 400). Non-finite draws (an
    overflowed tail) are left out.
    """
    from scipy import stats

    x = np.asarray(draws, dtype=float)
    y = np.asarray(observed, dtype=float)
    out = np.empty(x.shape[1])
    for j in range(x.shape[1]):  # scipy fits one sample at a time
        column = x[:, j][np.isfinite(x[:, j])]
        q25, q50, q75 = np.percentile(column, [25, 50, 75])
        df, loc, scale = stats.t.fit(column, 5.0, loc=q50, scale=max((q75 - q25) / 1.5, 1e-12))
        out[j] = stats.t.logpdf(y[j], df, loc=loc, scale=scale)
    return out


def split_values(runs: Runs, by: str) -> np.ndarray:
    """The per-run value a training threshold applies to (epochs = tokens / unique_tokens)."""
    if by not in SPLIT_BY:
        raise BayescaleError(f"cannot split runs by {by!r}; use one of {list(SPLIT_BY)}")
    runs.require([SPLIT_BY[by]], f"splitting runs by {by}")
    if by == "epochs":
        return runs.column("tokens") / runs.column("unique_tokens")
    return runs.column(by)


def default_train_below(values: Any) -> float:
    """The power of ten at or below the 80th percentile of ``values`` (e.g. the runs' compute).

    The runs at or above it (about the largest fifth, or more) are held out by
    default; if that leaves nothing to train on, the median is the split.
    """
    v = np.asarray(values, dtype=float)
    threshold = float(10 ** np.floor(np.log10(np.quantile(v, 0.8))))
    return threshold if (v < threshold).any() else float(np.median(v))


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
    fit: Fit,
    runs: Any,
    random_seed: int | None = None,
    average_beyond: bool = False,
    density_rows: Any = None,
) -> pd.DataFrame:
    """Predictions of a fit for each run, scored against the run's observed loss.

    Every column comes from one predictive: the law alone (default) or, with
    ``average_beyond``, the answers ``Fit.predict`` gives (beyond the training
    runs, blended with the variant law). The law alone's log predictive density
    and PIT are exact (averaged over posterior draws); the averaged one's are
    estimated from its draws (:func:`fitted_log_density` for the rows
    ``density_rows``, default all, NaN elsewhere; the share of draws below the
    observed loss). Returns the per-run columns of :attr:`Extrapolation.runs`
    except ``split``.
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
    table["interval_score"] = interval_score(
        table["loss_predictive_lower"], table["loss_predictive_upper"], table["loss"], SCORED_PROBS[0]
    )
    observed = runs_obj.column("loss")
    if average_beyond:
        samples = draws.transpose("chain", "draw", ...).values.reshape(-1, len(table))
        # Its density is fitted to its draws, for the runs asked (the held-out ones: a fit per run).
        rows = np.arange(len(table)) if density_rows is None else np.asarray(density_rows)
        density = np.full(len(table), np.nan)
        with np.errstate(divide="ignore"):
            density[rows] = fitted_log_density(np.log(samples[:, rows]), np.log(observed[rows]))
        table["log_predictive_density"] = density
        table["pit"] = (samples < observed).mean(axis=0)
        return table
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
    averaged: bool = True,
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
    averaged
        Also score the answers the fit gives by default (beyond the training
        runs, the law blended with the variant law; this fits the variant law
        too). The law alone is always scored.
    **fit_kwargs
        Passed to :func:`bayescale.fit` (priors, fix, likelihood, sampler, progressbar,
        warn, ...).

    Returns
    -------
    Extrapolation
        With ``score_table()`` (a row per predictive: held-out log predictive
        density, 50% and 90% coverage, median absolute percentage error,
        interval score), ``scores`` (the law alone's) and the per-run tables
        ``runs`` (the law alone) and ``averaged``.
    """
    runs_obj = Runs.from_any(runs)
    train = _split(runs_obj, by, threshold)
    fitted = fit_law(runs_obj.subset(train), law, random_seed=random_seed, **fit_kwargs)
    split = np.where(train, "train", "test")
    tables = {}
    for label, average_beyond in ((LAW_ALONE, False), (AVERAGED, True)):
        if average_beyond and not (averaged and fitted.averages_beyond and fitted.variant_fit() is not None):
            continue
        table = score_runs(
            fitted, runs_obj, random_seed=random_seed, average_beyond=average_beyond, density_rows=~train
        )
        table.insert(table.columns.get_loc("loss") + 1, "split", split)
        tables[label] = table
    return Extrapolation(
        law=fitted.law.name,
        by=by,
        threshold=float(threshold),
        fit=fitted,
        runs=tables[LAW_ALONE],
        averaged=tables.get(AVERAGED),
    )


def rolling_extrapolation(
    runs: Any,
    laws: Sequence[str],
    thresholds: Sequence[float],
    *,
    by: str = "compute",
    random_seed: int | None = None,
    averaged: bool = True,
    **fit_kwargs: Any,
) -> pd.DataFrame:
    """Extrapolation scores of each law at each threshold, to see a law improve as the ladder grows.

    Each (law, threshold) is one :func:`extrapolate` (one fit). With a single
    threshold this is the extrapolation comparison of the laws.

    Returns
    -------
    pandas.DataFrame
        One row per (threshold, law, predictive), in that order: the columns of
        :meth:`Extrapolation.score_table` with ``predictive`` a column
        (``"law alone"``, and with ``averaged`` also ``"averaged"``).
    """
    if not laws or not thresholds:
        raise BayescaleError("give at least one law and one threshold")
    runs_obj = Runs.from_any(runs)
    rows = []
    for threshold in sorted(thresholds):
        for law in laws:
            result = extrapolate(
                runs_obj,
                law,
                threshold=threshold,
                by=by,
                random_seed=random_seed,
                averaged=averaged,
                **fit_kwargs,
            )
            rows.append(result.score_table().reset_index())
    return pd.concat(rows, ignore_index=True)


def extrapolation_weights(results: Sequence[Extrapolation] | Mapping[str, Extrapolation]) -> pd.Series:
    """Stacking weights of laws from their held-out log predictive densities (each law alone).

    The results must share the split (same runs, ``by`` and threshold). Warns
    (:class:`~bayescale.LooWarning`) when a law's fit failed its diagnostics.
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
    for name, r in named.items():
        reasons = input_checks(r.fit)
        if reasons:
            warnings.warn(
                f"the extrapolation fit of {name!r} is not to be trusted: {'; '.join(reasons)}",
                LooWarning,
                stacklevel=2,
            )
    pointwise = pd.DataFrame({name: r.test["log_predictive_density"].to_numpy() for name, r in named.items()})
    return stacking_weights(pointwise)
