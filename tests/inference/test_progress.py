"""Progress on long work: stage lines on stderr when asked for, nothing otherwise (issue 17 part 6)."""

from __future__ import annotations

import numpy as np
import xarray as xr
from conftest import TRUE_CHINCHILLA, simulate_ladder

import bayescale as bs
from bayescale.inference import container
from bayescale.inference.progress import Progress

#: The settings of conftest's quick fit: the compiled sampler is shared with it, not compiled again.
TINY = {"sampler": {"draws": 200, "tune": 300, "chains": 2}, "warn": False, "random_seed": 4}


def test_progress_prints_stage_lines_only_when_enabled(capsys):
    Progress(True)("warm-up")
    Progress(False)("warm-up")
    captured = capsys.readouterr()
    assert captured.err == "bayescale: warm-up\n" and captured.out == ""


def test_fast_path_fit_shows_its_stages_and_the_same_draws_either_way(capsys):
    runs = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=7)
    quiet = bs.fit(runs, progressbar=False, **TINY)
    assert capsys.readouterr().err == ""
    shown = bs.fit(runs, progressbar=True, **TINY)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("bayescale: ")]
    assert lines[0].startswith("bayescale: fast path (JAX density, 7 parameters): finding the posterior mode")
    assert any("NUTS warm-up and sampling, 2 chains x (300 warm-up + 200 draws)" in line for line in lines)
    assert lines[-1].startswith("bayescale: sampled (") and "divergent transitions" in lines[-1]
    assert shown.sampler.backend == "jax"
    for name in quiet.posterior.data_vars:
        np.testing.assert_array_equal(shown.posterior[name].values, quiet.posterior[name].values)


def test_cli_fit_progress_flag(tmp_path, capsys):
    from bayescale.cli import main

    path = tmp_path / "runs.csv"
    simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=7).to_csv(path, index=False)
    cheap = ["--draws", "200", "--tune", "300", "--chains", "2", "--seed", "4"]
    assert main(["fit", str(path), "--out", str(tmp_path / "a.nc"), *cheap]) == 0
    assert "bayescale: " not in capsys.readouterr().err  # nor the seed: it was given
    assert main(["fit", str(path), "--out", str(tmp_path / "b.nc"), "--progress", *cheap]) == 0
    err = capsys.readouterr().err
    assert "bayescale: fast path" in err and "bayescale: sampled (" in err


def test_pymc_model_backends_say_what_they_sample_and_forward_the_flag(monkeypatch, capsys):
    import pymc as pm

    from bayescale.inference import pymc_backend, sampling

    seen = {}

    tree = container.from_groups(posterior=xr.Dataset({"x": (("chain", "draw"), np.zeros((3, 10)))}))

    def fake_sample(**kwargs):
        seen.update(kwargs)
        return tree

    monkeypatch.setattr(pm, "sample", fake_sample)
    config = bs.SamplerConfig(draws=10, tune=20, chains=3, backend="pymc")
    monkeypatch.setattr(pymc_backend, "on_terminal", lambda: True)
    assert sampling.sample(None, config, 1, progressbar=True).identical(tree)
    assert seen["progressbar"] is True
    capsys.readouterr()
    # Off a terminal PyMC's bar (redrawn in place) is not drawn: the stage line is.
    monkeypatch.setattr(pymc_backend, "on_terminal", lambda: False)
    sampling.sample(None, config, 1, progressbar=True)
    assert seen["progressbar"] is False
    assert (
        "bayescale: sampling the PyMC model with pymc: 3 chains x (20 warm-up + 10 draws)"
        in capsys.readouterr().err
    )
    sampling.sample(None, config, 1, progressbar=False)
    assert seen["progressbar"] is False and capsys.readouterr().err == ""
