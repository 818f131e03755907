"""Calibration: SBC ranks, held-out coverage, and misspecification showing in the diagnostics."""

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import MUENNIGHOFF_C4

import bayescale as bs
from bayescale import calibration as cal
from bayescale.diagnostics import predictive_check, residual_trends
from bayescale.fit import Fit
from bayescale.model import resolve_priors
from bayescale.sampling import SamplerConfig

# --- The rank statistic itself, on exact posteriors (no sampling) -----------------------------------


def conjugate_ranks(n_sims, scale=1.0, shift=0.0, seed=0, draws=100):
    """SBC of a normal mean with a N(0, 1) prior, one N(mu, 1) observation: posterior N(y/2, 1/2).

    ``scale`` < 1 makes the posterior overconfident, ``shift`` (in posterior sds) biased.
    """
    rng = np.random.default_rng(seed)
    ranks, sizes = [], []
    for _ in range(n_sims):
        mu = rng.normal()
        y = rng.normal(mu, 1.0)
        sd = np.sqrt(0.5)
        post = y / 2 + shift * sd + scale * sd * rng.normal(size=(2, draws))
        r, n = cal.rank_of_truth(xr.DataArray(post, dims=("chain", "draw")), mu, ess=2 * draws)
        ranks.append(r)
        sizes.append(n)
    return cal.uniformity(np.array(ranks), np.array(sizes), np.random.default_rng(seed + 1))


def test_exact_posterior_gives_uniform_ranks():
    for seed in range(3):
        result = conjugate_ranks(200, seed=seed)
        assert result["ks_pvalue"] > 0.01 and result["chi2_pvalue"] > 0.01, result


def test_overconfident_and_biased_posteriors_are_caught():
    narrow = conjugate_ranks(200, scale=0.5)
    assert narrow["chi2_pvalue"] < 1e-3 and narrow["edge_fraction"] > 0.2, narrow
    biased = conjugate_ranks(200, shift=0.7)
    assert biased["ks_pvalue"] < 1e-3 and biased["mean_u"] < 0.4, biased


def test_thinning_follows_ess():
    draws = xr.DataArray(np.arange(1000.0).reshape(2, 500), dims=("chain", "draw"))
    assert cal.rank_of_truth(draws, 250.0, ess=100) == (25, 100)
    assert cal.rank_of_truth(draws, -1.0, ess=5000) == (0, 1000)


# --- Plumbing of sbc() with a stand-in fitter (no sampling) ------------------------------------------


PRIOR_CACHE = {}


def prior_as_posterior(runs, law, likelihood, random_seed, **kwargs):
    """A 'fit' that ignores the data and returns prior draws: calibrated when nothing is rejected."""
    law_obj = bs.get_law(law)
    free, _ = resolve_priors(law_obj, likelihood)
    if law_obj.name not in PRIOR_CACHE:  # Prior.sample compiles a graph: draw once, reshuffle per fit
        rng = np.random.default_rng(0)
        PRIOR_CACHE[law_obj.name] = {name: prior.sample(rng, 4000) for name, prior in free.items()}
    rng = np.random.default_rng(random_seed)
    posterior = {k: rng.choice(v, (2, 100), replace=False) for k, v in PRIOR_CACHE[law_obj.name].items()}
    return Fit(
        idata=az.from_dict(posterior=posterior),
        law=law_obj,
        runs=bs.Runs.from_any(runs),
        priors=free,
        fixed={},
        likelihood=likelihood,
        sampler=SamplerConfig(),
        random_seed=random_seed,
        diagnostics={
            "ok": True,
            "problems": [],
            "divergences": 0,
            "max_r_hat": 1.0,
            "min_ess_bulk": 200.0,
            "ess_bulk": dict.fromkeys(free, 200.0),
        },
    )


def test_sbc_plumbing_and_rejection_count():
    result = cal.sbc("chinchilla", 5, seed=3, fitter=prior_as_posterior)
    assert len(result.ranks) == 5
    assert result.quantities == ["E", "A", "B", "alpha_N", "alpha_D", "sigma", "nu", "N_opt"]
    assert result.rejected > 0  # the default priors make some absurd ladders; they are counted
    assert (result.ranks["heldout_n"] == 3).all()
    assert set(result.uniformity().index) == set(result.quantities)
    coverage = result.coverage()
    assert coverage["runs"] == 15 and 0 <= coverage["predictive"] <= 1
    with pytest.raises(bs.BayescaleError, match=r"gave training losses outside \[19.0, 20.0\]"):
        cal.sbc("chinchilla", 1, fitter=prior_as_posterior, min_loss=19.0, max_loss=20.0, max_tries=20)


def test_ladder_needs_unique_tokens_only_for_data_constrained():
    assert list(cal.ladder("chinchilla").columns) == ["params", "tokens"]
    design = cal.ladder("data-constrained")
    assert (design["unique_tokens"] <= design["tokens"]).all()
    assert sorted((design["tokens"] / design["unique_tokens"]).round(6).unique()) == [1.0, 4.0, 16.0]


# --- Real fits: SBC and extrapolation coverage (slow) -----------------------------------------------

SBC_FIT = {"draws": 300, "tune": 300, "chains": 2}


@pytest.mark.slow
@pytest.mark.parametrize("law", ["chinchilla", "kaplan-n"])
def test_sbc_quick(law):
    """20 simulations: every rank (parameters and N_opt) uniform at a Bonferroni 1% level.

    A sampler or model that is off (wrong centering Jacobian, wrong noise model, a
    prior in the fit unlike the one simulated from) fails this; it is too small to
    detect mild miscalibration, which is what benchmarks/sbc.py with hundreds is for.
    """
    result = cal.sbc(law, 20, seed=11, fit_kwargs=SBC_FIT)
    table = result.uniformity(seed=11)
    floor = 0.01 / len(table)
    assert (table["ks_pvalue"] > floor).all(), table
    assert (table["chi2_pvalue"] > floor).all(), table
    # 90% predictive intervals of the held-out (largest) size: 60 runs, about 54 expected.
    coverage = result.coverage()
    assert 0.75 <= coverage["predictive"] <= 0.99, coverage


# --- Misspecification: data from the data-constrained law, fitted with Chinchilla's (slow) -----------


def repeated_data_runs(seed=4):
    rng = np.random.default_rng(seed)
    sizes = np.geomspace(1e8, 2e9, 5)
    rows = [(n, n * m, n * m / e) for n in sizes for m in (10.0, 40.0) for e in (1.0, 4.0, 16.0, 64.0)]
    frame = pd.DataFrame(rows, columns=["params", "tokens", "unique_tokens"])
    mean = bs.get_law("data-constrained").loss(
        MUENNIGHOFF_C4, frame["params"], frame["tokens"], frame["unique_tokens"]
    )
    frame["loss"] = mean * np.exp(rng.normal(0, 0.01, len(frame)))
    return frame


@pytest.mark.slow
def test_misspecified_law_shows_in_residuals_and_coverage():
    runs = repeated_data_runs()
    fits = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.FitWarning)
        for law in ("chinchilla", "data-constrained"):
            fits[law] = bs.fit(runs, law=law, draws=400, tune=400, chains=2, random_seed=1, progressbar=False)
    wrong = residual_trends(predictive_check(fits["chinchilla"], random_seed=0))
    right = residual_trends(predictive_check(fits["data-constrained"], random_seed=0))
    # Chinchilla's law cannot see repetition: loss rises with epochs and its residuals follow.
    assert wrong.loc["epochs", "trend"] and wrong.loc["epochs", "spearman_rho"] > 0.5, wrong
    assert not right["trend"].any(), right
    # The noise soaks up the misfit: the wrong law needs a much larger run-to-run scatter.
    sigma = {law: float(f.posterior["sigma"].median()) for law, f in fits.items()}
    assert sigma["chinchilla"] > 3 * sigma["data-constrained"], sigma
