"""Each separate mode's share of the posterior mass, by importance sampling from its chains."""

import json

import numpy as np
import pytest
import xarray as xr
from scipy.special import logsumexp

from bayescale.inference import diagnostics, modes
from bayescale.inference.diagnostics import separate_modes


def _separate(values):
    return separate_modes(values, log_positive=False)


def _mixture(weights, means, sds):
    """Unnormalised log density of a mixture of axis-aligned Gaussians in 3 dimensions, times e^5."""
    means, sds = np.asarray(means, float), np.asarray(sds, float)

    def log_density(points):
        parts = [
            np.log(w) - 0.5 * np.sum(((points - m) / s) ** 2 + np.log(2 * np.pi * s**2), axis=1)
            for w, m, s in zip(weights, means, sds, strict=True)
        ]
        return 5.0 + logsumexp(parts, axis=0)

    return log_density


def _chains(rng, components, means, sds, draws=1000):
    """Draws with dims (chain, draw, coordinate): chain c sits in component components[c]."""
    means, sds = np.asarray(means, float), np.asarray(sds, float)
    return np.stack([means[k] + sds[k] * rng.standard_normal((draws, 3)) for k in components])


MEANS = [[0.0, 0.0, 0.0], [8.0, -6.0, 1.0]]
SDS = [[1.0, 0.5, 2.0], [0.3, 1.0, 0.7]]


def test_one_mode_is_no_grouping():
    rng = np.random.default_rng(0)
    assert modes.mode_groups(_chains(rng, [0, 0, 0, 0], MEANS, SDS), _separate) == []


def test_chains_are_grouped_by_their_mode():
    rng = np.random.default_rng(1)
    positions = _chains(rng, [1, 0, 1, 0], MEANS, SDS)
    assert sorted(modes.mode_groups(positions, _separate)) == [[0, 2], [1, 3]]
    # A third mode that differs from the first in one coordinate only is its own group.
    third = positions[1].copy()
    third[:, 2] += 20.0
    groups = modes.mode_groups(np.concatenate([positions, third[None]]), _separate)
    assert sorted(groups) == [[0, 2], [1, 3], [4]]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("weights", [(0.8, 0.2), (0.03, 0.97)])
def test_shares_match_the_mixture_weights(weights, seed):
    """Whatever number of chains sits in each mode, the shares are the mixture's weights."""
    rng = np.random.default_rng(seed)
    positions = _chains(rng, [1, 0, 0, 0], MEANS, SDS)
    groups = modes.mode_groups(positions, _separate)
    masses = modes.mode_masses(_mixture(weights, MEANS, SDS), positions, groups, rng)
    assert masses is not None
    share = {m.chains: m.share for m in masses}
    assert share[(1, 2, 3)] == pytest.approx(weights[0], abs=0.02)
    assert share[(0,)] == pytest.approx(weights[1], abs=0.02)
    # log_mass is the log of the integral: log(weight) + 5 for each component.
    for m in masses:
        weight = weights[0] if m.chains == (1, 2, 3) else weights[1]
        assert m.log_mass == pytest.approx(np.log(weight) + 5.0, abs=0.05)
        assert m.importance_ess > modes.MIN_IMPORTANCE_ESS


def test_a_proposal_that_misses_its_mode_is_not_trusted():
    rng = np.random.default_rng(3)
    positions = _chains(rng, [1, 0, 0, 0], MEANS, SDS)
    groups = modes.mode_groups(positions, _separate)

    def narrow(points):
        # A density far narrower than the chains' spread: almost every proposal draw weighs nothing.
        return -0.5 * np.sum((points / 1e-3) ** 2, axis=1)

    assert modes.mode_masses(narrow, positions, groups, rng) is None


def _tree(mode_mass):
    """A sampled tree of one parameter whose chains sit in two modes, with the sampler's record."""
    rng = np.random.default_rng(4)
    draws = rng.normal(0.0, 0.1, (4, 500))
    draws[1] += 5.0
    stats = xr.Dataset({"diverging": (("chain", "draw"), np.zeros((4, 500), bool))})
    stats.attrs[diagnostics.MODE_MASS_ATTR] = (
        mode_mass if isinstance(mode_mass, str) else json.dumps(mode_mass)
    )
    posterior = xr.Dataset({"x": (("chain", "draw"), draws)})
    return xr.DataTree.from_dict({"posterior": posterior, "sample_stats": stats})


def test_diagnostics_report_each_modes_share():
    record = [
        {"chains": [0, 2, 3], "share": 0.04, "log_mass": 1.0, "importance_ess": 900.0},
        {"chains": [1], "share": 0.96, "log_mass": 4.2, "importance_ess": 400.0},
    ]
    d = diagnostics.compute(_tree(record), ["x"])
    assert not d["ok"] and d["mode_mass"] == record
    message = next(p for p in d["problems"] if "importance sampling" in p)
    # The larger mode first, each with its chains.
    assert message.index("chains [1] ~96%") < message.index("chains [0, 2, 3] ~4%")
    for record in (None, "not json", [{"share": 1.0}]):
        # Not weighed, or a record a damaged file garbled: said so, never a traceback.
        unweighed = diagnostics.compute(_tree(record), ["x"])
        assert "mode_mass" not in unweighed
        assert any("could not be estimated" in p for p in unweighed["problems"])
