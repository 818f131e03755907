"""Checkpoints as rows of one run: the ``run`` column gives each run an offset its rows share."""

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import QUICK, TRUE_CHINCHILLA
from scipy import stats

import bayescale as bs
from bayescale.errors import RunsError
from bayescale.inference.diagnostics import FitWarning
from bayescale.model.pymc_model import log_likelihood_draws, run_labels, with_run_effects

SIGMA_RUN, SIGMA = 0.02, 0.003


def checkpoint_ladder(seed: int, sigma_run: float = SIGMA_RUN, sigma: float = SIGMA) -> pd.DataFrame:
    """Two runs per size, each with 8 checkpoints; one offset per run, small noise per checkpoint."""
    rng = np.random.default_rng(seed)
    law = bs.get_law("chinchilla")
    rows = []
    for i, n in enumerate(np.geomspace(5e7, 1e9, 6)):
        for copy in range(2):
            offset = rng.normal(0, sigma_run)
            tokens = n * np.geomspace(2.5, 80, 8)
            mean = law.loss(TRUE_CHINCHILLA, np.full_like(tokens, n), tokens)
            loss = mean * np.exp(offset + rng.normal(0, sigma, tokens.size))
            rows += [
                {"run": f"run-{i}-{copy}", "params": n, "tokens": d, "loss": value}
                for d, value in zip(tokens, loss, strict=True)
            ]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def checkpoint_fit() -> bs.Fit:
    return bs.fit(checkpoint_ladder(0), law="chinchilla", likelihood="normal", random_seed=1, **QUICK)


def test_a_run_is_one_model():
    frame = checkpoint_ladder(0)
    frame.loc[3, "params"] = 7e7
    with pytest.raises(RunsError, match=r"run 'run-0-0' has rows with different params"):
        bs.Runs.from_any(frame)
    frame = checkpoint_ladder(0)
    frame.loc[5, "run"] = None
    with pytest.raises(RunsError, match=r"column 'run' row 5: missing run label"):
        bs.Runs.from_any(frame)
    # leaving the column out keeps it as an extra column
    frame = checkpoint_ladder(0).assign(run="one")
    assert "run" not in bs.Runs.from_any(frame, columns={"run": ""}).frame


def test_labels_on_one_row_each_are_independent_runs():
    frame = checkpoint_ladder(0)
    frame["run"] = [f"r{i}" for i in range(len(frame))]
    assert run_labels(bs.Runs.from_any(frame)) is None
    assert run_labels(bs.Runs.from_any(checkpoint_ladder(0))) is not None


def test_checkpoint_fit_recovers_the_run_spread(checkpoint_fit):
    fit = checkpoint_fit
    assert fit.sampler.backend != "jax"  # the JAX density has no per-run offsets
    assert fit.parameter_names[-1] == "sigma_run"
    table = fit.summary(prob=0.95)
    for name, truth in (("sigma_run", SIGMA_RUN), ("sigma", SIGMA), ("alpha_D", 0.37), ("B", 2100.0)):
        assert table.loc[name, "lower"] <= truth <= table.loc[name, "upper"], (name, table.loc[name])
    assert fit.posterior["run_effect"].sizes["run_label"] == 12


def test_a_new_run_carries_the_run_spread(checkpoint_fit):
    fit = checkpoint_fit
    row = fit.predict([3e8], [6e9], random_seed=0, average_beyond=False).iloc[0]
    # Inside the ladder the 90% predictive band is dominated by a new run's offset, not the
    # checkpoint noise: about 2 x 1.645 x sigma_run wide on log loss.
    log_width = np.log(row["loss_predictive_upper"] / row["loss_predictive_lower"])
    assert 2 * 1.645 * 0.6 * SIGMA_RUN < log_width < 2 * 1.645 * 2.0 * SIGMA_RUN


def test_densities_condition_on_known_runs_and_widen_for_new_ones(checkpoint_fit):
    fit = checkpoint_fit
    theta = with_run_effects(fit.theta(), fit.posterior)
    new = bs.Runs.from_any(checkpoint_ladder(1).assign(run=lambda f: "new-" + f["run"]))
    ll = log_likelihood_draws(fit.law, "normal", theta, new)
    law_mean = np.log(
        fit.law.loss(
            {k: v.values[..., None] for k, v in fit.theta().items()},
            new.column("params"),
            new.column("tokens"),
        )
    )
    scale = np.sqrt(fit.posterior["sigma"].values ** 2 + fit.posterior["sigma_run"].values ** 2)[..., None]
    expected = stats.norm.logpdf(np.log(new.column("loss")), law_mean, scale)
    np.testing.assert_allclose(ll.values, expected, rtol=1e-10)
    own = log_likelihood_draws(fit.law, "normal", theta, fit.runs)
    assert float(own.mean()) > float(log_likelihood_draws(fit.law, "normal", theta, new).mean())


def test_checkpoint_fit_saves_and_loads(checkpoint_fit, tmp_path):
    path = checkpoint_fit.save(tmp_path / "curves.nc")
    with warnings.catch_warnings():  # QUICK draws: the diagnostics may fail, and a loaded fit says so
        warnings.simplefilter("ignore", FitWarning)
        loaded = bs.load_fit(path)
        b = loaded.predict([3e8], [6e9], random_seed=0, average_beyond=False)
    assert loaded.parameter_names == checkpoint_fit.parameter_names
    a = checkpoint_fit.predict([3e8], [6e9], random_seed=0, average_beyond=False)
    pd.testing.assert_frame_equal(a, b)
    np.testing.assert_array_equal(loaded.posterior["run_effect"], checkpoint_fit.posterior["run_effect"])


def test_the_fit_says_why_it_left_the_fast_path(checkpoint_fit):
    assert checkpoint_fit.diagnostics["sampler_path"] == (
        "PyMC model with numpyro (not the fast path: runs with checkpoints (a run column) have per-run "
        "offsets, not in the JAX density)"
    )
