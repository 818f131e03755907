"""Checkpoints without a schedule get a warning saying what a mid-decay checkpoint means."""

import warnings

import numpy as np
import pandas as pd
import pytest

from bayescale.data.checkpoints import checkpoints_kept, mid_decay_problem, select_checkpoints, warn_mid_decay
from bayescale.data.columns import warn_ladder
from bayescale.data.runs import Runs
from bayescale.errors import BayescaleError, RunsWarning


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


def _schedule() -> pd.DataFrame:
    """One run of 10 checkpoints: warm-up to its lr peak at step 2, then a decay to 0.1x over 8 steps."""
    steps = np.arange(1, 11)
    lr = np.where(steps < 2, 0.5e-3, 1e-3 * (0.1 + 0.45 * (1 + np.cos(np.pi * (steps - 2) / 8))))
    return pd.DataFrame(
        {"run": "a", "params": 1e8, "tokens": steps * 1e9, "loss": 8.0 / np.sqrt(steps), "lr": lr}
    )


def test_the_default_keeps_the_end_of_each_decay_and_counts_what_it_leaves_out():
    frame = pd.concat([_schedule(), _schedule().assign(run="b", params=2e8)], ignore_index=True)
    keep, message = checkpoints_kept(frame.sample(frac=1.0, random_state=0).reset_index(drop=True))
    # per run: step 10 (step 9's lr is 1.34x the last); step 1 is warm-up, steps 2-9 mid-decay
    assert keep.sum() == 2
    kept = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)[keep]
    assert sorted(kept["tokens"].unique()) == [10e9]
    assert message is not None and message.startswith("18 of 20 checkpoints (in 2 runs) are left out")
    assert "2 in warm-up" in message and "16 mid-decay" in message
    assert "checkpoints='after-warmup'" in message and "'all'" in message


def test_warmup_is_before_a_tenth_of_the_run_or_its_lr_peak():
    frame = _schedule()
    keep, message = checkpoints_kept(frame, "after-warmup")
    assert keep.tolist() == [False] + [True] * 9  # before the lr peak
    assert message is not None and "1 in warm-up" in message and "checkpoints='all'" in message
    # without lr: the first 10% of the run's tokens (step 1 of 10 is at 10%: kept; step 0.5 is not),
    # asked for by name only (the default cannot tell warm-up from a short decayed run without lr)
    early = pd.concat([frame.drop(columns="lr"), frame.drop(columns="lr").iloc[:1].assign(tokens=5e8)])
    keep, message = checkpoints_kept(early, "after-warmup")
    assert keep.tolist() == [True] * 10 + [False]
    assert message is not None and "1 in warm-up (the first 10% of their run's tokens;" in message
    keep, message = checkpoints_kept(early)
    assert keep.all() and message is None


def test_all_keeps_every_row_and_independent_runs_are_never_dropped():
    keep, message = checkpoints_kept(_schedule(), "all")
    assert keep.all() and message is None
    one_each = _schedule().assign(run=[f"r{i}" for i in range(10)])
    keep, message = checkpoints_kept(one_each)
    assert keep.all() and message is None
    with pytest.raises(BayescaleError, match=r"unknown checkpoints policy 'final'.*end-of-decay"):
        checkpoints_kept(_schedule(), "final")


def test_select_checkpoints_warns_and_returns_the_rows_kept():
    runs = Runs.from_any(_schedule())
    with pytest.warns(RunsWarning, match="9 of 10 checkpoints"):
        kept = select_checkpoints(runs)
    assert len(kept) == 1 and kept.frame["tokens"].min() == 10e9
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert select_checkpoints(runs, "all") is runs


def test_a_fit_reads_the_rows_its_policy_keeps(monkeypatch):
    import bayescale.methods.parametric as parametric

    seen = []

    def stop(law, runs, *args, **kwargs):
        seen.append(len(runs))
        raise KeyboardInterrupt  # before sampling

    monkeypatch.setattr(parametric, "run_sampler", stop)
    frame = pd.concat(
        [_schedule().assign(run=f"r{i}", params=n) for i, n in enumerate([1e8, 2e8, 4e8, 8e8])],
        ignore_index=True,
    )
    for policy, rows in (("end-of-decay", 4), ("after-warmup", 36), ("all", 40)):  # 1 warm-up row per run
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RunsWarning)
            with pytest.raises(KeyboardInterrupt):
                parametric.fit_parametric(frame, checkpoints=policy)
        assert seen[-1] == rows, policy
