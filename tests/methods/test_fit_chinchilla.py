"""Replication of Epoch AI's refit of the Chinchilla runs (the default end-to-end fit)."""

import numpy as np


def test_replicates_epoch_refit(chinchilla_fit):
    """Posterior medians inside Epoch's 95% bootstrap intervals (anchors: epoch-chinchilla)."""
    table = chinchilla_fit.summary(prob=0.9)
    assert 0.317 <= table.loc["alpha_N", "median"] <= 0.373
    assert 0.331 <= table.loc["alpha_D", "median"] <= 0.415
    assert 1.769 <= table.loc["E", "median"] <= 1.871
    assert 285.2 <= table.loc["A", "median"] <= 743.6
    assert 1042.4 <= table.loc["B", "median"] <= 5810.3


def test_diagnostics_clean(chinchilla_fit):
    d = chinchilla_fit.diagnostics
    assert d["divergences"] == 0
    assert d["max_r_hat"] <= 1.01
    assert d["min_ess_bulk"] >= 1000
    assert d["ok"]


def test_tokens_per_param_interval_contains_epoch(chinchilla_fit):
    row = chinchilla_fit.optimal(5.76e23, prob=0.9).iloc[0]
    assert row["tokens_per_param_lower"] <= 18.3 <= row["tokens_per_param_upper"]
    assert row["params_lower"] <= 7.24e10 <= row["params_upper"]
    assert row["params_lower"] < row["params_median"] < row["params_upper"]


def test_predict_mean_and_predictive(chinchilla_fit):
    table = chinchilla_fit.predict([7e10, 1e9], [1.4e12, 2e10], random_seed=0)
    assert list(table["params"]) == [7e10, 1e9]
    # The predictive interval includes run-to-run noise, so it is wider than the mean's.
    width = table["loss_upper"] - table["loss_lower"]
    width_pred = table["loss_predictive_upper"] - table["loss_predictive_lower"]
    assert np.all(width_pred > width)
    # Chinchilla 70B on 1.4T tokens: Epoch's law gives 1.94-1.98.
    assert 1.9 < table["loss_median"].iloc[0] < 2.05
