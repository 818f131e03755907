"""The partially pooled Chinchilla law: shared exponents, E per group."""

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import TRUE_CHINCHILLA, simulate_ladder

import bayescale as bs
from bayescale.errors import LawError, PriorError, RunsError

GROUP_E = {"c4": 1.7, "web": 1.9, "code": 2.2}


def grouped_runs(seed: int) -> pd.DataFrame:
    frames = []
    for i, (group, e) in enumerate(GROUP_E.items()):
        frame = simulate_ladder("chinchilla", {**TRUE_CHINCHILLA, "E": e}, seed=100 * seed + i)
        frames.append(frame.assign(group=group))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def grouped_fit() -> bs.Fit:
    return bs.fit(grouped_runs(2), law="chinchilla-grouped", random_seed=2, progressbar=False, warn=False)


def test_grouped_laws_sample_at_target_accept_099_by_default(grouped_fit, quick_fit):
    assert grouped_fit.sampler.target_accept == 0.99
    assert quick_fit.sampler.target_accept == 0.95


def test_group_values_and_shared_exponents_recovered(grouped_fit):
    # Known and left open: a rare excursion into the tail where A and alpha_N are small (the N term
    # flattens and trades off against every E_g) diverges a few times in 4000 draws, also at
    # target_accept 0.99. Bounded here at 0.1% of draws; r_hat and ESS must pass outright.
    report = grouped_fit.diagnostics
    assert report["divergences"] <= 4
    assert report["max_r_hat"] <= 1.01 and report["min_ess_bulk"] >= 400, report
    table = grouped_fit.summary()
    for group, e in GROUP_E.items():
        row = table.loc[f"E[{group}]"]
        assert row["lower"] <= e <= row["upper"], (group, row)
    for name in ("alpha_N", "alpha_D"):
        assert table.loc[name, "lower"] <= TRUE_CHINCHILLA[name] <= table.loc[name, "upper"]
    # The group offsets are known far better than the common level (E trades off against A N^-alpha).
    spread = table.loc["E[code]", "median"] - table.loc["E[c4]", "median"]
    assert spread == pytest.approx(0.5, abs=0.08)


def test_answers_per_group(grouped_fit, tmp_path):
    assert grouped_fit.groups == ["c4", "code", "web"]
    code = grouped_fit.theta("code")["E"]
    assert code.dims == ("chain", "draw")
    assert float(code.median()) > float(grouped_fit.theta("c4")["E"].median())
    with pytest.raises(LawError, match=r"unknown group 'books'; the fit has groups \['c4', 'code', 'web'\]"):
        grouped_fit.theta("books")
    path = grouped_fit.save(tmp_path / "grouped.nc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.FitWarning)  # the few divergences, see above
        loaded = bs.load_fit(path)
    assert loaded.groups == grouped_fit.groups
    np.testing.assert_array_equal(loaded.posterior["E_group"].values, grouped_fit.posterior["E_group"].values)


def test_predict_and_plan_per_group(grouped_fit, tmp_path, capsys):
    """The code group (E higher by ~0.5) predicts a higher loss than c4 at the same (N, D)."""
    from bayescale.cli import main

    code = grouped_fit.predict(1e9, 2e10, random_seed=0, group="code").iloc[0]
    c4 = grouped_fit.predict(1e9, 2e10, random_seed=0, group="c4").iloc[0]
    assert code["loss_median"] > c4["loss_median"] + 0.3
    assert grouped_fit.variant_fit() is None  # pooled laws answer with their own law only
    plans = {g: grouped_fit.optimal(1e21, group=g).iloc[0]["loss_median"] for g in ("code", "c4")}
    assert plans["code"] > plans["c4"] + 0.3
    with pytest.raises(LawError, match="unknown group 'books'"):
        grouped_fit.optimal(1e21, group="books")
    path = grouped_fit.save(tmp_path / "grouped.nc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.FitWarning)
        assert (
            main(["predict", str(path), "--params", "1e9", "--tokens", "2e10", "--group", "code", "--json"])
            == 0
        )
        assert main(["plan", str(path), "--compute", "1e21", "--group", "c4", "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count('"median"') >= 2
    assert main(["plan", str(path), "--target-loss", "2.5", "--group", "c4"]) == 2
    assert "--group goes with --compute" in capsys.readouterr().err


def test_needs_group_column_and_refuses_fixing_pooled():
    runs = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=1)
    with pytest.raises(RunsError, match=r"law 'chinchilla-grouped' needs column\(s\) \['group'\]"):
        bs.fit(runs, law="chinchilla-grouped", sampler={"draws": 10, "tune": 10, "chains": 1})
    with pytest.raises(PriorError, match=r"cannot fix \['E'\]"):
        bs.fit(runs.assign(group="a"), law="chinchilla-grouped", fix={"E": 1.8})


def test_ungrouped_fit_refuses_a_group(quick_fit):
    with pytest.raises(LawError, match="law 'chinchilla' has no per-group parameters"):
        quick_fit.theta("c4")
    law = bs.get_law("chinchilla-grouped")
    assert law.describe()["required_columns"] == ["params", "tokens", "group"]
    assert "E_tau" in law.describe()["parameters"]
