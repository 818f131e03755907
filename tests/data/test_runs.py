import warnings

import numpy as np
import pandas as pd
import pytest

import bayescale as bs
from bayescale.errors import RunsError


def frame(**overrides):
    base = {"params": [1e8, 2e8, 4e8], "tokens": [2e9, 4e9, 8e9], "loss": [3.1, 2.9, 2.7]}
    base.update(overrides)
    return pd.DataFrame(base)


def test_canonical_columns_and_default_compute():
    runs = bs.Runs.from_any(frame())
    assert list(runs.frame.columns[:4]) == ["params", "tokens", "loss", "compute"]
    np.testing.assert_allclose(runs.column("compute"), 6 * runs.column("params") * runs.column("tokens"))


def test_aliases_are_accepted():
    runs = bs.Runs.from_any(
        pd.DataFrame({"N": [1e8, 2e8], "D": [1e9, 2e9], "L": [3.0, 2.9], "U": [1e9, 1e9]})
    )
    assert runs.has_unique_tokens
    assert set(runs.frame.columns) >= {"params", "tokens", "loss", "unique_tokens"}


def test_missing_column_is_named():
    with pytest.raises(RunsError, match=r"missing required column\(s\) \['tokens'\]"):
        bs.Runs.from_any(frame().drop(columns="tokens"))


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("loss", np.nan, r"column 'loss' row 1: value nan is missing \(NaN\)"),
        ("params", 0.0, r"column 'params' row 1: value 0.0 must be > 0"),
        ("tokens", -5.0, r"column 'tokens' row 1: value -5.0 must be > 0"),
        ("tokens", np.inf, r"column 'tokens' row 1: value inf is infinite"),
        ("params", "big", r"column 'params' row 1: 'big' is not a number"),
    ],
)
def test_bad_values_name_column_and_row(column, value, message):
    data = frame()
    data[column] = data[column].astype(object)
    data.loc[1, column] = value
    with pytest.raises(RunsError, match=message):
        bs.Runs.from_any(data)


def test_unique_tokens_cannot_exceed_tokens():
    with pytest.raises(RunsError, match=r"column 'unique_tokens' row 2: .*exceed"):
        bs.Runs.from_any(frame(unique_tokens=[1e9, 1e9, 9e9]))


def test_empty_table_and_empty_file(tmp_path):
    with pytest.raises(RunsError, match="no rows"):
        bs.Runs.from_any(frame().iloc[:0])
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(RunsError, match="is empty"):
        bs.Runs.from_any(empty)


def test_csv_and_parquet_paths(tmp_path):
    csv, parquet = tmp_path / "runs.csv", tmp_path / "runs.parquet"
    frame().to_csv(csv, index=False)
    frame().to_parquet(parquet)
    assert len(bs.Runs.from_any(csv)) == 3
    assert len(bs.Runs.from_any(parquet)) == 3


def test_unknown_source_lists_bundled_names():
    with pytest.raises(RunsError, match=r"neither an existing file nor a bundled data set.*chinchilla"):
        bs.Runs.from_any("no-such-thing")


def test_fewer_runs_than_free_parameters():
    # Three runs fit with the population prior (tests/methods/test_small_ladders.py); two do not.
    with pytest.raises(RunsError, match=r"2 runs cannot constrain 7 free parameters.*population prior"):
        bs.fit(frame().iloc[:2], law="chinchilla")


def test_bundled_chinchilla_dataset():
    runs = bs.datasets.load("chinchilla")
    assert len(runs) == 245
    assert runs.frame["epoch_outlier"].sum() == 5
    np.testing.assert_allclose(
        runs.column("compute"), 6 * runs.column("params") * runs.column("tokens"), rtol=1e-9
    )
    assert "Epoch AI" in bs.datasets.card("chinchilla")
    with pytest.raises(bs.DatasetError, match="unknown data set 'nope'"):
        bs.datasets.load("nope")


def test_bundled_datablations_datasets():
    runs = bs.datasets.load("datablations")
    assert len(runs) == 182 and runs.has_unique_tokens
    assert runs.frame["epochs"].max() == 9000
    full = bs.datasets.load("datablations-all")
    assert len(full) == 317 - 9  # the 9 unfinished runs have no final loss
    assert "Apache-2.0" in bs.datasets.card("datablations")


# --- Bad input: every way a runs table can be wrong (issue 8) -----------------------------------


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"params": "parms"}, r"params: candidate column 'parms': map it with --column params=parms"),
        ({"tokens": "tokns"}, r"candidate column 'tokns': map it with --column tokens=tokns"),
        ({"loss": "val_los"}, r"candidate column 'val_los': map it with --column loss=val_los"),
        ({"tokens": "training_token"}, r"--column tokens=training_token \(Python: columns="),
    ],
)
def test_misspelled_column_gets_a_suggestion(columns, message):
    with pytest.raises(RunsError, match=message) as caught:
        bs.Runs.from_any(frame().rename(columns=columns))
    assert "rename" not in str(caught.value)  # the user maps a column; they never edit their file


def test_missing_column_without_close_name_lists_accepted_names():
    with pytest.raises(
        RunsError, match=r"missing required column\(s\) \['loss'\].*Accepted names: loss: loss, l"
    ):
        bs.Runs.from_any(frame().rename(columns={"loss": "accuracy"}))


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("loss", True, r"column 'loss' row 1: True is not a number"),
        ("tokens", "1e9 tokens", r"column 'tokens' row 1: '1e9 tokens' is not a number"),
        ("params", [1, 2], r"column 'params' row 1: \[1, 2\] is not a number"),
        ("params", None, r"column 'params' row 1: value nan is missing \(NaN\)"),
        ("unique_tokens", -1.0, r"column 'unique_tokens' row 1: value -1.0 must be > 0"),
        ("compute", 0, r"column 'compute' row 1: value 0.0 must be > 0"),
        ("loss", "inf", r"column 'loss' row 1: value inf is infinite"),
    ],
)
def test_more_bad_values_name_column_and_row(column, value, message):
    data = frame(unique_tokens=[2e9, 4e9, 8e9], compute=[1e19, 2e19, 3e19])
    data[column] = data[column].astype(object)
    data.at[1, column] = value
    with pytest.raises(RunsError, match=message):
        bs.Runs.from_any(data)


@pytest.mark.parametrize("value", [25.0, 45.3, 1e4])
def test_loss_that_cannot_be_nats_per_token(value):
    with pytest.raises(
        RunsError, match=r"column 'loss' row 2: .* cannot be a loss in nats per token.*Perplexity"
    ):
        bs.Runs.from_any(frame(loss=[3.1, 2.9, value]))


def test_header_only_file_and_whitespace_file(tmp_path):
    header = tmp_path / "header.csv"
    header.write_text("params,tokens,loss\n")
    with pytest.raises(RunsError, match="no rows"):
        bs.Runs.from_any(header)
    blank = tmp_path / "blank.csv"
    blank.write_text("\n\n   \n")
    with pytest.raises(RunsError, match="is empty"):
        bs.Runs.from_any(blank)


def test_files_that_are_not_tables(tmp_path):
    binary = tmp_path / "weights.csv"
    binary.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(RunsError, match="could not be read as a table"):
        bs.Runs.from_any(binary)
    semicolons = tmp_path / "semi.csv"
    semicolons.write_text("params;tokens;loss\n1e8;2e9;3.1\n2e8;4e9;2.9\n")
    with pytest.raises(RunsError, match="whole header was read as one column"):
        bs.Runs.from_any(semicolons)
    as_json = tmp_path / "runs.json"
    as_json.write_text('{"params": [1]}')
    with pytest.raises(RunsError, match=r"unsupported file type '.json'"):
        bs.Runs.from_any(as_json)
    bad_parquet = tmp_path / "runs.parquet"
    bad_parquet.write_text("params,tokens,loss\n1,2,3\n")
    with pytest.raises(RunsError, match="could not be read as a table"):
        bs.Runs.from_any(bad_parquet)
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    with pytest.raises(RunsError, match=r"is a folder, not a \.csv/\.parquet file of runs"):
        bs.Runs.from_any(folder)
    with pytest.raises(RunsError, match="cannot read runs from a list"):
        bs.Runs.from_any([1, 2, 3])


def test_repeated_and_conflicting_column_names():
    data = pd.DataFrame([[1e8, 2e9, 3.0, 2.0]], columns=["params", "tokens", "loss", "loss"])
    with pytest.raises(RunsError, match=r"repeated column name\(s\) \['loss'\]"):
        bs.Runs.from_any(data)
    with pytest.raises(RunsError, match=r"columns 'N' and 'n_params' both mean 'params'"):
        bs.Runs.from_any(frame().rename(columns={"params": "N"}).assign(n_params=1e9))
    # Two spellings of the canonical name itself (found by hypothesis: a ValueError before).
    with pytest.raises(RunsError, match=r"columns 'Tokens' and 'tokens' both mean 'tokens'"):
        bs.Runs.from_any(frame().rename(columns={"tokens": "Tokens"}).assign(tokens=1e9))


def test_duplicate_runs_warn_are_kept_and_can_be_dropped():
    data = pd.concat([frame(), frame().iloc[[0]]], ignore_index=True)
    with pytest.warns(bs.RunsWarning, match=r"row 3 equals row 0.*kept.*drop_duplicates\(\)"):
        runs = bs.Runs.from_any(data)
    assert len(runs) == 4
    assert len(runs.drop_duplicates()) == 3
    # Same (N, D) with a different loss is a repeat with another seed, not a copy: no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bs.Runs.from_any(pd.concat([frame(), frame(loss=[3.0, 2.8, 2.6])], ignore_index=True))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"params": [100.0, 200.0, 400.0]}, r"column 'params': the largest value is 400 \(row 2\).*millions"),
        ({"params": [0.1, 0.2, 0.4], "tokens": [2.0, 4.0, 8.0]}, r"column 'tokens': the largest value is 8"),
        ({"tokens": [2.0, 4.0, 8e6]}, r"median tokens per parameter is 2e-08 .*row 0: 2 tokens for 1e\+08"),
    ],
)
def test_units_that_look_wrong_warn_with_evidence(overrides, message):
    with pytest.warns(bs.RunsWarning, match=message):
        runs = bs.Runs.from_any(frame(**overrides))
    assert len(runs) == 3


def test_plausible_ladder_loads_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bs.Runs.from_any(frame(params=[7e4, 1e9, 1e15], tokens=[1e6, 2e10, 1e16]))


def test_compute_overflow_is_an_error():
    with pytest.raises(RunsError, match=r"row 0: 6 x params x tokens .* overflows"):
        bs.Runs.from_any(frame(params=[1e200, 2e8, 4e8], tokens=[1e200, 4e9, 8e9]))


def test_fewer_runs_than_free_parameters_names_them():
    sigma = {"sigma": bs.Prior("LogNormal", mu=-4.6, sigma=0.5)}  # the user's own: nothing is borrowed
    with pytest.raises(RunsError, match=r"5 runs cannot constrain 6 free parameters \(E, A, B"):
        bs.fit(pd.concat([frame(), frame().iloc[:2] * 1.1]), law="chinchilla", priors=sigma)
    with pytest.raises(RunsError, match=r"3 runs cannot constrain 3 free parameters"):
        bs.fit(frame(), law="kaplan-n", likelihood="normal")


# --- The command line: user mistakes print `error: ...`, warnings print `warning: ...` ---------------


def test_cli_bad_runs_file_is_one_line_error(tmp_path, capsys):
    from bayescale.cli import main

    bad = tmp_path / "runs.csv"
    frame(loss=[3.1, "oops", 2.7]).to_csv(bad, index=False)
    code = main(["fit", str(bad), "--out", str(tmp_path / "fit.nc")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: column 'loss' row 1: 'oops' is not a number")
    assert "Traceback" not in err
    assert not (tmp_path / "fit.nc").exists()


def test_cli_runs_warnings_are_one_line(tmp_path, capsys):
    from bayescale.cli import main

    runs = tmp_path / "runs.csv"
    frame(params=[100, 200, 400]).iloc[:2].to_csv(runs, index=False)
    # too few runs even for the population prior stops the fit after validation: the warning must
    # already be out
    code = main(["fit", str(runs), "--out", str(tmp_path / "fit.nc")])
    err = capsys.readouterr().err
    assert code == 2
    assert "warning: runs units look wrong" in err and "are these millions" in err
    assert "warnings.warn" not in err
