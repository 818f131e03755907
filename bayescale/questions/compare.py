"""Which law to believe: PSIS-LOO comparison and stacking weights.

Every law is a density on the *log loss* of the same runs (see
:func:`bayescale.model.pymc_model.log_likelihood_draws`), so log predictive densities of
different laws, and their differences, are comparable.

- :func:`compare` ranks fits of several laws to the same runs by their PSIS-LOO
  expected log predictive density (ELPD), with stacking weights and the
  Pareto-k diagnostics of every run.
- Extrapolation scores (fit on the small runs, score the large ones) are in
  :mod:`bayescale.checks.extrapolation`.
- :func:`stacking_weights` turns pointwise log predictive densities (LOO or
  held-out) into weights for :func:`bayescale.average`.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.data.runs import Runs
from bayescale.errors import BayescaleError
from bayescale.inference import container
from bayescale.model.pymc_model import log_likelihood_draws, with_run_effects

if TYPE_CHECKING:
    from bayescale.posterior.protocol import FitLike as Fit

#: Pareto k above which a run's PSIS-LOO estimate is unreliable (Vehtari et al. 2024, for S >= 2000 draws).
PARETO_K_MAX = 0.7

#: How :func:`compare` can weight the fits (``arviz_stats.compare``'s methods).
WeightMethod = Literal["stacking", "BB-pseudo-BMA", "pseudo-BMA"]
WEIGHT_METHODS: tuple[WeightMethod, ...] = ("stacking", "BB-pseudo-BMA", "pseudo-BMA")


class LooWarning(UserWarning):
    """A comparison's input is unreliable.

    PSIS-LOO is unreliable for some runs (Pareto k above :data:`PARETO_K_MAX`),
    a fit's effective number of parameters exceeds its parameter count, or a
    fit failed its convergence diagnostics (a multimodal posterior, say).
    """


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
    theta = with_run_effects(fit.theta(), fit.posterior)
    return log_likelihood_draws(fit.law, fit.likelihood, theta, runs_obj)


def loo_data(fit: Fit) -> Any:
    """A tree with the fit's free parameters and a ``log_likelihood`` group, for ``arviz_stats.loo``."""
    ll = log_likelihood(fit).assign_coords(run=np.arange(len(fit.runs)))
    # Only sampled parameters: a fixed one is constant, and its ESS would poison ArviZ's r_eff.
    return container.from_groups(
        posterior=fit.posterior[fit.free_parameters], log_likelihood=ll.to_dataset(name="loss")
    )


def loo(fit: Fit) -> Any:
    """PSIS-LOO of a fit on its own runs (``arviz_stats.ELPDData`` with ``elpd_i`` and ``pareto_k``).

    ArviZ's own warning about large Pareto k is silenced here; :func:`compare`
    reports the influential runs instead.
    """
    import arviz_stats as azs

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto", category=UserWarning)
        return azs.loo(loo_data(fit), pointwise=True)


def parameter_count(fit: Fit) -> int:
    """Number of sampled scalars per draw (vector parameters count each element)."""
    return int(sum(int(np.prod(fit.posterior[n].shape[2:])) for n in fit.free_parameters))


def input_checks(fit: Fit, loo_result: Any = None, k_threshold: float = PARETO_K_MAX) -> list[str]:
    """Reasons not to trust a fit's place in a comparison; empty when it passes.

    A fit that failed its diagnostics (r_hat, ESS, divergences, modes) answers
    with draws that do not represent its posterior, so its LOO, its weight and its
    held-out scores are those of a sampling accident. With ``loo_result`` (from
    :func:`loo`) also: runs with Pareto k above ``k_threshold`` and an effective
    number of parameters ``p_loo`` above the count of sampled parameters, which
    PSIS-LOO reads as a misspecified law or a failed approximation (Vehtari et
    al. 2017, section 4).
    """
    reasons = []
    if not fit.diagnostics.get("ok", True):
        # Each problem's headline ("max r_hat 1.53 > 1.01"); the advice after it is in fit.diagnostics.
        heads = [re.split(r" \(|: ", p, maxsplit=1)[0] for p in fit.diagnostics.get("problems", [])]
        reasons.append(f"the fit failed its diagnostics ({'; '.join(heads) or 'see fit.diagnostics'})")
    if loo_result is not None:
        ks = np.asarray(loo_result.pareto_k)
        bad = int((ks > k_threshold).sum())
        if bad:
            reasons.append(f"{bad} of {len(ks)} runs have Pareto k > {k_threshold} (max {ks.max():.2f})")
        count = parameter_count(fit)
        if float(loo_result.p) > count:
            reasons.append(
                f"the effective number of parameters p_loo {float(loo_result.p):.1f} exceeds the "
                f"{count} sampled parameters"
            )
    return reasons


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
    fits: Mapping[str, Fit] | Sequence[Fit],
    method: str = "stacking",
    k_threshold: float = PARETO_K_MAX,
    strict: bool = False,
) -> pd.DataFrame:
    """Rank fits of several laws to the same runs by PSIS-LOO expected log predictive density.

    Each law is scored on the log loss of the same runs, so ELPDs are
    comparable across laws. Warns (:class:`LooWarning`) naming the runs whose
    Pareto k exceeds ``k_threshold``, for which the LOO estimate is
    unreliable; those runs are influential and a refit without them (or
    K-fold cross-validation) is the honest check. Also warns for a fit that
    failed its diagnostics or whose ``p_loo`` exceeds its parameter count
    (:func:`input_checks`); such a fit's row says so in ``reliable`` and ``checks``.

    Parameters
    ----------
    fits
        ``{name: fit}``, or a sequence of fits named by their law.
    method
        How ArviZ weights the fits: ``"stacking"`` (default), ``"BB-pseudo-BMA"``
        or ``"pseudo-BMA"``.
    k_threshold
        Pareto k above which a run is reported as influential.
    strict
        Raise :class:`~bayescale.BayescaleError` instead of warning when a fit
        fails :func:`input_checks`.

    Returns
    -------
    pandas.DataFrame
        Index ``law`` (the names), best first; columns ``rank``, ``elpd_loo``,
        ``p_loo``, ``se``, ``elpd_diff`` (best minus this, >= 0), ``dse`` (its
        standard error), ``weight``, ``pareto_k_max`` and
        ``influential_runs`` (indices of the runs with k above the threshold),
        ``n_parameters`` (sampled parameters, to read ``p_loo`` against),
        ``diagnostics_ok``, ``reliable`` (diagnostics passed, no influential
        run, ``p_loo`` within the parameter count) and ``checks`` (the reasons
        a row is not reliable, ``"; "``-joined, empty when it is).
    """
    import arviz_stats as azs

    if method not in WEIGHT_METHODS:  # before the LOO of every fit, not after it (ArviZ's check)
        raise BayescaleError(f"unknown weighting method {method!r}; use one of {list(WEIGHT_METHODS)}")
    named = _named_fits(fits)
    _check_same_runs(named)
    failed = {name: input_checks(f) for name, f in named.items()}
    if strict and any(failed.values()):
        raise BayescaleError(
            "cannot compare: " + "; ".join(f"{n!r}: {', '.join(r)}" for n, r in failed.items() if r)
        )
    loos = {name: loo(f) for name, f in named.items()}
    table = azs.compare(loos, method=cast(WeightMethod, method), round_to="none")
    # The columns of earlier releases: arviz-stats names them elpd and p and counts elpd_diff
    # as this minus the best (<= 0); ours is the best minus this (>= 0), as ArviZ 0.x had it.
    table = table.rename(columns={"elpd": "elpd_loo", "p": "p_loo"})
    table["elpd_diff"] = 0.0 - table["elpd_diff"]  # 0.0 - x: the best row shows 0, not -0
    table = table[["rank", "elpd_loo", "p_loo", "se", "elpd_diff", "dse", "weight"]]
    table.index.name = "law"
    ks = {name: np.asarray(result.pareto_k) for name, result in loos.items()}
    table["pareto_k_max"] = [float(ks[name].max()) for name in table.index]
    table["influential_runs"] = [np.flatnonzero(ks[name] > k_threshold).tolist() for name in table.index]
    table["n_parameters"] = [parameter_count(named[name]) for name in table.index]
    table["diagnostics_ok"] = [bool(named[name].diagnostics.get("ok", True)) for name in table.index]
    reasons = {name: input_checks(named[name], loos[name], k_threshold) for name in table.index}
    if strict and any(reasons.values()):
        raise BayescaleError(
            "cannot compare: " + "; ".join(f"{n!r}: {', '.join(r)}" for n, r in reasons.items() if r)
        )
    table["reliable"] = [not reasons[name] for name in table.index]
    table["checks"] = ["; ".join(reasons[name]) for name in table.index]
    for name in table.index:
        if not named[name].diagnostics.get("ok", True):
            warnings.warn(
                f"{name!r} failed its diagnostics: its LOO, weight and rank describe a sampling accident, "
                f"not the law ({'; '.join(named[name].diagnostics.get('problems', []))[:300]}); refit with "
                "more tuning and draws, or fix the parameters the runs cannot determine",
                LooWarning,
                stacklevel=2,
            )
        p_loo, count = float(table.loc[name, "p_loo"]), int(table.loc[name, "n_parameters"])
        if p_loo > count:
            warnings.warn(
                f"PSIS-LOO of {name!r} counts {p_loo:.1f} effective parameters for {count} sampled ones: "
                "the law misfits some runs or the posterior is multimodal; its LOO is not to be trusted",
                LooWarning,
                stacklevel=2,
            )
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
