"""R-hat and bulk ESS of the fit's diagnostics: ArviZ's estimators, computed without arviz_stats."""

import warnings

import arviz_stats as azs
import numpy as np
import pytest
import xarray as xr

from bayescale.inference import convergence


def _arviz(draws):
    data = xr.Dataset({"x": (("chain", "draw"), draws)})
    return float(azs.rhat(data)["x"]), float(azs.ess(data, method="bulk")["x"])


def _chains(kind, seed):
    rng = np.random.default_rng(seed)
    if kind == "independent":
        return rng.normal(size=(4, 1000))
    if kind == "autocorrelated":  # AR(1), rho 0.9: ESS far below the draws
        draws = np.zeros((4, 1000))
        for t in range(1, 1000):
            draws[:, t] = 0.9 * draws[:, t - 1] + rng.normal(size=4)
        return draws
    if kind == "one chain off":  # a chain in another mode: R-hat far above 1
        draws = rng.normal(size=(4, 500))
        draws[2] += 3.0
        return draws
    if kind == "heavy tails, odd draws":  # Cauchy draws, 333 per chain (the middle one dropped)
        return rng.standard_cauchy(size=(3, 333))
    if kind == "ties":  # a discrete quantity: ranks of ties averaged
        return rng.integers(0, 5, size=(4, 400)).astype(float)
    raise ValueError(kind)


@pytest.mark.parametrize(
    "kind", ["independent", "autocorrelated", "one chain off", "heavy tails, odd draws", "ties"]
)
@pytest.mark.parametrize("seed", [0, 1])
def test_r_hat_and_bulk_ess_are_arviz_s(kind, seed):
    draws = _chains(kind, seed)
    r_hat, ess = _arviz(draws)
    assert convergence.r_hat(draws) == pytest.approx(r_hat, rel=1e-10)
    assert convergence.ess_bulk(draws) == pytest.approx(ess, rel=1e-8)


def test_what_the_estimators_measure():
    rng = np.random.default_rng(3)
    independent = rng.normal(size=(4, 1000))
    assert convergence.r_hat(independent) < 1.01 and convergence.ess_bulk(independent) > 3000
    stuck = independent.copy()
    stuck[0] += 5.0
    assert convergence.r_hat(stuck) > 1.5


def test_too_few_draws_or_chains_and_nan_give_nan():
    rng = np.random.default_rng(4)
    assert np.isnan(convergence.r_hat(rng.normal(size=(1, 100))))  # one chain: no R-hat
    assert np.isfinite(convergence.ess_bulk(rng.normal(size=(1, 100))))  # ... but an ESS
    assert np.isnan(convergence.ess_bulk(rng.normal(size=(4, 3))))
    with_nan = rng.normal(size=(4, 100))
    with_nan[1, 5] = np.nan
    assert np.isnan(convergence.r_hat(with_nan)) and np.isnan(convergence.ess_bulk(with_nan))


def test_constant_draws_have_the_full_ess_and_no_r_hat():
    draws = np.full((4, 100), 2.5)
    assert convergence.ess_bulk(draws) == 400
    assert np.isnan(convergence.r_hat(draws))
    with warnings.catch_warnings():  # ArviZ's divides 0 by 0 (a RuntimeWarning) and gives the same
        warnings.simplefilter("ignore", RuntimeWarning)
        r_hat, ess = _arviz(draws)
    assert np.isnan(r_hat) and ess == 400
