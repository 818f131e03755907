"""fit_many: several fits through an executor, in order, failures kept per job."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import TRUE_CHINCHILLA, simulate_ladder

import bayescale as bs

pytestmark = pytest.mark.filterwarnings("ignore::bayescale.FitWarning")

TINY = {"sampler": {"draws": 60, "tune": 80, "chains": 1}, "warn": False}


def _jobs():
    runs = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=2)
    return [
        {"runs": runs, "law": "chinchilla", "random_seed": 1, **TINY},
        {"runs": runs, "law": "no-such-law", "random_seed": 2, **TINY},
        {"runs": runs, "law": "kaplan", "random_seed": 3, **TINY},
    ]


def _check(results):
    assert [r.index for r in results] == [0, 1, 2]
    assert results[0].ok and results[2].ok
    assert results[0].fit.law.name == "chinchilla"
    assert results[2].fit.law.name == "kaplan"
    assert not results[1].ok and results[1].fit is None
    assert "LawError" in results[1].error and "no-such-law" in results[1].error
    assert "Traceback" in results[1].traceback


def test_fit_many_in_order_with_failures_kept():
    with ThreadPoolExecutor(2) as pool:
        results = bs.fit_many(_jobs(), executor=pool)
    _check(results)
    # Same job, same seed, same draws as a plain fit.
    alone = bs.fit(**{**_jobs()[0], "progressbar": False})
    np.testing.assert_array_equal(results[0].fit.posterior["E"].values, alone.posterior["E"].values)


def test_fit_many_on_a_dask_cluster():
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        results = bs.fit_many(_jobs(), executor=client.get_executor())
    _check(results)


def test_fit_many_checks_jobs():
    with pytest.raises(bs.BayescaleError, match="job 0 has no 'runs'"):
        bs.fit_many([{"law": "chinchilla"}])
    assert bs.fit_many([]) == []


def test_fit_many_runs_each_jobs_method(monkeypatch):
    """A job's "method" picks the fitting function; its runs go first, the rest as keywords."""
    from bayescale.methods import many

    calls = []
    for name in ("isoflop", "steps"):
        monkeypatch.setitem(many.METHODS, name, lambda data, name=name, **kw: calls.append((name, data, kw)))
    jobs = [
        {"method": "isoflop", "runs": "porian-isoflop", "group": "g", "random_seed": 1},
        {"method": "steps", "runs": "curves.csv", "correlation": "none"},
    ]
    with ThreadPoolExecutor(1) as pool:
        results = bs.fit_many(jobs, executor=pool)
    assert all(r.ok for r in results)
    through_the_front_door = {"sampler": None, "random_seed": None, "progressbar": False, "warn": True}
    assert calls == [
        ("isoflop", "porian-isoflop", {**through_the_front_door, "group": "g", "random_seed": 1}),
        ("steps", "curves.csv", {**through_the_front_door, "correlation": "none"}),
    ]
    with pytest.raises(bs.BayescaleError, match=r"job 1 has method 'magic'; methods are \['parametric'"):
        bs.fit_many([jobs[0], {"method": "magic", "runs": "x"}])


@pytest.mark.slow
def test_fit_many_mixed_methods_for_real(tmp_path):
    """A parametric and an IsoFLOP fit in one call; both save and load as their own type."""
    from test_isoflop import simulate_isoflop

    jobs = [
        {"runs": simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=2), "random_seed": 1, **TINY},
        {"method": "isoflop", "runs": simulate_isoflop(seed=1), "random_seed": 1, **TINY},
    ]
    with ThreadPoolExecutor(2) as pool:
        results = bs.fit_many(jobs, executor=pool)
    assert [type(r.fit).__name__ for r in results] == ["Fit", "IsoflopFit"]
    for r in results:
        assert type(bs.load_fit(r.fit.save(tmp_path / f"{r.index}.nc"))) is type(r.fit)


def test_cli_fit_many(tmp_path, capsys):
    # Also the default executor: a spawned local process pool.
    import json

    from bayescale.cli import main

    runs = tmp_path / "runs.csv"
    simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=4).to_csv(runs, index=False)
    jobs = [  # the sampler settings as the flags give them, or as fit() takes them
        {
            "name": "good",
            "runs": str(runs),
            "law": "chinchilla",
            "seed": 1,
            "draws": 60,
            "tune": 80,
            "chains": 1,
        },
        {"name": "bad", "runs": str(runs), "law": "chinchilla", "fix": {"zeta": 1.0}, **TINY},
    ]
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    out = tmp_path / "fits"
    out.mkdir()
    status = main(
        ["fit-many", str(tmp_path / "jobs.json"), "--out-dir", str(out), "--workers", "1", "--json"]
    )
    assert status == 2
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["good", "bad"]
    assert rows[0]["ok"] and bs.load_fit(out / "good.nc").posterior.sizes["draw"] == TINY["sampler"]["draws"]
    assert not rows[1]["ok"] and "zeta" in rows[1]["error"]
    assert main(["fit-many", str(tmp_path / "missing.json"), "--out-dir", str(out)]) == 2
