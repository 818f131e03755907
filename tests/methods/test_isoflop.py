"""IsoFLOP profiles (Approach 2): grouping, errors, recovery, and Porian et al.'s published exponent."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import QUICK, TRUE_CHINCHILLA, quick, simulate_isoflop
from saved_results import check_html_escapes_file_text, check_refusals, round_trip, without_setting

import bayescale as bs
from bayescale.methods.isoflop import default_priors, fit_isoflop, group_budgets, in_window, prepare

PORIAN_FINAL = "rw|tuned|short|const|standard|val"


def true_a() -> float:
    return TRUE_CHINCHILLA["alpha_D"] / (TRUE_CHINCHILLA["alpha_N"] + TRUE_CHINCHILLA["alpha_D"])


def test_group_budgets_joins_nearby_budgets():
    level, table = group_budgets(np.array([1e18, 1.05e18, 0.97e18, 4e18, 4.1e18, 1.6e19]), tol=0.1)
    assert level.tolist() == [0, 0, 0, 1, 1, 2]
    assert table["n_runs"].tolist() == [3, 2, 1]
    assert table["budget"].iloc[0] == pytest.approx(np.exp(np.mean(np.log([1e18, 1.05e18, 0.97e18]))))


def test_group_budgets_tolerance_zero_keeps_every_budget_apart():
    level, _ = group_budgets(np.array([1e18, 1.05e18]), tol=0.0)
    assert level.tolist() == [0, 1]


def test_window_keeps_runs_near_each_budgets_minimum():
    level = np.array([0, 0, 0, 1, 1])
    loss = np.array([3.0, 3.2, 4.0, 2.0, 2.5])
    # log(3.2/3) = 0.065 is inside a 0.1 window, log(4/3) = 0.29 and log(2.5/2) = 0.22 are not
    assert in_window(level, loss, 0.1).tolist() == [True, True, False, True, False]
    assert in_window(level, loss, None).all()
    with pytest.raises(bs.BayescaleError, match="window must be positive"):
        in_window(level, loss, 0.0)


def test_window_flags_budgets_left_with_too_few_sizes():
    runs = simulate_isoflop(1)
    # the first budget keeps only its 2 best sizes: every other run there gets a much higher loss
    first = runs["compute"] == runs["compute"].min()
    worst = runs[first].sort_values("loss").index[2:]
    runs.loc[worst, "loss"] *= 1.5
    data = prepare(bs.Runs.from_frame(runs), window=0.1)
    assert data.budgets["n_in_window"].iloc[0] == 2
    assert data.budgets["used"].tolist() == [False, True, True, True, True]
    assert not data.used[first.to_numpy()].any()
    assert prepare(bs.Runs.from_frame(runs), window=None).budgets["used"].all()


def test_errors():
    with pytest.raises(bs.RunsError, match="groups"):
        fit_isoflop("porian-isoflop", **QUICK)
    with pytest.raises(bs.RunsError, match="no runs in group 'nope'"):
        fit_isoflop("porian-isoflop", group="nope", **QUICK)
    one_budget = simulate_isoflop(0).iloc[:7]
    with pytest.raises(bs.RunsError, match="at least 2 budgets"):
        fit_isoflop(one_budget, **QUICK)
    with pytest.raises(bs.BayescaleError, match="unknown profile shape"):
        fit_isoflop(simulate_isoflop(0), shape="cubic", **QUICK)
    with pytest.raises(bs.BayescaleError, match="budget tolerance"):
        group_budgets(np.array([1.0, 2.0]), tol=1.5)


@pytest.fixture(scope="module")
def simulated_fit():
    runs = simulate_isoflop(seed=4, jitter=0.03)
    return fit_isoflop(runs, random_seed=5, **quick(draws=400, tune=400))


def test_recovers_exponent_of_simulated_profiles(simulated_fit):
    # budgets jittered by +-3% are grouped back to 5 levels and the grouping is reported
    assert simulated_fit.budgets["n_runs"].tolist() == [7] * 5
    exps = simulated_fit.exponents()
    assert exps["a"]["lower"] < true_a() < exps["a"]["upper"]
    assert exps["b"]["median"] == pytest.approx(1 - exps["a"]["median"])
    assert exps["a"]["upper"] - exps["a"]["lower"] < 0.1


def test_optimal_at_a_budget_matches_law(simulated_fit):
    law = bs.get_law("chinchilla")
    budget = 1e22  # beyond the largest budget: an extrapolation by 10x
    truth = law.optimal_allocation(TRUE_CHINCHILLA, np.array([budget]))
    row = simulated_fit.optimal(budget, prob=0.95).iloc[0]
    assert row["params_lower"] < truth["params"][0] < row["params_upper"]
    assert row["tokens_median"] * row["params_median"] * 6 == pytest.approx(budget, rel=1e-6)
    table = simulated_fit.budget_table()
    assert {"params_opt_median", "loss_opt_lower", "n_runs"} <= set(table.columns)


@pytest.mark.filterwarnings("ignore::bayescale.FitWarning")  # a cheap fit: its diagnostics are not under test
def test_saved_fit_answers_the_same_and_altered_files_are_refused(simulated_fit, tmp_path, capsys):
    loaded, path = round_trip(simulated_fit, tmp_path)
    assert loaded.optimal([1e20, 1e22]).equals(simulated_fit.optimal([1e20, 1e22]))
    assert loaded.budget_table().equals(simulated_fit.budget_table())
    assert loaded.budgets.equals(simulated_fit.budgets)
    assert loaded.priors == simulated_fit.priors
    check_refusals(path, tmp_path, array="_budgets_used", setting="shape", bad_value="cubic")
    check_html_escapes_file_text(path, tmp_path, capsys)


def test_html_shows_the_exponents_and_verdict(simulated_fit):
    text = simulated_fit._repr_html_()
    a = simulated_fit.exponents()["a"]
    assert "IsoFLOP fit" in text and f"{a['median']:.4g}" in text and "5 of 5 used" in text
    assert "diagnostics" in text and len(text) < 6000


def test_priors_are_checked_by_name_and_support():
    runs = simulate_isoflop(0)
    names = r"\['a', 'x_center', 'tau', 'log_curvature', 'skew', 'sigma', 'nu'\]"
    with pytest.raises(bs.PriorError, match=rf"'alpha', not a parameter of this model; parameters: {names}"):
        fit_isoflop(runs, priors={"alpha": bs.Prior("Normal", mu=0.5, sigma=0.1)}, **QUICK)
    with pytest.raises(bs.PriorError, match="'skew', not a parameter"):  # the parabola has no skew
        fit_isoflop(runs, shape="parabola", priors={"skew": bs.Prior("Normal", mu=0, sigma=1)}, **QUICK)
    with pytest.raises(bs.PriorError, match="'nu', not a parameter"):
        fit_isoflop(runs, likelihood="normal", priors={"nu": bs.Prior("Gamma", alpha=2, beta=1)}, **QUICK)
    with pytest.raises(bs.PriorError, match="prior of 'sigma' must be on positive values"):
        fit_isoflop(runs, priors={"sigma": bs.Prior("Normal", mu=0.05, sigma=0.01)}, **QUICK)
    with pytest.raises(bs.PriorError, match=r"prior of 'log_loss_opt' cannot be given: .*best run"):
        fit_isoflop(runs, priors={"log_loss_opt": bs.Prior("Normal", mu=1, sigma=1)}, **QUICK)
    assert list(default_priors("normal", "parabola")) == ["a", "x_center", "tau", "log_curvature", "sigma"]


@pytest.mark.filterwarnings("ignore::bayescale.FitWarning")  # tiny fits: diagnostics not under test
def test_a_prior_given_moves_the_posterior_and_is_saved(tmp_path):
    """A tight prior on a pulls its posterior there; the fit keeps it, saved and loaded; a file
    saved before the priors were (no priors setting) loads with the defaults."""
    tight = bs.Prior("Normal", mu=0.3, sigma=0.002)  # the simulated profiles have a = 0.45
    fit = fit_isoflop(
        simulate_isoflop(seed=4),
        priors={"a": {"distribution": "Normal", "mu": 0.3, "sigma": 0.002}},
        random_seed=1,
        **quick(draws=100, tune=100),
    )
    assert float(fit.posterior["a"].mean()) == pytest.approx(0.3, abs=0.01)
    assert fit.priors == {**{n: p.prior for n, p in default_priors().items()}, "a": tight}
    loaded, path = round_trip(fit, tmp_path)
    assert loaded.priors == fit.priors
    old = bs.load_fit(without_setting(path, tmp_path, "priors"))
    assert old.priors == {n: p.prior for n, p in default_priors().items()}


@pytest.mark.slow
def test_porian_final_setting_contains_published_exponent():
    """Porian et al. 2024, RefinedWeb final setting: a = 0.497 (80% bootstrap 0.493-0.502), and the
    fit converges (0 divergences, r_hat <= 1.01, bulk ESS >= 400 on every sampled parameter)."""
    fit = fit_isoflop("porian-isoflop", group=PORIAN_FINAL, random_seed=1, progressbar=False)
    a = fit.exponents(prob=0.9)["a"]
    assert a["lower"] < 0.497 < a["upper"]
    assert a["upper"] - a["lower"] < 0.05
    assert fit.budgets["used"].all() and len(fit.budgets) == 12
    assert fit.diagnostics["ok"], fit.diagnostics["problems"]


def test_cli_isoflop_json(tmp_path, capsys):
    import json

    from bayescale.cli import main

    path = tmp_path / "runs.csv"
    simulate_isoflop(seed=2, jitter=0.03).to_csv(path, index=False)
    saved = tmp_path / "iso.nc"
    args = ["isoflop", str(path), "--compute", "1e21", "--json", "--seed", "1", "--out", str(saved)]
    assert main([*args, "--draws", "100", "--tune", "150", "--chains", "1"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload["a"]) == {"median", "lower", "upper"}
    assert payload["b"]["median"] == pytest.approx(1 - payload["a"]["median"])
    assert len(payload["budgets"]) == 5
    assert set(payload["optimum"]["intervals"]["params"]) == {"median", "lower", "upper"}
    assert payload["saved_to"] == str(saved)
    # fitted once, asked later: the saved fit gives the same summary and the same optimum
    assert main(["summary", str(saved), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["a"] == payload["a"] and again["budgets"] == payload["budgets"]
    assert main(["plan", str(saved), "--compute", "1e21", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["params"] == payload["optimum"]["intervals"]["params"]
    assert main(["predict", str(saved), "--params", "1e9", "--tokens", "2e10"]) == 2
    assert "holds an IsoFLOP fit" in capsys.readouterr().err
    assert main(["plan", str(saved), "--compute", "1e21", "--unique-tokens", "1e10"]) == 2
    assert "--unique-tokens needs a parametric fit" in capsys.readouterr().err
    assert main(["isoflop", "porian-isoflop", "--json"]) == 2
    assert "group" in capsys.readouterr().err


def test_near_best_keeps_sizes_around_each_budgets_minimum():
    """Porian et al.'s rule: neighbours by size rank of the best run; unbracketed budgets drop out."""
    from bayescale.methods.isoflop import near_best

    level = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    params = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 1.0, 2.0, 3.0])
    # budget 0: best at size 4 (rank 4 of 5); budget 1: best at its largest size (edge)
    loss = np.array([3.5, 3.2, 3.1, 3.0, 3.05, 2.9, 2.8, 2.7])
    assert near_best(level, params, loss, 1).tolist() == [False, False, True, True, True, False, False, False]
    assert near_best(level, params, loss, 2).tolist()[:5] == [False, True, True, True, True]
    assert near_best(level, params, loss, None).all()
    with pytest.raises(bs.BayescaleError, match="neighbours must be a positive integer"):
        near_best(level, params, loss, 0)


def test_bracketed_drops_budgets_whose_best_is_an_end_size():
    """A budget whose lowest loss is at its smallest or largest size is unbracketed: flagged always,
    left out (``used`` false) only with ``bracketed``; the other budgets keep all their runs."""
    from bayescale.methods.isoflop import bracketed_levels

    level = np.repeat([0, 1, 2, 3, 4], 4)
    params = np.concatenate([np.tile([1e8, 2e8, 3e8, 4e8], 4), [1e8, 2e8, 3e8, 3.1e8]])
    loss = np.concatenate(
        [
            [3.2, 3.1, 3.0, 3.05],  # best at size 3 of 4: bracketed
            [2.9, 2.95, 3.0, 3.1],  # best at the smallest size
            [2.9, 2.8, 2.75, 2.7],  # best at the largest size
            [2.7, 2.6, 2.62, 2.65],  # best at size 2: bracketed
            [2.7, 2.6, 2.5, 2.51],  # best at 3e8, within 10% of the largest (3.1e8)
        ]
    )
    assert bracketed_levels(level, params, loss).tolist() == [True, False, False, True, True]
    assert bracketed_levels(level, params, loss, 0.1).tolist() == [True, False, False, True, False]
    with pytest.raises(bs.BayescaleError, match="size tolerance must be in"):
        bracketed_levels(level, params, loss, 1.0)
    compute = 1e18 * 2.0**level
    frame = pd.DataFrame(
        {"params": params, "tokens": compute / (6 * params), "loss": loss, "compute": compute}
    )
    runs = bs.Runs.from_frame(frame)
    loose = prepare(runs, window=None, bracketed=False)
    assert loose.budgets["bracketed"].tolist() == [True, False, False, True, False]
    assert loose.budgets["used"].all() and not loose.bracketed
    strict = prepare(runs, window=None)  # bracketed by default
    assert strict.bracketed
    assert strict.budgets["used"].tolist() == [True, False, False, True, False]
    assert strict.used.tolist() == np.isin(level, [0, 3]).tolist()
    with pytest.raises(
        bs.RunsError, match="at least 2 budgets with >= 3 model sizes each and a bracketed minimum"
    ):
        prepare(runs.subset(level <= 2), window=None, bracketed=True)


def test_bracketed_fit_names_the_budgets_left_out(tmp_path):
    """One quick fit (compare-methods' Approach 2 row): the first budget's sizes above its optimum
    are not run, so its best run is its largest; ``bracketed`` leaves it out, the row's note names
    it, and a is still recovered from the other four budgets."""
    from bayescale.methods.side_by_side import compare_methods

    runs = simulate_isoflop(seed=3)
    first = runs["compute"] == runs["compute"].min()
    best = runs[first].sort_values("loss")["params"].iloc[0]
    runs = runs[~(first & (runs["params"] > best * 1.01))].reset_index(drop=True)
    assert first.sum() - (runs["compute"] == runs["compute"].min()).sum() == 3  # 4 of 7 sizes left
    # bracketed: the default
    table = compare_methods(runs, 1e21, methods=("isoflop",), random_seed=1, sampler=QUICK["sampler"])
    row = table.iloc[0]
    assert row["note"] == "budgets without a bracketed minimum left out: 1e+18"
    assert row["n_points"] == 4 * 7
    assert row["a_lower"] < true_a() < row["a_upper"]


def test_cli_bracketed_option_and_text():
    from bayescale.cli import build_parser
    from bayescale.cli.render import _budget_unused

    parser = build_parser()
    assert parser.parse_args(["isoflop", "runs.csv"]).bracketed
    assert not parser.parse_args(["isoflop", "runs.csv", "--no-bracketed"]).bracketed
    assert not parser.parse_args(
        ["compare-methods", "gemstones", "--compute", "1e22", "--no-bracketed"]
    ).bracketed
    assert parser.parse_args(["compare-methods", "gemstones", "--compute", "1e22"]).bracketed
    edge = {"used": False, "bracketed": False, "n_in_window": 5}
    assert _budget_unused(edge) == (
        ", not used: lowest loss at (within 10% of) its smallest or largest size (minimum not bracketed)"
    )
    # too few sizes is the reason given first (without the option it is the only reason)
    assert _budget_unused({**edge, "n_in_window": 2}) == ", not used: 2 size(s) in the window < 3"
    assert _budget_unused({**edge, "used": True}) == ""
