"""A Downstream saved to one file: round trip, refused alterations, the CLI's --save and report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import hand_built_fit

import bayescale as bs
from bayescale.checks.downstream import HELD_OUT, TRUE_EXPONENTIAL, TRUE_TIED, simulate_chain
from bayescale.methods.downstream import Downstream, link_table
from bayescale.model.laws.downstream import get_link

#: A Kaplan law near the simulated ladder's (the loss fit's variant law, hand-built: nothing is sampled).
NEAR_KAPLAN = {"E": 1.8, "N_c": 5e7, "D_c": 1e9, "alpha_N": 0.34, "alpha_D": 0.37, "sigma": 0.01}


def _hand(law, runs, center, seed):
    return hand_built_fit(law, runs, center, rel_sd=0.002, draws=400, seed=seed)


@pytest.fixture(scope="module")
def chain_model():
    """Two tasks on hand-built draws, step 1 with its variant, a LOO table as ``link="auto"`` leaves."""
    ladder = simulate_chain(0)
    loss_fit = _hand(bs.get_law("chinchilla-tied"), ladder, {**TRUE_TIED, "sigma": 0.01}, 1)
    loss_fit._variants[loss_fit.variant_law] = _hand(bs.get_law("kaplan-e"), ladder, NEAR_KAPLAN, 2)
    table = link_table(ladder, "error", "loss")
    exponential = get_link("link-exponential")
    links = {
        "a": _hand(exponential, table, {**TRUE_EXPONENTIAL, "sigma": 0.01}, 3),
        "b": _hand(exponential, table, {"eps": 0.7, "k": 1.5, "gamma": 0.6, "sigma": 0.02}, 4),
    }
    for fit in links.values():
        fit.input_loss_unit = "nats_per_token"
        fit._variants[fit.variant_law] = None
    choice = pd.DataFrame(
        {"task": ["a", "a"], "link": ["exponential", "sigmoid"], "rank": [0, 1], "elpd_loo": [30.0, 21.5],
         "p_loo": [3.1, 4.0], "se": [2.0, 2.5], "elpd_diff": [0.0, 8.5], "dse": [0.0, 2.9],
         "weight": [0.97, 0.03], "pareto_k_max": [0.2, 0.4]}
    ).set_index(["task", "link"])  # fmt: skip
    labels = {"a": "exponential", "b": "link-exponential"}
    return Downstream(loss_fit, links, {"a": "error", "b": "accuracy"}, labels, choice)


def test_a_downstream_round_trips_through_one_file(chain_model, tmp_path):
    path = chain_model.save(tmp_path / "ds.nc")
    loaded = bs.load_fit(path)
    assert isinstance(loaded, Downstream)
    assert loaded.tasks == ["a", "b"] and loaded.scores == chain_model.scores
    assert loaded.link_labels == chain_model.link_labels
    pd.testing.assert_frame_equal(loaded.choice, chain_model.choice)
    assert loaded.links().loc["a", "chosen_by"] == "LOO" and loaded.links().loc["b", "chosen_by"] == "given"
    for task in ("a", "b"):
        assert loaded.link_fits[task].input_loss_unit == "nats_per_token"
        assert loaded.link_fits[task].variant_fit() is None
        np.testing.assert_array_equal(
            loaded.link_fits[task].posterior["k"].values, chain_model.link_fits[task].posterior["k"].values
        )
    # Step 1's variant law came back from the file: answers beyond the runs are the same, nothing refitted.
    variant = loaded.loss_fit._variants[loaded.loss_fit.variant_law]
    assert variant is not None and variant.law.name == "kaplan-e"
    pd.testing.assert_frame_equal(
        loaded.predict(*HELD_OUT, random_seed=3), chain_model.predict(*HELD_OUT, random_seed=3)
    )
    pd.testing.assert_frame_equal(loaded.task_diagnostics(), chain_model.task_diagnostics())
    assert loaded.diagnostics["ok"] == chain_model.diagnostics["ok"]
    assert json.loads(json.dumps(loaded.to_dict()))["tasks"]["b"]["score"] == "accuracy"
    assert "<strong>downstream</strong>" in loaded._repr_html_()
    with pytest.raises(bs.BayescaleError, match="a loaded model keeps each task's chosen link only"):
        loaded.with_links({"a": "sigmoid"})


def test_a_saved_downstream_loads_in_a_process_that_imported_nothing_else(chain_model, tmp_path):
    """The kind is named in io's table: load_fit imports the class only when it reads such a file."""
    import subprocess
    import sys
    from pathlib import Path

    path = chain_model.save(tmp_path / "ds.nc")
    program = (
        "import sys, warnings\n"
        "import bayescale as bs\n"
        "warnings.simplefilter('ignore')\n"
        "print('bayescale.methods.downstream' in sys.modules)\n"
        "model = bs.load_fit(sys.argv[1])\n"
        "print(type(model).__name__, model.tasks)\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", program, str(path)], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["False", "Downstream ['a', 'b']"]


def _altered(path, tmp_path, change, rehash=False):
    """A copy of the saved file with ``change(tree)`` applied; ``rehash`` recomputes its hashes (a forger)."""
    import xarray as xr

    from bayescale.inference import container
    from bayescale.methods.file_format import config_hash, content_hash, posterior_checksum

    tree = xr.open_datatree(path)
    tree.load()
    tree.close()
    change(tree)
    if rehash:
        attrs = dict(tree["posterior"].attrs)
        attrs["config_hash"] = config_hash(attrs, tree["constant_data"].to_dataset())
        attrs["posterior_checksum"] = posterior_checksum(tree["posterior"].to_dataset())
        attrs["content_hash"] = content_hash(attrs, tree)
        tree["posterior"].attrs.update(attrs)
    out = tmp_path / "altered.nc"
    out.write_bytes(container.netcdf_bytes(tree))
    return out


def _settings(tree):
    return json.loads(tree["posterior"].attrs["settings"])


def _set_settings(tree, settings):
    tree["posterior"].attrs["settings"] = json.dumps(settings, sort_keys=True)


def test_an_altered_downstream_file_is_refused(chain_model, tmp_path):
    path = chain_model.save(tmp_path / "ds.nc")

    def draw(tree):  # a link's draw moved: the content hash covers every group
        tree["link1_posterior"]["k"].values[0, 0] *= 1.5

    with pytest.raises(bs.FitFileError, match="do not match the recorded hash"):
        bs.load_fit(_altered(path, tmp_path, draw))

    def score(tree):
        settings = _settings(tree)
        settings["links"][0]["score"] = "accuracy"
        _set_settings(tree, settings)

    with pytest.raises(bs.FitFileError, match="configuration or runs do not match the recorded hash"):
        bs.load_fit(_altered(path, tmp_path, score))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s["links"][0].update(score="both"), "setting 'score' has a value"),
        (lambda s: s["links"][1].update(task="a"), "setting 'task' has a value"),
        (lambda s: s["links"][0]["fit"].update(law="chinchilla"), "law 'chinchilla' has parameter"),
        (
            lambda s: s["links"][0]["fit"].update(posterior_checksum="0" * 64),
            "do not match their recorded checksum",
        ),
        (lambda s: s["choice"][0].update(weight="heavy"), "holds 'heavy', not a number"),
        (lambda s: s.update(links=[]), "setting 'links' has a value"),
    ],
)
def test_a_forged_downstream_file_is_refused_with_its_fault(chain_model, tmp_path, change, message):
    """Hashes recomputed by a forger: the settings are still type-checked, each fault named."""
    path = chain_model.save(tmp_path / "ds.nc")

    def forge(tree):
        settings = _settings(tree)
        change(settings)
        _set_settings(tree, settings)

    with pytest.raises(bs.FitFileError, match=message):
        bs.load_fit(_altered(path, tmp_path, forge, rehash=True))
