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
from bayescale.model.jax_density import build_density, pinned_offsets
from bayescale.model.laws import ops
from bayescale.model.pymc_model import (
    build_model,
    log_likelihood_draws,
    resolve_priors,
    run_basis,
    run_labels,
    with_run_effects,
)

SIGMA_RUN, SIGMA = 0.02, 0.003

# The simulated checkpoints are the law's values at their tokens (no schedule): the data layer's
# warning that checkpoints without an 'lr' column may be mid-decay (tests/data/test_mid_decay.py)
# does not apply to them.
pytestmark = pytest.mark.filterwarnings("ignore:.*no 'lr' column:bayescale.errors.RunsWarning")


def checkpoint_ladder(
    seed: int, sigma_run: float = SIGMA_RUN, sigma: float = SIGMA, copies: int = 2, ratios=(2.5, 80)
) -> pd.DataFrame:
    """``copies`` runs per size, each with 8 checkpoints; one offset per run, small noise per checkpoint.

    A run's checkpoints span ``ratios`` tokens per parameter; with a range per copy (a pair of
    pairs) the runs of one size end at different D, as in a ladder of token multiples.
    """
    rng = np.random.default_rng(seed)
    law = bs.get_law("chinchilla")
    rows = []
    spans = [ratios] * copies if np.ndim(ratios[0]) == 0 else list(ratios)
    for i, n in enumerate(np.geomspace(5e7, 1e9, 6)):
        for copy, span in enumerate(spans):
            offset = rng.normal(0, sigma_run)
            tokens = n * np.geomspace(*span, 8)
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
    assert fit.sampler.backend == "jax"  # the fast path has the offsets
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


def test_checkpoint_fit_takes_the_fast_path(checkpoint_fit):
    assert checkpoint_fit.diagnostics["sampler_path"].startswith("fast path (JAX density)")
    assert "run_effect" in checkpoint_fit.diagnostics["r_hat"]  # the offsets are diagnosed too


@pytest.mark.parametrize("likelihood", ["normal", "student_t"])
def test_jax_density_with_run_offsets_equals_pymc_logp(likelihood):
    law = bs.get_law("chinchilla")
    runs = bs.Runs.from_any(checkpoint_ladder(0))
    free, fixed = resolve_priors(law, likelihood, None, None, run_effects=True)
    model = build_model(law, runs, free, fixed, likelihood)
    density = build_density(law, runs, free, fixed, likelihood)
    assert density.value_names[-1] == "run_effect_z"
    assert sorted(density.value_names) == sorted(v.name for v in model.value_vars)
    runs_count, padded = 12, density.sites[-1].size
    assert padded == 16  # the runs are padded to a bucket, like the rows
    pymc_logp = model.compile_logp()
    rng = np.random.default_rng(0)
    for _ in range(3):
        position = density.initial_point() + rng.normal(0.0, 0.7, density.size)
        point, start = {}, 0
        for site in density.sites:
            values = position[start : start + min(site.size, runs_count)]
            point[site.value_name] = values if site.size > 1 else values[0]
            start += site.size
        # the padding's standard offsets add their standard normal density and nothing else
        padding = position[density.size - padded + runs_count :]
        constant = -0.5 * np.sum(padding**2) - 0.5 * (padded - runs_count) * np.log(2 * np.pi)
        expected = float(pymc_logp(point)) + constant
        assert float(density.logp(position, density.data)) == pytest.approx(expected, rel=1e-9, abs=1e-6)


def test_offsets_are_orthogonal_to_the_runs_design():
    law = bs.get_law("chinchilla")
    # checkpoints at the end of each run (within 5%), the runs of a size ending at different D
    runs = bs.Runs.from_any(checkpoint_ladder(0, ratios=((19, 20), (76, 80))))
    _, index = run_labels(runs)
    basis = run_basis(law, runs, index)
    assert basis.shape == (12, 3)  # 1, log N, log D
    np.testing.assert_allclose(basis.T @ basis, np.eye(3), atol=1e-12)
    z = np.random.default_rng(0).normal(size=(5, 12))
    offsets = z - (z @ basis) @ basis.T
    design = np.column_stack([np.ones(12), np.log(runs.frame.groupby(index)["params"].first())])
    np.testing.assert_allclose(offsets @ design, 0.0, atol=1e-12)
    # every run at one D grid (the Gemstones cooldowns): D's column adds nothing
    same = bs.Runs.from_any(checkpoint_ladder(0))
    assert run_basis(law, same, run_labels(same)[1]).shape == (12, 2)
    # whole curves (8x in D per run): the checkpoints pin the D trend, D is not a run's property
    curves = bs.Runs.from_any(checkpoint_ladder(0, ratios=((2.5, 20), (10, 80))))
    assert run_basis(law, curves, run_labels(curves)[1]).shape == (12, 2)


@pytest.fixture(scope="module")
def no_offset_fit() -> bs.Fit:
    frame = checkpoint_ladder(3, sigma_run=0.0, ratios=((2.5, 20), (10, 80)))
    return bs.fit(frame, law="chinchilla", likelihood="normal", random_seed=2, **QUICK)


def test_zero_offsets_give_a_spread_near_zero_and_the_true_law(no_offset_fit):
    # Non-confounding: with no offsets in the data, the offsets do not take over the law's trend.
    table = no_offset_fit.summary(prob=0.95)
    assert table.loc["sigma_run", "upper"] < 0.2 * SIGMA_RUN, table.loc["sigma_run"]
    for name in ("alpha_N", "alpha_D", "E"):
        truth = TRUE_CHINCHILLA[name]
        assert table.loc[name, "lower"] <= truth <= table.loc[name, "upper"], (name, table.loc[name])
    assert abs(table.loc["alpha_D", "median"] - TRUE_CHINCHILLA["alpha_D"]) < 0.02


@pytest.mark.slow
@pytest.mark.parametrize("sigma_run", [0.0, SIGMA_RUN])
def test_offsets_recovered_without_confounding_over_seeds(sigma_run):
    # 8 simulated ladders each: sigma_run inside its 90% interval (or below 0.004 for zero) and the
    # exponents inside theirs in at least 6 of 8 (binomial(8, 0.9): P(< 6) = 3.8%).
    hits, settings = [], {"draws": 500, "tune": 500, "chains": 4}
    for seed in range(8):
        frame = checkpoint_ladder(100 + seed, sigma_run=sigma_run, ratios=((2.5, 20), (10, 80)))
        fit = bs.fit(
            frame,
            law="chinchilla",
            likelihood="normal",
            random_seed=seed,
            sampler=settings,
            progressbar=False,
            warn=False,
        )
        table = fit.summary(prob=0.9)
        spread = table.loc["sigma_run"]
        ok = spread["upper"] < 0.004 if sigma_run == 0 else spread["lower"] <= sigma_run <= spread["upper"]
        for name in ("alpha_N", "alpha_D"):
            ok = ok and table.loc[name, "lower"] <= TRUE_CHINCHILLA[name] <= table.loc[name, "upper"]
        hits.append(bool(ok))
    assert sum(hits) >= 6, hits


def test_chunked_likelihood_with_run_offsets_equals_whole_one():
    import jax

    from bayescale.model.jax_density import CHUNK

    rng = np.random.default_rng(0)
    n = np.repeat(np.geomspace(5e7, 1e9, 40), 250)
    d = n * np.tile(np.geomspace(2, 80, 250), 40)
    law = bs.get_law("chinchilla")
    loss = law.loss(TRUE_CHINCHILLA, n, d) * np.exp(rng.normal(0, 0.01, n.size))
    frame = pd.DataFrame(
        {"run": np.repeat(np.arange(40), 250).astype(str), "params": n, "tokens": d, "loss": loss}
    )
    free, fixed = resolve_priors(law, "normal", None, None, run_effects=True)
    density = build_density(law, bs.Runs.from_any(frame), free, fixed, "normal")
    assert len(density.data["y"]) > CHUNK
    position = density.initial_point() + rng.normal(0, 0.3, density.size)
    data = jax.tree.map(jax.numpy.asarray, density.data)
    value, grad = jax.value_and_grad(density.logp)(position, data)
    whole, whole_grad = jax.value_and_grad(density.logp_unchunked)(position, data)
    assert float(value) == pytest.approx(float(whole), rel=1e-12)
    np.testing.assert_allclose(grad, whole_grad, rtol=1e-9, atol=1e-8)


def test_a_known_run_continues_with_its_own_offset(checkpoint_fit):
    fit = checkpoint_fit
    frame = fit.runs.frame
    inside, narrower = 0, 0
    for label, rows in frame.groupby("run"):
        own = fit.predict(None, rows["tokens"].to_numpy(), run=label, random_seed=0)
        new = fit.predict(
            rows["params"].to_numpy(), rows["tokens"].to_numpy(), random_seed=0, average_beyond=False
        )
        loss = rows["loss"].to_numpy()
        inside += int(np.sum((own["loss_predictive_lower"] <= loss) & (loss <= own["loss_predictive_upper"])))
        width = own["loss_predictive_upper"] - own["loss_predictive_lower"]
        narrower += int(np.sum(width < 0.5 * (new["loss_predictive_upper"] - new["loss_predictive_lower"])))
    # Offsets of sd 0.02 against checkpoint noise of 0.003: without its own offset a run's
    # checkpoints would fall outside sigma-wide bands; with it, about 90% fall inside.
    assert inside >= 0.8 * len(frame), inside
    assert narrower == len(frame)
    offset = fit.run_offset("run-0-0")
    assert offset.dims == ("chain", "draw")
    with pytest.raises(RunsError, match="unknown run 'nope'"):
        fit.predict(None, [1e10], run="nope")
    with pytest.raises(RunsError, match="run 'run-0-0' has params"):
        fit.predict([1e9], [1e10], run="run-0-0")


def test_ladders_in_one_bucket_of_runs_share_the_programs():
    import jax

    from bayescale.inference.programs import _structure

    law = bs.get_law("chinchilla")
    free, fixed = resolve_priors(law, "normal", None, None, run_effects=True)
    frame = checkpoint_ladder(0)
    fewer = frame[~frame["run"].isin(["run-5-0", "run-5-1"])]  # 10 runs, 80 rows: buckets 16 and 96
    a, b = (build_density(law, bs.Runs.from_any(f), free, fixed, "normal") for f in (frame, fewer))
    assert _structure(a) == _structure(b)
    shapes = [[(x.shape, x.dtype) for x in jax.tree.leaves(d.data)] for d in (a, b)]
    assert shapes[0] == shapes[1]
    assert int(np.sum(b.data["mask"])) == 80


@pytest.mark.parametrize("likelihood", ["normal", "student_t"])
def test_centred_offsets_are_the_same_posterior_in_other_coordinates(likelihood):
    # v = (sigma_run P z - pinned(theta)) / scale + (I - P) z: log p_centred(v) = log p(z)
    # - K log(sigma_run / scale), K = runs - rank (the shift by the offsets the rows pin has unit Jacobian).
    law = bs.get_law("chinchilla")
    runs = bs.Runs.from_any(checkpoint_ladder(0))
    free, fixed = resolve_priors(law, likelihood, None, None, run_effects=True)
    plain = build_density(law, runs, free, fixed, likelihood)
    scale = 0.003
    centred = build_density(law, runs, free, fixed, likelihood, centred_offsets=scale)
    assert centred.sites[-1].transform == "offsets_centred"
    assert centred.value_names[:-1] == plain.value_names[:-1]
    basis, mask = plain.data["run_basis"], plain.data["run_mask"]
    free_dims = 12 - 2  # 12 runs; the design: 1, log N (every run of a size on one D grid)
    assert np.sum(mask) - np.sum(basis**2) == pytest.approx(free_dims)
    sigma_run_at = [s.name for s in plain.sites].index("sigma_run")
    rng = np.random.default_rng(1)
    for _ in range(3):
        position = plain.initial_point() + rng.normal(0.0, 0.7, plain.size)
        tau = float(plain.constrain(position)["sigma_run"])
        z = position[plain.size - plain.sites[-1].size :]
        inside = mask * (z - (z @ basis) @ basis.T)
        moved = position.copy()
        pinned = pinned_offsets(law, plain.constrain(position), plain.data, ops.NUMPY)
        assert np.all(pinned[12:] == 0) and abs(pinned @ basis).max() < 1e-12  # in the offsets' space
        moved[plain.size - plain.sites[-1].size :] = (tau * inside - pinned) / scale + (z - inside)
        expected = float(plain.logp(position, plain.data)) - free_dims * np.log(tau / scale)
        assert float(centred.logp(moved, centred.data)) == pytest.approx(expected, rel=1e-10)
        np.testing.assert_allclose(
            centred.constrain(moved)["run_effect"][:12],
            plain.constrain(position)["run_effect"][:12],
            atol=1e-12,
        )
        assert position[sigma_run_at] == moved[sigma_run_at]


def test_offsets_take_the_form_their_data_call_for():
    from bayescale.inference.run_offsets import offsets_density, pinned_share

    assert pinned_share(np.array([8, 8]), 0.003, 0.02) > 0.95  # 8 rows, noise 7x below the spread
    assert pinned_share(np.array([1, 1]), 0.02, 0.002) < 0.05
    law = bs.get_law("chinchilla")
    for sigma_run, form in ((SIGMA_RUN, "offsets_centred"), (0.0, "offsets")):
        runs = bs.Runs.from_any(checkpoint_ladder(3, sigma_run=sigma_run))
        free, fixed = resolve_priors(law, "normal", None, None, run_effects=True)
        density, laplace = offsets_density(law, runs, run_labels(runs)[1], free, fixed, "normal")
        assert density.sites[-1].transform == form
        assert laplace is not None  # the mode of the form chosen, handed to the sampler
        assert laplace[0].shape == (density.size,)
