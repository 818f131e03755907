"""Faults: no fit is lost, nothing is silently wrong (issue 20, findings 4-9, 11, 12, 14, 17)."""

from __future__ import annotations

import contextlib
import errno
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from cheap_fits import cheap_fit, cheap_fit_file

import bayescale as bs
from bayescale.cli import main
from bayescale.errors import RunsError, RunsWarning

pytestmark = pytest.mark.filterwarnings("ignore::bayescale.FitWarning")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _runs(**extra) -> pd.DataFrame:
    from conftest import TRUE_CHINCHILLA, simulate_ladder

    frame = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=7)
    for name, values in extra.items():
        frame[name] = values
    return frame


@pytest.fixture
def no_sampling(monkeypatch):
    """`bayescale fit` returns a cheap hand-built fit instead of sampling (records that it was called)."""
    calls = []

    def fake_fit(runs, **kwargs):
        calls.append(kwargs)
        frame = bs.Runs.from_any(runs).frame
        return cheap_fit(frame[[c for c in frame.columns if c != "compute"]])

    monkeypatch.setattr(importlib.import_module("bayescale.methods.parametric"), "fit_parametric", fake_fit)
    return calls


@contextlib.contextmanager
def tiny_tmpfs(path: Path, size: str = "64k", options: str = ""):
    """A small tmpfs at ``path`` (root only; the test is skipped where it cannot be mounted)."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (f",{options}" if options else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


# Finding 4: any column name round-trips ----------------------------------------------------------


def test_run_and_slash_column_names_save_and_load(tmp_path):
    n = 40
    extra = {
        "run": [f"r{i}" for i in range(n)],
        "lr/warmup": np.linspace(0.1, 1, n),
        "with space": np.arange(n),
        "_column_1": np.arange(n) * 2.0,
        "été": ["x"] * n,
        ".": np.ones(n),
    }
    fit = cheap_fit(_runs(**extra))
    path = fit.save(tmp_path / "fit.nc")
    loaded = bs.load_fit(path)
    assert list(loaded.runs.frame.columns) == list(fit.runs.frame.columns)
    pd.testing.assert_frame_equal(loaded.runs.frame, fit.runs.frame, check_dtype=False)


# Finding 5: writability is checked before sampling; a failed write keeps the fit -------------------


def test_file_as_parent_is_refused_before_sampling(tmp_path, capsys, no_sampling):
    runs = tmp_path / "runs.csv"
    _runs().to_csv(runs, index=False)
    code, _, err = run(capsys, "fit", runs, "--out", runs / "fit.nc")
    assert code == 2 and "is a file, not a folder" in err and no_sampling == []


def test_folder_as_out_is_refused_before_sampling(tmp_path, capsys, no_sampling):
    (tmp_path / "fit.nc").mkdir()
    code, _, err = run(capsys, "fit", "chinchilla", "--out", tmp_path / "fit.nc")
    assert code == 2 and "is a folder" in err and no_sampling == []


def test_read_only_folder_is_refused_before_sampling(tmp_path, capsys, no_sampling):
    with tiny_tmpfs(tmp_path / "ro", options="ro") as folder:
        code, _, err = run(capsys, "fit", "chinchilla", "--out", folder / "fit.nc")
    assert code == 2 and "Read-only file system" in err and no_sampling == []
    assert err.count("\n") == 1


def test_failed_write_keeps_the_fit_and_says_where(tmp_path, capsys, no_sampling, monkeypatch):
    from bayescale.methods import io

    original = io.save_fit
    target = tmp_path / "fit.nc"

    def fails_at_target(fit, path):
        if Path(path) == target:
            raise OSError(errno.EIO, "Input/output error")
        return original(fit, path)

    monkeypatch.setattr(io, "save_fit", fails_at_target)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "kept"))
    (tmp_path / "kept").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    code, _, err = run(capsys, "fit", "chinchilla", "--out", target)
    assert code == 2 and err.count("\n") == 1
    assert "cannot save the fit to" in err and "Input/output error" in err
    kept = [p for p in (tmp_path / "kept").iterdir()]
    assert len(kept) == 1 and f"the fit is kept at '{kept[0]}'" in err
    assert len(bs.load_fit(kept[0]).runs) == 245  # the bundled chinchilla runs


# Finding 6: a full disk -------------------------------------------------------------------------


def test_full_disk_before_writing_leaves_nothing(tmp_path, monkeypatch):
    import shutil

    fit = cheap_fit()
    path = fit.save(tmp_path / "fit.nc")
    before = path.read_bytes()
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(OSError) as info:
        fit.save(path)
    assert info.value.errno == errno.ENOSPC
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["fit.nc"]


def test_hdf5_write_error_becomes_an_os_error_and_leaves_no_temp_file(tmp_path, monkeypatch):
    fit = cheap_fit()

    def hdf5_full(self, *args, **kwargs):
        raise RuntimeError(
            "Can't write data (file write failed: errno = 28, error message = 'No space left')"
        )

    monkeypatch.setattr(type(fit.idata), "to_netcdf", hdf5_full)
    with pytest.raises(OSError) as info:
        fit.save(tmp_path / "fit.nc")
    assert info.value.errno == errno.ENOSPC and "No space left" in str(info.value)
    assert list(tmp_path.iterdir()) == []


FIT_UNDER_RLIMIT = """
import resource, sys, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, {tests!r})
import importlib
from cheap_fits import cheap_fit
importlib.import_module("bayescale.methods.parametric").fit_parametric = lambda runs, **kw: cheap_fit()
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY))
from bayescale.cli import main
sys.exit(main(["fit", "chinchilla", "--out", {out!r}]))
"""


@pytest.mark.parametrize("limit", [20 * 1024, 300 * 1024])
def test_write_that_fails_partway_is_one_error_and_leaves_no_temp_file(tmp_path, limit):
    """Issue 32 finding 1: RLIMIT_FSIZE reached while the fit is written (``ulimit -f``).

    HDF5 met the limit half-way through its file and crashed the process (exit 139, a
    ``.tmp`` left); now the file is built in memory and a plain write fails into ``error:``.
    At 20 KiB no copy can be kept either, since the limit holds for every file (the error says
    so); at 300 KiB the fit is under the limit and the save works.
    """
    out, kept = tmp_path / "out", tmp_path / "kept"
    out.mkdir()
    kept.mkdir()
    script = FIT_UNDER_RLIMIT.format(
        tests=str(Path(__file__).parents[1]), limit=limit, out=str(out / "uf.nc")
    )
    env = {**os.environ, "TMPDIR": str(kept)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env
    )
    left = sorted(p.name for p in [*out.iterdir(), *kept.iterdir()])
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr[-3000:]
    if limit > 200 * 1024:
        assert done.returncode == 0, done.stderr[-2000:]
        assert left == ["uf.nc"]
        bs.load_fit(out / "uf.nc")
        return
    assert done.returncode == 2, (done.returncode, done.stderr[-3000:])  # not -11 (segfault)
    lines = [line for line in done.stderr.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: cannot save the fit to"), done.stderr
    assert "File too large" in lines[0]
    assert "keeping a copy failed too" in lines[0]  # every file is limited: nowhere to keep it
    assert left == []  # no .tmp, no partial copy


SAVE_ON_FULL_DISK = """
import sys, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, {tests!r})
from cheap_fits import cheap_fit
try:
    cheap_fit().save({path!r})
except OSError as exc:
    print("OSError", exc.errno)
"""


def test_real_full_disk_no_crash_no_temp_file(tmp_path):
    """A 96k tmpfs: the save is refused (ENOSPC) without a crash or a file left behind."""
    with tiny_tmpfs(tmp_path / "full", size="96k") as folder:
        script = SAVE_ON_FULL_DISK.format(tests=str(Path(__file__).parents[1]), path=str(folder / "fit.nc"))
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
        left = list(folder.iterdir())
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"OSError {errno.ENOSPC}"
    assert "Traceback" not in done.stderr
    assert left == []


def test_cli_fit_onto_a_full_disk_keeps_the_fit(tmp_path, capsys, no_sampling, monkeypatch):
    import tempfile

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    with tiny_tmpfs(tmp_path / "full", size="96k") as folder:
        code, _, err = run(capsys, "fit", "chinchilla", "--out", folder / "fit.nc")
        left = list(folder.iterdir())
    assert code == 2 and err.count("\n") == 1 and "No space left on device" in err
    assert left == []
    kept = [p for p in tmp_path.iterdir() if p.suffix == ".nc"]
    assert len(kept) == 1 and str(kept[0]) in err
    bs.load_fit(kept[0])


# Finding 7: one job that cannot be saved does not stop the others -----------------------------------


def test_fit_many_saves_every_job_it_can(tmp_path, capsys, monkeypatch):
    from bayescale.methods import io
    from bayescale.methods.many import JobResult

    def fake_fit_many(jobs, executor=None, max_workers=None):
        return [JobResult(index=i, fit=cheap_fit(seed=i)) for i in range(len(jobs))]

    monkeypatch.setattr("bayescale.methods.many.fit_many", fake_fit_many)
    original = io.save_fit

    def second_fails(fit, path):
        if Path(path).name == "b.nc":
            raise OSError(errno.EIO, "Input/output error")
        return original(fit, path)

    monkeypatch.setattr(io, "save_fit", second_fails)
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([{"name": n, "runs": "chinchilla"} for n in "abc"]))
    out = tmp_path / "out"
    out.mkdir()
    code, stdout, err = run(capsys, "fit-many", jobs, "--out-dir", out, "--json")
    rows = json.loads(stdout)
    assert code == 2 and "1 of 3 jobs failed" in err
    assert sorted(p.name for p in out.iterdir()) == ["a.nc", "c.nc"]
    assert [r["ok"] for r in rows] == [True, False, True]
    assert "the fit is kept at" in rows[1]["error"]


# Finding 8: never replace an input; the report is atomic and never replaces a fit ------------------


def test_out_equal_to_the_runs_file_is_refused(tmp_path, capsys, no_sampling):
    runs = tmp_path / "runs.csv"
    _runs().to_csv(runs, index=False)
    before = runs.read_bytes()
    code, _, err = run(capsys, "fit", runs, "--out", runs)
    assert code == 2 and "is an input file" in err and no_sampling == []
    assert runs.read_bytes() == before


def test_fit_many_output_equal_to_a_jobs_runs_file_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    _runs().to_csv(out / "a.nc", index=False)
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([{"name": "a", "runs": str(out / "a.nc")}]))
    code, _, err = run(capsys, "fit-many", jobs, "--out-dir", out)
    assert code == 2 and "is an input file" in err


@pytest.mark.parametrize("command", ["report", "plot"])
def test_report_or_plot_over_a_saved_fit_is_refused(tmp_path, capsys, command):
    fit_path = cheap_fit_file(tmp_path / "fit.nc")
    other = cheap_fit_file(tmp_path / "other.nc")
    before = other.read_bytes()
    argv = (
        ["report", fit_path, "--out", other]
        if command == "report"
        else ["plot", fit_path, "loss", "--out", other]
    )
    if command == "plot":
        other = other.rename(tmp_path / "other.png")
        argv[-1] = other
    code, _, err = run(capsys, *argv)
    assert code == 2 and "holds a saved fit or data" in err, err
    assert other.read_bytes() == before


def test_report_write_is_atomic(tmp_path, monkeypatch):
    from bayescale.report import fit as report

    path = tmp_path / "report.html"
    path.write_text("<p>earlier report</p>")
    monkeypatch.setattr(report, "build_report", lambda *a, **k: "<p>new</p>" * 1000)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(OSError, match="No space left"):
        report.write_report(cheap_fit(), path)
    assert path.read_text() == "<p>earlier report</p>"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


# Finding 9: Ctrl-C -----------------------------------------------------------------------------


def test_keyboard_interrupt_is_one_line_and_exit_130(capsys, monkeypatch):
    from bayescale import cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "laws", interrupted)
    code, _, err = run(capsys, "laws")
    assert code == 130 and err == "error: interrupted\n"


def test_an_error_caused_by_ctrl_c_is_the_interrupt(capsys, monkeypatch):
    """Ctrl-C while a C extension initialises reaches the command as that import's error
    (pybind11 raises ``ImportError: initialization failed`` from the KeyboardInterrupt)."""
    from bayescale import cli

    def interrupted_import(args):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise ImportError("initialization failed") from exc

    monkeypatch.setitem(cli.COMMANDS, "laws", interrupted_import)
    code, _, err = run(capsys, "laws")
    assert code == 130 and err == "error: interrupted\n"


def test_an_error_not_caused_by_ctrl_c_is_not_taken_for_one(capsys, monkeypatch):
    from bayescale import cli

    def broken_import(args):
        try:
            raise ValueError("a bug")
        except ValueError as exc:
            raise ImportError("initialization failed") from exc

    monkeypatch.setitem(cli.COMMANDS, "laws", broken_import)
    with pytest.raises(ImportError, match="initialization failed"):
        run(capsys, "laws")


def _start_fit(out: Path, sigint: Any = signal.SIG_DFL, draws: int = 5000) -> subprocess.Popen:
    """``bayescale fit chinchilla`` (5000 draws: long) in a child process whose SIGINT starts as
    ``sigint``. A child inherits an ignored SIGINT, and a job a non-interactive shell starts in
    the background (``pytest ... &``) has SIGINT ignored: the disposition is set explicitly."""
    bayescale = Path(sys.executable).with_name("bayescale")
    return subprocess.Popen(
        [str(bayescale), "fit", "chinchilla", "--out", str(out), "--draws", str(draws)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, sigint),
    )


def _wait_until_compiling(proc: subprocess.Popen) -> None:
    """Return once the child has loaded JAX or PyTensor's compiled code (or ended), plus a second."""
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError):
            mapped = maps.read_text()
            if "jaxlib" in mapped or "libpytensor" in mapped:
                break
        time.sleep(0.2)
    time.sleep(1.0)


def test_sigint_during_a_fit_exits_130_without_traceback(tmp_path):
    """A real SIGINT once the fit has started compiling (JAX loaded): exit 130, one line."""
    proc = _start_fit(tmp_path / "fit.nc")
    _wait_until_compiling(proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert err == "error: interrupted\n", err[-2000:]
    assert not (tmp_path / "fit.nc").exists()


def test_an_ignored_sigint_stays_ignored(tmp_path):
    """Started with SIGINT ignored (``nohup``, a background job of a script), the command is not
    stopped by it, before or after its own handling is installed, and saves its fit."""
    proc = _start_fit(tmp_path / "fit.nc", sigint=signal.SIG_IGN, draws=300)
    proc.send_signal(signal.SIGINT)  # while it imports
    _wait_until_compiling(proc)
    proc.send_signal(signal.SIGINT)  # while it fits
    try:
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert (tmp_path / "fit.nc").exists()


def _startup_seconds(python: Path) -> float:
    """Wall time of ``python -c pass`` (the slowest of 3): the interpreter's own start-up (site, the
    editable install's finder), before any code of a program runs and so can handle a Ctrl-C."""
    times = []
    for _ in range(3):
        start = time.monotonic()
        subprocess.run([str(python), "-c", "pass"], check=True, timeout=60)
        times.append(time.monotonic() - start)
    return max(times)


@pytest.mark.parametrize("delay", [0.05, 0.2, 0.5, 1.0])
def test_sigint_in_the_first_second_exits_130_without_traceback(tmp_path, delay):
    """Ctrl-C while the command still imports PyMC, PyTensor and JAX (before ``main`` runs):
    one line, exit 130. ``delay`` counts from the end of the interpreter's start-up."""
    offset = _startup_seconds(Path(sys.executable))
    proc = _start_fit(tmp_path / "fit.nc")
    time.sleep(offset + delay)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert "Traceback" not in err, err[-2000:]
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    assert err == "error: interrupted\n", err[-2000:]
    assert not (tmp_path / "fit.nc").exists()


# Finding 11: one-letter aliases are checked against 6ND and D ------------------------------------


def test_short_compute_alias_that_is_not_compute_is_left_out_with_the_evidence():
    frame = _runs(c=np.arange(40) % 3 + 1)
    with pytest.warns(RunsWarning, match=r"column 'c' was not taken as 'compute'.*median 2 against 6 N D"):
        runs = bs.Runs.from_frame(frame)
    np.testing.assert_allclose(runs["compute"], 6 * frame["params"] * frame["tokens"])
    assert "c" in runs.frame.columns


def test_short_unique_tokens_alias_that_is_a_cluster_id_is_left_out():
    frame = _runs(u=np.arange(40) % 4)
    with pytest.warns(RunsWarning, match=r"column 'u' was not taken as 'unique_tokens'"):
        runs = bs.Runs.from_frame(frame)
    assert not runs.has_unique_tokens


def test_short_aliases_that_fit_are_taken_silently():
    import warnings

    base = _runs()
    frame = base.assign(C=6.2 * base["params"] * base["tokens"], U=base["tokens"] / 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RunsWarning)
        runs = bs.Runs.from_frame(frame)
    np.testing.assert_allclose(runs["compute"], frame["C"])
    np.testing.assert_allclose(runs["unique_tokens"], frame["U"])


# Finding 12: repeated column names ----------------------------------------------------------


def test_repeated_column_names_in_a_csv_are_refused(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text("params,tokens,loss,loss\n1e8,2e9,3.1,3.0\n2e8,4e9,2.9,2.8\n")
    with pytest.raises(RunsError, match=r"repeats column name\(s\) \['loss'\]"):
        bs.Runs.from_any(path)


# Finding 14: budgets too small, and JSON without NaN --------------------------------------------


@pytest.mark.parametrize(
    "extra", [["--compute", "1e-300"], ["--compute", "1e20", "--flops-per-param-token", "1e-300"]]
)
def test_tiny_budget_or_flops_is_an_error(tmp_path, capsys, extra):
    path = cheap_fit_file(tmp_path / "fit.nc")
    code, out, err = run(capsys, "plan", path, *extra, "--json")
    assert code == 2 and out == ""
    assert err.startswith("error: no meaningful plan at C = ") and err.count("\n") == 1, err


def test_json_output_never_holds_bare_nan():
    from bayescale.cli.render import _json

    text = _json({"a": float("nan"), "b": [np.float64("inf"), 1.5], "c": {"d": np.float32("nan")}})
    assert json.loads(text) == {"a": None, "b": [None, 1.5], "c": {"d": None}}
    assert "NaN" not in text and "Infinity" not in text


# Finding 17: umask, repeated --fix, prior on a fixed parameter, advice --------------------------


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_saved_fit_honours_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = cheap_fit().save(tmp_path / "fit.nc")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode


def test_fix_given_twice_is_refused(capsys, tmp_path, no_sampling):
    code, _, err = run(
        capsys, "fit", "chinchilla", "--out", tmp_path / "f.nc", "--fix", "E=1", "--fix", "E=2"
    )
    assert code == 2 and "--fix given more than once for ['E']" in err and no_sampling == []


def test_prior_for_a_fixed_parameter_is_refused(capsys, tmp_path, no_sampling):
    priors = tmp_path / "priors.json"
    priors.write_text(json.dumps({"E": {"distribution": "LogNormal", "mu": 0.5, "sigma": 0.2}}))
    code, _, err = run(
        capsys, "fit", "chinchilla", "--out", tmp_path / "f.nc", "--fix", "E=1.7", "--priors", priors
    )
    assert code == 2 and "prior for ['E'], fixed by --fix" in err and no_sampling == []


def test_priors_from_a_set_skip_the_fixed_parameters(capsys, tmp_path, no_sampling):
    code, _, err = run(
        capsys,
        "fit",
        "chinchilla",
        "--out",
        tmp_path / "f.nc",
        "--fix",
        "E=1.7",
        "--priors-from",
        "epoch-chinchilla",
    )
    assert code == 0, err
    assert "E" not in no_sampling[0]["priors"] and no_sampling[0]["fix"] == {"E": 1.7}


def test_divergence_advice_starts_above_the_default_target_accept():
    import inspect

    import xarray as xr

    from bayescale.inference import container, diagnostics
    from bayescale.methods import parametric

    assert inspect.signature(parametric.fit_parametric).parameters["sampler"].default is None  # per law:
    grouped = bs.get_law("chinchilla-grouped")
    assert parametric.default_target_accept(grouped) == parametric.POOLED_TARGET_ACCEPT
    assert parametric.default_target_accept(bs.get_law("chinchilla")) == diagnostics.DEFAULT_TARGET_ACCEPT
    rng = np.random.default_rng(0)
    stats = xr.Dataset({"diverging": (("chain", "draw"), np.eye(2, 50, dtype=bool))})
    idata = container.from_groups(posterior=xr.Dataset({"x": (("chain", "draw"), rng.normal(size=(2, 50)))}),
                                  sample_stats=stats)  # fmt: skip
    (advice,) = [p for p in diagnostics.compute(idata, ["x"])["problems"] if "divergent" in p]
    assert "above the 0.95 default" in advice and "sampler={'target_accept': 0.99}" in advice
    assert "--target-accept 0.99" in advice


# Finding 15/16: output onto a read-only or full disk; schedulers that are not Dask -----------------


@pytest.mark.parametrize("command", ["plot", "report"])
def test_plot_or_report_onto_a_read_only_folder(tmp_path, capsys, command):
    fit_path = cheap_fit_file(tmp_path / "fit.nc")
    with tiny_tmpfs(tmp_path / "ro", options="ro") as folder:
        out = folder / ("x.png" if command == "plot" else "r.html")
        argv = (
            ["plot", fit_path, "loss", "--out", out]
            if command == "plot"
            else ["report", fit_path, "--out", out]
        )
        code, _, err = run(capsys, *argv)
    assert code == 2 and err.count("\n") == 1 and "Read-only file system" in err, err


def test_report_onto_a_full_disk_leaves_no_file(tmp_path, capsys):
    fit_path = cheap_fit_file(tmp_path / "fit.nc")
    with tiny_tmpfs(tmp_path / "full", size="16k") as folder:
        (folder / "filler").write_bytes(b"\0" * 12 * 1024)
        code, _, err = run(capsys, "report", fit_path, "--out", folder / "r.html")
        left = sorted(p.name for p in folder.iterdir())
    assert code == 2 and err.count("\n") == 1 and "No space left on device" in err, err
    assert left == ["filler"]


def test_local_folder_named_like_a_bundled_data_set_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "chinchilla").mkdir()
    with pytest.warns(RunsWarning, match="names a local folder and a bundled data set"):
        runs = bs.Runs.from_any("chinchilla")
    assert len(runs) == 245
    (tmp_path / "mine").mkdir()
    with pytest.raises(RunsError, match=r"'mine' could not be read as a table: it is a folder, not a \.csv"):
        bs.Runs.from_any("mine")


@pytest.mark.parametrize("reply", [b"", b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" * 64])
def test_scheduler_that_is_not_dask_fails_within_the_timeout(monkeypatch, reply):
    import socket
    import threading

    from bayescale.errors import BayescaleError
    from bayescale.methods import many

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    held = []

    def serve():
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                held.append(conn)
                with contextlib.suppress(OSError):
                    conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    monkeypatch.setattr(many, "CONNECT_TIMEOUT", 2)
    began = time.monotonic()
    try:
        with pytest.raises(
            BayescaleError, match=f"cannot connect to the Dask scheduler at 'tcp://127.0.0.1:{port}'"
        ):
            many.dask_executor(f"tcp://127.0.0.1:{port}")
    finally:
        server.close()
        for conn in held:
            conn.close()
    assert time.monotonic() - began < 2 + 10 + 5
    import dask

    # The failed client did not stay the process's scheduler (later saves would go to it).
    assert dask.config.get("scheduler", None) != "dask.distributed"


@pytest.mark.parametrize("address", ["not a url", "tcp://", "http://host", "host:port", ""])
def test_scheduler_address_that_is_not_an_address(address):
    from bayescale.errors import BayescaleError
    from bayescale.methods.many import dask_executor

    with pytest.raises(BayescaleError, match="is not a Dask scheduler address"):
        dask_executor(address)


# Issue 32, finding 2: report and plot replace only their own kind of output ---------------------------


def _figure_bytes(fmt: str) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from bayescale.cli.plot import _PIL_MARKS

    figure = Figure()
    figure.add_subplot().plot([1, 2], [3, 4])
    buffer = io.BytesIO()
    mark = _PIL_MARKS.get(fmt)
    figure.savefig(buffer, format=fmt, **({"pil_kwargs": mark} if mark else {}))
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["png", "pdf", "svg", "eps", "jpg", "tif", "webp"])
def test_a_figure_this_command_drew_may_be_replaced(tmp_path, fmt):
    from bayescale.cli.files import refuse_foreign_output

    path = tmp_path / f"figure.{fmt}"
    path.write_bytes(_figure_bytes(fmt))
    refuse_foreign_output(path, "figure")  # no error: the command's own output
    with pytest.raises(bs.BayescaleError, match="is not a bayescale report"):
        refuse_foreign_output(path, "report")


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b"params,tokens,loss\n1e8,2e9,3.1\n", "report"),
        (b"params,tokens,loss\n1e8,2e9,3.1\n", "figure"),
        (b"<!DOCTYPE html><html><body>my page</body></html>", "report"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "figure"),  # a PNG matplotlib did not draw
        (b"%PDF-1.7\n my paper", "figure"),
    ],
)
def test_report_or_plot_refuse_any_other_file(tmp_path, content, kind):
    from bayescale.cli.files import refuse_foreign_output

    path = tmp_path / "theirs.out"
    path.write_bytes(content)
    with pytest.raises(bs.BayescaleError, match="the file exists and is not"):
        refuse_foreign_output(path, kind)
    assert path.read_bytes() == content


def test_report_replaces_its_own_report(tmp_path):
    from bayescale.cli.files import refuse_foreign_output

    path = tmp_path / "r.html"
    path.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'><title>bayescale report: x</title>")
    refuse_foreign_output(path, "report")
    (tmp_path / "empty.html").write_bytes(b"")
    refuse_foreign_output(tmp_path / "empty.html", "report")
    refuse_foreign_output(tmp_path / "absent.html", "report")


# Issue 32, finding 14: a compilation cache others can write is not used ------------------------------


@pytest.mark.parametrize(("mode", "parent_mode", "reason"), [
    (0o777, 0o755, "writable by others"),
    (0o775, 0o755, "writable by its group"),
    (0o700, 0o777, "the folder above it"),
    (0o700, 0o1777, None),  # /tmp-like: sticky, others cannot replace the folder
    (0o755, 0o755, None),
])  # fmt: skip
def test_loose_cache_permissions_are_found(tmp_path, mode, parent_mode, reason):
    from bayescale.model.jax_backend import loose_permissions

    parent, folder = tmp_path / "parent", tmp_path / "parent" / "cache"
    folder.mkdir(parents=True)
    folder.chmod(mode)
    parent.chmod(parent_mode)
    try:
        found = loose_permissions(folder)
    finally:
        parent.chmod(0o755)
    if reason is None:
        assert found is None
    else:
        assert found is not None and reason in found


CACHE_PROBE = """
import os, sys, warnings
import bayescale.model.jax_backend as jb
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    jax = jb.setup_jax()
print(repr(jax.config.values["jax_compilation_cache_dir"]))
print([str(w.message) for w in caught if w.category.__name__ == "CacheWarning"])
"""


def test_world_writable_cache_dir_is_refused_with_a_warning(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)
    env = {**os.environ, "BAYESCALE_CACHE_DIR": str(folder), "JAX_COMPILATION_CACHE_DIR": ""}
    env.pop("JAX_COMPILATION_CACHE_DIR")
    root = str(Path(__file__).parents[2])
    done = subprocess.run(
        [sys.executable, "-c", CACHE_PROBE], capture_output=True, text=True, timeout=300, env=env, cwd=root
    )
    assert done.returncode == 0, done.stderr[-2000:]
    used, warned = done.stdout.strip().splitlines()
    assert used == "None"
    assert "writable by others" in warned and str(folder) in warned


# Issue 32, finding 15: scale ---------------------------------------------------------------------------


def test_a_long_fit_is_announced_before_it_starts(capsys):
    from bayescale.cli.fit import note_long_fit

    assert note_long_fit(245, {}) < 1
    assert capsys.readouterr().err == ""
    seconds = note_long_fit(1_000_000, {})
    err = capsys.readouterr().err
    assert seconds > 60 and err.startswith("note: 1000000 runs x 2000 iterations x 4 chains") and "min" in err
    assert note_long_fit(1_000_000, {"draws": 10, "tune": 10, "chains": 1}) < 60


def test_residuals_in_blocks_equal_the_whole(monkeypatch):
    from bayescale.posterior import residuals

    fit = cheap_fit()
    whole = residuals.log_residuals(fit.law, fit.theta(), fit.runs)
    monkeypatch.setattr(residuals, "CHUNK_CELLS", 600 * 7)  # 600 draws: blocks of 7 runs
    blocks = residuals.log_residuals(fit.law, fit.theta(), fit.runs)
    np.testing.assert_array_equal(blocks, whole)


# Issue 32, finding 12: a method's plan carries the extrapolation guard --------------------------------


@pytest.mark.parametrize("holder", ["runs", "curves"])
def test_method_plan_far_past_its_runs_is_flagged(holder):
    from types import SimpleNamespace

    from bayescale.cli.methods import _guard_method_plan

    runs = bs.Runs.from_any(_runs())
    result = (
        SimpleNamespace(runs=runs)
        if holder == "runs"  # IsoFLOP
        else SimpleNamespace(
            data=SimpleNamespace(curves=SimpleNamespace(frame=runs.frame))
        )  # envelope, steps
    )
    largest = runs.column("compute").max()
    table = pd.DataFrame({"compute": [largest * 10, largest * 3e5], "params_median": [3e9, 4e11]})
    table["tokens_median"] = table["compute"] / (6 * table["params_median"])
    _guard_method_plan(table, result)
    np.testing.assert_allclose(table["compute_multiple"], [10, 3e5])
    assert "compute multiple up to 3e+05 (guard 100)" in table.attrs["extrapolation_warning"]
