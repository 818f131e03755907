"""Model averaging: predictions and plans from a weighted mixture of fitted laws.

Laws have different parameters, so the mixture is taken over *answers*: each
fit's draws of a quantity (loss at (N, D), compute-optimal N and D) are pooled,
each fit contributing a share of the pooled draws equal to its weight.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.errors import BayescaleError
from bayescale.posterior.intervals import check_interval, interval_table
from bayescale.posterior.query import make_query
from bayescale.questions.compare import LooWarning, _named_fits, compare
from bayescale.questions.plan import optimal_draws, predict_draws

if TYPE_CHECKING:
    from bayescale.posterior.protocol import FitLike as Fit


@dataclass
class Averaged:
    """A weighted mixture of fits; build one with :func:`average`.

    Attributes
    ----------
    fits
        The fits by name.
    weights
        Weight of each fit (non-negative, summing to 1).
    """

    fits: dict[str, Fit]
    weights: dict[str, float]

    def _mix(
        self, draws_of: Callable[[Fit], xr.Dataset], random_seed: int | None, unique_tokens: Any = None
    ) -> xr.Dataset:
        """Pool draws of each fit in proportion to its weight (chain 1, ``draw`` the pooled draws).

        With ``unique_tokens``, only the fits whose law sees them take part (weights renormalised):
        a law that ignores unique tokens would answer another question.
        """
        rng = np.random.default_rng(random_seed)
        active = {n: w for n, w in self.sharing(unique_tokens).items() if w > 0}
        samples = {
            n: draws_of(self.fits[n]).stack(sample=("chain", "draw")).transpose("sample", ...) for n in active
        }
        total = min(draws.sizes["sample"] for draws in samples.values())
        counts = _apportion(np.array(list(active.values())), total)
        pieces = []
        for draws, count in zip(samples.values(), counts, strict=True):
            if count == 0:
                continue
            pick = rng.choice(draws.sizes["sample"], size=count, replace=False)
            pieces.append(draws.isel(sample=pick).drop_vars(["sample", "chain", "draw"]))
        pooled = xr.concat(pieces, dim="sample").rename(sample="draw")
        return pooled.expand_dims(chain=1).transpose("chain", "draw", ...)

    def sharing(self, unique_tokens: Any = None) -> dict[str, float]:
        """The weights an answer uses: with ``unique_tokens``, those of the fits whose law sees them.

        Renormalised to sum to 1. Raises when no fit with weight sees unique tokens.
        """
        if unique_tokens is None:
            return dict(self.weights)
        seeing = {
            n: w for n, w in self.weights.items() if "unique_tokens" in self.fits[n].law.required_columns
        }
        if not seeing or sum(seeing.values()) <= 0:
            laws = sorted(f.law.name for f in self.fits.values())
            raise BayescaleError(
                f"no averaged law sees unique tokens (laws: {laws}); "
                "leave unique_tokens out, or average a law that models repetition (data-constrained)"
            )
        total = sum(seeing.values())
        return {n: w / total for n, w in seeing.items()}

    def predict_draws(
        self, params: Any, tokens: Any, unique_tokens: Any = None, random_seed: int | None = None
    ) -> xr.Dataset:
        """Mixture draws of ``loss`` and ``loss_predictive`` (see :func:`~bayescale.plan.predict_draws`).

        With ``unique_tokens`` only the laws that see them are mixed (:meth:`sharing`).
        """
        seeds = np.random.default_rng(random_seed).integers(2**32, size=2)

        def draws_of(f: Fit) -> xr.Dataset:
            return predict_draws(f, params, tokens, unique_tokens, random_seed=int(seeds[0]))

        return self._mix(draws_of, int(seeds[1]), unique_tokens)

    def predict(
        self,
        params: Any,
        tokens: Any,
        unique_tokens: Any = None,
        prob: float = 0.9,
        kind: str = "eti",
        random_seed: int | None = None,
    ) -> pd.DataFrame:
        """Like :meth:`bayescale.Fit.predict`, from the mixture."""
        check_interval(prob, kind)
        query = make_query(params=params, tokens=tokens, unique_tokens=unique_tokens)
        return interval_table(
            self.predict_draws(params, tokens, unique_tokens, random_seed), prob, kind, query
        )

    def optimal_draws(
        self, compute: Any, random_seed: int | None = None, unique_tokens: Any = None
    ) -> xr.Dataset:
        """Mixture draws of the compute-optimal allocation (see :func:`~bayescale.plan.optimal_draws`).

        With ``unique_tokens`` only the laws that see them are mixed (:meth:`sharing`).
        """
        return self._mix(lambda f: optimal_draws(f, compute, unique_tokens), random_seed, unique_tokens)

    def optimal(
        self,
        compute: Any,
        prob: float = 0.9,
        kind: str = "eti",
        random_seed: int | None = None,
        unique_tokens: Any = None,
    ) -> pd.DataFrame:
        """Like :meth:`bayescale.Fit.optimal`, from the mixture; every weighted law must have an optimum."""
        check_interval(prob, kind)
        query = make_query(compute=compute, unique_tokens=unique_tokens)
        return interval_table(self.optimal_draws(compute, random_seed, unique_tokens), prob, kind, query)


def _apportion(weights: np.ndarray, total: int) -> np.ndarray:
    """Integer counts summing to ``total`` closest to ``weights * total`` (largest remainders)."""
    exact = weights * total
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts


def _refuse_self_average(named: Mapping[str, Fit]) -> None:
    """A law is never averaged with itself: the same fit twice, or the same law, runs and priors."""
    names = list(named)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            a, b = named[first], named[second]
            same = a is b or (
                a.law.name == b.law.name
                and a.priors == b.priors
                and a.fixed == b.fixed
                and a.likelihood == b.likelihood
                and a.runs.frame.equals(b.runs.frame)
            )
            if same:
                raise BayescaleError(
                    f"fits {first!r} and {second!r} are the same {a.law.name!r} law on the same runs "
                    "with the same priors: averaging a law with itself adds no model uncertainty; "
                    "average different laws (see bayescale.compare)"
                )


def average(
    fits: Mapping[str, Fit] | Sequence[Fit],
    weights: Mapping[str, float] | pd.Series | str = "stacking",
) -> Averaged:
    """A weighted mixture of fits, for users who cannot (or should not) pick one law.

    Parameters
    ----------
    fits
        ``{name: fit}``, or a sequence of fits named by their law.
    weights
        ``"stacking"`` (default: the LOO stacking weights of
        :func:`bayescale.questions.compare`, which needs the fits to share their runs),
        or a weight per name, e.g. ``bayescale.compare(fits)["weight"]`` or
        :func:`bayescale.extrapolation_weights`. Normalised to sum to 1.

    Returns
    -------
    Averaged
        With ``predict`` and ``optimal`` like a single fit; ``random_seed``
        makes the mixing reproducible.
    """
    named = _named_fits(fits)
    _refuse_self_average(named)
    if isinstance(weights, str):
        if weights != "stacking":
            raise BayescaleError(f"weights must be 'stacking' or a weight per fit, got {weights!r}")
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LooWarning)  # compare() itself is where to read the diagnostics
            weights = compare(named)["weight"]
    given = {str(k): float(v) for k, v in dict(weights).items()}
    if set(given) != set(named):
        raise BayescaleError(f"weights are given for {sorted(given)} but the fits are {sorted(named)}")
    values = np.array([given[n] for n in named])
    if not np.all(np.isfinite(values)) or np.any(values < 0) or values.sum() <= 0:
        raise BayescaleError(f"weights must be finite, >= 0 and not all zero, got {given}")
    return Averaged(
        fits=named, weights={n: float(w) for n, w in zip(named, values / values.sum(), strict=True)}
    )
