"""Tree-depth statistics of the diagnostics, and the one renderer of every command's diagnostics line."""

import numpy as np
import pytest
import xarray as xr

from bayescale.inference import container, diagnostics


def _idata(steps: np.ndarray, **flags: np.ndarray) -> xr.DataTree:
    dims = ("chain", "draw")
    rng = np.random.default_rng(0)
    posterior = xr.Dataset({"x": (dims, rng.normal(size=steps.shape))})
    stats = xr.Dataset(
        {"n_steps": (dims, steps), "diverging": (dims, np.zeros(steps.shape, bool))}
        | {k: (dims, v) for k, v in flags.items()}
    )
    return container.from_groups(posterior=posterior, sample_stats=stats)


def test_share_at_max_tree_depth_is_read_from_the_steps():
    steps = np.full((4, 500), 15)
    steps[0, :30] = 1023  # 30 of 2000 draws: 1.5%
    report = diagnostics.compute(_idata(steps), ["x"])
    assert report["median_steps"] == 15
    assert report["max_tree_depth_share"] == pytest.approx(0.015)
    (warning,) = report["warnings"]
    assert "1.5% of draws reached the maximum tree depth (10" in warning
    assert report["ok"]  # slow, not wrong: r_hat and ESS judge the draws


def test_pymc_flag_takes_precedence_and_a_few_saturated_trees_are_no_warning():
    steps = np.full((2, 1000), 1023)
    flags = np.zeros((2, 1000), bool)
    flags[0, :10] = True  # 0.5%
    report = diagnostics.compute(_idata(steps, reached_max_treedepth=flags), ["x"])
    assert report["max_tree_depth_share"] == pytest.approx(0.005)
    assert report["warnings"] == []


def test_no_step_counts_give_nan_and_the_line_leaves_them_out():
    idata = _idata(np.full((4, 500), 7))
    idata = container.with_group(
        idata, "sample_stats", container.group(idata, "sample_stats").drop_vars("n_steps")
    )
    report = diagnostics.compute(idata, ["x"])
    assert np.isnan(report["median_steps"]) and np.isnan(report["max_tree_depth_share"])
    (line,) = diagnostics.summary_lines(report)
    assert "leapfrog" not in line and "tree depth" not in line


def test_summary_lines_name_steps_saturation_problems_and_warnings():
    report = {
        "divergences": 2,
        "max_r_hat": 1.02,
        "min_ess_bulk": 310.4,
        "median_steps": 511.0,
        "max_tree_depth_share": 0.2,
        "ok": False,
        "problems": ["p1"],
        "warnings": ["w1"],
    }
    assert diagnostics.summary_lines(report) == [
        "diagnostics: 2 divergences, max r_hat 1.020, min bulk ESS 310, median 511 leapfrog steps per draw, "
        "20.0% at max tree depth -> FAILED",
        "  problem: p1",
        "  warning: w1",
    ]
    # A fit saved before the tree statistics existed, with a single chain (r_hat undefined).
    old = {k: report[k] for k in ("divergences", "min_ess_bulk", "problems")} | {
        "max_r_hat": None,
        "ok": True,
    }
    assert (
        diagnostics.summary_lines(old)[0]
        == "diagnostics: 2 divergences, max r_hat n/a, min bulk ESS 310 -> ok"
    )


def test_saturated_trees_warn_at_fit_time():
    report = diagnostics.compute(_idata(np.full((4, 500), 1023)), ["x"])
    with pytest.warns(diagnostics.FitWarning, match="sampler struggled"):
        diagnostics.warn_if_failed(report)


def test_the_sampler_path_is_read_from_the_draws_and_shown_after_the_summary_line():
    idata = _idata(np.full((4, 500), 7))
    assert "sampler_path" not in diagnostics.compute(idata, ["x"])  # a sampler that did not say
    stats = container.group(idata, "sample_stats")
    stats.attrs["sampler_path"] = "PyMC model with pymc (not the fast path: backend 'pymc' asked for)"
    report = diagnostics.compute(container.with_group(idata, "sample_stats", stats), ["x"])
    assert report["sampler_path"] == stats.attrs["sampler_path"]
    assert diagnostics.summary_lines(report)[1] == f"  sampler: {stats.attrs['sampler_path']}"


def test_a_fit_records_its_sampler_path_and_keeps_it_when_saved(quick_fit, quick_fit_path):
    import warnings

    import bayescale as bs

    assert quick_fit.diagnostics["sampler_path"].startswith("fast path (JAX density), ")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.FitWarning)  # the quick fit's short chains may fail r_hat
        loaded = bs.load_fit(quick_fit_path)
    assert loaded.diagnostics["sampler_path"] == quick_fit.diagnostics["sampler_path"]
