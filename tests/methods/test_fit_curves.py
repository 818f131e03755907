"""The multi-power curve law: recovery of known parameters from curves simulated under schedules."""

import numpy as np
import pandas as pd
import pytest

import bayescale as bs
from bayescale.data.schedule import curve_features
from bayescale.errors import RunsError
from bayescale.methods.curves import fit_curves_least_squares
from bayescale.model.curve_laws import MULTIPOWER_PARAMETERS, features_dict, multipower_loss

TRUE = {"L0": 3.0, "A": 0.5, "alpha": 0.5, "B": 400.0, "C": 2.0, "beta": 0.6, "gamma": 0.6}
PEAK, HORIZON, WARMUP = 3e-4, 4000, 200
SCHEDULES = {
    "cosine": bs.Schedule(PEAK, HORIZON, WARMUP, "cosine", 0.1),
    "constant": bs.Schedule(PEAK, HORIZON, WARMUP, "constant"),
    "wsd": bs.Schedule(PEAK, HORIZON, WARMUP, "wsd", 0.1, decay_start=3000),
}
HELD_OUT = bs.Schedule(PEAK, HORIZON, WARMUP, "linear", 0.1)
STEPS = np.arange(300, HORIZON, 100)
BINS = 32


def true_loss(schedule: bs.Schedule, steps: np.ndarray = STEPS) -> np.ndarray:
    features = features_dict(curve_features(schedule.per_step(), steps, BINS))
    return multipower_loss({k: np.asarray(v) for k, v in TRUE.items()}, features, np)


def simulate(seed: int, sigma: float = 5e-4, rho: float = 0.8) -> pd.DataFrame:
    """Checkpoints of the three schedules with AR(1) noise on log loss."""
    rng = np.random.default_rng(seed)
    frames = []
    for name, schedule in SCHEDULES.items():
        noise = np.zeros(len(STEPS))
        noise[0] = rng.normal(0, sigma / np.sqrt(1 - rho**2))
        for i in range(1, len(STEPS)):
            noise[i] = rho * noise[i - 1] + rng.normal(0, sigma)
        frames.append(pd.DataFrame({"run": name, "step": STEPS, "loss": true_loss(schedule) * np.exp(noise)}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def curve_fit() -> bs.CurvesFit:
    sampler = {"draws": 200, "tune": 200, "chains": 2}
    return bs.fit_curves(simulate(0), SCHEDULES, bins=BINS, sampler=sampler, random_seed=2, warn=False)


def test_recovers_the_law_and_predicts_an_unseen_schedule(curve_fit):
    summary = curve_fit.parameters(prob=0.9)
    for name in ("L0", "A", "alpha"):  # the identified part of the law
        assert summary.loc[name, "lower"] < TRUE[name] < summary.loc[name, "upper"], name
    assert curve_fit.diagnostics["divergences"] < 10
    # A schedule not fitted (linear decay): the true curve inside the mean's 90% band almost
    # everywhere, and within 0.3% of the median everywhere.
    band = curve_fit.predict(HELD_OUT, STEPS)
    truth = true_loss(HELD_OUT)
    assert np.mean((truth >= band["lower"]) & (truth <= band["upper"])) > 0.9
    assert np.max(np.abs(band["median"] - truth) / truth) < 3e-3
    assert set(curve_fit.draws()) == {*MULTIPOWER_PARAMETERS, "sigma", "rho"}


def test_least_squares_recovers_noise_free_curves():
    fitted = fit_curves_least_squares(simulate(1, sigma=1e-9), SCHEDULES, bins=BINS, starts=4)
    truth = true_loss(HELD_OUT)
    features = features_dict(curve_features(HELD_OUT.per_step(), STEPS, BINS))
    pred = multipower_loss({k: np.asarray(v) for k, v in fitted.items()}, features, np)
    assert np.max(np.abs(pred - truth) / truth) < 1e-4
    for name in ("L0", "A", "alpha"):
        assert fitted[name] == pytest.approx(TRUE[name], rel=0.02), name


def test_a_run_without_a_schedule_is_named():
    curves = simulate(0)
    with pytest.raises(RunsError, match=r"run 'wsd' has no learning-rate schedule.*not a run trained"):
        bs.fit_curves(curves, {k: v for k, v in SCHEDULES.items() if k != "wsd"})
    with pytest.raises(RunsError, match="missing \\['loss'\\]"):
        bs.fit_curves(curves.drop(columns="loss"), SCHEDULES)
    with pytest.raises(bs.BayescaleError, match="unknown correlation 'ma1'"):
        bs.fit_curves(curves, SCHEDULES, correlation="ma1")


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10))
def test_recovery_over_seeds(seed):
    """Multi-seed version: L0, A, alpha inside the 90% intervals (binomial: >= 7 of 10 each expected)."""
    fit = bs.fit_curves(simulate(100 + seed), SCHEDULES, bins=BINS, random_seed=seed, warn=False)
    summary = fit.parameters(prob=0.9)
    inside = [summary.loc[n, "lower"] < TRUE[n] < summary.loc[n, "upper"] for n in ("L0", "A", "alpha")]
    assert sum(inside) >= 2
    assert fit.diagnostics["ok"]
