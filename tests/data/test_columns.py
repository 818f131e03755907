"""The loader options of a raw runs table: column mapping, row filters, derived columns, best-of-sweep,
the unique-tokens tolerance and the FLOP-convention check."""

import copy
import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayescale as bs
from bayescale import cli
from bayescale.data.columns import (
    estimate_flops_per_param_token,
    parse_column_items,
    parse_where,
    read_column_file,
)
from bayescale.errors import RunsError, RunsWarning

ANCHORS = Path(__file__).resolve().parents[2] / ".." / "shared" / "anchors"
RAW = ANCHORS / "misfitting"
RAW_CSV = RAW / "scaling_results_last_ckpt_only.csv"
needs_raw = pytest.mark.skipif(not RAW_CSV.is_file(), reason="shared misfitting anchor not present")
OLMO_CSV = ANCHORS / "olmo-ladder" / "ladder_final.csv"
needs_olmo = pytest.mark.skipif(not OLMO_CSV.is_file(), reason="shared olmo-ladder anchor not present")


def sweep_table() -> pd.DataFrame:
    """Two sizes x two token counts x three learning rates, with two columns meaning tokens."""
    rows = []
    for n in (1e8, 4e8):
        for m in (5, 40):
            d = n * m
            for lr, bump in ((1e-3, 0.05), (2e-3, 0.0), (4e-3, 0.02)):
                loss = 2.0 + 400 / n**0.34 + 2000 / d**0.28 + bump
                rows.append({"N": n, "D": d, "train_tokens": d * 1.01, "loss": loss, "peak_lr": lr})
    return pd.DataFrame(rows)


def test_two_columns_for_one_name_suggest_the_mapping():
    with pytest.raises(RunsError, match=r"'D' and 'train_tokens' both mean 'tokens'.*--column tokens=D"):
        bs.Runs.from_any(sweep_table())
    runs = bs.Runs.from_any(sweep_table(), columns={"tokens": "D"})
    np.testing.assert_array_equal(runs.column("tokens"), sweep_table()["D"].to_numpy())
    assert "train_tokens" in runs.frame.columns  # the other alias stays an extra column


def test_mapping_errors_name_the_fix():
    with pytest.raises(RunsError, match=r"the canonical name comes first: tokens=D"):
        bs.Runs.from_any(sweep_table(), columns={"D": "tokens"})
    with pytest.raises(RunsError, match=r"no column 'train_tokenz'; did you mean 'train_tokens'"):
        bs.Runs.from_any(sweep_table(), columns={"tokens": "train_tokenz"})
    with pytest.raises(RunsError, match=r"gives 'D' to both"):
        bs.Runs.from_any(sweep_table(), columns={"tokens": "D", "unique_tokens": "D"})
    with pytest.raises(RunsError, match=r"NAME=SOURCE_COLUMN"):
        parse_column_items(["params"])


def test_mapping_displaces_a_column_with_the_canonical_name():
    frame = pd.DataFrame(
        {"params": [1e8, 2e8, 4e8], "params_no_emb": [6e7, 1.5e8, 3.4e8], "tokens": [2e9, 4e9, 8e9]}
    ).assign(loss=[3.1, 2.9, 2.7])
    runs = bs.Runs.from_any(frame, columns={"params": "params_no_emb"})
    np.testing.assert_array_equal(runs.column("params"), [6e7, 1.5e8, 3.4e8])
    np.testing.assert_array_equal(runs.column("params_unused"), [1e8, 2e8, 4e8])


def test_empty_source_uses_no_column():
    frame = pd.DataFrame(
        {"N": [1e8, 2e8, 4e8], "D": [2e9, 4e9, 8e9], "loss": [3.1, 2.9, 2.7], "C": [1.0, 2.0, 3.0]}
    )
    # A one-letter 'C' far from 6 N D is not taken as compute (it is kept, with a warning).
    with pytest.warns(RunsWarning, match=r"column 'C' was not taken as 'compute'"):
        bs.Runs.from_any(frame)
    runs = bs.Runs.from_any(frame, columns={"compute": ""})
    np.testing.assert_allclose(runs.column("compute"), 6 * runs.column("params") * runs.column("tokens"))
    assert list(runs.frame["C"]) == [1.0, 2.0, 3.0]


def test_column_file_json_and_toml(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps({"tokens": "D"}))
    (tmp_path / "m.toml").write_text('[columns]\ntokens = "D"\n')
    assert read_column_file(tmp_path / "m.json") == {"tokens": "D"}
    assert read_column_file(tmp_path / "m.toml") == {"tokens": "D"}
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(RunsError, match="must map canonical names"):
        read_column_file(tmp_path / "bad.json")
    (tmp_path / "broken.toml").write_text("tokens = ")
    with pytest.raises(RunsError, match="not valid TOML"):
        read_column_file(tmp_path / "broken.toml")


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("peak_lr <= 4e-3", ("peak_lr", "<=", 4e-3)),
        ("params>1_000_000", ("params", ">", 1e6)),
        ("group == c4", ("group", "==", "c4")),
        ("C4 Eval Loss != '3.5'", ("C4 Eval Loss", "!=", "3.5")),
        ("x<-1", ("x", "<", -1.0)),
    ],
)
def test_parse_where(text, parsed):
    assert parse_where(text) == parsed


@pytest.mark.parametrize("text", ["peak_lr", "peak_lr <", "< 3", "peak_lr ~ 3", "__import__('os') < 1"])
def test_bad_filters_are_refused_without_evaluation(text):
    with pytest.raises(RunsError):
        bs.Runs.from_any(sweep_table(), columns={"tokens": "D"}, where=[text])


def test_row_filters_numeric_string_and_source_names():
    table = sweep_table().assign(model=lambda f: np.where(f["N"] < 2e8, "small", "large"))
    runs = bs.Runs.from_any(table, columns={"tokens": "D"}, where=["peak_lr == 2e-3", "model != small"])
    assert len(runs) == 2
    assert set(runs.column("params")) == {4e8}
    assert runs.notes == ("row filters peak_lr == 2e-3 and model != small: kept 2 of 12 rows",)
    by_source = bs.Runs.from_any(table, columns={"tokens": "D"}, where="D >= 1e10")  # a source name
    assert len(by_source) == 3 and (by_source.column("tokens") >= 1e10).all()
    with pytest.raises(RunsError, match=r"leave no rows .*'model' holds e.g. small, large"):
        bs.Runs.from_any(table, columns={"tokens": "D"}, where=["model == medium"])
    with pytest.raises(RunsError, match=r"no column 'peak_rl'; did you mean 'peak_lr'"):
        bs.Runs.from_any(table, columns={"tokens": "D"}, where=["peak_rl < 1"])
    with pytest.raises(RunsError, match=r"column 'model' row 0 holds 'small', not a number"):
        bs.Runs.from_any(table, columns={"tokens": "D"}, where=["model < 1"])


def test_filters_drop_bad_rows_before_validation():
    table = sweep_table()
    table.loc[0, "loss"] = np.nan
    with pytest.raises(RunsError, match=r"column 'loss' row 0"):
        bs.Runs.from_any(table, columns={"tokens": "D"})
    runs = bs.Runs.from_any(table, columns={"tokens": "D"}, where=["peak_lr > 1e-3"])
    assert len(runs) == 8


def test_params_derived_from_compute_and_tokens():
    base = sweep_table().query("peak_lr == 2e-3")
    frame = pd.DataFrame({"C": 6 * base["N"] * base["D"], "tokens": base["D"], "loss": base["loss"]})
    runs = bs.Runs.from_any(frame)
    np.testing.assert_allclose(runs.column("params"), base["N"].to_numpy())
    assert any("derived 'params' from 'compute' and 'tokens': N = C / (6 D)" in n for n in runs.notes)
    as_k4 = bs.Runs.from_any(frame, flops_per_param_token=4.0)
    np.testing.assert_allclose(as_k4.column("params"), 1.5 * base["N"].to_numpy())
    assert estimate_flops_per_param_token(as_k4) == pytest.approx(4.0)
    tokens = bs.Runs.from_any(pd.DataFrame({"compute": frame["C"], "N": base["N"], "loss": base["loss"]}))
    np.testing.assert_allclose(tokens.column("tokens"), base["D"].to_numpy())
    assert any("derived 'tokens'" in n for n in tokens.notes)


def test_best_of_sweep_keeps_lowest_loss_per_pair():
    table = sweep_table()
    runs = bs.Runs.from_any(table, columns={"tokens": "D"}, best_of="peak_lr")
    assert len(runs) == 4
    assert set(runs.frame["peak_lr"]) == {2e-3}
    expected = table.groupby(["N", "D"])["loss"].min().sort_index().to_numpy()
    got = runs.frame.sort_values(["params", "tokens"])["loss"].to_numpy()
    np.testing.assert_array_equal(got, expected)
    assert runs.notes[0] == (
        "best of 'peak_lr': kept the lowest loss of each (params, tokens) combination, 4 runs; "
        "dropped 8 of 12 rows"
    )
    assert len(runs.notes) == 1  # the best is inside every sweep


def test_best_of_sweep_per_group_diverged_runs_and_edge():
    table = sweep_table()
    table["group"] = "a"
    other = sweep_table().assign(group="b", loss=lambda f: f["loss"] + 0.1)
    table = pd.concat([table, other], ignore_index=True)
    table.loc[1, "loss"] = np.nan  # a diverged run of group a; its pair has other losses
    table.loc[table["peak_lr"] == 4e-3, "loss"] -= 0.5  # the best lr is now the largest tried
    runs = bs.Runs.from_any(table, columns={"tokens": "D"}, best_of="peak_lr")
    assert len(runs) == 8 and sorted(set(runs.frame["group"])) == ["a", "b"]
    assert "dropped 16 of 24 rows (1 of them with a missing or non-finite loss)" in runs.notes[0]
    assert "in 8 of the 8 combinations" in runs.notes[1]
    with pytest.raises(RunsError, match=r"best of 'peak_lrr': no column 'peak_lrr'"):
        bs.Runs.from_any(table, columns={"tokens": "D"}, best_of="peak_lrr")


def test_unique_tokens_a_hair_above_tokens_is_clipped_and_more_is_refused_with_digits():
    frame = pd.DataFrame(
        {"params": [1e9, 2e9], "tokens": [1.7799997e11, 4e10], "loss": [2.5, 2.4], "U": [1.78e11, 4e10]}
    )
    with pytest.warns(RunsWarning, match=r"row 0: 1.78e\+11 unique against 1.7799997e\+11 tokens; clipped"):
        runs = bs.Runs.from_any(frame)
    np.testing.assert_array_equal(runs.column("unique_tokens"), runs.column("tokens"))
    with pytest.raises(RunsError, match=r"1.78e\+11 unique tokens exceed the 1.7799e\+11 training"):
        # spelled out: a one-letter 'U' that exceeds D is kept as an extra column instead
        bs.Runs.from_any(frame.rename(columns={"U": "unique_tokens"}).assign(tokens=[1.7799e11, 4e10]))


def test_compute_that_is_not_6nd_warns_with_the_ratio_range():
    n = np.array([1e8, 2e8, 4e8, 8e8])
    d = 20 * n
    compute = np.array([0.2, 0.4, 0.6, 0.85]) * 6 * n * d
    frame = pd.DataFrame({"params": n, "tokens": d, "loss": [3.0, 2.8, 2.6, 2.5], "compute": compute})
    with pytest.warns(RunsWarning, match=r"runs from 1.2 to 5.1 .*0.20x to 0.85x of 6 N D") as caught:
        bs.Runs.from_any(frame)
    assert "--flops-per-param-token 3" in str(caught[0].message)
    consistent = frame.assign(compute=4.0 * n * d)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RunsWarning)
        bs.Runs.from_any(consistent, flops_per_param_token=4.0)  # the user's convention: no warning
        bs.Runs.from_any(frame.assign(compute=6.3 * n * d))  # within 10%
    assert estimate_flops_per_param_token(bs.Runs.from_any(consistent, flops_per_param_token=4)) == 4.0


def test_loader_options_on_a_bundled_set():
    runs = bs.Runs.from_any("gadre-overtrain", where=["group == c4_original", "token_multiplier == 20"])
    assert len(runs) == 6
    np.testing.assert_allclose(runs.column("tokens") / runs.column("params"), 20, rtol=1e-6)


def test_cli_loader_options_reach_the_fit(tmp_path, capsys):
    path = tmp_path / "raw.csv"
    sweep_table().to_csv(path, index=False)
    # An unknown law stops the command right after the runs are read.
    argv = ["fit", str(path), "--out", str(tmp_path / "f.nc"), "--law", "no-such-law"]
    assert cli.main(argv) == 2
    assert "--column tokens=D" in capsys.readouterr().err
    (tmp_path / "map.toml").write_text('tokens = "D"\n')
    options = ["--columns", str(tmp_path / "map.toml"), "--best-of", "peak_lr", "--where", "N>2e8"]
    assert cli.main([*argv, *options]) == 2
    err = capsys.readouterr().err
    assert "note: row filters N>2e8: kept 6 of 12 rows" in err
    assert "note: best of 'peak_lr': kept the lowest loss of each (params, tokens) combination, 2 runs" in err
    assert "no-such-law" in err
    assert cli.main([*argv, "--column", "tokens=D", "--where", "N ~ 3"]) == 2
    assert "is not COLUMN OP VALUE" in capsys.readouterr().err


@needs_raw
def test_raw_misfitting_table_loads_with_a_mapping_and_best_of():
    with pytest.raises(
        RunsError, match=r"'D' and 'train_tokens' both mean 'tokens'; say which with --column"
    ):
        bs.Runs.from_any(RAW_CSV)
    runs = bs.Runs.from_any(RAW_CSV, columns={"tokens": "D"}, best_of="peak_lr")
    assert len(runs) == 81  # SOURCE.md: 81 distinct (N, D) pairs
    assert "dropped 180 of 261 rows" in runs.notes[0]
    raw = pd.read_csv(RAW_CSV)
    best = raw.groupby(["N", "D"])["loss"].min()
    got = runs.frame.set_index(["params", "tokens"])["loss"]
    np.testing.assert_array_equal(got.sort_index().to_numpy(), best.sort_index().to_numpy())
    # Params without embeddings against compute with them: the convention check says so.
    with pytest.warns(RunsWarning, match=r"column 'compute' is not 6 N D"):
        bs.Runs.from_any(RAW_CSV, columns={"tokens": "D", "params": "N_no_emb"}, best_of="peak_lr")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RunsWarning)
        no_emb = bs.Runs.from_any(
            RAW_CSV, columns={"tokens": "D", "params": "N_no_emb", "compute": "C_no_emb"}, best_of="peak_lr"
        )
    assert len(no_emb) == 81
    assert estimate_flops_per_param_token(no_emb) == pytest.approx(6.0, rel=1e-6)


def test_plan_with_the_flop_convention_estimated_from_the_runs(quick_fit, tmp_path, capsys):
    idata = copy.deepcopy(quick_fit.idata)  # a saved fit keeps its runs in constant_data
    runs = idata.constant_data
    runs["compute"] = 4.0 * runs["params"] * runs["tokens"]
    frame = quick_fit.runs.frame.assign(compute=runs["compute"].values)
    path = dataclasses.replace(quick_fit, idata=idata, runs=bs.Runs(frame, "k = 4")).save(tmp_path / "k4.nc")
    argv = ["plan", str(path), "--compute", "1e22", "--json", "--flops-per-param-token"]
    assert cli.main([*argv, "estimate"]) == 0
    captured = capsys.readouterr()
    assert "note: FLOP convention estimated from the runs: k = compute / (N D) = 4 (median)" in captured.err
    estimated = json.loads(captured.out)
    assert cli.main([*argv, "4"]) == 0
    assert json.loads(capsys.readouterr().out) == estimated
    assert 4 * estimated["params"]["median"] * estimated["tokens"]["median"] == pytest.approx(1e22, rel=1e-3)
    with pytest.raises(SystemExit):
        cli.main([*argv, "six"])
    assert "a number > 0 or 'estimate', got 'six'" in capsys.readouterr().err


LLAMA3 = RAW.parent / "llama3-isoflops" / "isoflops_points.csv"


@pytest.mark.skipif(not LLAMA3.is_file(), reason="shared llama3-isoflops anchor not present")
def test_params_derived_for_an_isoflop_table_of_compute_tokens_loss():
    runs = bs.Runs.from_any(LLAMA3)  # compute_budget, training_tokens, validation_loss
    assert len(runs) == 133
    assert runs.notes[0].startswith("derived 'params' from 'compute' and 'tokens': N = C / (6 D)")
    # SOURCE.md: N = C / (6 D) ranges over 5.9e7 - 1.7e10.
    assert runs.column("params").min() == pytest.approx(5.9e7, rel=0.01)
    assert runs.column("params").max() == pytest.approx(1.7e10, rel=0.02)


def many_losses() -> pd.DataFrame:
    """A ladder logging several losses (one per evaluation set) and a learning rate, none named loss."""
    table = sweep_table().drop(columns=["train_tokens", "loss", "peak_lr"]).drop_duplicates()
    table = table.reset_index(drop=True)
    return table.assign(loss_c4=3.0, loss_pile=2.9, lr=1e-3, flops_per_token=6.3 * table["N"])


def test_a_missing_column_lists_every_candidate_and_the_mapping():
    with pytest.raises(RunsError) as caught:
        bs.Runs.from_any(many_losses())
    message = str(caught.value)
    assert (
        "loss: 2 candidate columns 'loss_c4', 'loss_pile': map the one you mean with --column loss=COLUMN"
        in (message)
    )
    assert "'lr'" not in message.split("Candidates:")[1]  # a learning rate is no loss candidate
    assert "rename" not in message
    runs = bs.Runs.from_any(many_losses(), columns={"loss": "loss_pile"})
    np.testing.assert_allclose(runs.column("loss"), 2.9)
    assert "loss_c4" in runs.frame.columns  # the other losses stay extra columns


def test_a_flops_per_token_column_gives_compute_and_params():
    raw = many_losses()
    runs = bs.Runs.from_any(raw, columns={"loss": "loss_c4"})
    np.testing.assert_allclose(runs.column("compute"), raw["flops_per_token"] * raw["D"])
    assert any("C = flops_per_token x D" in note for note in runs.notes)
    # Without a params column, N = flops_per_token / k only under a FLOP convention k the user states.
    with pytest.raises(RunsError, match="missing required column"):
        bs.Runs.from_any(raw.drop(columns="N").rename(columns={"D": "tokens"}), columns={"loss": "loss_c4"})
    no_params = raw.drop(columns="N").rename(columns={"D": "tokens"})
    derived = bs.Runs.from_any(no_params, columns={"loss": "loss_c4"}, flops_per_param_token=6.3)
    np.testing.assert_allclose(derived.column("params"), raw["N"], rtol=1e-12)


def test_the_front_door_and_compare_methods_take_the_loader_options(monkeypatch):
    from bayescale.methods import front, side_by_side

    monkeypatch.setitem(front.METHODS, "isoflop", lambda data, **kw: data)
    runs = bs.fit(many_losses(), method="isoflop", columns={"loss": "loss_pile"}, where="N > 2e8")
    assert isinstance(runs, bs.Runs) and len(runs) == 2
    np.testing.assert_allclose(runs.column("loss"), 2.9)
    seen = {}

    def fake_fit(method, runs, curves, compute, settings, bracketed):
        seen[method] = runs
        raise RunsError("stopped here")

    monkeypatch.setattr(side_by_side, "_fit_method", fake_fit)
    table = bs.compare_methods(many_losses(), 1e21, methods=("isoflop",), columns={"loss": "loss_c4"})
    assert table["note"].iloc[0] == "skipped: stopped here"
    np.testing.assert_allclose(seen["isoflop"].column("loss"), 3.0)


def test_fit_many_jobs_take_the_column_mapping_in_the_flags_words(tmp_path):
    from bayescale.cli.many import _job_columns

    (tmp_path / "map.json").write_text('{"params": "N"}')
    job = {"columns": str(tmp_path / "map.json"), "column": ["loss=loss_c4"]}
    _job_columns("j", job)
    assert job == {"columns": {"params": "N", "loss": "loss_c4"}}
    with pytest.raises(bs.BayescaleError, match="'column' must be a list of NAME=SOURCE"):
        _job_columns("j", {"column": {"loss": "x"}})


@pytest.mark.parametrize("command", ["envelope", "steps", "compare-methods"])
def test_every_command_reading_runs_maps_columns(tmp_path, capsys, monkeypatch, command):
    """envelope, steps and compare-methods read with --column/--where like fit (the fit itself stubbed)."""
    from bayescale.methods import envelope, side_by_side, training_steps

    curves = pd.DataFrame(
        {
            "model": np.repeat(["a", "b", "c"], 3),
            "N_nonembed": np.repeat([1e7, 2e7, 4e7], 3),
            "tokens_seen": np.tile([1e8, 2e8, 4e8], 3),
            "step": np.tile([100.0, 200.0, 400.0], 3),
            "loss_c4": np.linspace(4.0, 3.0, 9),
            "loss_pile": np.linspace(3.9, 2.9, 9),
        }
    )
    path = tmp_path / "curves.csv"
    curves.to_csv(path, index=False)
    argv = [command, str(path)] + (["--compute", "1e18"] if command == "compare-methods" else [])
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "--column params=N_nonembed" in err and "candidate columns 'loss_c4', 'loss_pile'" in err
    seen = []

    def stop(data, *args, **kwargs):
        seen.append(data)
        raise bs.BayescaleError("stopped after reading")

    monkeypatch.setattr(envelope, "fit_envelope", stop)
    monkeypatch.setattr(training_steps, "fit_steps", stop)
    monkeypatch.setattr(side_by_side, "compare_methods", stop)
    mapped = [
        *argv,
        "--column",
        "params=N_nonembed",
        "--column",
        "loss=loss_pile",
        "--where",
        "N_nonembed < 3e7",
    ]
    assert cli.main(mapped) == 2
    assert "stopped after reading" in capsys.readouterr().err
    if command == "compare-methods":
        return  # compare_methods reads the file itself, with the options as keywords (tested above)
    (data,) = seen
    assert isinstance(data, bs.Curves) and data.run_names == ["a", "b"]
    np.testing.assert_allclose(data.frame["loss"].max(), 3.9)


def test_curves_best_of_a_sweep_keeps_whole_runs():
    curves = pd.DataFrame(
        {
            "run": np.repeat(["a1", "a2", "b1", "b2"], 2),
            "params": np.repeat([1e7, 1e7, 2e7, 2e7], 2),
            "tokens": np.tile([1e8, 2e8], 4),
            "loss": [4.0, 3.5, 4.1, 3.4, 3.9, 3.3, 3.95, 3.35],
            "lr": np.repeat([1e-3, 2e-3, 1e-3, 2e-3], 2),
        }
    )
    kept = bs.Curves.from_any(curves, best_of="lr")
    assert kept.run_names == ["a2", "b1"] and len(kept) == 4
    assert "kept the run with the lowest final loss per (params), 2 of 4 runs" in kept.notes[0]


@needs_olmo
def test_raw_olmo_ladder_names_every_loss_and_maps_with_column():
    raw = pd.read_csv(OLMO_CSV)
    with pytest.raises(RunsError) as caught:
        bs.Runs.from_any(OLMO_CSV)
    message = str(caught.value)
    losses = [c for c in raw.columns if c.startswith("loss_")]
    assert f"loss: {len(losses)} candidate columns" in message
    assert all(repr(c) in message for c in losses)
    assert "params: candidate column 'N_nonembed': map it with --column params=N_nonembed" in message
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunsWarning)  # its compute counts attention: not 6 N D
        runs = bs.Runs.from_any(OLMO_CSV, columns={"loss": "loss_c4_en", "params": "N_nonembed"})
    np.testing.assert_allclose(runs.column("compute"), raw["flops_per_token"] * raw["tokens"].astype(float))


def test_compare_methods_reads_bundled_runs_and_curves_with_the_options():
    from bayescale.methods.side_by_side import _load

    runs, curves = _load("chinchilla", None, {"where": ["params > 1e9"]})
    assert curves is None and len(runs) == int((bs.Runs.from_any("chinchilla").column("params") > 1e9).sum())
    runs, curves = _load("gemstones", None, {"where": ["params > 1e9"]})
    assert curves is not None and (curves.frame["params"] > 1e9).all() and len(runs) == len(curves)
