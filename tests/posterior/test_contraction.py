"""Prior-to-posterior contraction: how much of each parameter the runs decide."""

import numpy as np
import pytest
import xarray as xr

import bayescale as bs
from bayescale.posterior.contraction import _prior_sd, information_message


def posterior(**draws: np.ndarray) -> xr.Dataset:
    return xr.Dataset({name: (("chain", "draw"), value.reshape(4, -1)) for name, value in draws.items()})


def test_contraction_is_the_share_of_prior_variance_the_runs_removed():
    rng = np.random.default_rng(0)
    n = 40_000
    priors = {
        "alpha_N": bs.Prior("LogNormal", mu=-1.2, sigma=0.5),  # closed form, on the log scale
        "nu": bs.Prior("Gamma", alpha=2.0, beta=0.1),  # closed form (trigamma), on the log scale
        "shift": bs.Prior("Normal", mu=0.0, sigma=2.0),  # closed form, linear
        "absent": bs.Prior("Normal", mu=0.0, sigma=1.0),  # not in the posterior: skipped
    }
    post = posterior(
        alpha_N=np.exp(rng.normal(-1.2, 0.25, n)),  # a quarter of the prior's variance is left
        nu=rng.gamma(2.0, 10.0, n),  # the prior itself: nothing learnt
        shift=rng.normal(1.0, 2.0 * np.sqrt(0.1), n),  # a tenth left
        grouped=np.zeros(n),
    )
    table = bs.prior_contraction(post, priors)
    assert list(table.index) == ["alpha_N", "nu", "shift"]
    assert table.loc["alpha_N", "scale"] == "log" and table.loc["shift", "scale"] == "linear"
    assert table.loc["alpha_N", "contraction"] == pytest.approx(0.75, abs=0.01)
    assert table.loc["nu", "contraction"] == pytest.approx(0.0, abs=0.05)
    assert table.loc["shift", "contraction"] == pytest.approx(0.9, abs=0.01)
    text = information_message(table, "the prior 'published-ladders'")
    assert "alpha_N 75%" in text and "shift 90%" in text
    assert "The runs decide alpha_N, shift." in text
    assert "nu mostly keeps the prior 'published-ladders'" in text


@pytest.mark.parametrize(
    ("prior", "draw"),
    [
        (bs.Prior("Gamma", alpha=2.0, beta=0.1), lambda rng, n: rng.gamma(2.0, 10.0, n)),
        (bs.Prior("Gamma", alpha=0.7, beta=3.0), lambda rng, n: rng.gamma(0.7, 1 / 3.0, n)),
        (bs.Prior("HalfNormal", sigma=0.05), lambda rng, n: np.abs(rng.normal(0.0, 0.05, n))),
        (bs.Prior("Exponential", lam=3.0), lambda rng, n: rng.exponential(1 / 3.0, n)),
    ],
)
def test_the_noise_priors_spreads_are_closed_forms_that_match_their_draws(prior, draw):
    # Closed forms, so that a saved fit's contraction (predict, plan) needs no PyMC draws.
    values = draw(np.random.default_rng(0), 400_000)
    for log, sample in ((True, np.log(values)), (False, values)):
        assert _prior_sd(prior, log) == pytest.approx(np.std(sample), rel=0.01), (prior, log)
