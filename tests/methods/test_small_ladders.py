"""Small and badly designed ladders: informed priors on some parameters, the runs-per-parameter rule,
the warning for a single-ratio (or narrow) ladder, and design's duplicates and off-ratio proposals."""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayescale as bs
from bayescale import cli
from bayescale.data.columns import ladder_problems
from bayescale.errors import PriorError, RunsError, RunsWarning
from bayescale.methods.small_ladder import borrow_for_small_ladder, unmeasured_scatter
from bayescale.model.pymc_model import resolve_priors

#: Cheap draws: these tests check that the fits run and what they say, not the posterior's accuracy.
SMALL = {"sampler": {"draws": 200, "tune": 300, "chains": 2}, "progressbar": False, "warn": False}
BORROWED = ("A", "B", "alpha_N", "alpha_D")
RAW_CSV = Path(__file__).resolve().parents[2] / ".." / "shared" / "anchors" / "misfitting"
RAW_CSV = RAW_CSV / "scaling_results_last_ckpt_only.csv"


def five_run_ladder() -> bs.Runs:
    """Gadre et al.'s C4 runs at 20 tokens per parameter below 2B parameters: 5 sizes, one ratio."""
    where = ["group == c4_original", "token_multiplier == 20", "params < 2e9"]
    return bs.Runs.from_any("gadre-overtrain", where=where)


@pytest.fixture(scope="module")
def five_run_fit():
    runs = five_run_ladder()
    priors = bs.published_priors("epoch-chinchilla", parameters=BORROWED)
    with (
        pytest.warns(RunsWarning, match=r"all 5 runs train on 20 to 20 tokens per parameter"),
        pytest.warns(RunsWarning, match=r"5 runs and 5 free parameters in the law's mean"),
    ):
        return bs.fit(runs, law="chinchilla", priors=priors, random_seed=1, **SMALL)


def test_a_law_that_can_pass_through_every_run_warns_that_sigma_is_unmeasured():
    law = bs.get_law("chinchilla")
    free, _ = resolve_priors(law, "student_t", None, None)
    message = unmeasured_scatter(5, law, free, None)
    assert message.startswith("5 runs and 5 free parameters in the law's mean (E, A, B, alpha_N, alpha_D)")
    assert "Give sigma a prior" in message
    assert unmeasured_scatter(6, law, free, None) is None  # one run more than the mean's parameters
    sigma = {"sigma": bs.Prior("LogNormal", mu=-4.6, sigma=0.5)}
    assert unmeasured_scatter(5, law, free, sigma) is None  # the user's prior on sigma measures it
    fewer, _ = resolve_priors(law, "student_t", None, {"E": 1.8, "sigma": 0.01})
    assert unmeasured_scatter(3, law, fewer, None) is None  # sigma fixed
    free_e, _ = resolve_priors(law, "student_t", None, {"E": 1.8})
    assert unmeasured_scatter(4, law, free_e, None).startswith("4 runs and 4 free parameters")


def test_five_run_ladder_fits_with_borrowed_priors(five_run_fit):
    assert len(five_run_fit.runs) == 5
    assert set(five_run_fit.priors) >= {"E", *BORROWED}
    assert five_run_fit.priors["E"] == bs.get_law("chinchilla").default_priors()["E"]  # E not borrowed
    summary = five_run_fit.summary()
    assert np.isfinite(summary["median"]).all()
    assert summary.loc["E", "median"] < five_run_ladder().column("loss").min()


@pytest.fixture(scope="module")
def population_fit():
    """The five runs with no priors of their own: the population prior, and what the fit says of it."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        fit = bs.fit(five_run_ladder(), law="chinchilla", random_seed=1, **SMALL)
    return fit, [str(w.message) for w in record if issubclass(w.category, RunsWarning)]


def test_a_small_ladder_fits_with_the_population_prior_by_default(population_fit):
    fit, messages = population_fit
    borrowed = bs.published_priors("published-ladders")
    assert set(borrowed) == {"E", "A", "B", "alpha_N", "alpha_D", "sigma"}
    assert all(fit.priors[name] == prior for name, prior in borrowed.items())
    assert fit.priors["nu"] == resolve_priors(bs.get_law("chinchilla"), "student_t")[0]["nu"]
    (note,) = [m for m in messages if "too few for the law's default priors" in m]
    assert "population prior 'published-ladders' on E, A, B, alpha_N, alpha_D, sigma" in note
    (share,) = [m for m in messages if m.startswith("where the answer's information comes from")]
    table = bs.prior_contraction(fit.posterior, fit.priors)
    assert list(table.index) == ["E", "A", "B", "alpha_N", "alpha_D", "sigma", "nu"]
    assert all(f"{name} {row.contraction:.0%}" in share for name, row in table.iterrows())
    # Five runs say nothing of the noise's tails: nu keeps its prior, and the message says so.
    prior_led = [name for name, row in table.iterrows() if row.contraction < 0.5]
    assert "nu" in prior_led and f"{', '.join(prior_led)} mostly keep" in share
    # sigma's prior from the ladders' scatter keeps it off 0 (on the defaults it slid to ~1e-3).
    assert float(fit.posterior["sigma"].median()) > 2e-3
    assert not any("cannot measure their own scatter" in m for m in messages)


# 200 draws: the fit fails its diagnostics, and loading it says so; not what is tested here
@pytest.mark.filterwarnings("ignore::bayescale.inference.diagnostics.FitWarning")
def test_the_prior_contraction_is_saved_with_the_fit_and_in_the_json(
    population_fit, five_run_fit, tmp_path, capsys
):
    import json

    import xarray as xr

    from bayescale.errors import FitFileError

    fit, _ = population_fit
    assert fit.prior_set == "published-ladders"
    table = fit.prior_contraction()
    pd.testing.assert_frame_equal(table, bs.prior_contraction(fit.posterior, fit.priors))
    path = fit.save(tmp_path / "small.nc", variant=False)
    loaded = bs.load_fit(path)
    assert loaded.prior_set == "published-ladders"
    pd.testing.assert_frame_equal(loaded.prior_contraction(), table)
    # in the fit's JSON (fit --json, summary --json) and the plan's
    record = fit.to_dict()
    assert record["prior_set"] == "published-ladders"
    assert record["prior_contraction"]["alpha_D"]["contraction"] == pytest.approx(
        table.loc["alpha_D", "contraction"]
    )
    assert cli.main(["summary", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert cli.main(["plan", str(path), "--compute", "1e21", "--single-law", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert summary["prior_contraction"] == json.loads(json.dumps(record["prior_contraction"]))
    assert plan["prior_set"] == "published-ladders"
    assert set(plan["prior_contraction"]) == set(table.index)
    # a fit on priors of its own borrowed nothing, and says so
    assert five_run_fit.prior_set is None and five_run_fit.to_dict()["prior_set"] is None
    # the set's name is covered by the file's hash: altered, the file is refused
    tree = xr.open_datatree(path, engine="h5netcdf").load()
    tree["posterior"].attrs["prior_set"] = "epoch-chinchilla"
    tree.to_netcdf(tmp_path / "altered.nc", engine="h5netcdf")
    with pytest.raises(FitFileError):
        bs.load_fit(tmp_path / "altered.nc")


def test_too_few_runs_or_own_priors_are_refused_not_borrowed():
    law = bs.get_law("chinchilla")
    free, _ = resolve_priors(law, "student_t")
    kept, name = borrow_for_small_ladder(law, 8, free, {}, None)
    assert name is None and kept == free  # 8 runs > 7 free parameters: the defaults
    fixed_e, _ = resolve_priors(law, "student_t", None, {"E": 1.8})
    kept, name = borrow_for_small_ladder(law, 3, fixed_e, {"E": 1.8}, None)
    assert name == "published-ladders" and "E" not in kept
    assert kept["alpha_N"] == bs.published_priors("published-ladders")["alpha_N"]
    with pytest.raises(RunsError, match=r"2 runs cannot constrain 7 free parameters.*'published-ladders'"):
        borrow_for_small_ladder(law, 2, free, {}, None)
    # The user's own priors are taken at their word: nothing is borrowed on top of them.
    priors = bs.published_priors("epoch-chinchilla", parameters=BORROWED)
    with pytest.raises(
        RunsError,
        match=r"3 runs cannot constrain 3 free parameters \(E, sigma, nu\) on default priors; .*priors-from",
    ):
        bs.fit(bs.Runs.from_any(five_run_ladder().frame.iloc[:3]), law="chinchilla", priors=priors, **SMALL)
    kaplan = bs.get_law("kaplan-e")
    with pytest.raises(RunsError, match=r"5 runs cannot constrain") as raised:
        borrow_for_small_ladder(kaplan, 5, resolve_priors(kaplan, "student_t")[0], {}, None)
    assert "population prior" not in str(raised.value)  # no population prior for this law


def test_ladder_problems_name_what_to_add():
    single = five_run_ladder()
    (ratio,) = ladder_problems(single)
    assert "cannot tell alpha_N from alpha_D" in ratio
    assert "N = 1.06e+07 with D = 5.28e+07 and 8.46e+08" in ratio  # 4x fewer and 4x more tokens
    narrow = pd.DataFrame({"params": [1e8, 1.5e8, 2e8], "tokens": [2e9, 6e9, 1.2e10], "loss": [3, 2.9, 2.8]})
    problems = ladder_problems(narrow)
    assert len(problems) == 1 and problems[0].startswith("params span only 2x (1e+08 to 2e+08)")
    assert "add runs with N at least 4x apart" in problems[0]
    assert ladder_problems(bs.Runs.from_any("gadre-overtrain")) == []
    assert ladder_problems(narrow, required=("tokens",)) == []  # a law of D alone needs only D's spread


def test_design_flags_duplicates_and_proposes_off_ratio_runs(five_run_fit):
    runs = five_run_fit.runs.frame
    candidates = pd.DataFrame(
        {"params": [runs["params"].iloc[1] * 1.02, 3e9], "tokens": [runs["tokens"].iloc[1], 6e10]}
    )
    table = five_run_fit.design(1e21, candidates, outcomes=32, random_seed=0)
    assert len(table) == 2 + 6  # 3 smallest sizes x (4x fewer, 4x more tokens per parameter)
    given = table.loc[table["origin"] == "given"].set_index("params")
    assert given.loc[candidates["params"].iloc[0], "duplicate_of_run"] == 1
    assert given.loc[3e9, "duplicate_of_run"] == -1
    proposed = table.loc[table["origin"] == "proposed: off-ratio"]
    ratios = sorted(set(np.round(proposed["tokens"] / proposed["params"], 6)))
    assert ratios == [5.0, 80.0]
    notes = table.attrs["notes"]
    assert "1 candidate(s) repeat an existing run within 5% in N and D" in notes[0]
    assert "6 off-ratio runs" in notes[1]


def test_cli_prior_params(tmp_path, capsys):
    path = tmp_path / "ladder.csv"
    five_run_ladder().frame.to_csv(path, index=False)
    out = tmp_path / "f.nc"
    common = ["fit", str(path), "--out", str(out), "--draws", "200", "--tune", "300", "--chains", "2"]
    assert cli.main([*common, "--prior-params", "A,B"]) == 2
    assert "--prior-params goes with --priors-from" in capsys.readouterr().err
    assert cli.main([*common, "--priors-from", "epoch-chinchilla", "--prior-params", "A,Z"]) == 2
    assert "has no estimate of ['Z']" in capsys.readouterr().err
    two = tmp_path / "two.csv"
    five_run_ladder().frame.iloc[:2].to_csv(two, index=False)
    assert cli.main(["fit", str(two), *common[2:]]) == 2
    assert "2 runs cannot constrain 7 free parameters" in capsys.readouterr().err
    code = cli.main(
        [*common, "--seed", "2", "--priors-from", "epoch-chinchilla", "--prior-params", ",".join(BORROWED)]
    )
    assert code == 0
    captured = capsys.readouterr()
    assert "warning: these runs cannot identify the exponents well" in captured.err
    assert "law chinchilla on 5 runs" in captured.out and out.is_file()


def test_published_priors_refuse_unknown_parameters():
    with pytest.raises(PriorError, match=r"no estimate of \['nu'\]"):
        bs.published_priors("epoch-chinchilla", parameters=["nu"])


@pytest.mark.skipif(not RAW_CSV.is_file(), reason="shared misfitting anchor not present")
def test_eight_run_single_ratio_ladder_from_the_raw_misfitting_table(tmp_path):
    """8 sizes, the best learning rate of each at ~20 tokens per parameter (non-embedding N)."""
    runs = bs.Runs.from_any(
        RAW_CSV, columns={"tokens": "D", "params": "N_no_emb", "compute": "C_no_emb"}, best_of="peak_lr"
    ).frame
    ratio = runs["tokens"] / runs["params"]
    near = runs.loc[(ratio > 14) & (ratio < 28)].copy()
    near["gap"] = np.abs(np.log(near["tokens"] / near["params"] / 20))
    ladder = near.sort_values("gap").drop_duplicates("params").sort_values("params").iloc[-8:]
    assert len(ladder) == 8
    priors = bs.published_priors("epoch-chinchilla", parameters=BORROWED)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = bs.fit(ladder.drop(columns="gap"), law="chinchilla", priors=priors, random_seed=4, **SMALL)
    messages = [str(w.message) for w in caught if issubclass(w.category, RunsWarning)]
    assert any("cannot tell alpha_N from alpha_D" in m for m in messages)
    assert len(fit.runs) == 8 and np.isfinite(fit.summary()["median"]).all()
