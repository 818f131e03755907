"""A fit records its seed: drawn when none is given, printed by the CLI, saved with the fit, and
enough to re-run it exactly; answers take ``random_seed=`` alike (issue 33 item 5)."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from conftest import QUICK, TRUE_CHINCHILLA, hand_built_fit, simulate_ladder

import bayescale as bs
from bayescale.inference.sampling import SEED_RANGE, resolve_seed


def _load(path):
    """``load_fit`` without its FitWarning: 200 draws at a seed not chosen may fail the diagnostics."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.FitWarning)
        return bs.load_fit(path)


def test_resolve_seed_draws_one_when_none_and_keeps_a_given_one():
    drawn = {resolve_seed(None) for _ in range(5)}
    assert all(isinstance(seed, int) and 0 <= seed < SEED_RANGE for seed in drawn)
    assert len(drawn) > 1  # five draws from 2**31 seeds: all equal with probability 2**-124
    assert resolve_seed(7) == 7 and resolve_seed(np.int64(7)) == 7
    for bad in (1.5, "3", True):
        with pytest.raises(bs.BayescaleError, match="random_seed must be an integer or None"):
            resolve_seed(bad)


def test_a_fit_without_a_seed_records_the_one_that_reruns_it(quick_fit, tmp_path, monkeypatch):
    """The seed drawn is the one the sampler ran with: made to draw conftest's quick_fit's seed,
    a fit given none records it and draws exactly quick_fit's posterior (one fit, no compile)."""
    import secrets

    monkeypatch.setattr(secrets, "randbelow", lambda _: quick_fit.random_seed)
    runs = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=7)
    drawn = bs.fit(runs, law="chinchilla", **QUICK)
    assert drawn.random_seed == quick_fit.random_seed
    for name in quick_fit.posterior.data_vars:
        np.testing.assert_array_equal(drawn.posterior[name].values, quick_fit.posterior[name].values)
    assert _load(drawn.save(tmp_path / "fit.nc")).random_seed == quick_fit.random_seed


def test_cli_fit_prints_the_drawn_seed_and_saves_it(tmp_path, capsys):
    from bayescale.cli import main

    path = tmp_path / "runs.csv"
    simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=7).to_csv(path, index=False)
    cheap = ["--draws", "200", "--tune", "300", "--chains", "2"]
    assert main(["fit", str(path), "--out", str(tmp_path / "a.nc"), *cheap]) == 0
    found = re.search(
        r"bayescale: seed (\d+) \(drawn; --seed (\d+) re-runs this fit\)", capsys.readouterr().err
    )
    assert found is not None and found[1] == found[2]
    assert _load(tmp_path / "a.nc").random_seed == int(found[1])
    # A given seed is not announced: tests/inference/test_progress.py's CLI fits (--seed 4) check it.


def test_answers_take_random_seed_as_the_readme_passes_it():
    """``Fit.optimal`` (and the other plan answers) accept ``random_seed=`` like ``predict`` and an
    average's ``optimal``; they draw no random numbers, so the seed leaves them unchanged."""
    runs = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=7)
    fit = hand_built_fit("chinchilla", runs, TRUE_CHINCHILLA)
    inside = {"average_beyond": False}
    assert fit.optimal(1e20, random_seed=0, **inside).equals(fit.optimal(1e20, **inside))
    assert fit.target_compute(2.5, random_seed=0, **inside).equals(fit.target_compute(2.5, **inside))
    plans = [(1e9, 2e10), (2e9, 1e10)]
    assert fit.compare_plans(plans, random_seed=0, **inside).equals(fit.compare_plans(plans, **inside))
