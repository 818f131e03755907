"""Training-curve envelope (Approach 1): AR(1) within-run correlation versus independent checkpoints."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import QUICK, TRUE_CHINCHILLA, quick
from saved_results import check_html_escapes_file_text, check_refusals, round_trip, without_setting

import bayescale as bs
from bayescale.methods.envelope import default_priors, fit_envelope


def simulate_curves(seed: int, rho: float = 0.9, sigma: float = 0.004, n_runs: int = 7) -> pd.DataFrame:
    """Curves from the Chinchilla law, each run's residuals an AR(1) series on log loss."""
    rng = np.random.default_rng(seed)
    law = bs.get_law("chinchilla")
    rows = []
    for n in np.geomspace(3e7, 2e9, n_runs):
        tokens = np.geomspace(2e8, 1.5e11, 16)
        eps = np.empty(tokens.size)
        eps[0] = rng.normal(0, sigma / np.sqrt(1 - rho**2))
        for t in range(1, tokens.size):
            eps[t] = rho * eps[t - 1] + rng.normal(0, sigma)
        loss = law.loss(TRUE_CHINCHILLA, n, tokens) * np.exp(eps)
        rows += [
            {"run": f"m{n:.2g}", "params": n, "tokens": d, "loss": lo}
            for d, lo in zip(tokens, loss, strict=True)
        ]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def fits():
    curves = bs.Curves.from_any(simulate_curves(seed=3))
    settings = quick(draws=300, tune=300)
    return {c: fit_envelope(curves, correlation=c, random_seed=2, **settings) for c in ("ar1", "none")}


def test_ignoring_within_run_correlation_is_overconfident(fits):
    width = {c: f.exponents()["a"]["upper"] - f.exponents()["a"]["lower"] for c, f in fits.items()}
    assert width["none"] < width["ar1"]
    rho = fits["ar1"].summary().loc["rho"]
    assert rho.to_dict() == fits["ar1"].to_dict()["rho"]  # the table holds to_dict's intervals
    assert rho["lower"] < 0.9 < rho["upper"] or rho["lower"] > 0.5  # the correlation is detected


def test_envelope_answers_have_intervals(fits):
    fit = fits["ar1"]
    exps = fit.exponents()
    assert exps["b"]["median"] == pytest.approx(1 - exps["a"]["median"])
    row = fit.optimal(1e21).iloc[0]
    assert row["params_lower"] <= row["params_median"] <= row["params_upper"]
    assert row["tokens_median"] * row["params_median"] * 6 == pytest.approx(1e21, rel=1e-6)
    true_a = TRUE_CHINCHILLA["alpha_D"] / (TRUE_CHINCHILLA["alpha_N"] + TRUE_CHINCHILLA["alpha_D"])
    assert abs(exps["a"]["median"] - true_a) < 0.15  # 7 discrete sizes: the envelope is a staircase


@pytest.mark.filterwarnings("ignore::bayescale.FitWarning")  # a cheap fit: its diagnostics are not under test
def test_saved_fit_answers_the_same_and_altered_files_are_refused(fits, tmp_path, capsys):
    fit = fits["ar1"]
    loaded, path = round_trip(fit, tmp_path)
    assert loaded.optimal([1e20, 1e21]).equals(fit.optimal([1e20, 1e21]))
    assert loaded.envelope_draws().equals(fit.envelope_draws())
    assert loaded.grid.equals(fit.grid)
    assert loaded.priors == fit.priors == {n: p.prior for n, p in default_priors("ar1").items()}
    check_refusals(path, tmp_path, array="_grid_compute", setting="correlation", bad_value="ar2")
    capsys.readouterr()
    from bayescale.cli import main

    assert main(["summary", str(path)]) == 0
    assert "training-curve envelope on 7 curves, 112 checkpoints (ar1 residuals)" in capsys.readouterr().out
    assert main(["plan", str(path), "--compute", "1e20", "1e21"]) == 0
    out = capsys.readouterr().out
    assert "compute-optimal model from a training-curve envelope fit" in out and "tokens_per_param" in out
    check_html_escapes_file_text(path, tmp_path, capsys)


def test_html_shows_the_exponents_and_noise(fits):
    text = fits["ar1"]._repr_html_()
    assert "Training-curve envelope" in text and ">rho<" in text and ">a<" in text
    assert "rho" not in fits["none"]._repr_html_()


def test_errors():
    with pytest.raises(bs.BayescaleError, match="unknown correlation"):
        fit_envelope(simulate_curves(0), correlation="ar2", **QUICK)
    with pytest.raises(bs.RunsError, match="at least 3 model sizes"):
        fit_envelope(simulate_curves(0, n_runs=2), **QUICK)


def test_priors_are_checked_by_name_and_by_the_scale_they_are_sampled_on():
    curves = simulate_curves(0)
    with pytest.raises(bs.PriorError, match=r"'G', not a parameter .*\['G_at_ref', 'beta', 'sigma', 'rho'\]"):
        fit_envelope(curves, priors={"G": bs.Prior("LogNormal", mu=0, sigma=1)}, **QUICK)
    with pytest.raises(bs.PriorError, match="'rho', not a parameter"):
        fit_envelope(curves, correlation="none", priors={"rho": bs.Prior("Beta", alpha=2, beta=2)}, **QUICK)
    with pytest.raises(bs.PriorError, match=r"prior of 'E' cannot be given: .*lowest log loss"):
        fit_envelope(curves, priors={"E": bs.Prior("LogNormal", mu=0, sigma=1)}, **QUICK)
    with pytest.raises(bs.PriorError, match=r"prior of 'sigma' must be on \(0, inf\)"):
        fit_envelope(curves, priors={"sigma": bs.Prior("Normal", mu=0.05, sigma=0.01)}, **QUICK)
    with pytest.raises(bs.PriorError, match=r"prior of 'beta' must be on \(0, inf\)"):  # (0, 1) only
        fit_envelope(curves, priors={"beta": bs.Prior("Beta", alpha=2, beta=5)}, **QUICK)
    with pytest.raises(bs.PriorError, match=r"prior of 'rho' must be on \(0, 1\)"):
        fit_envelope(curves, priors={"rho": bs.Prior("Uniform", lower=0.2, upper=0.9)}, **QUICK)


@pytest.mark.parametrize(
    ("name", "prior"),
    [
        ("beta", bs.Prior("LogNormal", mu=-1.0, sigma=0.6)),
        ("beta", bs.Prior("Gamma", alpha=3.0, beta=8.0)),
        ("sigma", bs.Prior("HalfNormal", sigma=0.05)),
        ("sigma", bs.Prior("TruncatedNormal", mu=0.01, sigma=0.02, lower=0.0)),
        ("rho", bs.Prior("Beta", alpha=2.0, beta=2.0)),
        ("rho", bs.Prior("Uniform", lower=0.0, upper=1.0)),
        ("rho", bs.Prior("TruncatedNormal", mu=0.8, sigma=0.2, lower=0.0, upper=1.0)),
    ],
)
def test_prior_on_the_sampled_scale_is_pymcs_transformed_density(name, prior):
    """Each prior's density with the Jacobian of exp (logistic for rho) is PyMC's log density of the
    same prior on its log (log-odds, interval) transform: the envelope's priors are the ones given."""
    import pymc as pm

    from bayescale.model.envelope import _log_scale_density, _logit_scale_density
    from bayescale.model.laws import ops

    with pm.Model() as model:
        prior.create_variable(name)
    (value,) = model.value_vars
    y = np.array([-3.0, -1.2, 0.4])
    logp = model.compile_logp(sum=False)
    expected = np.array([logp({value.name: v})[0] for v in y])
    if name == "rho":
        x = 1 / (1 + np.exp(-y))
        got = _logit_scale_density(prior, x, np.log(x), ops.NUMPY)
    else:
        got = _log_scale_density(prior, np.exp(y), y, ops.NUMPY)
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-6)


def test_lognormal_prior_on_g_is_a_normal_on_log_g():
    """The default LogNormal(-1, 2) on G with the Jacobian is N(-1, 2) on log G, the prior written before."""
    from scipy.stats import norm

    from bayescale.model.envelope import _log_scale_density
    from bayescale.model.laws import ops

    log_g = np.array([-6.0, -1.0, 0.5, 3.0])
    got = _log_scale_density(default_priors()["G_at_ref"].prior, np.exp(log_g), log_g, ops.NUMPY)
    np.testing.assert_allclose(got, norm.logpdf(log_g, -1.0, 2.0), rtol=1e-14)


@pytest.mark.filterwarnings("ignore::bayescale.FitWarning")  # a tiny fit: diagnostics not under test
def test_a_prior_given_moves_the_posterior_is_saved_and_keys_the_laplace_programs(tmp_path):
    """A tight prior on rho far below the simulated 0.9 holds it there; the fit keeps the prior,
    saved and loaded; a file without priors loads with the defaults; the priors key the programs."""
    from bayescale.methods import envelope

    curves = bs.Curves.from_any(simulate_curves(seed=3))
    tight = bs.Prior("Beta", alpha=100.0, beta=400.0)  # mean 0.2, sd 0.018
    fit = fit_envelope(curves, priors={"rho": tight}, random_seed=2, **quick(draws=100, tune=100))
    assert float(fit.posterior["rho"].mean()) < 0.3
    assert fit.priors["rho"] == tight and fit.priors["beta"] == default_priors()["beta"].prior
    loaded, path = round_trip(fit, tmp_path)
    assert loaded.priors == fit.priors
    old = bs.load_fit(without_setting(path, tmp_path, "priors"))
    assert old.priors == {n: p.prior for n, p in default_priors().items()}
    data = envelope.prepare(curves)
    assert envelope._structure(data, "ar1", fit.priors) != envelope._structure(data, "ar1", old.priors)


@pytest.mark.slow  # every method fitted for real (70 s cold); the other compare-methods tests stub the fits
def test_cli_compare_methods_json(tmp_path, capsys):
    """Plumbing: the three approaches on one set of curves, each with a, b and the optimum."""
    import json

    from bayescale.cli import main

    path = tmp_path / "curves.csv"
    simulate_curves(seed=5).to_csv(path, index=False)
    cheap = ["--draws", "100", "--tune", "150", "--chains", "1", "--seed", "1"]
    assert main(["compare-methods", str(path), "--compute", "1e21", "--json", *cheap]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [m["approach"] for m in payload["methods"]] == [1, 2, 3]
    for method in payload["methods"]:
        assert set(method["a"]) == {"median", "lower", "upper"}
        assert set(method["params"]) == {"median", "lower", "upper"}
        assert isinstance(method["n_points"], int)
    # Approach 3 fits the checkpoints as rows of their runs (offsets), not as independent runs
    assert payload["methods"][2]["note"].startswith("checkpoints share their run's offset")


def test_cli_compare_methods_text_prints_counts_as_integers(monkeypatch, capsys):
    """A skipped method (no curves for Approach 1) leaves NaN in the counts; the text stays integer."""
    import bayescale.methods.side_by_side
    from bayescale.cli import main

    iv = {f"{n}_{s}": 0.5 for n in ("a", "b", "params", "tokens") for s in ("median", "lower", "upper")}
    rows = [
        {"method": "envelope", "approach": 1, "note": "needs loss curves (a run column); skipped"},
        {"method": "isoflop", "approach": 2, "n_points": 35, "seconds": 1.0, "diagnostics_ok": True, **iv},
    ]
    table = pd.DataFrame(rows)
    table["note"] = table["note"].fillna("")
    assert table["n_points"].dtype == float  # what pandas makes of the skipped row
    monkeypatch.setattr(bayescale.methods.side_by_side, "compare_methods", lambda *a, **k: table)
    assert main(["compare-methods", "runs.csv", "--compute", "1e21"]) == 0
    out = capsys.readouterr().out
    assert "(35 points" in out and "35.0" not in out


def test_cli_envelope_errors(capsys):
    from bayescale.cli import main

    assert main(["envelope", "chinchilla", "--json"]) == 2
    assert "not loss curves" in capsys.readouterr().err
    assert main(["compare-methods", "chinchilla", "--compute", "1e21", "--methods", "magic"]) == 2
    assert "unknown method" in capsys.readouterr().err


def test_compute_grid_skips_gaps_in_coverage():
    # Three sizes per cluster, two clusters far apart in compute: the grid between them has no run
    # (on the datablations curves this made the envelope fail with a zero-size reduction).
    from bayescale.methods.envelope import MIN_RUNS_AT_COMPUTE, compute_grid, prepare

    rows = []
    for n in (1e7, 1.2e7, 1.4e7, 1e9, 1.2e9, 1.4e9):
        for d in np.geomspace(1e8, 1e9, 5):
            rows.append({"run": f"m{n:.2g}", "params": n, "tokens": d, "loss": 3.0})
    grid = compute_grid(prepare(bs.Curves.from_any(pd.DataFrame(rows))), size=40)
    assert len(grid) > 0
    assert (grid["n_runs"] >= MIN_RUNS_AT_COMPUTE).all()
    log_c = np.log(grid["compute"])
    assert log_c.min() < np.log(6 * 1.4e7 * 1e9) and log_c.max() > np.log(6 * 1e9 * 1e8)


def test_padded_likelihood_equals_the_pointwise_ar1_density():
    """The (run, checkpoint) grid with its mask gives the AR(1) density point by point, whitened or not."""
    import pytensor
    from scipy.stats import norm

    from bayescale.methods.envelope import build_model, prepare

    curves = simulate_curves(seed=1).drop(index=range(9, 16))  # runs of 9 and 16 points: padding used
    data = prepare(bs.Curves.from_any(curves))
    rng = np.random.default_rng(0)
    n_runs = data.grid_y.shape[0]
    x = np.r_[
        rng.normal(0.5, 0.1, n_runs), rng.normal(-1, 0.3, n_runs), rng.normal(-1, 0.2, n_runs), -5.0, 0.7
    ]
    log_e, log_g, beta = x[:n_runs], x[n_runs : 2 * n_runs], np.exp(x[2 * n_runs : 3 * n_runs])
    sigma, rho = np.exp(x[-2]), 1 / (1 + np.exp(-x[-1]))
    u = data.log_tokens - data.log_tokens_ref[data.run]
    resid = data.log_loss - np.logaddexp(log_e[data.run], log_g[data.run] - beta[data.run] * u)
    first = np.r_[True, data.run[1:] != data.run[:-1]]
    innov = np.where(first, resid, resid - rho * np.r_[0.0, resid[:-1]])
    scale = np.where(first, sigma / np.sqrt(1 - rho**2), sigma)
    expected = norm.logpdf(innov, 0.0, scale).sum()
    root = np.linalg.cholesky(np.diag(rng.uniform(0.5, 2.0, x.size)))
    shift = x - root @ np.ones(x.size)  # the same x at z = 1
    for model, z in ((build_model(data), x), (build_model(data, "ar1", shift, root), np.ones(x.size))):
        term = next(p for p in model.potentials if p.name == "log_loss")
        log_lik = pytensor.function(
            model.value_vars, model.replace_rvs_by_values([term])[0], mode="FAST_COMPILE"
        )
        assert float(log_lik(z)) == pytest.approx(expected, rel=1e-10)


def test_laplace_whitening_is_near_standard_normal():
    """At the mode the whitened coordinates have unit curvature (the map is the inverse Hessian's root)."""
    import jax
    from pymc.sampling.jax import get_jaxified_logp

    from bayescale.methods.envelope import build_model, laplace, prepare

    data = prepare(bs.Curves.from_any(simulate_curves(seed=3)))
    shift, root = laplace(data)
    logp = get_jaxified_logp(build_model(data, "ar1", shift, root))
    z0 = np.zeros(shift.size)
    assert np.abs(np.asarray(jax.grad(lambda z: logp([z]))(z0))).max() < 1e-3
    np.testing.assert_allclose(-np.asarray(jax.hessian(lambda z: logp([z]))(z0)), np.eye(z0.size), atol=1e-6)


def test_laplace_programs_are_exported_and_give_the_jitted_results(monkeypatch, tmp_path):
    """The envelope's value-and-gradient and Hessian load from the export cache without building the
    PyMC model, and give exactly the jitted programs' mode and root; other curves of the same
    shapes (constants of the program) are other programs."""
    from bayescale.inference import programs
    from bayescale.methods import envelope
    from bayescale.model import jax_backend

    data = envelope.prepare(bs.Curves.from_any(simulate_curves(seed=3)))
    other = envelope.prepare(bs.Curves.from_any(simulate_curves(seed=4)))
    programs.clear()
    monkeypatch.setenv(jax_backend.CACHE_ENV, "0")
    jitted = envelope.laplace(data)
    jitted_other = envelope.laplace(other)
    assert programs.loaded() == []  # no cache: nothing exported or kept

    monkeypatch.setenv(jax_backend.CACHE_ENV, str(tmp_path))
    exported = envelope.laplace(data)
    files = sorted((tmp_path / "exported").glob("*.bin"))
    assert len(files) == len(programs.loaded()) == 2  # value-and-gradient, Hessian
    programs.clear()  # a new process: programs come from the files

    def unbuilt(*args, **kwargs):
        raise AssertionError("the PyMC model was built although its programs are cached")

    build_model = envelope.build_model
    monkeypatch.setattr(envelope, "build_model", unbuilt)
    loaded = envelope.laplace(data)
    assert sorted((tmp_path / "exported").glob("*.bin")) == files
    monkeypatch.setattr(envelope, "build_model", build_model)
    exported_other = envelope.laplace(other)
    assert len(list((tmp_path / "exported").glob("*.bin"))) == 4
    for expected, got in ((jitted, exported), (jitted, loaded), (jitted_other, exported_other)):
        assert expected is not None and got is not None
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
    assert not np.array_equal(jitted[0], jitted_other[0])
