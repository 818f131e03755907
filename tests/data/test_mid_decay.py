"""Checkpoints without a schedule get a warning saying what a mid-decay checkpoint means."""

import warnings

import numpy as np
import pandas as pd

from bayescale.data.checkpoints import mid_decay_problem, warn_mid_decay
from bayescale.data.columns import warn_ladder
from bayescale.errors import RunsWarning


def _curves(lr=None) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "run": np.repeat(["a", "b"], 3),
            "params": np.repeat([1e8, 2e8], 3),
            "tokens": np.tile([1e9, 2e9, 4e9], 2),
            "loss": [3.6, 3.4, 3.3, 3.5, 3.3, 3.2],
        }
    )
    return frame if lr is None else frame.assign(lr=lr)


def test_checkpoints_without_lr_are_warned_about_with_what_to_give():
    problem = mid_decay_problem(_curves())
    assert problem is not None
    assert "2 runs have checkpoints" in problem and "no 'lr' column" in problem
    assert "middle of a learning-rate decay" in problem and "give an 'lr' column" in problem
    assert "fit_curves" in problem
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_ladder(_curves())  # the data layer's check every fit runs (two sizes: its own warning too)
    assert any(w.category is RunsWarning and "no 'lr' column" in str(w.message) for w in caught)


def test_mid_decay_rows_are_counted_and_end_of_decay_ones_pass():
    decaying = [3e-3, 1e-3, 3e-4] * 2  # the first two checkpoints of each run are mid-decay
    problem = mid_decay_problem(_curves(decaying))
    assert problem is not None and problem.startswith("4 of 6 checkpoints (in 2 runs, e.g. 'a')")
    assert mid_decay_problem(_curves([3.1e-4, 3.05e-4, 3e-4] * 2)) is None  # within 10% of the last


def test_independent_runs_are_not_checkpoints():
    one_each = _curves().assign(run=[f"r{i}" for i in range(6)])
    assert mid_decay_problem(one_each) is None
    assert mid_decay_problem(_curves().drop(columns="run")) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_mid_decay(one_each)
