"""Residual trends: every fit checks that its law's shape follows its own runs."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import quick

import bayescale as bs
from bayescale.cli import main
from bayescale.inference.diagnostics import FitWarning
from bayescale.posterior.residuals import trend_message, trends


def test_trends_find_a_slope_and_a_u_shape_and_nothing_in_noise():
    rng = np.random.default_rng(0)
    params = np.repeat(np.geomspace(1e7, 1e10, 8), 5)
    tokens = np.tile(np.geomspace(1e9, 1e11, 5), 8)
    log_n = np.log(params)
    for residual, expect in (
        (0.01 * (log_n - log_n.mean()) + rng.normal(0, 0.005, log_n.size), "trend with params"),
        (0.01 * (log_n - log_n.mean()) ** 2 + rng.normal(0, 0.005, log_n.size), "U-shape in log params"),
    ):
        table = trends(pd.DataFrame({"params": params, "tokens": tokens, "residual": residual}))
        assert expect in trend_message(table)
        assert not table.loc["tokens", "trend"]
    noise = pd.DataFrame({"params": params, "tokens": tokens, "residual": rng.normal(0, 0.01, params.size)})
    assert trend_message(trends(noise)) is None


def rising_runs() -> pd.DataFrame:
    """Losses that rise with N and D: no scaling law of the Chinchilla form fits them."""
    rng = np.random.default_rng(3)
    params = np.repeat(np.geomspace(5e7, 2e9, 6), 5)
    tokens = params * np.tile([5.0, 10.0, 20.0, 40.0, 80.0], 6)
    loss = 1.0 + 0.2 * np.log(params * tokens / 1e16) + rng.normal(0, 0.01, params.size)
    return pd.DataFrame({"params": params, "tokens": tokens, "loss": loss})


def test_a_law_that_misses_its_runs_warns_at_fit_and_in_the_summary(tmp_path, capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = bs.fit(rising_runs(), law="chinchilla", random_seed=1, **quick(warn=True))
    said = [str(w.message) for w in caught if issubclass(w.category, FitWarning)]
    assert any("the law's shape misses its own runs" in m for m in said), said
    assert fit.residual_trends()["trend"].any()
    path = fit.save(tmp_path / "rising.nc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        assert main(["summary", str(path), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert "shape misses" in payload["misfit"] and payload["residual_trends"]["params"]["trend"]


def test_a_law_that_follows_its_runs_does_not(quick_fit):
    table = quick_fit.residual_trends()
    assert list(table.index) == ["params", "tokens"] and trend_message(table) is None


@pytest.mark.parametrize("case", ["independent", "monotone", "ties", "perfect", "small"])
def test_spearman_is_scipy_s(case):
    from scipy import stats

    from bayescale.posterior.residuals import spearman

    rng = np.random.default_rng(5)
    x = rng.normal(size=40)
    y = {
        "independent": rng.normal(size=40),
        "monotone": np.exp(x) + rng.normal(0, 0.5, size=40),
        "ties": np.round(x + rng.normal(size=40)),
        "perfect": -(x**3),
        "small": rng.normal(size=40),
    }[case]
    if case == "small":
        x, y = x[:5], y[:5]
    expected = stats.spearmanr(x, y)
    rho, pvalue = spearman(x, y)
    assert rho == pytest.approx(expected.statistic, rel=1e-12, abs=1e-15)
    assert pvalue == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)


def test_the_residuals_are_computed_once_per_posterior_and_runs(monkeypatch):
    """The fit's warning, summary and report share one computation; new draws or runs redo it."""
    from cheap_fits import cheap_fit

    from bayescale.methods import parametric

    fit = cheap_fit()
    calls = []
    real = parametric.log_residuals
    monkeypatch.setattr(parametric, "log_residuals", lambda *a: calls.append(1) or real(*a))
    first = fit.residual_trends()
    pd.testing.assert_frame_equal(fit.residual_trends(), first)
    fit.to_dict()
    assert len(calls) == 1
    fit.idata = fit.idata.copy()
    fit.residual_trends()
    assert len(calls) == 2
    fit.runs = fit.runs.subset(np.ones(len(fit.runs), dtype=bool))
    fit.residual_trends()
    assert len(calls) == 3
