"""Loss units: stated, checked against the loss column's name, kept in saved fits and answers."""

from __future__ import annotations

import pandas as pd
import pytest

import bayescale as bs
from bayescale.data.storage import runs_from_dataset, runs_to_dataset
from bayescale.data.units import check_loss_column, loss_label, unit_in_name


@pytest.mark.parametrize(
    ("column", "unit"),
    [
        ("arc_easy_bpb", "bits_per_byte"),
        ("task loss (bits per byte)", "bits_per_byte"),
        ("BPB", "bits_per_byte"),
        ("loss_bits_per_token", "bits_per_token"),
        ("val_nats_per_byte", "nats_per_byte"),
        ("loss", None),
        ("loss_c4_val", None),
        ("bpbx_loss", None),  # not a word of its own
    ],
)
def test_unit_in_name(column, unit):
    assert unit_in_name(column) == unit


def _frame(loss_column: str) -> pd.DataFrame:
    return pd.DataFrame(
        {"params": [1e8, 3e8, 1e9], "tokens": [2e9, 6e9, 2e10], loss_column: [1.1, 0.95, 0.84]}
    )


def test_a_bits_per_byte_column_is_not_taken_as_nats_per_token():
    with pytest.raises(
        bs.RunsError, match=r"loss column 'arc_bpb' is named as bits per byte.*loss_unit='bits_per_byte'"
    ):
        bs.Runs.from_any(_frame("arc_bpb"), columns={"loss": "arc_bpb"})
    runs = bs.Runs.from_any(_frame("arc_bpb"), columns={"loss": "arc_bpb"}, loss_unit="bits_per_byte")
    assert runs.loss_unit == "bits_per_byte"
    assert bs.Runs.from_any(_frame("loss")).loss_unit == "nats_per_token"
    assert runs.subset(runs.column("params") > 2e8).loss_unit == "bits_per_byte"


def test_unknown_units_are_refused():
    with pytest.raises(bs.RunsError, match=r"unknown loss unit 'bpb'; use one of \['nats_per_token'"):
        bs.Runs.from_any(_frame("loss"), loss_unit="bpb")
    with pytest.raises(bs.RunsError, match="unknown loss unit"):
        check_loss_column("loss", "perplexity")
    assert loss_label("bits_per_byte") == "loss [bits per byte]"


def test_the_unit_survives_saving():
    runs = bs.Runs.from_any(_frame("arc_bpb"), columns={"loss": "arc_bpb"}, loss_unit="bits_per_byte")
    assert runs_from_dataset(runs_to_dataset(runs)).loss_unit == "bits_per_byte"
    legacy = runs_to_dataset(bs.Runs.from_any(_frame("loss")))
    del legacy.attrs["loss_unit"]  # a file saved before units: nats per token
    assert runs_from_dataset(legacy).loss_unit == "nats_per_token"


def test_answers_carry_the_unit(quick_fit):
    table = quick_fit.predict(1e9, 2e10, random_seed=1)
    assert table.attrs["loss_unit"] == "nats_per_token"
