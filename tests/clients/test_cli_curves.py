"""``bayescale curves``: fit curves under their schedules from a table; a new schedule's final loss."""

import json

import numpy as np
import pandas as pd
import pytest

import bayescale as bs
from bayescale.cli import main
from bayescale.cli.curves import parse_schedule
from bayescale.data.schedule import curve_features
from bayescale.model.curve_laws import features_dict, multipower_loss

TRUE = {"L0": 3.0, "A": 0.5, "alpha": 0.5, "B": 400.0, "C": 2.0, "beta": 0.6, "gamma": 0.6}
SCHEDULES = {
    "cos": {"peak_lr": 3e-4, "horizon": 4000, "warmup": 200, "shape": "cosine", "final_fraction": 0.1},
    "const": {"peak_lr": 3e-4, "horizon": 4000, "warmup": 200, "shape": "constant"},
    "wsd": {"peak_lr": 3e-4, "horizon": 4000, "warmup": 200, "shape": "wsd", "decay_start": 3000},
}
STEPS = np.arange(300, 4000, 200)
NEW = "shape=linear,peak_lr=3e-4,horizon=4000,warmup=200,final_fraction=0.1"


def true_final(schedule: bs.Schedule) -> float:
    features = features_dict(curve_features(schedule.per_step(), [schedule.horizon - 1], 32))
    return float(multipower_loss({k: np.asarray(v) for k, v in TRUE.items()}, features, np)[0])


def _no_warning():
    import contextlib

    return contextlib.nullcontext()


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    frames = []
    for name, fields in SCHEDULES.items():
        features = features_dict(curve_features(bs.Schedule.from_dict(fields).per_step(), STEPS, 32))
        loss = multipower_loss({k: np.asarray(v) for k, v in TRUE.items()}, features, np)
        frames.append(
            pd.DataFrame({"schedule": name, "step": STEPS, "loss": loss * np.exp(rng.normal(0, 5e-4))})
        )
    table = tmp_path / "curves.csv"
    pd.concat(frames).to_csv(table, index=False)
    schedules = tmp_path / "schedules.json"
    schedules.write_text(json.dumps(SCHEDULES))
    return table, schedules


def test_fits_the_curves_and_answers_a_new_schedules_final_loss(files, capsys):
    table, schedules = files
    saved = table.parent / "curves.nc"
    code, out, err = run(
        capsys, "curves", table, "--column", "run=schedule", "--schedules", schedules, "--predict", NEW,
        "--draws", 100, "--tune", 200, "--chains", 2, "--seed", 1, "--json", "--save", saved,
    )  # fmt: skip
    assert code == 0, err
    payload = json.loads(out)
    (answer,) = payload["predictions"]
    truth = true_final(bs.Schedule(3e-4, 4000, 200, "linear", 0.1))
    assert answer["step"] == 3999
    assert answer["lower"] < truth < answer["upper"]
    assert abs(answer["median"] - truth) / truth < 5e-3
    assert {"L0", "alpha", "tau", "offset[cos]"} <= set(payload["parameters"])
    # the saved fit answers the same without the table or the schedules
    assert payload["saved"] == str(saved)
    with pytest.warns(bs.FitWarning) if not payload["diagnostics"]["ok"] else _no_warning():
        loaded = bs.load_fit(saved)
    again = loaded.predict(parse_schedule(NEW), [3999], prob=payload["prob"]).iloc[0]
    assert again["median"] == pytest.approx(answer["median"], rel=1e-12)
    assert loaded.parameters(payload["prob"]).loc["L0", "median"] == payload["parameters"]["L0"]["median"]
    code, out, err = run(capsys, "summary", saved, "--json")
    assert code == 0, err
    assert json.loads(out)["parameters"]["L0"] == payload["parameters"]["L0"]
    code, _, err = run(capsys, "predict", saved, "--params", 1e8, "--tokens", 1e9)
    assert code == 2 and "holds a multi-power law fit of loss curves" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), "give the runs' learning rates with --schedules"),
        (("--predict", "shape=cosine,horizon=100"), "needs peak_lr="),
        (("--predict", "shape=cosine,peak_lr=x,horizon=100"), "peak_lr='x' is not a number"),
        (("--predict", "shape=spiral,peak_lr=3e-4,horizon=100"), "shape 'spiral' is not one of"),
        (("--column", "lr=schedule"), "NAME one of run, step, loss, params"),
        (("--column", "run=nope"), "the table has no column 'nope'"),
        (("--save", "/no/such/folder/fit.nc"), "folder '/no/such/folder' does not exist"),
    ],
)
def test_bad_input_is_an_error_line_and_exit_2(files, capsys, extra, message):
    table, schedules = files
    argv = ["curves", table, *(("--column", "run=schedule") if "--column" not in extra else ())]
    if extra != ():
        argv += ["--schedules", schedules]
    code, _, err = run(capsys, *argv, *extra)
    assert code == 2
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_a_run_without_a_schedule_says_what_a_mid_decay_checkpoint_is(files, capsys, tmp_path):
    table, _ = files
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({k: v for k, v in SCHEDULES.items() if k != "wsd"}))
    code, _, err = run(capsys, "curves", table, "--column", "run=schedule", "--schedules", partial)
    assert code == 2
    assert "run 'wsd' has no learning-rate schedule" in err and "not a run trained to that step" in err
