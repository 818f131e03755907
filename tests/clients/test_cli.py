import json

import pytest

from bayescale.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_fit_summary_plan_predict_end_to_end(capsys, tmp_path):
    runs = tmp_path / "runs.csv"
    from conftest import TRUE_CHINCHILLA, simulate_ladder

    simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=5).to_csv(runs, index=False)
    out_path = tmp_path / "fit.nc"
    code, out, err = run(
        capsys,
        "fit",
        runs,
        "--law",
        "chinchilla",
        "--out",
        out_path,
        "--seed",
        1,
        "--draws",
        150,
        "--tune",
        200,
        "--chains",
        2,
        "--fix",
        "alpha_N=0.35",
        "--fix",
        "E=1.8",
        "--json",
    )
    assert code == 0, err
    payload = json.loads(out)
    assert payload["parameters"]["alpha_N"] == {
        **payload["parameters"]["alpha_N"],
        "median": 0.35,
        "fixed": True,
    }
    assert payload["parameters"]["E"]["median"] == 1.8

    code, out, _ = run(capsys, "summary", out_path, "--json")
    summary = json.loads(out)
    assert summary["law"] == "chinchilla" and summary["n_runs"] == 40 and summary["prob"] == 0.9
    assert set(summary["parameters"]) == {"E", "A", "B", "alpha_N", "alpha_D", "sigma", "nu"}
    assert set(summary["diagnostics"]) >= {"divergences", "max_r_hat", "min_ess_bulk"}

    code, out, _ = run(capsys, "plan", out_path, "--compute", "1e22", "--prob", "0.8", "--json")
    plan = json.loads(out)
    assert plan["compute"] == 1e22 and plan["prob"] == 0.8
    for key in ("params", "tokens", "tokens_per_param", "loss"):
        assert plan[key]["lower"] < plan[key]["median"] < plan[key]["upper"]

    code, out, _ = run(capsys, "predict", out_path, "--params", "1e9", "--tokens", "2e10", "--json")
    pred = json.loads(out)
    assert pred["loss"]["lower"] < pred["loss"]["median"] < pred["loss"]["upper"]
    assert pred["loss_predictive"]["lower"] < pred["loss"]["lower"]

    queries = tmp_path / "q.csv"
    queries.write_text("N,D\n1e9,2e10\n2e9,4e10\n")
    code, out, _ = run(capsys, "predict", out_path, "--queries", queries, "--json")
    assert code == 0 and len(json.loads(out)) == 2

    code, out, _ = run(capsys, "summary", out_path)
    assert "alpha_N" in out and "fixed" in out


def test_readable_tables(capsys, quick_fit_path):
    code, out, _ = run(capsys, "plan", quick_fit_path, "--compute", "5.76e23")
    assert code == 0 and "tokens_per_param" in out and "90%" in out
    assert "answers blend the fitted law with kaplan-e" in out  # 5.76e23 is beyond the runs
    code, out, _ = run(capsys, "plan", quick_fit_path, "--compute", "1e19", "5.76e23")
    assert code == 0 and "compute-optimal plans" in out and "answers blend the fitted law" in out
    code, out, _ = run(capsys, "plan", quick_fit_path, "--compute", "1e19", "1e20")
    assert code == 0 and "compute-optimal plans" in out and "average" not in out  # inside the runs
    code, out, _ = run(capsys, "plan", quick_fit_path, "--target-loss", "2.6", "1.9")
    assert code == 0 and "answers blend the fitted law with kaplan-e" in out
    code, out, _ = run(capsys, "plan", quick_fit_path, "--target-loss", "2.6")
    assert code == 0 and "average" not in out  # a loss the runs reach: the fitted law alone


def test_laws_command(capsys):
    code, out, _ = run(capsys, "laws", "--json")
    laws = {item["name"]: item for item in json.loads(out)}
    assert code == 0 and set(laws) >= {"chinchilla", "data-constrained", "kaplan"}
    assert laws["data-constrained"]["required_columns"] == ["params", "tokens", "unique_tokens"]
    code, out, _ = run(capsys, "laws")
    assert "R_D_star" in out and "LogNormal" in out


def test_datasets_command(capsys):
    code, out, _ = run(capsys, "datasets")
    assert code == 0 and out.startswith("chinchilla")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fit", "no-such-file.csv", "--out", "x.nc"], "neither an existing file nor a bundled data set"),
        (["fit", "chinchilla", "--out", "x.nc", "--law", "nope"], "unknown law 'nope'"),
        (["fit", "chinchilla", "--out", "x.nc", "--fix", "gamma=1"], "cannot fix 'gamma'"),
        (["summary", "missing.nc"], "no saved fit at"),
        (["fit", "chinchilla", "--out", "no/such/dir/x.nc", "--draws", "10", "--tune", "10"], None),
    ],
)
def test_user_mistakes_print_error_without_traceback(capsys, argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *argv)
    assert code != 0
    assert err.startswith("error: ")
    assert "Traceback" not in err
    if message:
        assert message in err


def test_argument_errors_exit_nonzero(capsys, quick_fit_path):
    with pytest.raises(SystemExit) as info:
        main(["plan", str(quick_fit_path), "--compute", "-5"])
    assert info.value.code == 2
    assert "must be a finite number > 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fit", "chinchilla", "--out", "x.nc", "--fix", "alpha_N"])
    assert "expected NAME=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["compare", "extrapolate"])
def test_likelihood_option_reaches_the_fit(command):
    # A second definition of the helper once dropped --likelihood for these commands silently.
    from bayescale.cli import build_parser
    from bayescale.cli.options import _sampler_kwargs

    args = build_parser().parse_args([command, "chinchilla", "--likelihood", "normal", "--seed", "3"])
    kwargs = _sampler_kwargs(args)
    assert kwargs["likelihood"] == "normal"
    assert kwargs["random_seed"] == 3
    envelope_args = build_parser().parse_args(["envelope", "gemstones"])
    assert "likelihood" not in _sampler_kwargs(envelope_args)


@pytest.mark.parametrize(
    "argv",
    [
        ["compare", "chinchilla"],
        ["extrapolate", "chinchilla"],
        ["isoflop", "chinchilla"],
        ["envelope", "gemstones"],
        ["steps", "gemstones"],
        ["compare-methods", "chinchilla", "--compute", "1e22"],
    ],
)
def test_target_accept_option_reaches_every_method(argv):
    from bayescale.cli import build_parser
    from bayescale.cli.options import _sampler_kwargs

    assert _sampler_kwargs(build_parser().parse_args(argv))["sampler"] == {}  # the method's own defaults
    args = build_parser().parse_args([*argv, "--target-accept", "0.97", "--draws", "300"])
    assert _sampler_kwargs(args)["sampler"] == {"target_accept": 0.97, "draws": 300}


def _keywords_of_fit(monkeypatch) -> dict:
    """The keywords ``bayescale fit`` passes to ``fit_parametric``, which then stops before sampling."""
    import bayescale.methods.parametric as parametric

    seen = {}

    def fake_fit(runs, **kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt  # stop before sampling

    monkeypatch.setattr(parametric, "fit_parametric", fake_fit)
    return seen


def test_target_accept_reaches_fit_and_is_checked(capsys, monkeypatch, tmp_path):
    seen = _keywords_of_fit(monkeypatch)
    out = tmp_path / "fit.nc"
    run(capsys, "fit", "chinchilla", "--out", out, "--target-accept", "0.99")
    assert seen["sampler"] == {"target_accept": 0.99}
    assert seen["warn"] is True  # the saved fit's answers warn when its diagnostics failed
    run(capsys, "fit", "chinchilla", "--out", out)
    assert seen["sampler"] == {}  # the law's defaults: target acceptance 0.95, or 0.99 with pooled parameters
    for bad in ("1", "0", "1.5", "nan"):
        with pytest.raises(SystemExit) as info:
            main(["fit", "chinchilla", "--out", str(out), "--target-accept", bad])
        assert info.value.code == 2
        assert "--target-accept" in capsys.readouterr().err


def test_checkpoints_policy_reaches_fit_and_bad_ones_exit_2(capsys, monkeypatch, tmp_path):
    seen = _keywords_of_fit(monkeypatch)
    out = tmp_path / "fit.nc"
    run(capsys, "fit", "chinchilla", "--out", out)
    assert seen["checkpoints"] == "end-of-decay"
    run(capsys, "fit", "chinchilla", "--out", out, "--checkpoints", "all")
    assert seen["checkpoints"] == "all"
    with pytest.raises(SystemExit) as info:
        main(["fit", "chinchilla", "--out", str(out), "--checkpoints", "final"])
    assert info.value.code == 2
    assert "--checkpoints: invalid choice: 'final'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "data", "module", "function", "parameter"),
    [
        ("isoflop", "porian-isoflop", "isoflop", "fit_isoflop", "a"),
        ("envelope", "gemstones", "envelope", "fit_envelope", "beta"),
        ("steps", "gemstones", "training_steps", "fit_steps", "alpha_S"),
    ],
)
def test_method_priors_file_reaches_the_fit_and_bad_ones_exit_2(
    capsys, monkeypatch, tmp_path, command, data, module, function, parameter
):
    import importlib

    from bayescale.model.priors import Prior

    good = tmp_path / "priors.toml"
    good.write_text(f'[{parameter}]\ndistribution = "LogNormal"\nmu = -1.0\nsigma = 0.1\n')
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"gamma": {"distribution": "Normal", "mu": 0, "sigma": 1}}')
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    code, _, err = run(capsys, command, data, "--priors", broken)
    assert code == 2 and err.startswith("error: ") and "not valid json" in err
    if command != "isoflop":  # (porian-isoflop holds several groups: refused before the priors are read)
        code, _, err = run(capsys, command, data, "--priors", unknown)
        last = err.splitlines()[-1]  # (steps on one batch size warns first)
        assert code == 2 and last.startswith("error: ") and "'gamma', not a parameter of this model" in last
    seen = {}

    def fake_fit(*args, **kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt  # stop before sampling

    monkeypatch.setattr(importlib.import_module(f"bayescale.methods.{module}"), function, fake_fit)
    run(capsys, command, data, "--priors", good)
    assert seen["priors"] == {parameter: Prior("LogNormal", mu=-1.0, sigma=0.1)}
    run(capsys, command, data)
    assert seen["priors"] is None


def test_laws_lists_the_methods_priors(capsys):
    code, out, _ = run(capsys, "laws")
    assert code == 0
    methods = out.split("the methods' default priors")[1]
    for line in ("  a         Normal(mu=0.5, sigma=0.3)", "  G_at_ref  LogNormal(mu=-1, sigma=2)"):
        assert line in methods
    assert "  rho       Beta(alpha=2, beta=2)" in methods and "alpha_B" in methods


def test_compare_methods_steps_row(tmp_path, capsys, monkeypatch):
    """Kaplan's L(N, S) as a compare-methods row: a, b, the optimum and what it assumed (opt-in).

    Plumbing only, so the fit is replaced by hand-built draws around Kaplan's constants (the
    sampler is tested in test_training_steps); the row must carry their closed-form answer.
    """
    import arviz as az
    import numpy as np

    import bayescale.methods.training_steps as ts
    from bayescale.checks.simulate import simulate_curves

    path = tmp_path / "curves.csv"
    simulate_curves(seed=4).to_csv(path, index=False)  # 3 sizes x 3 batch sizes: B_crit identified
    rng = np.random.default_rng(0)
    draws = {k: v * np.exp(rng.normal(0, 0.02, (2, 50))) for k, v in ts.KAPLAN_2020.items()}

    def fake_fit(curves, **kwargs):
        data = ts.prepare(curves)
        report = {"ok": True, "divergences": 0, "max_r_hat": 1.0, "min_ess_bulk": 100.0, "problems": []}
        return ts.StepsFit(az.from_dict({"posterior": draws}), data, {}, "ar1", "normal", None, 1, report)

    monkeypatch.setattr(ts, "fit_steps", fake_fit)
    code, out, err = run(capsys, "compare-methods", path, "--compute", "1e20", "--methods", "steps", "--json")
    assert code == 0, err
    (steps,) = json.loads(out)["methods"]
    assert steps["approach"] == "Kaplan" and steps["n_points"] == 9 * 16 and steps["diagnostics_ok"]
    assert "C_min frontier" in steps["note"]
    a = ts.compute_efficient_exponents(draws["alpha_N"], draws["alpha_S"], draws["alpha_B"])["params"]
    assert steps["a"]["median"] == pytest.approx(np.median(a), rel=1e-9)
    assert steps["b"]["median"] == pytest.approx(np.median(1 - a), rel=1e-9)
    n_opt = ts.compute_optimal(1e20, {k: v[..., None] for k, v in draws.items()})["params"]
    assert steps["params"]["median"] == pytest.approx(np.median(n_opt), rel=1e-9)
    code, out, err = run(capsys, "compare-methods", path, "--compute", "1e20", "--methods", "steps")
    assert code == 0 and "approach Kaplan steps" in out and "C_min frontier" in out


def test_compare_methods_steps_says_what_is_missing(tmp_path):
    """No curves, or curves without steps: the steps row says why; the table still comes back."""
    from bayescale.checks.simulate import simulate_curves
    from bayescale.methods.side_by_side import compare_methods

    table = compare_methods("chinchilla", 1e21, methods=("steps",))
    assert table["note"].iloc[0] == "skipped: needs loss curves with optimiser steps"
    path = tmp_path / "no_steps.csv"
    simulate_curves(seed=0).drop(columns="step").to_csv(path, index=False)
    table = compare_methods(str(path), 1e21, methods=("steps",))
    assert table["note"].iloc[0].startswith("skipped: Kaplan's L(N, S) needs optimiser steps")
    assert "a_median" not in table.columns
    # any method's RunsError (here: the envelope needs 3 sizes) is its row's note, not the table's end
    path = tmp_path / "two_sizes.csv"
    simulate_curves(seed=0, sizes=(3e7, 1.5e8)).to_csv(path, index=False)
    table = compare_methods(str(path), 1e21, methods=("envelope",))
    assert "at least 3 model sizes" in table["note"].iloc[0]


def test_readme_own_runs_in_three_commands_run_as_written(capsys, tmp_path, monkeypatch):
    """The README's first example, line by line as a user types it (at the default draws)."""
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    block = (root / "README.md").read_text().split("<!-- own-runs:", 1)[1].split("```")[1]
    commands = [line.split("#", 1)[0].split() for line in block.strip().splitlines()]
    assert [c[:2] for c in commands] == [["bayescale", "fit"], ["bayescale", "plan"], ["bayescale", "report"]]
    (tmp_path / "docs").mkdir()
    shutil.copy(root / "docs" / "example_runs.csv", tmp_path / "docs")
    monkeypatch.chdir(tmp_path)
    outputs = []
    for command in commands:
        code, out, err = run(capsys, *command[1:])
        assert code == 0, (command, err)
        outputs.append(out)
    assert "law chinchilla on 18 runs" in outputs[0] and "-> ok" in outputs[0]
    assert "compute-optimal plan at C = 1e+22 FLOPs" in outputs[1] and "tokens_per_param" in outputs[1]
    assert "<table" in (tmp_path / "my_fit.html").read_text()
