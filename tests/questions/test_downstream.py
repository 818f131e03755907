"""Downstream accuracy: the link laws, the chain through two fits, per-task diagnostics."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import hand_built_fit

import bayescale as bs
from bayescale.checks.downstream import (
    HELD_OUT,
    TRUE_EXPONENTIAL,
    TRUE_TIED,
    chained_coverage,
    link_mean,
    simulate_chain,
)
from bayescale.inference.diagnostics import FitWarning
from bayescale.methods.downstream import Downstream, link_table
from bayescale.model.laws.downstream import LINK_COVARIATE, get_link
from bayescale.questions.downstream import chained_draws, task_diagnostics

CHEAP = {"draws": 300, "tune": 400, "chains": 2}

# ------------------------------------------------------------------ the laws, exactly


def test_tied_law_is_gadres_loss_law():
    """Gadre's RedPajama fit (a, beta, b, E) predicts 2.519827 for the 1.4B at M = 640 (published)."""
    a, beta, b, e = 166.21098002823203, 366.68716263632405, -0.2728507008774562, 1.8366483654949728
    n, m = 1439795200.0, 640.0
    theta = {"E": e, "A": a, "B": beta * 6 ** (b / 2), "alpha": -b}
    assert bs.get_law("chinchilla-tied").loss(theta, n, m * n) == pytest.approx(2.519827, abs=2e-6)


def test_exponential_link_is_gadres_error_law():
    """Gadre's RedPajama error law at the true loss 2.502054 gives 0.487838 (the anchor's refit)."""
    theta = {"k": 2.2064900054924528, "gamma": 0.7145905364625158, "eps": 0.8569919305544905}
    assert link_mean("link-exponential", theta, 2.502054) == pytest.approx(0.487838, abs=2e-6)


def test_sigmoid_link_has_floor_ceiling_and_midpoint():
    theta = {"floor": 0.25, "headroom": 0.8, "k": 6.0, "x0": 1.0}
    acc = link_mean("link-sigmoid", theta, [0.01, 1.0, 30.0])
    ceiling = 0.25 + 0.75 * 0.8
    assert acc[0] == pytest.approx(ceiling, rel=1e-2)
    assert acc[1] == pytest.approx((0.25 + ceiling) / 2, rel=1e-12)
    assert acc[2] == pytest.approx(0.25, rel=1e-9)
    assert np.all(np.diff(link_mean("link-sigmoid", theta, np.linspace(0.2, 3, 20))) < 0)


def test_links_are_not_loss_laws_and_take_the_fast_path():
    from bayescale.model.jax_density import unsupported

    assert not {"link-exponential", "link-sigmoid"} & set(bs.list_laws())
    for name in ("link-exponential", "link-sigmoid"):
        law = get_link(name)
        assert unsupported(law, law.default_priors(), "normal") is None
    with pytest.raises(bs.LawError, match="unknown link 'logistic'"):
        get_link("logistic")


# ------------------------------------------------------------------ errors


def test_link_table_refuses_bad_targets_and_missing_columns():
    frame = pd.DataFrame({"params": [1e8, 2e8], "tokens": [2e9, 4e9], "val": [3.1, 3.0], "acc": [0.3, 0.0]})
    with pytest.raises(bs.RunsError, match=r"column 'acc' row 1: 0 is not an error or accuracy in \(0, 1\]"):
        link_table(frame, "acc", "val")
    with pytest.raises(bs.RunsError, match="target column 'err' is not in the runs"):
        link_table(frame, "err", "val")
    with pytest.raises(bs.RunsError, match="input loss column 'loss' is not in the runs"):
        link_table(frame.assign(acc=0.4), "acc", "loss")
    table = link_table(frame.assign(acc=0.4), "acc", "val")
    assert list(table["loss"]) == [0.4, 0.4] and list(table[LINK_COVARIATE]) == [3.1, 3.0]


def test_chaining_needs_a_link_fit(quick_fit):
    with pytest.raises(bs.BayescaleError, match="second step must be a link fit"):
        chained_draws(quick_fit, {"task": quick_fit}, 1e9, 2e10)
    with pytest.raises(bs.BayescaleError, match="at least one link fit"):
        chained_draws(quick_fit, {}, 1e9, 2e10)


# ------------------------------------------------------------------ the chain on hand-built posteriors


def _hand_built(law, runs, center, rel_sd, seed, draws=400):
    """A Fit with iid draws ``center * exp(rel_sd z)`` (conftest's helper, which takes a law object)."""
    return hand_built_fit(law, runs, center, rel_sd=rel_sd, draws=draws, seed=seed)


@pytest.fixture(scope="module")
def hand_chain():
    ladder = simulate_chain(0)
    loss_fit = _hand_built(bs.get_law("chinchilla-tied"), ladder, {**TRUE_TIED, "sigma": 0.01}, 0.002, 1)
    links = {
        name: _hand_built(
            get_link("link-exponential"), link_table(ladder, "error", "loss"), center, 0.002, seed
        )
        for seed, (name, center) in enumerate(
            [
                ("a", {**TRUE_EXPONENTIAL, "sigma": 0.01}),
                ("b", {"eps": 0.7, "k": 1.5, "gamma": 0.6, "sigma": 0.02}),
            ]
        )
    }
    return Downstream(loss_fit, links)


def test_chained_draws_carry_both_steps_noise(hand_chain):
    draws = hand_chain.predict_draws(*HELD_OUT, random_seed=3)
    loss = draws["loss"].values
    mean_loss = bs.get_law("chinchilla-tied").loss(TRUE_TIED, *HELD_OUT)
    # Step 1's predictive spread is its sigma (1% on log loss), not the posterior's 0.2%.
    assert np.std(np.log(loss)) == pytest.approx(0.01, rel=0.1)
    assert np.median(loss) == pytest.approx(mean_loss, rel=2e-3)
    # Each task's draw is its link at that very loss draw, times the link's own noise.
    ratio = np.log(draws["a"].values / link_mean("link-exponential", TRUE_EXPONENTIAL, loss))
    assert np.std(ratio) == pytest.approx(0.01, rel=0.15)
    assert abs(np.corrcoef(ratio.ravel(), np.log(loss).ravel())[0, 1]) < 0.1
    # The average is the tasks' mean draw by draw (one loss draw feeds both).
    np.testing.assert_allclose(draws["average"].values, (draws["a"].values + draws["b"].values) / 2)
    # Without link noise the error would follow the loss draws exactly: the chain propagates step 1.
    spread_from_loss = np.std(np.log(link_mean("link-exponential", TRUE_EXPONENTIAL, loss)))
    assert np.std(np.log(draws["a"].values)) == pytest.approx(np.hypot(spread_from_loss, 0.01), rel=0.1)


def test_chain_refuses_a_link_on_another_loss_unit(hand_chain):
    link = hand_chain.link_fits["a"]
    link.input_loss_unit = "bits_per_byte"
    try:
        with pytest.raises(
            bs.BayescaleError, match="reads a loss in bits per byte, but the loss fit's loss is in nats"
        ):
            hand_chain.predict(*HELD_OUT)
    finally:
        del link.input_loss_unit


def test_link_predict_at_known_losses(hand_chain):
    """Step 2 alone at measured losses: the link's mean inside a band of its own noise's width."""
    from bayescale.questions.downstream import link_predict

    link = hand_chain.link_fits["a"]
    table = link_predict(link, [2.4, 3.0], prob=0.9, random_seed=1)
    assert list(table.columns) == ["input_loss", "error_median", "error_lower", "error_upper"]
    truth = link_mean("link-exponential", TRUE_EXPONENTIAL, [2.4, 3.0])
    np.testing.assert_allclose(table.error_median, truth, rtol=3e-3)
    # The band adds the link's 1% noise on log error (2 x 1.645 x 1% wide) to its mean's spread.
    mean_only = link_predict(link, [2.4, 3.0], random_seed=1, predictive=False)
    spread = np.log(mean_only.error_upper / mean_only.error_lower)
    assert (spread < 0.03).all()
    width = np.log(table.error_upper / table.error_lower)
    np.testing.assert_allclose(width, np.hypot(spread, 2 * 1.645 * 0.01), rtol=0.1)
    with pytest.raises(bs.BayescaleError, match="input losses must be finite and > 0"):
        link_predict(link, [2.4, -1.0])


def test_fit_downstream_states_the_input_unit():
    from bayescale.methods.downstream import input_unit

    assert input_unit("arc_bpb", None) == "bits_per_byte"
    assert input_unit("loss_c4_val", None) == "nats_per_token"
    with pytest.raises(bs.RunsError, match="'arc_bpb' is named as bits per byte"):
        input_unit("arc_bpb", "nats_per_token")


def test_predict_table_and_seed(hand_chain):
    table = hand_chain.predict([1e9, 4e9], [2e10, 8e10], prob=0.8, random_seed=5)
    assert list(table.columns[:2]) == ["params", "tokens"]
    for name in ("loss", "a", "b", "average"):
        assert (table[f"{name}_lower"] < table[f"{name}_median"]).all()
        assert (table[f"{name}_median"] < table[f"{name}_upper"]).all()
    assert table["a_median"].iloc[1] < table["a_median"].iloc[0]  # a bigger run errs less
    assert table.attrs["loss_unit"] == "nats_per_token"
    again = hand_chain.predict([1e9, 4e9], [2e10, 8e10], prob=0.8, random_seed=5)
    pd.testing.assert_frame_equal(table, again)


def _link_fit_on(x, y, center, seed=0):
    frame = pd.DataFrame({"params": np.geomspace(1e8, 1e9, len(x)), "tokens": 2e10, "val": x, "err": y})
    return _hand_built(get_link("link-exponential"), link_table(frame, "err", "val"), center, 0.002, seed)


def test_diagnostics_flag_flat_noisy_and_non_monotone_tasks():
    x = np.linspace(2.4, 3.6, 8)
    rng = np.random.default_rng(0)
    good = link_mean("link-exponential", TRUE_EXPONENTIAL, x)
    flat_center = {"eps": 0.75, "k": 0.01, "gamma": 0.7, "sigma": 0.005}
    fits = {
        "good": _link_fit_on(x, good * np.exp(rng.normal(0, 0.005, 8)), {**TRUE_EXPONENTIAL, "sigma": 0.005}),
        "flat": _link_fit_on(x, 0.75 + 0.002 * rng.standard_normal(8), flat_center),
        "noisy": _link_fit_on(x, good[::-1], {**TRUE_EXPONENTIAL, "sigma": 0.2}),
    }
    table = task_diagnostics(fits)
    assert table.loc["good", "predictable"]
    assert table.loc["flat", "flat"] and not table.loc["flat", "predictable"]
    assert table.loc["noisy", "noisy"] and table.loc["noisy", "non_monotone"]
    assert table.loc["noisy", "monotone_rho"] == pytest.approx(-1.0)


def test_compare_links_scores_accuracy_and_error_links_on_one_scale():
    """Accuracy drawn through a sigmoid: the true sigmoid beats the best exponential and a shifted sigmoid."""
    from scipy import stats
    from scipy.optimize import curve_fit

    from bayescale.questions.downstream import accuracy_log_likelihood, compare_links

    truth = {"floor": 0.25, "headroom": 1.0, "k": 8.0, "x0": 0.9}
    x = np.linspace(0.75, 1.5, 40)
    rng = np.random.default_rng(5)
    acc = link_mean("link-sigmoid", truth, x) * np.exp(rng.normal(0, 0.01, x.size))
    frame = pd.DataFrame({"params": np.geomspace(1e8, 1e9, x.size), "tokens": 2e10, "x": x, "acc": acc})
    on_acc = link_table(frame, "acc", "x")
    on_err = link_table(frame.assign(err=1 - acc), "err", "x")

    def exponential(v, eps, k, gamma):
        return eps - k * np.exp(-gamma * v)

    q, _ = curve_fit(exponential, x, 1 - acc, p0=[0.8, 2.0, 1.0], maxfev=20000)
    spread = float(np.std(np.log((1 - acc) / exponential(x, *q))))
    fits = {
        "sigmoid": _hand_built(get_link("link-sigmoid"), on_acc, {**truth, "sigma": 0.01}, 0.002, 1),
        "shifted": _hand_built(
            get_link("link-sigmoid"), on_acc, {**truth, "x0": 0.93, "sigma": 0.01}, 0.002, 2
        ),
        "exponential": _hand_built(
            get_link("link-exponential"),
            on_err,
            dict(zip(("eps", "k", "gamma"), q, strict=True)) | {"sigma": spread},
            0.002,
            3,
        ),
    }
    table = compare_links(fits)
    assert table.index[0] == "sigmoid" and table.loc["sigmoid", "elpd_diff"] == 0.0
    assert (table.drop(index="sigmoid").elpd_diff > 2 * table.drop(index="sigmoid").dse).all()
    assert table.weight.sum() == pytest.approx(1.0)
    # The error link's density of the accuracy: normal on log error, less log error (the Jacobian).
    fit = fits["exponential"]
    ll = accuracy_log_likelihood(fit).isel(chain=0, draw=0).values
    theta = {k: float(v.isel(chain=0, draw=0)) for k, v in fit.theta().items()}
    mean = exponential(x, theta["eps"], theta["k"], theta["gamma"])
    expected = stats.norm.logpdf(np.log(1 - acc), np.log(mean), theta["sigma"]) - np.log(1 - acc)
    np.testing.assert_allclose(ll, expected, rtol=1e-9)
    with pytest.raises(bs.BayescaleError, match="fitted to different rows"):
        compare_links(
            {"a": fits["sigmoid"], "b": _hand_built(get_link("link-sigmoid"), on_acc[:-1], truth, 0.002, 4)}
        )
    with pytest.raises(bs.BayescaleError, match="at least two link fits"):
        compare_links({"a": fits["sigmoid"]})


# ------------------------------------------------------------------ real fits: recovery and coverage


@pytest.fixture(scope="module")
def recovery_link():
    """A link fitted to error drawn through a known link at 24 observed losses (in bits per byte)."""
    x = np.linspace(2.3, 4.5, 24)
    rng = np.random.default_rng(11)
    y = link_mean("link-exponential", TRUE_EXPONENTIAL, x) * np.exp(rng.normal(0, 0.01, x.size))
    frame = pd.DataFrame({"params": np.geomspace(2e7, 2e9, x.size), "tokens": 4e10, "val_bpb": x, "err": y})
    return bs.fit(
        frame, method="link", target="err", input_loss="val_bpb", random_seed=2, sampler=CHEAP,
        progressbar=False, warn=False,
    )  # fmt: skip


def test_link_recovers_known_parameters_from_a_simulated_chain(recovery_link):
    """The 90% intervals of the link fitted to a known link's draws hold the truth."""
    fit = recovery_link
    assert fit.sampler.backend == "jax"
    summary = fit.summary()
    for name, value in {**TRUE_EXPONENTIAL, "sigma": 0.01}.items():
        assert summary.loc[name, "lower"] <= value <= summary.loc[name, "upper"], name
    assert summary.loc["eps", "median"] == pytest.approx(0.8, abs=0.03)
    assert summary.loc["gamma", "median"] == pytest.approx(0.7, rel=0.25)


def test_a_saved_link_fit_keeps_its_input_unit(tmp_path, recovery_link, hand_chain):
    """Save and load a link fit: the same link, draws and input unit; a chain still checks the unit."""
    assert recovery_link.input_loss_unit == "bits_per_byte"  # read from the column's name
    path = recovery_link.save(tmp_path / "link.nc")
    with warnings.catch_warnings():  # the cheap fit may miss its ESS target, which load repeats
        warnings.simplefilter("ignore", FitWarning)
        loaded = bs.load_fit(path)
    assert loaded.variant_fit() is None  # a link has no second law, saved or refitted
    assert loaded.law is get_link("link-exponential")
    assert loaded.input_loss_unit == "bits_per_byte"
    np.testing.assert_array_equal(loaded.posterior["k"].values, recovery_link.posterior["k"].values)
    with pytest.raises(bs.BayescaleError, match="reads a loss in bits per byte"):
        Downstream(hand_chain.loss_fit, {"a": loaded}).predict(*HELD_OUT)
    # The unit is under the file's hash: an altered one is refused.
    import xarray as xr

    from bayescale.inference import container

    tree = xr.open_datatree(path)
    tree.load()
    tree.close()
    tree["posterior"].attrs["input_loss_unit"] = "nats_per_token"
    altered = tmp_path / "altered.nc"
    altered.write_bytes(container.netcdf_bytes(tree))
    with pytest.raises(bs.FitFileError, match="do not match the recorded hash"):
        bs.load_fit(altered)


def test_chained_interval_covers_held_out_runs():
    """Three simulated ladders, a held-out run 4x beyond each: its loss and error inside the 90% bands."""
    table = chained_coverage([1, 2, 3], sampler=CHEAP)
    assert table["loss_covered"].sum() >= 2 and table["error_covered"].sum() >= 2
    # The band is not vacuous: narrower than the error's whole range over the ladder (0.45-0.66).
    assert ((table["error_upper"] - table["error_lower"]) < 0.1).all()


def test_allowed_misses_is_the_binomial_tail():
    from bayescale.checks.downstream import allowed_misses

    # P(misses > m) <= 10% at a 10% miss rate: 1 of 3 or 4, 2 of 6, 3 of 12.
    assert [allowed_misses(n) for n in (3, 4, 6, 12)] == [1, 1, 2, 3]
    assert allowed_misses(4, prob=0.5) == 3


@pytest.mark.slow
def test_size_backtest_flags_a_task_that_breaks_at_the_largest_size():
    """Leave the largest size out: a task following the chain passes; one whose largest runs jump fails.

    Three cheap fits (a loss, two links): 150 s at load 15, hence slow.
    """
    from bayescale.checks.downstream import size_backtest

    ladder = simulate_chain(21)
    largest = ladder.params == ladder.params.max()
    ladder["broken"] = np.where(largest, ladder.error * 1.2, ladder.error)
    table = size_backtest(ladder, ["error", "broken"], "loss", random_seed=4, sampler=CHEAP, warn=False)
    assert table.attrs["held_out_params"] == ladder.params.max()
    assert list(table.index) == ["error", "broken"] and (table.targets == largest.sum()).all()
    assert table.loc["error", "backtest_ok"] and table.loc["error", "misses"] <= 1
    assert table.loc["broken", "backtest_missed"] and not table.loc["broken", "backtest_ok"]
    assert table.loc["broken", "mae"] > 3 * table.loc["error", "mae"]
    with pytest.raises(ValueError, match="needs rows below the largest size"):
        size_backtest(ladder[largest], ["error"], "loss")


@pytest.mark.slow
def test_chained_interval_coverage_is_nominal():
    """40 simulated ladders: 90% chained intervals cover the held-out error 80-98% of the time."""
    table = chained_coverage(range(100, 140), sampler={"draws": 500, "tune": 500, "chains": 2})
    assert 0.8 <= table["error_covered"].mean() <= 0.98
    assert 0.8 <= table["loss_covered"].mean() <= 0.98


# ------------------------------------------------------------------ the command line


def test_cli_downstream_prints_the_chained_answer(tmp_path, capsys):
    import json

    from bayescale.cli import main

    path = tmp_path / "chain.csv"
    frame = simulate_chain(4)
    frame.assign(small=frame.params < 5e8).to_csv(path, index=False)
    argv = ["downstream", str(path), "--input-loss", "loss", "--task", "error", "--params", "4e9"]
    argv += ["--tokens", "8e10", "--draws", "100", "--tune", "150", "--chains", "1", "--seed", "1", "--json"]
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["loss_unit"] == "nats_per_token"
    answer = payload["answers"]["error"]
    assert answer["lower"] < answer["median"] < answer["upper"]
    assert payload["diagnostics"][0]["task"] == "error"
    assert main([*argv[:-1], "--loss-rows", "params"]) == 2
    assert "rows column 'params' row 0" in capsys.readouterr().err
    assert (
        main(
            [
                "downstream",
                str(path),
                "--input-loss",
                "loss",
                "--task",
                "acc",
                "--params",
                "1e9",
                "--tokens",
                "2e10",
            ]
        )
        == 2
    )
    assert "tasks ['acc'] are not columns of the runs" in capsys.readouterr().err
