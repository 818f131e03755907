"""The diagnostics report is a dataclass (``Diagnostics``) that reads like the dict it replaced and
writes the same JSON: a saved fit's ``diagnostics`` attr and ``to_dict()`` are unchanged by it."""

from __future__ import annotations

import dataclasses
import json

import pytest
from cheap_fits import cheap_fit

import bayescale as bs
from bayescale.inference import container
from bayescale.inference.diagnostics import REQUIRED_KEYS, Diagnostics

#: The keys :func:`compute` wrote, in its order, as a dict before the dataclass (no sampler path, no modes).
COMPUTED = tuple(
    "median_steps max_tree_depth_share warnings restarted_chains divergences max_r_hat min_ess_bulk "
    "r_hat ess_bulk ok problems".split()
)


def test_compute_gives_a_dataclass_that_reads_like_the_dict():
    report = cheap_fit().diagnostics
    assert isinstance(report, Diagnostics)
    assert tuple(report) == COMPUTED == tuple(report.to_dict())
    assert dict(report) == report.to_dict()
    for key in COMPUTED:
        assert report[key] is getattr(report, key)
    assert report.get("sampler_path") is None and "sampler_path" not in report
    with pytest.raises(KeyError):
        report["sampler_path"]
    assert report.ok is True and report.problems == [] and report.divergences == 0
    assert set(report.r_hat) == {"A", "B", "E", "alpha_N", "alpha_D", "sigma"}
    failed = dataclasses.replace(report, ok=False, problems=["1 divergent transitions"])
    assert tuple(failed) == COMPUTED and failed["problems"] == ["1 divergent transitions"]


def test_a_saved_fit_stores_the_same_json_and_reads_back_a_dataclass(tmp_path):
    fit = cheap_fit(seed=3)
    path = fit.save(tmp_path / "fit.nc")
    attr = container.read_netcdf(path)["posterior"].attrs["diagnostics"]
    assert attr == json.dumps(fit.diagnostics.to_dict(), sort_keys=True)
    loaded = bs.load_fit(path)
    assert isinstance(loaded.diagnostics, Diagnostics)
    assert json.dumps(loaded.to_dict(), default=str) == json.dumps(fit.to_dict(), default=str)
    again = loaded.save(tmp_path / "again.nc")
    assert container.read_netcdf(again)["posterior"].attrs["diagnostics"] == attr


def test_a_report_of_another_version_is_written_back_as_read():
    # without the tree statistics of later releases, with an explicit null and a key this version lacks
    older = {
        "divergences": 2,
        "ess_bulk": {"A": 812.0},
        "max_r_hat": 1.002,
        "median_steps": None,
        "min_ess_bulk": 812.0,
        "ok": False,
        "problems": ["2 divergent transitions"],
        "r_hat": {"A": 1.002},
        "step_size": 0.31,
    }
    report = Diagnostics.from_dict(older)
    assert json.dumps(report.to_dict()) == json.dumps(older)
    assert report.median_steps is None and report.warnings == [] and report.other == {"step_size": 0.31}
    assert report["step_size"] == 0.31 and "warnings" not in report and "restarted_chains" not in report
    assert report == older  # compared as a mapping


def test_from_dict_names_what_is_missing():
    with pytest.raises(TypeError, match="diagnostics must be a JSON object, got list"):
        Diagnostics.from_dict([])  # type: ignore[arg-type]
    whole = dict.fromkeys(REQUIRED_KEYS, 0)
    del whole["ok"]
    with pytest.raises(TypeError, match=r"diagnostics lack \['ok'\]"):
        Diagnostics.from_dict(whole)
