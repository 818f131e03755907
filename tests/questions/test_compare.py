"""Law comparison: pointwise log likelihood, PSIS-LOO ranking, stacking, extrapolation, averaging, CLI."""

import dataclasses
import json
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import QUICK, TRUE_CHINCHILLA, simulate_ladder
from scipy import stats

import bayescale as bs
from bayescale.cli import main
from bayescale.model.pymc_model import log_likelihood_draws, predictive_cdf


@pytest.fixture(scope="module")
def kaplan_quick():
    """Kaplan's law (no irreducible loss) fitted to the same simulated Chinchilla runs as quick_fit."""
    runs = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=7)
    return bs.fit(runs, law="kaplan", random_seed=3, **QUICK)


@pytest.fixture(scope="module")
def pair(quick_fit, kaplan_quick):
    return {"chinchilla": quick_fit, "kaplan": kaplan_quick}


def quiet_compare(fits):
    # 400 draws make Pareto k estimates noisy; the warning itself is tested in test_loo_warning_names_runs.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.LooWarning)
        return bs.compare(fits)


def _theta(values, scale):
    return {k: xr.DataArray(np.array([[v, v * scale]]), dims=("chain", "draw")) for k, v in values.items()}


@pytest.mark.parametrize("likelihood", ["student_t", "normal"])
def test_log_likelihood_matches_scipy(likelihood):
    runs = bs.Runs.from_frame(simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=1))
    values = {**TRUE_CHINCHILLA, "sigma": 0.02, "nu": 4.0}
    theta = _theta(values, 1.02)
    law = bs.get_law("chinchilla")
    ll = log_likelihood_draws(law, likelihood, theta, runs)
    assert ll.dims == ("chain", "draw", "run")
    shifted = {k: v * 1.02 for k, v in values.items()}
    mu = np.log(law.loss(shifted, runs.column("params"), runs.column("tokens")))
    y = np.log(runs.column("loss"))
    if likelihood == "student_t":
        expected = stats.t.logpdf(y, df=shifted["nu"], loc=mu, scale=shifted["sigma"])
        cdf = stats.t.cdf(y, df=shifted["nu"], loc=mu, scale=shifted["sigma"])
    else:
        expected = stats.norm.logpdf(y, loc=mu, scale=shifted["sigma"])
        cdf = stats.norm.cdf(y, loc=mu, scale=shifted["sigma"])
    np.testing.assert_allclose(ll.values[0, 1], expected, rtol=1e-10)
    # With both draws equal, the PIT is that draw's CDF.
    same = _theta(shifted, 1.0)
    np.testing.assert_allclose(predictive_cdf(law, likelihood, same, runs).values, cdf, rtol=1e-10)


def test_stacking_weights_pure():
    rng = np.random.default_rng(0)
    good, bad = rng.normal(2.0, 0.1, 50), rng.normal(-3.0, 0.1, 50)
    w = bs.stacking_weights(pd.DataFrame({"good": good, "bad": bad}))
    assert w["good"] > 0.99
    # Each law predicts half the runs well and the other half badly: the mixture needs both.
    half = np.r_[np.full(25, 2.0), np.full(25, -8.0)]
    w = bs.stacking_weights(pd.DataFrame({"a": half, "b": half[::-1]}))
    assert w["a"] == pytest.approx(0.5, abs=1e-3)
    with pytest.raises(bs.BayescaleError, match="finite"):
        bs.stacking_weights(pd.DataFrame({"a": [np.nan, 1.0], "b": [0.0, 1.0]}))


def test_compare_prefers_true_law(pair):
    """On runs simulated from Chinchilla, Chinchilla beats Kaplan (no irreducible loss) clearly.

    One seed here; tests/test_compare.py::test_compare_prefers_true_law_over_seeds checks it over seeds.
    """
    table = quiet_compare(pair)
    assert list(table.index) == ["chinchilla", "kaplan"]
    row = table.loc["kaplan"]
    assert row["elpd_diff"] > 2 * row["dse"] > 0
    assert table.loc["chinchilla", "weight"] > 0.9
    assert {"elpd_loo", "se", "p_loo", "pareto_k_max", "influential_runs"} <= set(table.columns)
    # The stacking weights of our own optimiser agree with ArviZ's on the same LOO values.
    loo_i = pd.DataFrame({name: bs.loo(f).elpd_i.values for name, f in pair.items()})
    np.testing.assert_allclose(bs.stacking_weights(loo_i)[table.index], table["weight"], atol=1e-3)


def test_loo_warning_names_runs(pair):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", bs.LooWarning)
        table = bs.compare(pair, k_threshold=-1.0)  # every run counts as influential
    messages = sorted(str(w.message) for w in caught if w.category is bs.LooWarning)
    assert len(messages) == 2
    assert messages[0].startswith(
        "PSIS-LOO is unreliable for 'chinchilla': 40 of 40 runs have Pareto k > -1.0"
    )
    assert "run 0 (N=5e+07, D=2.5e+08)" in messages[1] and "and 35 more" in messages[1]
    assert table.loc["kaplan", "influential_runs"] == list(range(40))


def test_compare_rejects_bad_input(quick_fit, kaplan_quick):
    with pytest.raises(bs.BayescaleError, match="at least two fits"):
        bs.compare([quick_fit])
    with pytest.raises(bs.BayescaleError, match="two fits of law 'chinchilla'"):
        bs.compare([quick_fit, quick_fit])
    fewer = dataclasses.replace(kaplan_quick, runs=kaplan_quick.runs.subset(np.arange(40) < 30))
    with pytest.raises(bs.BayescaleError, match="different runs"):
        bs.compare({"chinchilla": quick_fit, "kaplan": fewer})
    with pytest.raises(bs.BayescaleError, match=r"unknown weighting method 'bma'; use one of \['stacking'"):
        bs.compare({"chinchilla": quick_fit, "kaplan": kaplan_quick}, method="bma")


@pytest.fixture(scope="module")
def extrapolation():
    runs = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=7)
    return bs.extrapolate(runs, "chinchilla", threshold=1e20, by="compute", random_seed=1, **QUICK)


def test_extrapolation_table_and_scores(extrapolation):
    table = extrapolation.runs
    for col in ("params", "tokens", "loss", "split", "loss_predictive_median", "loss_predictive_lower",
                "loss_predictive_upper", "log_predictive_density", "pit"):  # fmt: skip
        assert col in table.columns
    compute = 6 * table["params"] * table["tokens"]
    assert (table["split"] == np.where(compute < 1e20, "train", "test")).all()
    assert len(extrapolation.fit.runs) == (compute < 1e20).sum() == 30
    scores = extrapolation.scores
    assert scores["n_test"] == 10
    test = extrapolation.test
    inside = (test["loss_predictive_lower"] <= test["loss"]) & (test["loss"] <= test["loss_predictive_upper"])
    assert scores["coverage"] == inside.mean()
    assert 0 <= scores["coverage_50"] <= scores["coverage"] <= 1
    # Noise is 1% on log loss and the test runs are only ~3x beyond the training compute: errors are small.
    assert scores["median_abs_pct_error"] < 3
    assert np.all((table["pit"] > 0) & (table["pit"] < 1))


def test_extrapolation_rejects_bad_splits():
    runs = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=7)
    with pytest.raises(bs.BayescaleError, match="no runs with compute at or above 1e\\+30 to test on"):
        bs.extrapolate(runs, "chinchilla", threshold=1e30)
    with pytest.raises(bs.BayescaleError, match="no runs with params below 1 to train on"):
        bs.extrapolate(runs, "chinchilla", threshold=1, by="params")
    with pytest.raises(bs.BayescaleError, match="cannot split runs by 'flops'"):
        bs.extrapolate(runs, "chinchilla", threshold=1e20, by="flops")
    with pytest.raises(bs.RunsError, match="unique_tokens"):
        bs.extrapolate(runs, "chinchilla", threshold=4, by="epochs")


def test_average_mixes_in_proportion(pair):
    only_chinchilla = bs.average(pair, weights={"chinchilla": 1.0, "kaplan": 0.0})
    table = only_chinchilla.predict([1e9, 1e10], [2e10, 2e11], random_seed=0)
    direct = pair["chinchilla"].predict([1e9, 1e10], [2e10, 2e11], random_seed=0)
    for col in ("loss_median", "loss_lower", "loss_upper"):
        np.testing.assert_allclose(table[col], direct[col], rtol=1e-12)
    half = bs.average(pair, weights={"chinchilla": 1.0, "kaplan": 1.0})
    assert half.weights == {"chinchilla": 0.5, "kaplan": 0.5}
    mixed = half.predict(1e10, 2e11, random_seed=0).iloc[0]
    medians = sorted(f.predict(1e10, 2e11).iloc[0]["loss_median"] for f in pair.values())
    assert medians[0] <= mixed["loss_median"] <= medians[1]
    draws = half.predict_draws(1e10, 2e11, random_seed=0)
    one = bs.plan.predict_draws(pair["chinchilla"], 1e10, 2e11)  # beyond these runs: two laws' draws
    assert draws.sizes["draw"] == one.sizes["chain"] * one.sizes["draw"]
    pd.testing.assert_frame_equal(
        half.predict(1e10, 2e11, random_seed=5), half.predict(1e10, 2e11, random_seed=5)
    )
    # Plans: Kaplan's L(N, D) has a numerical optimum; a 50/50 mixture's median lies between the two laws'.
    both = sorted(f.optimal(1e22).iloc[0]["params_median"] for f in pair.values())
    assert both[0] <= half.optimal(1e22, random_seed=0).iloc[0]["params_median"] <= both[1]
    plan = only_chinchilla.optimal(1e22)
    np.testing.assert_allclose(plan["params_median"], pair["chinchilla"].optimal(1e22)["params_median"])
    stacked = bs.average(pair)  # LOO stacking weights
    assert stacked.weights["chinchilla"] > 0.9


def test_average_rejects_bad_weights(pair):
    with pytest.raises(bs.BayescaleError, match="weights are given for"):
        bs.average(pair, weights={"chinchilla": 1.0})
    with pytest.raises(bs.BayescaleError, match=">= 0"):
        bs.average(pair, weights={"chinchilla": 1.0, "kaplan": -0.5})
    with pytest.raises(bs.BayescaleError, match="'stacking'"):
        bs.average(pair, weights="bma")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_compare_saved_fits(capsys, tmp_path, quick_fit_path, kaplan_quick):
    kaplan_path = kaplan_quick.save(tmp_path / "kaplan.nc")
    code, out, err = run(capsys, "compare", quick_fit_path, kaplan_path, "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert [r["law"] for r in payload] == ["chinchilla", "kaplan"]
    assert {"law", "elpd_loo", "se", "elpd_diff", "weight", "pareto_k_max"} <= set(payload[0])
    code, out, err = run(capsys, "compare", quick_fit_path, kaplan_path)
    assert code == 0 and "elpd_loo" in out and "kaplan" in out


def test_cli_extrapolate(capsys, tmp_path):
    path = tmp_path / "runs.csv"
    simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=8).to_csv(path, index=False)
    code, out, err = run(
        capsys, "extrapolate", path, "--law", "chinchilla", "--train-below-params", 1e9,
        "--seed", 2, "--draws", 150, "--tune", 200, "--chains", 2, "--json",
    )  # fmt: skip
    assert code == 0, err
    payload = json.loads(out)
    assert {
        "law",
        "n_train",
        "n_test",
        "coverage",
        "coverage_50",
        "elpd_test",
        "median_abs_pct_error",
    } <= set(payload)
    assert payload["n_train"] + payload["n_test"] == len(payload["runs"]) == 40
    assert payload["n_test"] == sum(r["split"] == "test" for r in payload["runs"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["compare", "chinchilla"], "give --laws"),
        (["compare", "a.csv", "b.csv", "--laws", "chinchilla,kaplan"], "one runs file"),
        (["extrapolate", "chinchilla"], "exactly one of --train-below"),
        (["extrapolate", "chinchilla", "--train-below-compute", "1e30"], "to test on"),
    ],
)
def test_cli_errors(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("error:") and message in err


# --- statistical studies (slow) ---

SEEDS = (21, 22, 23, 24, 25)


@pytest.mark.slow
def test_compare_prefers_true_law_over_seeds():
    """Chinchilla ranks first against Kaplan on Chinchilla-simulated ladders in at least 4 of 5 seeds."""
    wins = 0
    for seed in SEEDS:
        runs = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=seed)
        fits = {law: bs.fit(runs, law=law, random_seed=seed, **QUICK) for law in ("chinchilla", "kaplan")}
        wins += quiet_compare(fits).index[0] == "chinchilla"
    assert wins >= 4


@pytest.mark.slow
def test_extrapolation_coverage_near_nominal():
    """Held-out coverage of a correctly specified law is close to nominal.

    Five seeds x 10 held-out runs (compute >= 1e20, trained on the 30 below). If the
    50 runs were independent, the binomial sd of the pooled coverage would be 0.042
    at 90% and 0.071 at 50%; runs of one seed share the posterior's error, so we
    allow about three independent-case sds: 90% coverage in [0.78, 1], 50% in [0.3, 0.7].
    """
    covered = {"coverage": [], "coverage_50": []}
    for seed in SEEDS:
        runs = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=seed)
        result = bs.extrapolate(
            runs, "chinchilla", threshold=1e20, random_seed=seed,
            sampler={"draws": 500, "tune": 500, "chains": 2}, progressbar=False, warn=False,
        )  # fmt: skip
        for key in covered:
            covered[key].append(result.scores[key])
    assert 0.78 <= np.mean(covered["coverage"]) <= 1.0, covered
    assert 0.3 <= np.mean(covered["coverage_50"]) <= 0.7, covered


def test_answers_with_unique_tokens_mix_only_laws_that_see_them():
    from conftest import MUENNIGHOFF_C4, hand_built_fit

    constrained = hand_built_fit("data-constrained", "datablations", MUENNIGHOFF_C4, rel_sd=0.05)
    chinchilla = hand_built_fit(
        "chinchilla", "datablations", {k: MUENNIGHOFF_C4[k] for k in bs.get_law("chinchilla").parameter_names}
    )
    averaged = bs.average({"dc": constrained, "chin": chinchilla}, weights={"dc": 0.5, "chin": 0.5})
    assert averaged.sharing(unique_tokens=1e9) == {"dc": 1.0}
    # inside the runs, 4 epochs of 1e9 unique tokens: the data-constrained law's answer alone
    mixed = averaged.predict([1e8], [4e9], unique_tokens=[1e9], random_seed=0)
    alone = constrained.predict([1e8], [4e9], unique_tokens=[1e9], random_seed=0)
    assert mixed["loss_median"].iloc[0] == pytest.approx(alone["loss_median"].iloc[0], rel=2e-3)
    assert alone["loss_median"].iloc[0] != pytest.approx(
        chinchilla.predict([1e8], [4e9], random_seed=0)["loss_median"].iloc[0], rel=2e-3
    )  # the law that ignores U would have moved the answer
    only_chinchilla = bs.average({"a": chinchilla, "b": constrained}, weights={"a": 1.0, "b": 0.0})
    with pytest.raises(bs.BayescaleError, match="no averaged law sees unique tokens"):
        only_chinchilla.predict([1e8], [4e9], unique_tokens=[1e9])


def test_a_law_is_never_averaged_with_itself():
    from conftest import TRUE_CHINCHILLA, hand_built_fit, simulate_ladder

    fit = hand_built_fit(
        "chinchilla", simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=1), TRUE_CHINCHILLA
    )
    with pytest.raises(bs.BayescaleError, match="averaging a law with itself"):
        bs.average({"a": fit, "b": fit}, weights={"a": 1.0, "b": 1.0})
