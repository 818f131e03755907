"""The Curves table: validation errors name the run, row and column."""

from __future__ import annotations

import pandas as pd
import pytest

import bayescale as bs


def frame(**overrides) -> pd.DataFrame:
    base = pd.DataFrame(
        {
            "run_name": ["a", "a", "a", "b", "b", "c", "c"],
            "params": [1e7, 1e7, 1e7, 2e7, 2e7, 4e7, 4e7],
            "tokens_seen": [1e8, 3e8, 2e8, 1e8, 2e8, 1e8, 2e8],
            "loss": [4.0, 3.6, 3.8, 3.9, 3.7, 3.8, 3.5],
        }
    )
    for k, v in overrides.items():
        base[k] = v
    return base


def test_aliases_sorting_and_derived_columns():
    curves = bs.Curves.from_any(frame())
    assert list(curves.frame["tokens"][:3]) == [1e8, 2e8, 3e8]  # sorted within the run
    assert curves.run_names == ["a", "b", "c"]
    assert curves.frame["compute"].iloc[0] == pytest.approx(6 * 1e7 * 1e8)
    assert curves.runs_table()["n_points"].tolist() == [3, 2, 2]
    assert len(curves.final_runs()) == 3 and curves.final_runs()["loss"].tolist() == [3.6, 3.7, 3.5]


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"params": [1e7, 1e7, 2e7, 2e7, 2e7, 4e7, 4e7]}, "run 'a' has rows with different params"),
        (
            {"tokens_seen": [1e8, 1e8, 2e8, 1e8, 2e8, 1e8, 2e8]},
            "run 'a' has two checkpoints at 1e\\+08 tokens",
        ),
        ({"loss": [4.0, -1.0, 3.8, 3.9, 3.7, 3.8, 3.5]}, "column 'loss' row 1"),
        ({"run_name": ["a", "a", "a", "b", "b", "c", "d"]}, "run 'c' has a single checkpoint"),
        ({"run_name": ["a", "a", "a", None, "b", "c", "c"]}, "column 'run' row 3: missing run label"),
    ],
)
def test_bad_curves(bad, match):
    with pytest.raises(bs.RunsError, match=match):
        bs.Curves.from_any(frame(**bad))


def test_missing_run_column_and_single_run():
    with pytest.raises(bs.RunsError, match="need a 'run' column"):
        bs.Curves.from_any(frame().drop(columns="run_name"))
    with pytest.raises(bs.RunsError, match="at least 2 runs"):
        bs.Curves.from_any(frame().iloc[:3])


def test_bundled_gemstones_curves():
    curves = bs.Curves.from_any("gemstones")
    assert len(curves) == 770 and len(curves.run_names) == 22
    with pytest.raises(bs.DatasetError, match="not loss curves"):
        bs.datasets.load_curves("chinchilla")


def test_curves_take_the_column_mapping_and_row_filters():
    raw = frame().rename(columns={"params": "N_nonembed", "loss": "loss_c4"}).assign(iteration_no=range(1, 8))
    with pytest.raises(bs.RunsError, match=r"--column params=N_nonembed"):
        bs.Curves.from_any(raw)
    curves = bs.Curves.from_any(
        raw,
        columns={"params": "N_nonembed", "loss": "loss_c4", "step": "iteration_no"},
        where="N_nonembed < 3e7",
    )
    assert curves.run_names == ["a", "b"] and "step" in curves.frame.columns
    assert curves.notes == ("row filters N_nonembed < 3e7: kept 5 of 7 rows",)
    with pytest.raises(bs.RunsError, match=r"column mapping step=nope: the table has no column 'nope'"):
        bs.Curves.from_any(raw, columns={"params": "N_nonembed", "loss": "loss_c4", "step": "nope"})
