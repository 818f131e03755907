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
from bayescale.methods.downstream import AUTO_LINKS, Downstream, link_table
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


#: A sigmoid whose midpoint moves 0.1 nats per e-fold of N: at 4e9 parameters, 0.14 past its 1e9 place.
TRUE_SIZE_SIGMOID = {"floor": 0.25, "headroom": 0.9, "k": 4.0, "x0": 3.0, "shift": 0.1}


def test_size_sigmoid_moves_its_midpoint_with_model_size():
    theta = {"floor": 0.25, "headroom": 0.8, "k": 6.0, "x0": 1.0}
    x = np.linspace(0.4, 2.0, 9)
    at_pivot = link_mean("link-sigmoid-size", {**theta, "shift": 0.2}, x, 1e9)
    np.testing.assert_allclose(at_pivot, link_mean("link-sigmoid", theta, x), rtol=1e-12)
    # e times larger: the same accuracy 0.2 further along the loss (a higher score at the same loss).
    bigger = link_mean("link-sigmoid-size", {**theta, "shift": 0.2}, x + 0.2, 1e9 * np.e)
    np.testing.assert_allclose(bigger, at_pivot, rtol=1e-12)
    with pytest.raises(bs.BayescaleError, match="reads the model size: give the queries' params"):
        from bayescale.questions.downstream import link_draws

        fit = _hand_built(
            get_link("link-sigmoid-size"),
            link_table(simulate_chain(1).assign(error=0.5), "error", "loss"),
            {**TRUE_SIZE_SIGMOID, "sigma": 0.01},
            0.002,
            1,
        )
        link_draws(fit, np.full((1, 400, 1), 3.0), np.random.default_rng(0))


def test_links_are_not_loss_laws_and_take_the_fast_path():
    from bayescale.model.jax_density import unsupported

    assert not {"link-exponential", "link-sigmoid", "link-sigmoid-size"} & set(bs.list_laws())
    for name in ("link-exponential", "link-sigmoid", "link-sigmoid-size"):
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


#: A Kaplan law near the simulated ladder's: the hand-built loss fit's variant law, so that answers
#: beyond its runs blend without sampling one.
NEAR_KAPLAN = {"E": 1.8, "N_c": 5e7, "D_c": 1e9, "alpha_N": 0.34, "alpha_D": 0.37, "sigma": 0.01}


@pytest.fixture(scope="module")
def hand_chain():
    ladder = simulate_chain(0)
    loss_fit = _hand_built(bs.get_law("chinchilla-tied"), ladder, {**TRUE_TIED, "sigma": 0.01}, 0.002, 1)
    loss_fit._variants[loss_fit.variant_law] = _hand_built(
        bs.get_law("kaplan-e"), ladder, NEAR_KAPLAN, 0.002, 2
    )
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
    # Step 1's law alone: its noise is known exactly (beyond the runs the default blends in the variant).
    draws = hand_chain.predict_draws(*HELD_OUT, random_seed=3, average_beyond=False)
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


def test_step_one_answers_as_fit_predict_does(hand_chain):
    """Step 1 is the loss fit's own predictive answer (same code, same default: blended beyond the runs)."""
    params, tokens = [3e8, 4e9], [6e9, 8e10]  # inside the ladder, then 4x beyond its largest run
    chained = hand_chain.predict(params, tokens, random_seed=4)
    own = hand_chain.loss_fit.predict(params, tokens, random_seed=4)
    for side in ("median", "lower", "upper"):
        np.testing.assert_array_equal(chained[f"loss_{side}"], own[f"loss_predictive_{side}"])
    alone = hand_chain.predict(params, tokens, random_seed=4, average_beyond=False)
    np.testing.assert_array_equal(
        alone.loss_upper,
        hand_chain.loss_fit.predict(params, tokens, random_seed=4, average_beyond=False)[
            "loss_predictive_upper"
        ],
    )
    # Inside the runs the two agree; beyond them the blend with the variant law widens step 1 and the task.
    width = {k: (t.loss_upper - t.loss_lower).to_numpy() for k, t in (("blend", chained), ("alone", alone))}
    assert width["blend"][0] == pytest.approx(width["alone"][0], rel=1e-12)
    assert width["blend"][1] > 1.2 * width["alone"][1]
    assert (chained.a_upper - chained.a_lower).iloc[1] > (alone.a_upper - alone.a_lower).iloc[1]


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


def test_a_task_scored_the_other_way_answers_one_minus_its_link(hand_chain):
    """An error link for a task whose column is an accuracy: the answer is 1 - the error, bounds swapped."""
    as_accuracy = Downstream(hand_chain.loss_fit, hand_chain.link_fits, scores={"a": "accuracy"})
    error = hand_chain.predict(*HELD_OUT, random_seed=2).iloc[0]
    accuracy = as_accuracy.predict(*HELD_OUT, random_seed=2).iloc[0]
    assert accuracy["a_median"] == pytest.approx(1 - error["a_median"], rel=1e-9)
    assert accuracy["a_lower"] == pytest.approx(1 - error["a_upper"], rel=1e-9)
    assert accuracy["b_median"] == pytest.approx(error["b_median"], rel=1e-12)
    assert as_accuracy.links().loc["a", "score"] == "accuracy"
    assert as_accuracy.links().loc["b", "chosen_by"] == "given"


def test_fit_downstream_refuses_a_bad_score_or_fix():
    ladder = simulate_chain(4)
    with pytest.raises(bs.RunsError, match="score must be 'error' or 'accuracy', got 'acc'"):
        bs.fit_downstream(ladder, ["error"], "loss", score="acc")  # type: ignore[arg-type]
    with pytest.raises(
        bs.RunsError, match=r"link_fix of 'error' names \['eta'\], which no candidate link has"
    ):
        bs.fit_downstream(
            ladder, ["error"], "loss", link_fix={"error": {"eta": 1.0}}, sampler={"draws": 50, "tune": 50},
            warn=False,
        )  # fmt: skip


#: A sigmoid in the simulated ladder's loss (2.4-4.2 nats): from chance (0.25) to 0.925, halfway at 3.
TRUE_SIGMOID = {"floor": 0.25, "headroom": 0.9, "k": 12.0, "x0": 3.0}


def test_auto_link_chooses_the_true_sigmoid_by_loo():
    """Accuracy drawn through a sigmoid: ``link="auto"`` keeps a sigmoid holding it, and says so.

    The sigmoid whose midpoint moves with size holds the plain one (``shift = 0``), so LOO may take
    either; both must beat the exponential and the ceiling held at 1 by more than twice the se.
    """
    ladder = simulate_chain(5, link="link-sigmoid", link_truth=TRUE_SIGMOID).rename(columns={"error": "acc"})
    model = bs.fit_downstream(ladder, ["acc"], "loss", chance=0.25, sampler=CHEAP, random_seed=1, warn=False)
    links, choice = model.links(), model.choice.loc["acc"]
    assert links.loc["acc", "score"] == "accuracy"  # read from the ladder: it falls as the loss rises
    link = links.loc["acc", "link"]
    assert link in ("sigmoid", "sigmoid, midpoint with size") and links.loc["acc", "chosen_by"] == "LOO"
    assert len(choice) == 4 and choice.index[0] == link
    wrong = choice.loc[["exponential", "sigmoid, ceiling 1"]]
    assert (wrong.elpd_diff > 2 * wrong.dse).all(), choice
    assert model.link_fits["acc"].posterior["floor"].values.min() == 0.25  # chance held the floor
    assert f"acc: {link} (LOO over 4" in repr(model)
    summary = model.summary()
    assert set(summary.loc["link:acc", "link"]) == {link}
    for name, value in TRUE_SIGMOID.items():
        assert summary.loc[("link:acc", name), "lower"] <= value <= summary.loc[("link:acc", name), "upper"]
    if "shift" in summary.loc["link:acc"].index:
        assert (
            summary.loc[("link:acc", "shift"), "lower"] <= 0.0 <= summary.loc[("link:acc", "shift"), "upper"]
        )
    row = model.predict(*HELD_OUT, random_seed=1).iloc[0]
    assert 0.25 < row["acc_lower"] < row["acc_median"] < row["acc_upper"] <= 1.0
    # Another candidate on request: the same loss fit, the LOO table kept.
    other = model.with_links({"acc": "exponential"})
    assert other.links().loc["acc", "law"] == "link-exponential" and other.loss_fit is model.loss_fit
    assert other.links().loc["acc", "chosen_by"] == "given"
    assert other.links().loc["acc", "elpd_margin"] == -choice.loc["exponential", "elpd_diff"] < 0
    with pytest.raises(bs.BayescaleError, match="task 'acc' has no candidate link 'probit'"):
        model.with_links({"acc": "probit"})


@pytest.mark.slow
def test_auto_link_chooses_the_true_exponential_by_loo():
    """Error drawn through Gadre's exponential: ``link="auto"`` keeps it, and answers in the column's terms.

    Four cheap fits (a loss law, three links): about 60 s at load 1.5, hence slow.
    """
    ladder = simulate_chain(4)
    model = bs.fit_downstream(
        ladder.assign(acc=1 - ladder.error), ["acc"], "loss", score="accuracy", sampler=CHEAP, random_seed=1,
        warn=False,
    )  # fmt: skip
    links = model.links()
    assert links.loc["acc", "link"] == "exponential" and links.loc["acc", "elpd_margin"] > 0
    assert model.link_fits["acc"].law.target == "error"  # fitted to 1 - accuracy
    row = model.predict(*HELD_OUT, random_seed=1).iloc[0]
    truth = 1 - simulate_chain(10_004, *HELD_OUT).error.iloc[0]
    assert row["acc_lower"] <= truth <= row["acc_upper"]


def test_downstream_report_renders_the_links_the_figure_and_the_held_out_runs(hand_chain, tmp_path):
    """The report of a two-task chain: links, diagnostics, forecasts, held-out runs scored, one figure."""
    import re

    import matplotlib

    matplotlib.use("Agg")
    from bayescale import report

    held = simulate_chain(7, [2e9, 4e9], [4e10, 8e10]).rename(columns={"error": "a"})
    queries = pd.DataFrame({"params": [4e9], "tokens": [8e10]})
    text = report.build_downstream_report(hand_chain, held_out=held, queries=queries, random_seed=1)
    assert (
        "<script" not in text
        and len(re.findall(r'<img [^>]*src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}"', text)) == 1
    )
    assert '<td class="l">a</td><td>error</td><td>link-exponential</td><td>given</td>' in text
    # The held-out runs are counted against the same intervals predict gives.
    table = hand_chain.predict(held.params, held.tokens, random_seed=1)
    inside = int(((table.a_lower <= held.a) & (held.a <= table.a_upper)).sum())
    assert f'<td class="l">a</td><td>2</td><td>{inside}/2</td>' in text
    forecast = hand_chain.predict(4e9, 8e10, random_seed=1).iloc[0]
    assert (
        f"<td>{report.number(forecast['a_median'])}<br><small>[{report.number(forecast['a_lower'])}" in text
    )
    assert "<h2>Which tasks scale predictably</h2>" in text
    path = bs.write_downstream_report(hand_chain, tmp_path / "ds.html")
    assert path.read_text().startswith("<!DOCTYPE html>") and "Held-out runs" not in path.read_text()
    with pytest.raises(bs.BayescaleError, match=r"folder .* does not exist"):
        bs.write_downstream_report(hand_chain, tmp_path / "no" / "ds.html")


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
    table = size_backtest(
        ladder, ["error", "broken"], "loss", link="link-exponential", random_seed=4, sampler=CHEAP, warn=False
    )
    assert table.attrs["held_out_params"] == ladder.params.max()
    assert list(table.index) == ["error", "broken"] and (table.targets == largest.sum()).all()
    assert table.loc["error", "backtest_ok"] and table.loc["error", "misses"] <= 1
    assert table.loc["broken", "backtest_missed"] and not table.loc["broken", "backtest_ok"]
    assert table.loc["broken", "mae"] > 3 * table.loc["error", "mae"]
    with pytest.raises(ValueError, match="needs rows below the largest size"):
        size_backtest(ladder[largest], ["error"], "loss")


@pytest.mark.slow
def test_chained_interval_covers_runs_whose_link_moves_with_size():
    """30 ladders drawn through a size-moving sigmoid: its chain covers the 4x larger run 80-98% of the time.

    Two cheap fits per ladder; about 20 minutes at load 15, hence slow. The plain sigmoid, fitted to the
    same ladders, is biased at the held-out size (the runs' score rises with N at the same loss).
    """
    table = chained_coverage(
        range(200, 230), sampler=CHEAP, link="link-sigmoid-size", link_truth=TRUE_SIZE_SIGMOID
    )
    assert 0.8 <= table["error_covered"].mean() <= 0.98
    assert 0.8 <= table["loss_covered"].mean() <= 0.98


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
    frame.assign(small=frame.params < 5e8, largest=frame.params == frame.params.max()).to_csv(
        path, index=False
    )
    argv = ["downstream", str(path), "--input-loss", "loss", "--task", "error", "--params", "4e9"]
    argv += ["--tokens", "8e10", "--draws", "100", "--tune", "150", "--chains", "1", "--seed", "1", "--json"]
    page = tmp_path / "ds.html"
    assert main([*argv, "--held-out-rows", "largest", "--report", str(page)]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["report"] == str(page)
    assert "<h2>Held-out runs</h2>" in page.read_text() and "data:image/png;base64," in page.read_text()
    assert main([*argv, "--report", str(tmp_path)]) == 2  # refused before any fit
    err = capsys.readouterr().err
    assert "cannot write the report" in err and "is a folder" in err
    assert payload["loss_unit"] == "nats_per_token"
    answer = payload["answers"]["error"]
    assert answer["lower"] < answer["median"] < answer["upper"]
    assert payload["diagnostics"][0]["task"] == "error"
    # The default link is chosen by LOO among three, and the output says which and by how much.
    (link,) = payload["links"]
    assert link["task"] == "error" and link["chosen_by"] == "LOO" and link["candidates"] == 4
    assert link["score"] == "error" and link["link"] in AUTO_LINKS
    # An explicit link is still possible, and the text says it was given; --save keeps both steps.
    saved = tmp_path / "ds.nc"
    assert main([*argv[:-1], "--link", "link-exponential", "--save", str(saved)]) == 0
    out = capsys.readouterr().out
    assert "chosen_by" in out and "link-exponential" in out and "given" in out
    assert f"saved to {saved}" in out
    with warnings.catch_warnings():  # 100 draws of one chain miss the ESS target, which load repeats
        warnings.simplefilter("ignore", FitWarning)
        loaded = bs.load_fit(saved)
    assert isinstance(loaded, Downstream) and loaded.tasks == ["error"]
    assert loaded.loss_fit.variant_fit() is not None  # saved with it: answers beyond the runs refit nothing
    # `bayescale report` reads a saved downstream fit; the loss-fit commands refuse it, naming what it is.
    page = tmp_path / "saved.html"
    assert main(["report", str(saved), "--out", str(page)]) == 0
    assert "<h2>Which tasks scale predictably</h2>" in page.read_text()
    capsys.readouterr()
    assert main(["predict", str(saved), "--params", "1e9", "--tokens", "2e10"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "holds a downstream fit" in err and "Traceback" not in err
    assert main(["report", str(saved), "--out", str(page), "--compute", "1e21"]) == 2
    assert "--compute ask a loss fit's questions" in capsys.readouterr().err
    assert main([*argv[:-1], "--save", str(tmp_path / "no" / "ds.nc")]) == 2  # refused before any fit
    assert "cannot save the downstream fit: folder" in capsys.readouterr().err
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
