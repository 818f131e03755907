"""Which law to believe: PSIS-LOO comparison, stacking weights, extrapolation scores.

Every law is a density on the *log loss* of the same runs (see
:func:`bayescale.model.log_likelihood_draws`), so log predictive densities of
different laws, and their differences, are comparable.

- :func:`compare` ranks fits of several laws to the same runs by their PSIS-LOO
  expected log predictive density (ELPD), with stacking weights and the
  Pareto-k diagnostics of every run.
- :func:`extrapolate` fits a law on the runs below a threshold (compute,
  params, tokens or epochs) and scores its predictions of the runs above;
  :func:`rolling_extrapolation` repeats this over laws and thresholds.
- :func:`stacking_weights` turns pointwise log predictive densities (LOO or
  held-out) into weights for :func:`bayescale.average`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.errors import BayescaleError
from bayescale.model import log_likelihood_draws, predictive_cdf
from bayescale.runs import Runs

if TYPE_CHECKING:
    from bayescale.fit import Fit

#: Pareto k above which a run's PSIS-LOO estimate is unreliable (Vehtari et al. 2024, for S >= 2000 draws).
PARETO_K_MAX = 0.7

#: How :func:`compare` can weight the fits (ArviZ's ``az.compare`` methods).
WeightMethod = Literal["stacking", "BB-pseudo-BMA", "pseudo-BMA"]
WEIGHT_METHODS: tuple[WeightMethod, ...] = ("stacking", "BB-pseudo-BMA", "pseudo-BMA")

#: Quantities a training-set threshold can be put on, and the runs column each needs.
SPLIT_BY = {"compute": "compute", "params": "params", "tokens": "tokens", "epochs": "unique_tokens"}

#: Central predictive intervals scored by extrapolation; the table reports the first.
SCORED_PROBS = (0.9, 0.5)


class LooWarning(UserWarning):
    """PSIS-LOO is unreliable for some runs (Pareto k above :data:`PARETO_K_MAX`)."""


def log_likelihood(fit: Fit, runs: Any = None) -> xr.DataArray:
    """Pointwise log likelihood of runs under every posterior draw of a fit.

    Parameters
    ----------
    fit
        A fitted law.
    runs
        Runs to score (anything :meth:`Runs.from_any` reads); default the
        fit's own runs.

    Returns
    -------
    xarray.DataArray
        Dims ``chain``, ``draw``, ``run``; density of each run's log loss.
    """
    runs_obj = fit.runs if runs is None else Runs.from_any(runs)
    return log_likelihood_draws(fit.law, fit.likelihood, fit.theta(), runs_obj)


def loo_data(fit: Fit) -> Any:
    """An InferenceData with the fit's free parameters and a ``log_likelihood`` group, for ArviZ."""
    import arviz as az

    ll = log_likelihood(fit).assign_coords(run=np.arange(len(fit.runs)))
    # Only sampled parameters: a fixed one is constant, and its ESS would poison ArviZ's r_eff.
    return az.InferenceData(
        posterior=fit.posterior[fit.free_parameters], log_likelihood=ll.to_dataset(name="loss")
    )


def loo(fit: Fit) -> Any:
    """PSIS-LOO of a fit on its own runs (``arviz.ELPDData`` with ``loo_i`` and ``pareto_k``).

    ArviZ's own warning about large Pareto k is silenced here; :func:`compare`
    reports the influential runs instead.
    """
    import arviz as az

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto", category=UserWarning)
        return az.loo(loo_data(fit), pointwise=True)


def _named_fits(fits: Mapping[str, Fit] | Sequence[Fit]) -> dict[str, Fit]:
    if isinstance(fits, Mapping):
        named = dict(fits)
    else:
        named = {}
        for f in fits:
            if f.law.name in named:
                raise BayescaleError(
                    f"two fits of law {f.law.name!r}: pass a dict {{name: fit}} to tell them apart"
                )
            named[f.law.name] = f
    if len(named) < 2:
        raise BayescaleError(f"compare needs at least two fits, got {len(named)}")
    return named


def _check_same_runs(named: Mapping[str, Fit]) -> None:
    first_name, first = next(iter(named.items()))
    ref = {c: first.runs.column(c) for c in ("params", "tokens", "loss")}
    for name, f in named.items():
        same = len(f.runs) == len(first.runs) and all(
            np.array_equal(f.runs.column(c), values) for c, values in ref.items()
        )
        if not same:
            raise BayescaleError(
                f"fits {first_name!r} ({len(first.runs)} runs) and {name!r} ({len(f.runs)} runs) "
                "were fitted to different runs; LOO compares laws on the same runs only"
            )


def _describe_runs(runs: Runs, index: np.ndarray) -> str:
    frame = runs.frame
    parts = [f"run {i} (N={frame['params'].iloc[i]:.3g}, D={frame['tokens'].iloc[i]:.3g})" for i in index[:5]]
    more = f" and {len(index) - 5} more" if len(index) > 5 else ""
    return ", ".join(parts) + more


def compare(
    fits: Mapping[str, Fit] | Sequence[Fit], method: str = "stacking", k_threshold: float = PARETO_K_MAX
) -> pd.DataFrame:
    """Rank fits of several laws to the same runs by PSIS-LOO expected log predictive density.

    Each law is scored on the log loss of the same runs, so ELPDs are
    comparable across laws. Warns (:class:`LooWarning`) naming the runs whose
    Pareto k exceeds ``k_threshold``, for which the LOO estimate is
    unreliable; those runs are influential and a refit without them (or
    K-fold cross-validation) is the honest check.

    Parameters
    ----------
    fits
        ``{name: fit}``, or a sequence of fits named by their law.
    method
        How ArviZ weights the fits: ``"stacking"`` (default), ``"BB-pseudo-BMA"``
        or ``"pseudo-BMA"``.
    k_threshold
        Pareto k above which a run is reported as influential.

    Returns
    -------
    pandas.DataFrame
        Index ``law`` (the names), best first; columns ``rank``, ``elpd_loo``,
        ``p_loo``, ``se``, ``elpd_diff`` (best minus this, >= 0), ``dse`` (its
        standard error), ``weight``, ``pareto_k_max`` and
        ``influential_runs`` (indices of the runs with k above the threshold).
    """
    import arviz as az

    if method not in WEIGHT_METHODS:  # before the LOO of every fit, not after it (ArviZ's check)
        raise BayescaleError(f"unknown weighting method {method!r}; use one of {list(WEIGHT_METHODS)}")
    named = _named_fits(fits)
    _check_same_runs(named)
    loos = {name: loo(f) for name, f in named.items()}
    with warnings.catch_warnings():
        # ArviZ 0.23 sorts in place, which pandas 3 deprecates; nothing for our users to act on.
        warnings.filterwarnings("ignore", message="The inplace keyword in DataFrame.sort_values")
        table = az.compare(loos, ic="loo", method=cast(WeightMethod, method), scale="log")
    table.index.name = "law"
    ks = {name: np.asarray(result.pareto_k) for name, result in loos.items()}
    table["pareto_k_max"] = [float(ks[name].max()) for name in table.index]
    table["influential_runs"] = [np.flatnonzero(ks[name] > k_threshold).tolist() for name in table.index]
    table = table.drop(columns=["warning", "scale"])
    for name in table.index:
        bad = np.flatnonzero(ks[name] > k_threshold)
        if len(bad):
            warnings.warn(
                f"PSIS-LOO is unreliable for {name!r}: {len(bad)} of {len(ks[name])} runs have Pareto k > "
                f"{k_threshold} (max {ks[name].max():.2f}): {_describe_runs(named[name].runs, bad)}; "
                "these runs sway the fit, check them or compare by extrapolation",
                LooWarning,
                stacklevel=2,
            )
    return table


def stacking_weights(pointwise: pd.DataFrame) -> pd.Series:
    """Stacking weights from pointwise log predictive densities (Yao et al. 2018).

    Maximises ``sum_i log sum_k w_k p_k(y_i)`` over the simplex: the weights of
    the mixture of laws that best predicts the runs.

    Parameters
    ----------
    pointwise
        One row per run, one column per law: log predictive density of the run
        (``loo_i`` from LOO, or held-out densities from :func:`extrapolate`).

    Returns
    -------
    pandas.Series
        Weight per law (column), summing to 1.
    """
    from scipy.optimize import Bounds, LinearConstraint, minimize

    values = pointwise.to_numpy(dtype=float)
    if values.ndim != 2 or values.shape[1] < 1 or values.shape[0] < 1:
        raise BayescaleError("stacking needs a table with one row per run and one column per law")
    if not np.all(np.isfinite(values)):
        raise BayescaleError("stacking needs finite log densities; some are NaN or infinite")
    # Shift each row by its max: the weights are unchanged and exp cannot underflow to 0 everywhere.
    dens = np.exp(values - values.max(axis=1, keepdims=True))
    k = dens.shape[1]
    result = minimize(
        fun=lambda w: -np.sum(np.log(dens @ w)),
        jac=lambda w: -np.sum(dens / (dens @ w)[:, None], axis=0),
        x0=np.full(k, 1.0 / k),
        bounds=Bounds(np.zeros(k), np.ones(k)),
        constraints=LinearConstraint(np.ones(k), 1.0, 1.0),
        method="SLSQP",
    )
    weights = np.clip(result.x, 0.0, None)
    return pd.Series(weights / weights.sum(), index=pointwise.columns, name="weight")


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


def score_runs(fit: Fit, runs: Any, random_seed: int | None = None) -> pd.DataFrame:
    """Predictions of a fit for each run, scored against the run's observed loss.

    Returns the per-run columns of :attr:`Extrapolation.runs` except ``split``.
    """
    from scipy.special import logsumexp

    from bayescale.plan import predict_draws

    runs_obj = Runs.from_any(runs)
    unique = runs_obj.column("unique_tokens") if "unique_tokens" in fit.law.required_columns else None
    draws = predict_draws(
        fit, runs_obj.column("params"), runs_obj.column("tokens"), unique, random_seed=random_seed
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
    table["pit"] = predictive_cdf(fit.law, fit.likelihood, fit.theta(), runs_obj).values
    return table


def extrapolate(
    runs: Any,
    law: str = "chinchilla",
    *,
    threshold: float,
    by: str = "compute",
    random_seed: int | None = None,
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
    **fit_kwargs
        Passed to :func:`bayescale.fit` (priors, fix, likelihood, draws, tune,
        chains, backend, progressbar, warn, ...).

    Returns
    -------
    Extrapolation
        With ``scores`` (held-out log predictive density, 50% and 90% coverage,
        median absolute percentage error) and the per-run table ``runs``.
    """
    from bayescale.fit import fit as fit_law

    runs_obj = Runs.from_any(runs)
    train = _split(runs_obj, by, threshold)
    fitted = fit_law(runs_obj.subset(train), law, random_seed=random_seed, **fit_kwargs)
    table = score_runs(fitted, runs_obj, random_seed=random_seed)
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
