"""Next experiment: importance-reweighted expected variance reduction."""

import numpy as np
import pandas as pd
import pytest
from conftest import QUICK, TRUE_CHINCHILLA, simulate_ladder

import bayescale as bs
from bayescale.errors import BayescaleError
from bayescale.questions import design

TARGET = 1e22


@pytest.mark.parametrize("replicates", [1, 4])
def test_reweighting_matches_conjugate_gaussian(replicates):
    """q = mu = theta ~ N(0, tau^2), y ~ N(theta, sigma^2 / m): variance 1 / (1/tau^2 + m/sigma^2)."""
    rng = np.random.default_rng(0)
    tau, sigma = 1.0, 0.5
    theta = rng.normal(0.0, tau, size=8000)
    draws = {"sigma": np.full((1, theta.size), sigma)}
    got, ess_mean, _ = design._expected_variance(
        theta, theta[None, :], draws, "normal", replicates, 300, np.random.default_rng(1)
    )
    expected = 1 / (1 / tau**2 + replicates / sigma**2)
    assert got == pytest.approx(expected, rel=0.05)
    assert 0.05 < ess_mean < 1


@pytest.fixture(scope="module")
def small_ladder():
    """A ladder missing its large runs: sizes up to 2.4e8 of the usual 5e7-2e9."""
    runs = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=11)
    return runs[runs["params"] < 3e8].reset_index(drop=True)


@pytest.fixture(scope="module")
def small_fit(small_ladder):
    return bs.fit(small_ladder, law="chinchilla", random_seed=5, **QUICK)


@pytest.fixture(scope="module")
def candidates(small_ladder):
    tiny = small_ladder.loc[small_ladder["params"].idxmin()]
    return pd.DataFrame({"params": [tiny["params"], 2e9], "tokens": [tiny["tokens"], 4e10]})


def test_large_run_ranks_above_copy_of_tiny_run(small_fit, candidates):
    table = small_fit.design(TARGET, candidates, random_seed=0)
    by_size = table.set_index("params")
    large, tiny = by_size.loc[2e9], by_size.loc[candidates["params"].iloc[0]]
    assert large["rank"] == 1 and tiny["rank"] == 2
    # One tiny copy is nearly worthless; the large run removes a large share of the variance.
    assert tiny["reduction"] / tiny["variance_now"] < 0.05
    assert large["reduction"] / large["variance_now"] > 0.3
    # Even the whole budget spent on tiny copies (6400 of them) teaches little about the extrapolation.
    assert tiny["replicates"] > 1000 and tiny["fraction_at_budget"] < 0.15
    # Per FLOP of one run the cheap copy wins: why "budget" (equal spend) is the default ranking.
    per_flop = small_fit.design(TARGET, candidates, random_seed=0, rank_by="per_flop")
    assert per_flop["params"].iloc[0] == candidates["params"].iloc[0]


def test_design_is_reproducible_and_checks_input(small_fit, candidates, tmp_path):
    first = small_fit.design(TARGET, candidates, random_seed=3, outcomes=64)
    again = small_fit.design(TARGET, candidates, random_seed=3, outcomes=64)
    pd.testing.assert_frame_equal(first, again)
    path = tmp_path / "c.csv"
    candidates.assign(cost=[1e17, 1e21]).to_csv(path, index=False)
    from_file = small_fit.design(TARGET, path, random_seed=3, outcomes=64)
    assert list(from_file.sort_values("params")["cost"]) == [1e17, 1e21]
    with pytest.raises(BayescaleError, match=r"candidates need column\(s\) \['tokens'\]"):
        small_fit.design(TARGET, candidates[["params"]])
    with pytest.raises(BayescaleError, match="rank_by must be one of"):
        small_fit.design(TARGET, candidates, rank_by="cheapest")
    with pytest.raises(BayescaleError, match="quantity must be one of"):
        small_fit.design(TARGET, candidates, quantity="epochs")
    with pytest.raises(BayescaleError, match="does not exist"):
        small_fit.design(TARGET, tmp_path / "missing.csv")
    with pytest.raises(BayescaleError, match="tokens must be finite and > 0"):
        small_fit.design(TARGET, candidates.assign(tokens=[-1.0, 1e10]))
