"""One way to give sampler settings: ``sampler=`` (a SamplerConfig or a mapping) on every method."""

from __future__ import annotations

import inspect

import pytest
from conftest import TRUE_CHINCHILLA, simulate_ladder

import bayescale as bs
from bayescale.data import datasets
from bayescale.errors import BayescaleError
from bayescale.inference.sampling import SAMPLER_DEFAULTS, SamplerConfig, resolve_sampler
from bayescale.methods import envelope, isoflop, parametric, training_steps

METHODS = {
    "fit": (bs.fit, parametric),
    "fit_isoflop": (bs.fit_isoflop, isoflop),
    "fit_envelope": (bs.fit_envelope, envelope),
    "fit_steps": (bs.fit_steps, training_steps),
}


class _Stop(Exception):
    """Raised by the stand-in sampler, carrying the settings it was given."""

    def __init__(self, config: SamplerConfig) -> None:
        self.config = config


def test_resolve_sampler_merges_defaults_then_sampler_then_keywords():
    defaults = {**SAMPLER_DEFAULTS, "target_accept": 0.9}
    assert resolve_sampler(defaults) == SamplerConfig(target_accept=0.9)
    config = resolve_sampler(defaults, {"draws": 50, "chains": 2}, draws=60, tune=None)
    assert (config.draws, config.tune, config.chains, config.target_accept) == (60, 1000, 2, 0.9)
    given = SamplerConfig(draws=7, tune=8, chains=1, backend="pymc", target_accept=0.8)
    assert resolve_sampler(defaults, given) == given
    assert resolve_sampler(defaults, given.to_dict()) == given  # a saved fit's settings round-trip


def test_resolve_sampler_names_what_is_wrong():
    with pytest.raises(BayescaleError, match=r"unknown sampler setting\(s\) \['draw'\]"):
        resolve_sampler(SAMPLER_DEFAULTS, {"draw": 10})
    with pytest.raises(BayescaleError, match="must be a SamplerConfig or a mapping"):
        resolve_sampler(SAMPLER_DEFAULTS, 10)  # type: ignore[arg-type]
    with pytest.raises(BayescaleError, match="target_accept must be in"):
        resolve_sampler(SAMPLER_DEFAULTS, {"target_accept": 1.5})


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_takes_sampler_and_declares_its_defaults_as_data(name):
    function, module = METHODS[name]
    parameters = inspect.signature(function).parameters
    assert "sampler" in parameters
    for key in SAMPLER_DEFAULTS:  # today's keywords still work, None meaning "the default"
        assert parameters[key].default is None
    assert set(module.SAMPLER_DEFAULTS) == set(SAMPLER_DEFAULTS)


def _settings_given(monkeypatch, name: str, **kwargs) -> SamplerConfig:
    """The SamplerConfig a method hands its sampler, without sampling."""

    def stop(*args, **_):
        raise _Stop(next(a for a in args if isinstance(a, SamplerConfig)))

    function, module = METHODS[name]
    monkeypatch.setattr(module, "run_sampler" if name == "fit" else "sample_checked", stop)
    if name == "fit":
        data = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=7)
    elif name == "fit_isoflop":
        data, kwargs = (
            datasets.load("porian-isoflop"),
            {"group": "rw|tuned|short|const|standard|val", **kwargs},
        )
    else:
        data = datasets.load_curves("gemstones")
        kwargs = {**kwargs, **({"whiten": False} if name == "fit_envelope" else {"critical_batch": False})}
    with pytest.raises(_Stop) as stopped:
        function(data, progressbar=False, **kwargs)
    return stopped.value.config


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_samples_with_the_settings_given(monkeypatch, name):
    module = METHODS[name][1]
    default = _settings_given(monkeypatch, name)
    assert default.to_dict() == SamplerConfig(**module.SAMPLER_DEFAULTS).to_dict()
    given = _settings_given(monkeypatch, name, sampler={"draws": 30, "target_accept": 0.8}, chains=3)
    assert (given.draws, given.tune, given.chains, given.target_accept) == (30, 1000, 3, 0.8)


def test_grouped_law_default_target_accept_is_applied_through_a_partial_sampler(monkeypatch):
    function, module = METHODS["fit"]
    runs = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=7)
    runs = runs.assign(group=["a", "b"] * (len(runs) // 2) + ["a"] * (len(runs) % 2))

    def stop(*args, **_):
        raise _Stop(next(a for a in args if isinstance(a, SamplerConfig)))

    monkeypatch.setattr(module, "run_sampler", stop)
    for sampler in (None, {"draws": 30}):
        with pytest.raises(_Stop) as stopped:
            function(runs, law="chinchilla-grouped", sampler=sampler, progressbar=False)
        assert stopped.value.config.target_accept == parametric.POOLED_TARGET_ACCEPT == 0.99
