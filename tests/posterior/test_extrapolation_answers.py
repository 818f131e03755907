"""Answers beyond the runs: the guard's distances and warning, and the average with the variant law."""

import numpy as np
import pytest
import xarray as xr
from conftest import QUICK, TRUE_CHINCHILLA, simulate_ladder

import bayescale as bs
from bayescale.posterior.extrapolation import GUARD, VARIANT_LAW, RunSpan, beyond, mix_beyond


@pytest.fixture(scope="module")
def small_ladder_fit() -> bs.Fit:
    """Chinchilla's law on a simulated ladder of sizes up to 2e9 (QUICK settings, fixed seed)."""
    runs = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=5)
    return bs.fit(runs, law="chinchilla", random_seed=5, **QUICK)


def test_beyond_is_zero_inside_and_grows_outside():
    span = RunSpan.of([1e8, 1e9], [2e9, 2e10], [1.2e18, 1.2e20])
    inside = beyond(span, [1e8, 5e8, 1e9], [2e9, 1e10, 2e10])
    np.testing.assert_array_equal(inside, 0.0)
    # 10x the largest model at its tokens per parameter: log 10 in N, log 100 in N D.
    np.testing.assert_allclose(beyond(span, [1e10], [2e11]), np.log(100.0))
    # inside the size range but at 1/4 of the smallest tokens per parameter
    np.testing.assert_allclose(beyond(span, [1e8], [5e8]), np.log(4.0))


def test_mix_beyond_keeps_inside_queries_and_halves_the_rest():
    rng = np.random.default_rng(0)
    main = xr.Dataset({"loss": (("chain", "draw", "query"), rng.normal(size=(2, 50, 2)))})
    variant = xr.Dataset({"loss": (("chain", "draw", "query"), 10 + rng.normal(size=(2, 50, 2)))})
    mixed = mix_beyond(main, variant, np.array([0.0, 1.0]))
    assert mixed.sizes["draw"] == 100
    inside = mixed["loss"].isel(query=0).values
    np.testing.assert_array_equal(
        np.sort(inside.ravel()), np.sort(np.tile(main["loss"].isel(query=0).values, 2).ravel())
    )
    outside = mixed["loss"].isel(query=1).values
    assert np.mean(outside > 5) == 0.5  # exactly half the draws are the variant's


def test_in_range_answers_are_the_fitted_law_alone(small_ladder_fit):
    fit = small_ladder_fit
    params, tokens = [1e8, 1e9], [2e9, 4e10]  # both inside the ladder
    averaged = fit.predict(params, tokens, random_seed=1)
    single = fit.predict(params, tokens, random_seed=1, average_beyond=False)
    columns = [c for c in averaged.columns if c.startswith("loss")]
    np.testing.assert_array_equal(averaged[columns].to_numpy(), single[columns].to_numpy())
    budget = 6 * 5e8 * 1e10  # below the largest run's 6 N D
    np.testing.assert_array_equal(
        fit.optimal(budget).filter(like="params").to_numpy(),
        fit.optimal(budget, average_beyond=False).filter(like="params").to_numpy(),
    )


def test_far_answers_span_both_laws_and_warn(small_ladder_fit):
    fit = small_ladder_fit
    variant = fit.variant_fit()
    assert variant is not None and variant.law.name == VARIANT_LAW
    assert fit.variant_fit() is variant  # fitted once, then kept
    budget = 1e24  # ~ 4 decades beyond the ladder
    averaged = fit.optimal(budget)
    alone = fit.optimal(budget, average_beyond=False).iloc[0]
    other = variant.optimal(budget, average_beyond=False).iloc[0]
    row = averaged.iloc[0]
    for single in (alone, other):
        assert row["params_lower"] <= single["params_median"] <= row["params_upper"]
    assert row["compute_multiple"] > GUARD["compute_multiple"]
    assert "beyond the distance" in averaged.attrs["extrapolation_warning"]
    assert "extrapolation_warning" not in fit.optimal(1e19).attrs


def test_a_fit_of_the_variant_law_has_no_variant():
    runs = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=6)
    fit = bs.fit(runs, law=VARIANT_LAW, random_seed=6, **QUICK)
    assert fit.variant_fit() is None
    table = fit.predict([2e10], [4e11], random_seed=0)
    assert table["params_multiple"].iloc[0] == pytest.approx(10.0)


def test_target_compute_beyond_the_runs_is_the_mixture(small_ladder_fit):
    fit = small_ladder_fit
    variant = fit.variant_fit()
    near = float(fit.predict([2e8], [4e9], average_beyond=False)["loss_median"].iloc[0])
    # a target well below the ladder's best loss: its compute is far beyond the runs
    far = float(fit.runs.column("loss").min()) * 0.85
    averaged = fit.target_compute([near, far])
    alone = fit.target_compute([near, far], average_beyond=False)
    other = variant.target_compute([near, far], average_beyond=False)
    inside, outside = averaged.iloc[0], averaged.iloc[1]
    assert inside["compute_median"] == alone.iloc[0]["compute_median"]  # in range: the law alone
    assert outside["compute_multiple"] > 1
    share = (alone.iloc[1]["fraction_unreachable"] + other.iloc[1]["fraction_unreachable"]) / 2
    assert outside["fraction_unreachable"] == pytest.approx(share)
    for single in (alone.iloc[1], other.iloc[1]):
        if np.isfinite(single["compute_median"]):
            assert outside["compute_lower"] <= single["compute_median"] <= outside["compute_upper"]


def test_compare_plans_beyond_the_runs_judges_every_plan_on_the_mixture(small_ladder_fit):
    fit = small_ladder_fit
    variant = fit.variant_fit()
    plans = [(1e9, 2e10), (4e10, 8e11), (8e10, 4e11)]  # one inside, two far beyond
    averaged = fit.compare_plans(plans)
    alone = fit.compare_plans(plans, average_beyond=False)
    other = variant.compare_plans(plans, average_beyond=False)
    np.testing.assert_allclose(averaged["prob_best"], (alone["prob_best"] + other["prob_best"]) / 2)
    np.testing.assert_allclose(averaged["regret_mean"], (alone["regret_mean"] + other["regret_mean"]) / 2)
    inside = [(1e8, 2e9), (5e8, 1e10)]
    np.testing.assert_array_equal(
        fit.compare_plans(inside)["prob_best"], fit.compare_plans(inside, average_beyond=False)["prob_best"]
    )


def test_the_variant_keeps_the_users_priors_fixed_values_and_likelihood():
    runs = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=7)
    prior = bs.Prior("Normal", mu=0.37, sigma=0.02)
    fit = bs.fit(
        runs, law="chinchilla", priors={"alpha_D": prior}, fix={"E": 1.8, "A": 480.0},
        likelihood="normal", random_seed=7, **QUICK,
    )  # fmt: skip
    variant = fit.variant_fit()
    assert variant.fixed == {"E": 1.8}  # kaplan-e has no A
    assert variant.priors["alpha_D"] == prior and variant.likelihood == "normal"
    assert variant.priors["alpha_N"] == bs.get_law(VARIANT_LAW).default_priors()["alpha_N"]
