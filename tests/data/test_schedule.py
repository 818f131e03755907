"""Schedules as data and the multi-power law's schedule features: hand-computed values."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayescale.data.schedule import (
    Schedule,
    curve_features,
    loss_drop_cells,
    loss_drop_exact,
    per_step_lr,
    summed_lr,
)
from bayescale.errors import RunsError

ANCHOR = Path(__file__).resolve().parents[2] / ".." / "shared" / "anchors" / "multipower-lr-schedules"


def test_warmup_and_shapes_by_hand():
    # warm-up of 5 steps: 0, p/4, p/2, 3p/4, p
    cos = Schedule(peak_lr=1.0, horizon=9, warmup=5, shape="cosine", final_fraction=0.0)
    np.testing.assert_allclose(cos.lr([0, 1, 4]), [0.0, 0.25, 1.0])
    # cosine from step 5 over 4 steps: 1, (1 + cos(pi/4))/2, 1/2, (1 + cos(3pi/4))/2
    np.testing.assert_allclose(cos.lr([5, 6, 7, 8]), [1.0, (1 + 2**-0.5) / 2, 0.5, (1 - 2**-0.5) / 2])
    lin = Schedule(peak_lr=2.0, horizon=4, shape="linear", final_fraction=0.5)
    np.testing.assert_allclose(lin.per_step(), [2.0, 1.75, 1.5, 1.25])
    wsd = Schedule(peak_lr=1.0, horizon=6, shape="wsd", final_fraction=0.25, decay_start=4)
    np.testing.assert_allclose(wsd.per_step(), [1, 1, 1, 1, 1, 0.5])  # geometric halfway to 1/4
    two = Schedule(peak_lr=1.0, horizon=5, shape="two_stage", final_fraction=0.1, decay_start=3)
    np.testing.assert_allclose(two.per_step(), [1, 1, 1, 0.1, 0.1])
    assert Schedule.from_dict(wsd.to_dict()) == wsd


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shape": "step"}, "shape 'step'"),
        ({"peak_lr": 0.0}, "peak_lr"),
        ({"warmup": 10}, "warmup 10"),
        ({"final_fraction": 2.0}, "final_fraction"),
        ({"shape": "wsd"}, "decay_start"),
    ],
)
def test_bad_schedules_are_named(kwargs, match):
    with pytest.raises(RunsError, match=match):
        Schedule(**{"peak_lr": 1.0, "horizon": 10, **kwargs})


def test_features_by_hand():
    lr = np.array([0.0, 1.0, 1.0, 0.5, 0.5])
    np.testing.assert_allclose(summed_lr(lr, [1, 4]), [1.0, 3.0])
    # LD(4) = (1 - 0) G(1, S1(4) - S1(0)) + (0.5 - 1) G(0.5, S1(4) - S1(2)),
    # with G(eta, s) = 1 - (1 + C eta^-g s)^-b
    C, b, g = 2.0, 0.5, 0.5

    def G(eta, s):
        return 1 - (1 + C * eta**-g * s) ** -b

    expected = G(1.0, 3.0) - 0.5 * G(0.5, 1.0)
    np.testing.assert_allclose(loss_drop_exact(lr, [4], C, b, g), [expected])
    # one changing step per bin: the binned sum is exact
    binned = curve_features(lr, [1, 4], bins=8)
    np.testing.assert_allclose(binned.loss_drop(C, b, g), [G(1.0, 1.0), expected])
    np.testing.assert_allclose(binned.s1, [1.0, 3.0])


def test_binned_loss_drop_is_close_to_the_exact_sum():
    sched = Schedule(peak_lr=3e-4, horizon=24000, warmup=2160, shape="cosine")
    lr, steps = sched.per_step(), np.arange(2176, 24000, 512)
    C, b, g, B = 2.07, 0.58, 0.64, 364.0  # Luo et al.'s 25M fit
    error = B * np.abs(curve_features(lr, steps).loss_drop(C, b, g) - loss_drop_exact(lr, steps, C, b, g))
    # measured 8e-5 nats at 96 bins: a tenth of the law's own error on these curves (~4e-3)
    assert error.max() < 1.5e-4


def test_the_non_empty_cells_give_the_binned_sum_with_a_draws_axis():
    sched = Schedule(peak_lr=3e-4, horizon=6000, warmup=500, shape="wsd", decay_start=4000)
    features = curve_features(sched.per_step(), np.r_[0, np.arange(100, 6000, 250)], bins=32)
    cells = features.cells()
    assert len(cells["weight"]) == np.count_nonzero(features.weight)  # empty bins dropped
    C, b, g = np.array([[2.0], [0.5]]), np.array([[0.6], [0.3]]), np.array([[0.6], [0.9]])
    dense = np.stack([features.loss_drop(C[i, 0], b[i, 0], g[i, 0]) for i in range(2)])
    np.testing.assert_allclose(loss_drop_cells(cells, C, b, g), dense, rtol=1e-12, atol=1e-18)
    assert loss_drop_cells(cells, C, b, g)[:, 0].tolist() == [0.0, 0.0]  # step 0: nothing seen yet


def test_bad_steps_and_tables_are_named():
    lr = np.ones(10)
    with pytest.raises(RunsError, match="step 12 is outside"):
        curve_features(lr, [3, 12])
    with pytest.raises(RunsError, match="missing \\['lr'\\]"):
        per_step_lr(pd.DataFrame({"run": ["a"], "step": [0]}))
    with pytest.raises(RunsError, match=r"run 'a': .* every step"):
        per_step_lr(pd.DataFrame({"run": ["a", "a"], "step": [0, 2], "lr": [1.0, 1.0]}))


@pytest.mark.skipif(not ANCHOR.exists(), reason="anchor data not beside the repository")
def test_schedules_reproduce_the_published_per_step_lr():
    table = pd.read_csv(ANCHOR / "lr_schedules_per_step.csv").rename(columns={"schedule": "run"})
    per = per_step_lr(table)
    described = {
        "cosine_24000": Schedule(3e-4, 24000, 2160, "cosine", 0.1),
        "constant_72000": Schedule(3e-4, 72000, 2160, "constant"),
        "wsd_20000_24000": Schedule(3e-4, 24000, 2160, "wsd", 0.1, 20000, "exponential"),
        "wsdld_20000_24000": Schedule(3e-4, 24000, 2160, "wsd", 0.1, 20000, "linear"),
        "wsdcon_9": Schedule(3e-4, 16000, 2160, "two_stage", 0.3, 8000),
    }
    for name, sched in described.items():
        np.testing.assert_allclose(sched.per_step(), per[name], rtol=1e-9, atol=1e-15, err_msg=name)
