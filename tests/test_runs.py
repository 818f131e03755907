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
    with pytest.raises(RunsError, match=r"3 runs cannot constrain 7 free parameters"):
        bs.fit(frame(), law="chinchilla")


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
