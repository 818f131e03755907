# ruff: noqa: E501  (the table of cases reads best one case per line)
"""Bad input to every subcommand: exit 2, one ``error:`` line, no traceback (issue 20).

Each case runs the ``bayescale`` command in its own process with a timeout (forked from
one process that imported the command once: see DRIVER), so a hang, a segfault or a
traceback printed by a library at exit is caught too. Cases that need a fit share one
cheap saved fit; the closed-pipe test runs the installed script itself.
Add a case to CASES for every new option or input file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cheap_fits import cheap_fit_file, forge

#: Seconds any case may take (a hang fails the case instead of the suite).
TIMEOUT = 120

BAYESCALE = str(Path(sys.executable).with_name("bayescale"))


def _set_attr(key: str, value: str):
    def edit(tree):
        tree["posterior"].attrs[key] = value

    return edit


def _set_draws(name: str, change):
    def edit(tree):
        ds = tree["posterior"].to_dataset()
        tree["posterior"] = ds.assign({name: change(ds[name])}) if name in ds else ds

    return edit


def _posterior(change):
    def edit(tree):
        tree["posterior"] = change(tree["posterior"].to_dataset())

    return edit


def _runs(change):
    def edit(tree):
        tree["constant_data"] = change(tree["constant_data"].to_dataset())

    return edit


DEEP = "[" * 50000 + "]" * 50000

#: Forged fits (issue 32, findings 8 and 10): name -> (edit of the saved tree, text of the error).
FORGED = {
    "law-kaplan": (_set_attr("law", "kaplan"), "has parameter(s)"),
    "deep-priors": (_set_attr("priors", DEEP), "nested more than 32"),
    "deep-diagnostics": (_set_attr("diagnostics", DEEP), "nested more than 32"),
    "deep-sampler": (_set_attr("sampler", DEEP), "nested more than 32"),
    "fixed-list": (_set_attr("fixed", "[1, 2]"), "attr 'fixed' must be a JSON object"),
    "nan-draws": (_set_draws("E", lambda v: v * np.nan), "'E' holds NaN or infinite draws"),
    "inf-draws": (_set_draws("A", lambda v: v * np.inf), "'A' holds NaN or infinite draws"),
    "negative-E": (_set_draws("E", lambda v: v * 0 - 5), "'E' has draws from -5 to -5, outside the support"),
    "negative-alpha": (_set_draws("alpha_N", lambda v: v * 0 - 0.3), "'alpha_N' has draws from -0.3"),
    "text-draws": (_set_draws("B", lambda v: v.astype(str)), "'B' holds"),
    "no-draws": (_posterior(lambda ds: ds.isel(draw=slice(0, 0))), "an answer needs at least 2 draws"),
    "one-draw": (_posterior(lambda ds: ds.isel(chain=[0], draw=[0])), "an answer needs at least 2 draws"),
    "missing-E": (_posterior(lambda ds: ds.drop_vars("E")), "lacks the variable 'E'"),
    "no-runs": (_runs(lambda ds: ds.isel(run=slice(0, 0))), "the saved runs table has no rows"),
    "negative-params": (_runs(lambda ds: ds.assign(params=-ds["params"])), "column 'params'"),
    "nan-loss": (_runs(lambda ds: ds.assign(loss=ds["loss"].where(ds["run"] != 3))), "column 'loss'"),
}
#: Forged fits also asked a plan and a prediction (those that failed in them, or answered wrongly).
PLAN_FORGED = ("nan-draws", "negative-E", "one-draw", "missing-E", "nan-loss")

# (id, argv, text the error must contain). FIT is the shared saved fit; other names are files
# made by _files() in the case folder (the subprocess's working directory).
CASES: list[tuple[str, list[str], str]] = [
    # top level and argparse
    ("no-command", [], "the following arguments are required: command"),
    ("unknown-command", ["fitt"], "invalid choice: 'fitt'"),
    ("unknown-option", ["laws", "--bogus"], "unrecognized arguments: --bogus"),
    # fit
    ("fit-seed-negative", ["fit", "chinchilla", "--out", "o.nc", "--seed", "-1"], "must be an integer from 0"),
    ("fit-seed-text", ["fit", "chinchilla", "--out", "o.nc", "--seed", "abc"], "not an integer: 'abc'"),
    ("fit-seed-huge", ["fit", "chinchilla", "--out", "o.nc", "--seed", str(2**64)], "must be an integer from 0"),
    ("fit-no-out", ["fit", "chinchilla"], "the following arguments are required: --out"),
    ("fit-bad-likelihood", ["fit", "chinchilla", "--out", "o.nc", "--likelihood", "x"], "invalid choice: 'x'"),
    ("fit-fix-no-value", ["fit", "chinchilla", "--out", "o.nc", "--fix", "E"], "expected NAME=VALUE"),
    ("fit-fix-twice", ["fit", "chinchilla", "--out", "o.nc", "--fix", "E=1", "--fix", "E=2"], "more than once"),
    ("fit-prior-on-fixed", ["fit", "chinchilla", "--out", "o.nc", "--fix", "E=1.7", "--priors", "priors.json"],
     "fixed by --fix"),
    ("fit-priors-not-utf8", ["fit", "chinchilla", "--out", "o.nc", "--priors", "latin1.json"], "is not UTF-8"),
    ("fit-priors-bad-json", ["fit", "chinchilla", "--out", "o.nc", "--priors", "broken.json"], "not valid"),
    ("fit-unknown-law", ["fit", "chinchilla", "--out", "o.nc", "--law", "nope"], "unknown law 'nope'"),
    ("fit-missing-runs", ["fit", "nope.csv", "--out", "o.nc"], "neither an existing file nor a bundled"),
    ("fit-missing-folder", ["fit", "chinchilla", "--out", "no/such/o.nc"], "does not exist"),
    ("fit-file-as-folder", ["fit", "chinchilla", "--out", "runs.csv/o.nc"], "is a file, not a folder"),
    ("fit-folder-as-out", ["fit", "chinchilla", "--out", "afolder"], "is a folder"),
    ("fit-out-is-input", ["fit", "runs.csv", "--out", "runs.csv"], "is an input file"),
    ("fit-repeated-column", ["fit", "repeated.csv", "--out", "o.nc"], "repeats column name(s) ['loss']"),
    ("fit-not-utf8-runs", ["fit", "latin1.csv", "--out", "o.nc"], "could not be read as a table"),
    ("fit-draws-zero", ["fit", "chinchilla", "--out", "o.nc", "--draws", "0"], "draws must be a positive integer"),
    ("fit-widen-alone", ["fit", "chinchilla", "--out", "o.nc", "--widen", "2"], "--widen goes with --priors-from"),
    # fit-many
    ("many-traversal", ["fit-many", "escape.json", "--out-dir", "afolder"], "job 0 has name '../escaped'"),
    ("many-absolute", ["fit-many", "absolute.json", "--out-dir", "afolder"], "job 0 has name '/tmp/x'"),
    ("many-nul", ["fit-many", "nul.json", "--out-dir", "afolder"], "contains a control character"),
    ("many-not-utf8", ["fit-many", "latin1.json", "--out-dir", "afolder"], "is not UTF-8"),
    ("many-bad-json", ["fit-many", "broken.json", "--out-dir", "afolder"], "is not valid JSON"),
    ("many-not-list", ["fit-many", "priors.json", "--out-dir", "afolder"], "must hold a JSON list"),
    ("many-workers-negative", ["fit-many", "jobs.json", "--out-dir", "afolder", "--workers", "-1"],
     "must be an integer >= 1"),
    ("many-scheduler-not-url", ["fit-many", "jobs.json", "--out-dir", "afolder", "--scheduler", "not a url"],
     "is not a Dask scheduler address"),
    ("many-missing-out-dir", ["fit-many", "jobs.json", "--out-dir", "nowhere"], "does not exist"),
    # summary and saved fits
    ("summary-missing", ["summary", "missing.nc"], "no saved fit at"),
    ("summary-text-file", ["summary", "runs.csv"], "not a readable NetCDF fit"),
    ("summary-corrupt-header", ["summary", "corrupt.nc"], "not a readable NetCDF fit"),
    ("summary-truncated", ["summary", "truncated.nc"], "not a readable NetCDF fit"),
    ("summary-altered", ["summary", "altered.nc"], "do not match the recorded hash"),
    ("summary-prob", ["summary", "FIT", "--prob", "2"], "must be a probability in (0, 1)"),
    # plan, frontier, compare-plans, design
    ("plan-neither", ["plan", "FIT"], "give either --compute"),
    ("plan-compute-tiny", ["plan", "FIT", "--compute", "1e-300"], "no meaningful plan at C = 1e-300"),
    ("plan-compute-nan", ["plan", "FIT", "--compute", "nan"], "must be a finite number > 0"),
    ("plan-flops-tiny", ["plan", "FIT", "--compute", "1e21", "--flops-per-param-token", "1e-300", "--json"],
     "no meaningful plan"),
    ("plan-kind", ["plan", "FIT", "--compute", "1e21", "--kind", "x"], "invalid choice: 'x'"),
    ("frontier-points-huge", ["frontier", "FIT", "--from", "1e20", "--to", "1e22", "--points", "200000"],
     "--points must be from 2 to 1000"),
    ("frontier-reversed", ["frontier", "FIT", "--from", "1e22", "--to", "1e20"], "must be larger than --from"),
    ("compare-plans-one-number", ["compare-plans", "FIT", "--plan", "1e9"], "expected N,D or N,D,U"),
    ("design-missing-candidates", ["design", "FIT", "--compute", "1e22", "--candidates", "nope.csv"], "nope.csv"),
    # predict
    ("predict-seed-negative", ["predict", "FIT", "--params", "1e9", "--tokens", "2e10", "--seed", "-1"],
     "must be an integer from 0"),
    ("predict-nothing", ["predict", "FIT"], "give --params and --tokens"),
    ("predict-header-only", ["predict", "FIT", "--queries", "header.csv"], "has a header but no rows"),
    ("predict-nan-row", ["predict", "FIT", "--queries", "nan.csv"], "column 'params' row 1"),
    ("predict-text-row", ["predict", "FIT", "--queries", "text.csv"], "column 'tokens' row 0: 'many'"),
    ("predict-missing-column", ["predict", "FIT", "--queries", "nocols.csv"], "needs column(s)"),
    # plot and report
    ("plot-unknown-type", ["plot", "FIT", "loss", "--out", "x.xyz"], "unknown image type 'xyz'"),
    ("plot-missing-folder", ["plot", "FIT", "loss", "--out", "no/such/x.png"], "does not exist"),
    ("plot-over-a-fit", ["plot", "FIT", "loss", "--out", "fit_copy.png"], "holds a saved fit or data"),
    ("plot-unknown-kind", ["plot", "FIT", "nope", "--out", "x.png"], "invalid choice: 'nope'"),
    ("plot-option-of-another-kind", ["plot", "FIT", "pair", "--out", "x.png", "--unique-tokens", "1e9"],
     "--unique-tokens does not apply to the 'pair' figure; it applies to epochs"),
    ("plot-x-range-reversed", ["plot", "FIT", "loss", "--out", "x.png", "--x-range", "1e22", "1e20"],
     "the x range (--x-range) must be two finite numbers 0 < low < high"),
    ("plot-budget-zero", ["plot", "FIT", "isoflop", "--out", "x.png", "--compute", "0"],
     "argument --compute: must be a finite number > 0"),
    ("plot-method-figure-of-a-fit", ["plot", "FIT", "isoflop-fit", "--out", "x.png"],
     "the 'isoflop-fit' figure needs an IsoFLOP fit"),
    ("report-over-the-fit", ["report", "FIT", "--out", "FIT"], "holds a saved fit or data"),
    ("report-missing-folder", ["report", "FIT", "--out", "no/such/r.html"], "does not exist"),
    ("report-compute-negative", ["report", "FIT", "--out", "r.html", "--compute", "-1"],
     "must be a finite number > 0"),
    ("report-train-below-zero", ["report", "FIT", "--out", "r.html", "--train-below", "0"],
     "argument --train-below: must be a finite number > 0"),
    # the other fitting commands
    ("isoflop-seed-negative", ["isoflop", "chinchilla", "--seed", "-1"], "must be an integer from 0"),
    ("envelope-missing", ["envelope", "nope.csv"], "nope.csv"),
    ("steps-bad-correlation", ["steps", "gemstones", "--correlation", "x"], "invalid choice: 'x'"),
    ("compare-runs-without-laws", ["compare", "runs.csv", "repeated.csv"], "give --laws"),
    ("extrapolate-no-threshold", ["extrapolate", "chinchilla"], "give exactly one of --train-below"),
    ("compare-methods-no-compute", ["compare-methods", "chinchilla"], "required: --compute"),
    # issue 32, finding 2: report and plot replace only their own kind of output
    ("report-over-a-csv", ["report", "FIT", "--out", "runs.csv"], "is not a bayescale report"),
    ("plot-over-a-text-file", ["plot", "FIT", "loss", "--out", "notes.png"], "is not a figure drawn by matplotlib"),
    # finding 5: a Unicode format character in a job name
    ("many-rtl-override", ["fit-many", "rtl.json", "--out-dir", "afolder"], "Unicode format character"),
    # finding 6: nested JSON and TOML
    ("fit-columns-nested", ["fit", "runs.csv", "--out", "o.nc", "--columns", "deep.json"], "nested more than 32"),
    ("fit-columns-nested-toml", ["fit", "runs.csv", "--out", "o.nc", "--columns", "deep.toml"], "nested more than 32"),
    ("fit-priors-nested", ["fit", "chinchilla", "--out", "o.nc", "--priors", "deep.json"], "nested more than 32"),
    ("fit-priors-nested-toml", ["fit", "chinchilla", "--out", "o.nc", "--priors", "deep.toml"], "nested more than 32"),
    ("isoflop-priors-nested", ["isoflop", "chinchilla", "--priors", "deep.toml"], "nested more than 32"),
    ("envelope-priors-nested", ["envelope", "gemstones", "--priors", "deep.json"], "nested more than 32"),
    ("steps-priors-nested", ["steps", "gemstones", "--priors", "deep.toml"], "nested more than 32"),
    ("many-nested", ["fit-many", "deep.json", "--out-dir", "afolder"], "nested more than 32"),
    # finding 7: priors that overflow
    ("fit-priors-overflow", ["fit", "chinchilla", "--out", "o.nc", "--priors", "overflow.toml"],
     "argument mu=1e+308 is beyond +-1e+100"),
    ("fit-priors-lognormal-overflow", ["fit", "chinchilla", "--out", "o.nc", "--priors", "lognormal.toml"],
     "LogNormal prior needs |mu| <= 700"),
    ("fit-priors-huge-integer", ["fit", "chinchilla", "--out", "o.nc", "--priors", "hugeint.json"],
     "argument mu is too large for a number"),
    # finding 13: a boolean in a priors file, an empty --priors-from
    ("fit-priors-boolean", ["fit", "chinchilla", "--out", "o.nc", "--priors", "boolean.toml"],
     "argument mu=True is not a number"),
    ("fit-priors-from-empty", ["fit", "chinchilla", "--out", "o.nc", "--priors-from", ""], "prior set ''"),
    # finding 11: one check of the questions, shared by plan and report
    ("plan-target-loss-huge", ["plan", "FIT", "--target-loss", "1e300"], "no meaningful plan for a target loss"),
    ("report-compute-tiny", ["report", "FIT", "--out", "r.html", "--compute", "1e-300"],
     "no meaningful plan at C = 1e-300"),
    # findings 8 and 10: forged fits (hashes recomputed with bayescale.methods.io's functions)
    *[(f"summary-forged-{name}", ["summary", f"forged-{name}.nc"], message) for name, (_, message) in FORGED.items()],
    *[(f"plan-forged-{name}", ["plan", f"forged-{name}.nc", "--compute", "1e22"], message)
      for name, (_, message) in FORGED.items() if name in PLAN_FORGED],
    *[(f"predict-forged-{name}", ["predict", f"forged-{name}.nc", "--params", "1e9", "--tokens", "2e10"], message)
      for name, (_, message) in FORGED.items() if name in PLAN_FORGED],
]  # fmt: skip


def _files(folder: Path) -> Path:
    """The inputs of CASES in ``folder``; returns the shared fit."""
    from conftest import TRUE_CHINCHILLA, simulate_ladder

    runs = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=7)
    runs.to_csv(folder / "runs.csv", index=False)
    fit = cheap_fit_file(folder / "fit.nc", runs)
    data = fit.read_bytes()
    (folder / "fit_copy.png").write_bytes(data)
    corrupt = bytearray(data)
    corrupt[168:176] = b"\xff" * 8  # an HDF5 header h5netcdf fails to open (and used to print a traceback)
    (folder / "corrupt.nc").write_bytes(bytes(corrupt))
    (folder / "truncated.nc").write_bytes(data[:3000])
    import arviz as az

    idata = az.from_netcdf(fit)
    diagnostics = json.loads(idata.posterior.attrs["diagnostics"])
    assert diagnostics["divergences"] == 0
    idata.posterior.attrs["diagnostics"] = json.dumps({**diagnostics, "divergences": 7})
    idata.to_netcdf(folder / "altered.nc")
    (folder / "afolder").mkdir()
    (folder / "repeated.csv").write_text("params,tokens,loss,loss\n1e8,2e9,3.1,3.0\n2e8,4e9,2.9,2.8\n")
    (folder / "latin1.csv").write_bytes("params,tokens,loss,caf\xe9\n1e8,2e9,3.1,1\n".encode("latin-1"))
    (folder / "latin1.json").write_bytes('{"E": "caf\xe9"}'.encode("latin-1"))
    (folder / "broken.json").write_text('{"E": ')
    prior = {"E": {"distribution": "LogNormal", "mu": 0.5, "sigma": 0.2}}
    (folder / "priors.json").write_text(json.dumps(prior))
    jobs = [{"name": "a", "runs": "chinchilla", "draws": 10, "tune": 10}]
    (folder / "jobs.json").write_text(json.dumps(jobs))
    (folder / "escape.json").write_text(json.dumps([{**jobs[0], "name": "../escaped"}]))
    (folder / "absolute.json").write_text(json.dumps([{**jobs[0], "name": "/tmp/x"}]))
    (folder / "nul.json").write_text(json.dumps([{**jobs[0], "name": "a\x00b"}]))
    (folder / "header.csv").write_text("params,tokens\n")
    (folder / "nan.csv").write_text("params,tokens\n1e9,2e10\nnan,2e10\n")
    (folder / "text.csv").write_text("params,tokens\n1e9,many\n")
    (folder / "nocols.csv").write_text("x,y\n1,2\n")
    (folder / "notes.png").write_text("my notes, not a figure\n")
    (folder / "rtl.json").write_text(json.dumps([{**jobs[0], "name": "fit\u202egnp.nc"}]))
    (folder / "deep.json").write_text(DEEP)
    (folder / "deep.toml").write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    (folder / "overflow.toml").write_text('[E]\ndistribution = "LogNormal"\nmu = 1e308\nsigma = 1e308\n')
    (folder / "lognormal.toml").write_text('[E]\ndistribution = "LogNormal"\nmu = 1e4\nsigma = 1e3\n')
    (folder / "hugeint.json").write_text(
        '{"E": {"distribution": "LogNormal", "mu": 1' + "0" * 400 + ', "sigma": 1}}'
    )
    (folder / "boolean.toml").write_text('[E]\ndistribution = "LogNormal"\nmu = true\nsigma = 0.5\n')
    for name, (edit, _) in FORGED.items():
        forge(fit, folder / f"forged-{name}.nc", edit)
    return fit


#: Runs the cases: imports the command once, then forks one process per case (at most
#: PARALLEL at a time) that runs exactly what the ``bayescale`` script runs, with stdout and
#: stderr at the file-descriptor level and the interpreter's normal exit (so a traceback a
#: library prints at shutdown is seen). A case past TIMEOUT is killed and reported as a hang;
#: a crash shows as a negative return code (the signal).
DRIVER = r"""
import json, os, signal, sys, time
import _bayescale_cli
_bayescale_cli.hide_cluster_modules()  # as the `bayescale` command does, before xarray's import
import matplotlib
matplotlib.use("Agg")
import arviz, h5netcdf, xarray  # noqa: F401  (imported once, before the forks)
from bayescale.cli import main

folder, timeout, parallel = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
cases = json.load(sys.stdin)
os.chdir(folder)
results, running, queue = {}, {}, list(cases)


def start(case_id, argv):
    out, err = (os.path.join(folder, f".case.{case_id}.{s}") for s in ("out", "err"))
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        for fd, name in ((1, out), (2, err)):
            handle = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(handle, fd)
            os.close(handle)
        sys.argv = ["bayescale", *argv]
        sys.exit(main())  # as the console script does
    running[pid] = (case_id, out, err, time.monotonic())


while queue or running:
    while queue and len(running) < parallel:
        start(*queue.pop(0))
    time.sleep(0.05)
    for pid, (case_id, out, err, began) in list(running.items()):
        done, status = os.waitpid(pid, os.WNOHANG)
        hung = not done and time.monotonic() - began > timeout
        if hung:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        if done or hung:
            del running[pid]
            code = None if hung else os.waitstatus_to_exitcode(status)
            texts = []
            for name in (out, err):
                with open(name, encoding="utf-8", errors="replace") as handle:
                    texts.append(handle.read())
                os.unlink(name)
            results[case_id] = {"returncode": code, "stdout": texts[0], "stderr": texts[1]}
print(json.dumps(results))
"""
#: Cases run at once.
PARALLEL = 3


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    folder = tmp_path_factory.mktemp("cli_faults")
    fit = _files(folder)
    cases = [[case_id, [str(fit) if a == "FIT" else a for a in argv]] for case_id, argv, _ in CASES]
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(folder), str(TIMEOUT), str(PARALLEL)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=TIMEOUT * len(CASES),
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    # Nothing was written in the case folder but its own inputs (no fit ran, no file was replaced).
    results["_files"] = sorted(p.name for p in folder.rglob("*"))
    return results


@pytest.mark.parametrize(("case_id", "argv", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line(outcomes, case_id, argv, message):
    result = outcomes[case_id]
    err = result["stderr"]
    assert result["returncode"] is not None, f"hung for more than {TIMEOUT} s"
    assert "Traceback" not in err and "Exception ignored" not in err, err[-3000:]
    assert result["returncode"] == 2, (result["returncode"], err[-3000:])  # < 0: killed by a signal
    lines = [line for line in err.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0], err
    assert result["stdout"] == "", result["stdout"][-2000:]


def test_no_case_wrote_a_file(outcomes):
    made = set(outcomes["_files"])
    assert not made & {"o.nc", "x.png", "r.html", "escaped.nc", "a.nc", "x.nc"}
    assert not any(name.endswith(".tmp") or name.endswith(".probe") for name in made)


def test_case_count():
    """The suite's size, for the issue's closing note (grows with the CLI)."""
    assert len(CASES) >= 60
    assert len({c[0] for c in CASES}) == len(CASES)


def test_closed_pipe_is_quiet(tmp_path):
    """`bayescale laws | head -0`: the reader is gone before the output; no traceback."""
    proc = subprocess.Popen([BAYESCALE, "laws"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    proc.stdout = None
    _, err_bytes = proc.communicate(timeout=TIMEOUT)
    err = err_bytes.decode()
    assert "Traceback" not in err and "Exception ignored" not in err and "BrokenPipe" not in err, err
    assert proc.returncode == 141 and err == ""
