"""One front door, ``bayescale.fit(..., method=)``, and one way to give sampler settings, ``sampler=``."""

from __future__ import annotations

import inspect

import pytest
from conftest import TRUE_CHINCHILLA, simulate_ladder

import bayescale as bs
from bayescale.data import datasets
from bayescale.errors import BayescaleError
from bayescale.inference.sampling import SAMPLER_DEFAULTS, SamplerConfig, resolve_sampler
from bayescale.methods import envelope, front, isoflop, parametric, training_steps

#: Each method's module (its defaults, and the sampler function the test stands in for).
METHODS = {"parametric": parametric, "isoflop": isoflop, "envelope": envelope, "steps": training_steps}


class _Stop(Exception):
    """Raised by the stand-in sampler, carrying the settings it was given."""

    def __init__(self, config: SamplerConfig) -> None:
        self.config = config


def test_resolve_sampler_merges_defaults_then_sampler():
    defaults = {**SAMPLER_DEFAULTS, "target_accept": 0.9}
    assert resolve_sampler(defaults) == SamplerConfig(target_accept=0.9)
    config = resolve_sampler(defaults, {"draws": 50, "chains": 2})
    assert (config.draws, config.tune, config.chains, config.target_accept) == (50, 1000, 2, 0.9)
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
def test_every_method_takes_sampler_only_and_declares_its_defaults_as_data(name):
    module = METHODS[name]
    parameters = inspect.signature(front.METHODS[name]).parameters
    assert "sampler" in parameters
    assert not set(SAMPLER_DEFAULTS) & set(parameters)  # one way: no draws=, tune=, ... of its own
    assert set(module.SAMPLER_DEFAULTS) == set(SAMPLER_DEFAULTS)


def _settings_given(monkeypatch, name: str, **kwargs) -> SamplerConfig:
    """The SamplerConfig a method hands its sampler, without sampling."""

    def stop(*args, **_):
        raise _Stop(next(a for a in args if isinstance(a, SamplerConfig)))

    module = METHODS[name]
    monkeypatch.setattr(module, "run_sampler" if name == "parametric" else "sample_checked", stop)
    if name == "parametric":
        data = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=7)
    elif name == "isoflop":
        data, kwargs = (
            datasets.load("porian-isoflop"),
            {"group": "rw|tuned|short|const|standard|val", **kwargs},
        )
    else:
        data = datasets.load_curves("gemstones")
        kwargs = {**kwargs, **({"whiten": False} if name == "envelope" else {"critical_batch": False})}
    with pytest.raises(_Stop) as stopped:
        bs.fit(data, method=name, progressbar=False, **kwargs)
    return stopped.value.config


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_samples_with_the_settings_given(monkeypatch, name):
    module = METHODS[name]
    default = _settings_given(monkeypatch, name)
    assert default.to_dict() == SamplerConfig(**module.SAMPLER_DEFAULTS).to_dict()
    given = _settings_given(monkeypatch, name, sampler={"draws": 30, "chains": 3, "target_accept": 0.8})
    assert (given.draws, given.tune, given.chains, given.target_accept) == (30, 1000, 3, 0.8)
    config = SamplerConfig(draws=7, tune=8, chains=1, backend="pymc", target_accept=0.7)
    assert _settings_given(monkeypatch, name, sampler=config).to_dict() == config.to_dict()


@pytest.mark.parametrize("name", list(METHODS))
def test_the_old_sampler_keywords_warn_and_still_override(monkeypatch, name):
    with pytest.warns(DeprecationWarning, match=r"chains=, target_accept= are deprecated.*sampler="):
        given = _settings_given(
            monkeypatch, name, sampler={"draws": 30, "chains": 2}, chains=3, target_accept=0.8
        )
    assert (given.draws, given.chains, given.target_accept) == (30, 3, 0.8)


@pytest.mark.parametrize(
    "old, method", [("fit_isoflop", "isoflop"), ("fit_envelope", "envelope"), ("fit_steps", "steps")]
)
def test_the_old_method_functions_warn_and_go_through_the_front_door(monkeypatch, old, method):
    seen = {}
    monkeypatch.setitem(
        front.METHODS, method, lambda data, **kwargs: seen.update(data=data, **kwargs) or "result"
    )
    with pytest.warns(DeprecationWarning, match=rf"bayescale.{old}\(...\) is deprecated.*method='{method}'"):
        assert getattr(bs, old)("data", random_seed=3, correlation="none") == "result"
    defaults = {"sampler": None, "random_seed": 3, "progressbar": True, "warn": True}
    assert seen == {"data": "data", **defaults, "correlation": "none"}
    assert old not in bs.__all__


def test_the_front_door_names_what_is_wrong():
    with pytest.raises(BayescaleError, match=r"unknown method 'bayes'; use one of \['parametric', 'isoflop'"):
        bs.fit("chinchilla", method="bayes")
    with pytest.raises(BayescaleError, match="law='kaplan' applies to the parametric method only"):
        bs.fit("chinchilla", "kaplan", method="isoflop")
    with pytest.raises(AttributeError, match="no attribute 'fit_isoflops'"):
        bs.fit_isoflops  # noqa: B018


def test_compare_methods_takes_sampler_and_warns_on_the_old_keywords(monkeypatch):
    from bayescale.methods import side_by_side

    given = []

    def stop(method, runs, curves, compute, settings, bracketed=True):
        given.append(settings)
        raise bs.RunsError("stand-in")

    monkeypatch.setattr(side_by_side, "_fit_method", stop)
    side_by_side.compare_methods(
        "chinchilla", 1e21, methods=("isoflop",), sampler={"draws": 30}, random_seed=2
    )
    with pytest.warns(
        DeprecationWarning, match="bayescale.compare_methods: the keywords draws= are deprecated"
    ):
        side_by_side.compare_methods("chinchilla", 1e21, methods=("isoflop",), draws=40)
    assert given == [
        {"sampler": {"draws": 30}, "random_seed": 2, "progressbar": False},
        {"sampler": {"draws": 40}, "random_seed": None, "progressbar": False},
    ]


def test_grouped_law_default_target_accept_is_applied_through_a_partial_sampler(monkeypatch):
    module = METHODS["parametric"]
    runs = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=7)
    runs = runs.assign(group=["a", "b"] * (len(runs) // 2) + ["a"] * (len(runs) % 2))

    def stop(*args, **_):
        raise _Stop(next(a for a in args if isinstance(a, SamplerConfig)))

    monkeypatch.setattr(module, "run_sampler", stop)
    for sampler in (None, {"draws": 30}):
        with pytest.raises(_Stop) as stopped:
            bs.fit(runs, law="chinchilla-grouped", sampler=sampler, progressbar=False)
        assert stopped.value.config.target_accept == parametric.POOLED_TARGET_ACCEPT == 0.99
