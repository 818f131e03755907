"""Held-out coverage beyond the runs on ladders the fitted law does not describe.

Each ladder is drawn from a law whose data exponent flattens past D_b ~ 2e10
(:func:`bayescale.checks.simulate.misspecified_ladder`, ``"bending"``); the Chinchilla
law is fitted to its sizes below 1e9 and predicts the 10 runs of the two larger sizes
(1.2e9 and 3e9 parameters, up to 80 tokens per parameter: 3-24x the training compute).
Runs of one ladder share its parameters, so coverage is pooled with each ladder as one
correlated cluster (:func:`bayescale.checks.calibration.cluster_interval`): the tolerance
comes from the spread between ladders and the number of ladders, not from a fixed margin.
"""

import numpy as np
import pytest
from conftest import QUICK

from bayescale.checks.calibration import cluster_interval
from bayescale.checks.extrapolation import extrapolate
from bayescale.checks.simulate import misspecified_ladder


def held_out(kind: str, seeds: range) -> dict[str, np.ndarray]:
    """Per ladder: held-out runs, how many the 90% intervals cover and their mean relative width.

    For the default answers (blended with the variant law beyond the runs) and the
    fitted law alone, from the same fit.
    """
    out: dict[str, list[float]] = {k: [] for k in ("n", "covered", "covered_single", "width", "width_single")}
    for seed in seeds:
        runs = misspecified_ladder(kind, seed)
        result = extrapolate(runs, "chinchilla", threshold=1e9, by="params", random_seed=seed, **QUICK)
        test = (result.runs["split"] == "test").to_numpy()
        for suffix, table in (("", result.averaged), ("_single", result.runs)):
            rows = table[test]
            inside = (rows["loss_predictive_lower"] <= rows["loss"]) & (
                rows["loss"] <= rows["loss_predictive_upper"]
            )
            width = (rows["loss_predictive_upper"] - rows["loss_predictive_lower"]) / rows[
                "loss_predictive_median"
            ]
            out[f"covered{suffix}"].append(float(inside.sum()))
            out[f"width{suffix}"].append(float(width.mean()))
        out["n"].append(float(test.sum()))
    return {k: np.asarray(v) for k, v in out.items()}


def check_coverage(scores: dict[str, np.ndarray]) -> None:
    low, high = cluster_interval(scores["covered"], scores["n"], prob=0.95)
    pooled = scores["covered"].sum() / scores["n"].sum()
    # Calibrated: nominal 90% inside the 95% cluster interval (neither too narrow nor vacuous) ...
    assert low <= 0.9 <= high, (pooled, low, high, scores)
    # ... and not by being wide: at most 1.5x the single law's width, and under 15% of the loss.
    ratio = scores["width"].mean() / scores["width_single"].mean()
    assert ratio <= 1.5 and scores["width"].mean() < 0.15, (ratio, scores)


@pytest.mark.slow  # a statistical check over several fits (the default suite keeps its budget)
def test_held_out_coverage_beyond_the_runs_on_misspecified_ladders():
    check_coverage(held_out("bending", range(20, 30)))


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="over-covers: on these 30 ladders the 90% intervals held 0.977 [0.953, 1.0] of the larger "
    "runs (the law alone 0.943 [0.911, 0.975]) at 1.2x its width; 0.9 is outside the 95% cluster interval",
)
def test_held_out_coverage_on_more_misspecified_ladders():
    check_coverage(held_out("bending", range(30, 60)))
