"""Planning questions: pure functions on hand-written draws, then the Chinchilla fit and the CLI."""

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import MUENNIGHOFF_C4

import bayescale as bs
from bayescale.cli import main
from bayescale.errors import BayescaleError, LawError
from bayescale.model.laws.chinchilla import ChinchillaLaw
from bayescale.questions import plan

EPOCH = {"E": 1.81686, "A": 482.00572, "B": 2085.43420, "alpha_N": 0.34781, "alpha_D": 0.36585}
CHINCHILLA = bs.get_law("chinchilla")
DATA_CONSTRAINED = bs.get_law("data-constrained")


class NumericalChinchilla(ChinchillaLaw):
    """The Chinchilla law with its closed form hidden, so the numerical optimiser runs."""

    name = "chinchilla-numerical"

    def optimal_allocation(self, theta, compute):
        return None


def several_draws() -> dict[str, xr.DataArray]:
    """Three draws around Epoch's fit, as a (1, 3) chain x draw array."""
    values = {
        "E": [1.81686, 1.7, 1.9],
        "A": [482.0, 300.0, 700.0],
        "B": [2085.4, 1200.0, 5000.0],
        "alpha_N": [0.34781, 0.30, 0.40],
        "alpha_D": [0.36585, 0.40, 0.33],
    }
    return {k: xr.DataArray(np.array([v]), dims=("chain", "draw")) for k, v in values.items()}


def scalar(ds, name, query=0):
    return float(ds[name].isel(chain=0, draw=0, query=query))


def test_muennighoff_data_constrained_allocation():
    """C = 1e22, U = 25e9 with the C4 values: datablations reports 7.02e9, 2.373e11, 9.49 epochs."""
    best = plan.optimal_allocation_draws(DATA_CONSTRAINED, plan.point_theta(MUENNIGHOFF_C4), 1e22, 25e9)
    assert scalar(best, "params") == pytest.approx(7.02e9, rel=0.01)
    assert scalar(best, "tokens") == pytest.approx(2.373e11, rel=0.01)
    assert scalar(best, "epochs") == pytest.approx(9.49, rel=0.01)
    assert 6 * scalar(best, "params") * scalar(best, "tokens") == pytest.approx(1e22, rel=1e-9)
    # The continuous optimum is no worse than the README's grid search along N D = const.
    n0, d0 = scalar(best, "params"), scalar(best, "tokens")
    grid = np.concatenate([np.linspace(1.0001, 3, 500), 1 / np.linspace(1.0001, 3, 500)])
    n, d = n0 / grid, d0 * grid
    grid_loss = DATA_CONSTRAINED.loss(MUENNIGHOFF_C4, n, d, np.minimum(25e9, d))
    assert scalar(best, "loss") <= grid_loss.min() + 1e-12
    # Marginal value of unique data (envelope theorem) = slope of the optimal loss over log U.
    h = 0.01
    nearby = plan.optimal_allocation_draws(
        DATA_CONSTRAINED, plan.point_theta(MUENNIGHOFF_C4), 1e22, [25e9 * np.exp(-h), 25e9 * np.exp(h)]
    )
    slope = (scalar(nearby, "loss", 1) - scalar(nearby, "loss", 0)) / (2 * h)
    assert scalar(best, "dloss_dlog_unique") == pytest.approx(slope, rel=1e-3)
    # Doubling U helps, with diminishing returns: less than the marginal rate times log 2.
    gain = scalar(best, "loss_reduction_more_unique")
    assert 0 < gain < -slope * np.log(2)


def test_numerical_optimum_matches_closed_form():
    theta = several_draws()
    budgets = [1e19, 5.76e23, 1e27]
    closed = plan.optimal_allocation_draws(CHINCHILLA, theta, budgets)
    numerical = plan.optimal_allocation_draws(NumericalChinchilla(), theta, budgets)
    for name in ("params", "tokens", "loss"):
        np.testing.assert_allclose(numerical[name], closed[name], rtol=1e-6, err_msg=name)
    for name in ("a", "b"):  # a finite-difference slope of the numerical optimum
        np.testing.assert_allclose(numerical[name], closed[name], atol=1e-5, err_msg=name)
    # The closed-form exponents are the law's a = alpha_D / (alpha_N + alpha_D).
    alpha, beta = theta["alpha_N"], theta["alpha_D"]
    np.testing.assert_allclose(closed["a"].isel(query=1), beta / (alpha + beta), rtol=1e-6)
    # Epoch's coefficients at Chinchilla's budget: N_opt 7.24e10, a = 0.513 (anchors card).
    epoch = plan.optimal_allocation_draws(CHINCHILLA, plan.point_theta(EPOCH), 5.76e23)
    assert scalar(epoch, "params") == pytest.approx(7.24e10, rel=0.01)
    assert scalar(epoch, "a") == pytest.approx(0.513, abs=0.001)


def test_kaplan_numerical_exponent():
    """Kaplan eq. 1.5 along C = 6ND: N_opt ∝ C^(alpha_D / (alpha_N + alpha_D)) exactly."""
    values = {"N_c": 8.8e13, "D_c": 5.4e13, "alpha_N": 0.076, "alpha_D": 0.103}
    best = plan.optimal_allocation_draws(bs.get_law("kaplan"), plan.point_theta(values), [1e20, 1e24])
    expected = 0.103 / (0.076 + 0.103)
    np.testing.assert_allclose(best["a"], expected, rtol=1e-6)
    ratio = scalar(best, "params", 1) / scalar(best, "params", 0)
    assert np.log(ratio) / np.log(1e4) == pytest.approx(expected, rel=1e-6)


def test_data_constrained_with_ample_data_is_chinchilla():
    theta = plan.point_theta({**EPOCH, "R_D_star": 15.0, "R_N_star": 5.0})
    ample = plan.optimal_allocation_draws(DATA_CONSTRAINED, theta, 5.76e23, unique_tokens=1e16)
    closed = plan.optimal_allocation_draws(CHINCHILLA, plan.point_theta(EPOCH), 5.76e23)
    assert scalar(ample, "params") == pytest.approx(scalar(closed, "params"), rel=1e-6)
    assert scalar(ample, "loss_reduction_more_unique") == pytest.approx(0.0, abs=1e-12)


def test_flops_per_param_token_override():
    theta = plan.point_theta(EPOCH)
    eight = plan.optimal_allocation_draws(CHINCHILLA, theta, 1e23, flops_per_param_token=8.0)
    six = plan.optimal_allocation_draws(CHINCHILLA, theta, 1e23 * 6 / 8)
    assert scalar(eight, "params") == pytest.approx(scalar(six, "params"), rel=1e-12)
    assert 8 * scalar(eight, "params") * scalar(eight, "tokens") == pytest.approx(1e23, rel=1e-9)
    with pytest.raises(BayescaleError, match="flops_per_param_token must be"):
        plan.optimal_allocation_draws(CHINCHILLA, theta, 1e23, flops_per_param_token=0)


def test_target_compute_matches_closed_form_and_marks_unreachable():
    theta = several_draws()
    targets = [2.2, 1.95, 1.75]
    draws = {
        law.name: plan.target_compute_draws(law, theta, targets)
        for law in (CHINCHILLA, NumericalChinchilla())
    }
    # Closed form: L_opt(C) = E + K (C/6)^-g, g = alpha beta / (alpha + beta).
    v = {k: x.values.ravel()[:, None] for k, x in theta.items()}
    alpha, beta = v["alpha_N"], v["alpha_D"]
    g = np.exp((np.log(alpha * v["A"]) - np.log(beta * v["B"])) / (alpha + beta))
    k = v["A"] * g**-alpha + v["B"] * g**beta
    excess = np.asarray(targets) - v["E"]
    with np.errstate(invalid="ignore"):
        expected = np.where(excess > 0, 6 * (k / excess) ** ((alpha + beta) / (alpha * beta)), np.inf)
    assert np.isinf(expected).any() and np.isfinite(expected).any()
    for name, ds in draws.items():
        got = ds["compute"].isel(chain=0).values
        np.testing.assert_allclose(got, expected, rtol=1e-6, err_msg=name)
        np.testing.assert_array_equal(ds["unreachable"].isel(chain=0).values, np.isinf(expected))


def test_target_compute_table_never_nan(chinchilla_fit):
    # The Chinchilla law's own posterior (kaplan-e, averaged in beyond the runs, has a lower floor).
    table = chinchilla_fit.target_compute([1.95, 1.9, 1.7], prob=0.9, average_beyond=False)
    assert not table.isna().any().any()
    reachable = table.iloc[0]
    assert reachable["fraction_unreachable"] == 0
    assert reachable["compute_lower"] < reachable["compute_median"] < reachable["compute_upper"] < np.inf
    # 1.7 is below E's posterior (~1.82): unreachable in every draw.
    assert table["fraction_unreachable"].iloc[2] == 1 and np.isinf(table["compute_median"].iloc[2])


def test_compare_plans_on_hand_written_draws():
    theta = plan.point_theta(EPOCH)
    best = plan.optimal_allocation_draws(CHINCHILLA, theta, 5.76e23)
    n_opt, d_opt = scalar(best, "params"), scalar(best, "tokens")
    ds = plan.compare_plans_draws(CHINCHILLA, theta, [n_opt, 1.75e11], [d_opt, 3e11])
    assert scalar(ds, "regret", 0) == pytest.approx(0.0, abs=1e-12)
    assert scalar(ds, "regret", 1) > 0
    assert scalar(ds, "best", 0) == 1 and scalar(ds, "best", 1) == 0
    with pytest.raises(BayescaleError, match="at least two plans"):
        plan.compare_plans_draws(CHINCHILLA, theta, [1e9], [1e10])


def test_chinchilla_fit_plan_against_epoch(chinchilla_fit):
    # The Chinchilla law's own optimum against Epoch's fit of that law (no averaging with the variant).
    row = chinchilla_fit.optimal([5.76e23, 1e25], prob=0.9, average_beyond=False).iloc[0]
    assert row["params_lower"] <= 7.2e10 <= row["params_upper"]
    assert row["params_median"] == pytest.approx(7.2e10, rel=0.15)
    assert row["a_lower"] <= 0.513 <= row["a_upper"]
    assert row["b_lower"] <= 1 - 0.513 <= row["b_upper"]
    assert row["a_upper"] - row["a_lower"] < 0.2


def test_chinchilla_fit_compares_70b_with_175b(chinchilla_fit):
    table = chinchilla_fit.compare_plans([(7e10, 1.4e12), (1.75e11, 3e11)])
    assert table["prob_best"].sum() == pytest.approx(1.0)
    assert list(table["compute"]) == pytest.approx([5.88e23, 3.15e23])
    # Chinchilla (70B, 1.4T) beats a Gopher/GPT-3-sized model on 300B tokens under this law.
    assert table["prob_best"].iloc[0] > 0.95
    assert (table["regret_mean"] > 0).all()
    assert table["regret_mean"].iloc[1] > table["regret_mean"].iloc[0]


@pytest.mark.parametrize(
    ("law", "kwargs", "message"),
    [
        ("kaplan-n", {}, "no compute-optimal allocation"),
        ("chinchilla", {"unique_tokens": 1e10}, "does not model repeated data"),
        ("data-constrained", {}, "needs unique_tokens"),
    ],
)
def test_allocation_errors(law, kwargs, message):
    theta = plan.point_theta({**EPOCH, **MUENNIGHOFF_C4, "N_c": 1e13, "D_c": 1e13})
    with pytest.raises(LawError, match=message):
        plan.optimal_allocation_draws(bs.get_law(law), theta, 1e22, **kwargs)


def test_theta_must_be_draws():
    with pytest.raises(LawError, match=r"needs draws of \['alpha_D'\]"):
        partial = {k: v for k, v in plan.point_theta(EPOCH).items() if k != "alpha_D"}
        plan.optimal_allocation_draws(CHINCHILLA, partial, 1e22)
    bad = {**plan.point_theta(EPOCH), "E": xr.DataArray([1.8], dims=("sample",))}
    with pytest.raises(BayescaleError, match="dims"):
        plan.optimal_allocation_draws(CHINCHILLA, bad, 1e22)
    with pytest.raises(BayescaleError, match="compute must be finite and > 0"):
        plan.optimal_allocation_draws(CHINCHILLA, plan.point_theta(EPOCH), [1e22, -1])


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_plan_frontier_compare_design(capsys, quick_fit_path, tmp_path):
    code, out, _ = run(capsys, "plan", quick_fit_path, "--compute", "1e21", "1e22", "--kind", "hdi", "--json")
    rows = json.loads(out)
    assert code == 0 and [r["compute"] for r in rows] == [1e21, 1e22] and rows[0]["kind"] == "hdi"
    assert rows[0]["a"]["lower"] < rows[0]["a"]["median"] < rows[0]["a"]["upper"]

    code, out, _ = run(capsys, "plan", quick_fit_path, "--target-loss", "1.5", "--json")
    target = json.loads(out)
    assert target["fraction_unreachable"] == 1.0 and target["compute"]["median"] is None

    code, out, _ = run(capsys, "frontier", quick_fit_path, "--from", "1e20", "--to", "1e26", "--points", "3")
    assert code == 0 and "1e+26" in out and "tokens_per_param" in out

    code, out, _ = run(
        capsys, "compare-plans", quick_fit_path, "--plan", "7e10,1.4e12", "--plan", "1.75e11,3e11"
    )
    assert code == 0 and "prob_best" in out

    candidates = tmp_path / "candidates.csv"
    pd.DataFrame({"N": [2e9, 5e7], "D": [4e10, 2.5e8]}).to_csv(candidates, index=False)
    code, out, _ = run(
        capsys,
        "design",
        quick_fit_path,
        "--compute",
        "1e22",
        "--candidates",
        candidates,
        "--seed",
        0,
        "--json",
    )
    ranked = json.loads(out)
    assert code == 0 and [r["rank"] for r in ranked] == [1, 2]

    code, _, err = run(capsys, "plan", quick_fit_path, "--compute", "1e22", "--target-loss", "2")
    assert code == 2 and err.startswith("error: give either --compute")
    code, _, err = run(capsys, "compare-plans", quick_fit_path, "--plan", "7e10,1.4e12")
    assert code == 2 and "at least two plans" in err
    code, _, err = run(capsys, "frontier", quick_fit_path, "--from", "1e24", "--to", "1e20")
    assert code == 2 and "must be larger" in err


def test_cli_answers_from_a_saved_fit_refit_nothing(capsys, quick_fit, quick_fit_path, monkeypatch):
    from bayescale.methods import parametric

    def refit(*args, **kwargs):
        raise AssertionError("predict or plan refitted a law")

    monkeypatch.setattr(parametric, "fit_parametric", refit)
    far = 1e3 * float(quick_fit.runs.column("compute").max())
    code, out, _ = run(capsys, "plan", quick_fit_path, "--compute", far, "--json")
    blended = json.loads(out)
    assert code == 0 and blended["distance"]["compute_multiple"] == pytest.approx(1e3, rel=1e-6)
    code, out, _ = run(capsys, "plan", quick_fit_path, "--compute", far, "--json", "--single-law")
    single = json.loads(out)
    alone = quick_fit.optimal(far, average_beyond=False).iloc[0]
    assert single["params"]["median"] == pytest.approx(alone["params_median"])
    assert (
        blended["loss"]["upper"] - blended["loss"]["lower"]
        > single["loss"]["upper"] - single["loss"]["lower"]
    )
    code, out, _ = run(capsys, "predict", quick_fit_path, "--params", 3e10, "--tokens", 6e11, "--json")
    assert code == 0 and json.loads(out)["distance"]["params_multiple"] > 1
    code, out, _ = run(capsys, "plan", quick_fit_path, "--target-loss", "2.0", "--json")
    assert code == 0 and "compute_multiple" in json.loads(out)["distance"]


@pytest.fixture(scope="module")
def constrained_path(tmp_path_factory):
    from conftest import hand_built_fit

    from bayescale.methods.parametric import _tidy

    fit = hand_built_fit("data-constrained", "datablations", MUENNIGHOFF_C4, rel_sd=0.05)
    fit.idata = _tidy(fit.idata, fit.law, fit.runs, fit.fixed, fit.likelihood)  # the groups a saved fit has
    path = tmp_path_factory.mktemp("fits") / "constrained.nc"
    fit.save(path)
    return fit, path


def test_cli_plan_takes_several_unique_token_counts(capsys, constrained_path):
    fit, path = constrained_path
    code, out, err = run(
        capsys, "plan", path, "--compute", "1e21", "1e22", "--unique-tokens", "5e9", "2.5e10", "--json"
    )
    rows = json.loads(out)
    assert code == 0, err
    # every budget at each U, one budget's rows together
    assert [(r["compute"], r["unique_tokens"]) for r in rows] == [
        (1e21, 5e9),
        (1e21, 2.5e10),
        (1e22, 5e9),
        (1e22, 2.5e10),
    ]
    for r in rows:  # each row is the single question's answer
        alone = fit.optimal(r["compute"], r["unique_tokens"]).iloc[0]
        assert r["epochs"]["median"] == pytest.approx(alone["epochs_median"], rel=1e-9)
        assert r["params"]["upper"] == pytest.approx(alone["params_upper"], rel=1e-9)
    # less unique data at the same budget: more epochs
    assert rows[0]["epochs"]["median"] > rows[1]["epochs"]["median"]
    assert rows[2]["epochs"]["median"] > rows[3]["epochs"]["median"]

    code, out, _ = run(
        capsys, "frontier", path, "--from", "1e20", "--to", "1e22", "--points", "2",
        "--unique-tokens", "5e9", "2.5e10", "--json",
    )  # fmt: skip
    assert code == 0 and [(r["compute"], r["unique_tokens"]) for r in json.loads(out)] == [
        (1e20, 5e9), (1e20, 2.5e10), (1e22, 5e9), (1e22, 2.5e10)
    ]  # fmt: skip

    code, out, _ = run(capsys, "plan", path, "--compute", "1e22", "--unique-tokens", "5e9", "2.5e10")
    assert code == 0 and "unique_tokens" in out.splitlines()[1] and len(out.splitlines()) == 4

    code, out, _ = run(
        capsys,
        "plan",
        path,
        "--target-loss",
        "2.5",
        "--unique-tokens",
        "5e9",
        "--unique-tokens",
        "2.5e10",
        "--json",
    )
    rows = json.loads(out)
    assert code == 0 and [r["unique_tokens"] for r in rows] == [5e9, 2.5e10]
    # reaching the same loss with less unique data costs more compute
    assert rows[0]["compute"]["median"] > rows[1]["compute"]["median"]


def test_compare_plans_with_unique_tokens(constrained_path, capsys):
    fit, path = constrained_path
    plans = [(2e9, 1e11), (8e9, 2.5e10)]
    shared = fit.compare_plans(plans, unique_tokens=2.5e10)
    assert shared.equals(fit.compare_plans([(*p, 2.5e10) for p in plans]))
    per_plan = fit.compare_plans(plans, unique_tokens=[5e9, 2.5e10])
    assert list(per_plan["unique_tokens"]) == [5e9, 2.5e10]
    # 20 epochs of 5e9 tokens loses to 1 epoch of 2.5e10 at the same N D: the repeated data is worth less
    assert per_plan["loss_median"].iloc[0] > shared["loss_median"].iloc[0]
    with pytest.raises(BayescaleError, match="not both"):
        fit.compare_plans([(*p, 2.5e10) for p in plans], unique_tokens=2.5e10)
    with pytest.raises(BayescaleError, match="one per plan"):
        fit.compare_plans(plans, unique_tokens=[1e10, 2e10, 3e10])
    with pytest.raises(LawError, match="does not model repeated data"):
        plan.compare_plans(hand_built_fit_chinchilla(), plans, average_beyond=False, unique_tokens=2.5e10)
    code, out, err = run(
        capsys,
        "compare-plans",
        path,
        "--plan",
        "2e9,1e11",
        "--plan",
        "8e9,2.5e10",
        "--unique-tokens",
        "2.5e10",
        "--json",
    )
    rows = json.loads(out)
    assert code == 0, err
    assert [r["unique_tokens"] for r in rows] == [2.5e10, 2.5e10]
    assert rows[0]["prob_best"] == pytest.approx(shared["prob_best"].iloc[0])


def hand_built_fit_chinchilla():
    from conftest import hand_built_fit

    return hand_built_fit("chinchilla", "chinchilla", EPOCH, draws=20)
