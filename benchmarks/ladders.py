"""Panel benchmark of issue 17: ``bayescale fit`` on a panel of real and simulated ladders.

Usage::

    python benchmarks/ladders.py                         # the panel at the defaults (~25 min, 2 cores)
    python benchmarks/ladders.py --quick                 # fast path only, seed 1, no first-fit timing
    python benchmarks/ladders.py --ladders misfitting,chinchilla --seeds 1-10 --backends auto
    python benchmarks/ladders.py --out benchmarks/results/ladders.txt

Every fit is ``bayescale fit`` at the defaults (4 chains x 1000 draws after 1000
tuning steps, Student-t likelihood, default priors unless the ladder says
otherwise) run as the CLI in a new process, so "cold" is what a user waits
for: imports, loading the runs, loading (or compiling) the sampler, sampling,
diagnostics and saving. Per ladder and backend:

- ``cold``: median wall time of the CLI over the seeds, with the compiled
  programs in the on-disk cache (a fit of a shape seen before);
- ``new``: the CLI on an empty program cache, minus ``cold`` (the first fit of
  a new shape; fast path only, skipped with ``--quick``);
- ``-1 run``: the ladder less one run, fitted once with the ladder's programs in the
  cache, minus ``cold``: a ladder of a size not fitted before, as a user's next one
  (fast path only, skipped with ``--quick``);
- ``warm``: a second fit in one process (``bayescale.cli.main`` called twice;
  fast path only);
- ``steps``: median leapfrog steps per draw, ``maxdepth``: share of draws at
  the maximum tree depth (10), over every draw of every seed;
- a fit that runs longer than ``--timeout`` is stopped and the row says so;
- ``ess``: the lowest min bulk ESS over the seeds, ``rhat``: the highest max
  r_hat, ``div``: divergences summed over the seeds, ``ok``: seeds meeting
  r_hat <= 1.01 and ESS >= 400.

Backends: ``auto`` (the JAX fast path), ``numpyro`` and ``pymc`` (both on the
PyMC model; at ``--reference-seeds``, default seed 1, since they take 5-20x
longer). The statistics come from the saved fits, computed here, so the
script also measures an older checkout: ``--root`` points the CLI and the
imports at another worktree of bayescale.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parents[1]
MISFITTING = Path("/work/shared/anchors/misfitting/scaling_results_last_ckpt_only.csv")
MAX_STEPS = 2**10 - 1  # NUTS's maximum tree depth 10 (numpyro, PyMC)


@dataclass
class Ladder:
    """One ladder of the panel: a runs file (written on demand) and the CLI options of its fit."""

    name: str
    what: str
    frame: pd.DataFrame | None = None
    path: Path | None = None
    options: list[str] = field(default_factory=list)
    #: Columns that name a run of a raw file (rows sharing them are one run after ``--best-of``).
    run_columns: tuple[str, ...] = ()

    def source(self, folder: Path) -> str:
        if self.path is not None:
            return str(self.path)
        path = folder / f"{self.name}.csv"
        if not path.exists():
            assert self.frame is not None
            self.frame.to_csv(path, index=False)
        return str(path)

    def less_one_run(self, folder: Path) -> str:
        """A runs file of the ladder less its last run (every raw row of it)."""
        frame = pd.read_csv(self.source(folder))
        if self.run_columns:
            last = frame[list(self.run_columns)].iloc[-1]
            frame = frame[~(frame[list(self.run_columns)] == last).all(axis=1)]
        else:
            frame = frame.iloc[:-1]
        path = folder / f"{self.name}-less-one.csv"
        frame.to_csv(path, index=False)
        return str(path)


def single_ratio(n: int, seed: int = 17) -> pd.DataFrame:
    """``n`` sizes 2e7-1e9 at 20 tokens per parameter, from the Chinchilla law at Epoch's values."""
    from bayescale.checks.simulate import TRUE_CHINCHILLA, simulate_ladder

    return simulate_ladder(
        "chinchilla", TRUE_CHINCHILLA, seed=seed, sizes=np.geomspace(2e7, 1e9, n), multipliers=(20,)
    )


def panel() -> list[Ladder]:
    """The ladders: bundled sets, the misfitting ladder, two single-ratio ladders, one simulated per law."""
    from bayescale.checks.simulate import KAPLAN_E, MUENNIGHOFF_C4, TRUE_CHINCHILLA, simulate_ladder
    from bayescale.data import datasets

    ladders = [
        Ladder("chinchilla", "bundled, 245 runs", path=None, frame=datasets.load("chinchilla").frame),
        Ladder(
            "datablations",
            "bundled, 182 runs, data-constrained law",
            frame=datasets.load("datablations").frame,
            options=["--law", "data-constrained"],
        ),
    ]
    gadre = datasets.load("gadre-overtrain").frame
    for group in sorted(gadre["group"].unique()):
        rows = gadre[gadre["group"] == group].drop(columns=["group"])
        ladders.append(Ladder(f"gadre-{group}", f"bundled, {len(rows)} runs", frame=rows))
    gem = datasets.load_curves("gemstones").final_runs().frame
    ladders.append(Ladder("gemstones-final", f"bundled, final checkpoints, {len(gem)} runs", frame=gem))
    ladders.append(
        Ladder(
            "misfitting",
            "(Mis)Fitting best LR per (N, D), 81 of 261 rows",
            path=MISFITTING,
            options=["--column", "tokens=D", "--best-of", "peak_lr"],
            run_columns=("N", "D"),
        )
    )
    borrowed = ["--priors-from", "epoch-chinchilla", "--prior-params", "A,B,alpha_N,alpha_D"]
    for n in (5, 8):
        ladders.append(
            Ladder(
                f"ratio20-{n}",
                f"simulated, {n} runs at 20 tokens/param, borrowed priors",
                frame=single_ratio(n),
                options=borrowed,
            )
        )
    ladders.append(
        Ladder(
            "ratio20-5-sigma",
            "the 5 runs, borrowed priors and a prior on sigma (benchmarks/sigma_prior.toml)",
            frame=single_ratio(5),
            options=[*borrowed, "--priors", str(HERE / "benchmarks" / "sigma_prior.toml")],
        )
    )
    ladders.append(
        Ladder(
            "sim-chinchilla", "simulated, 40 runs", frame=simulate_ladder("chinchilla", TRUE_CHINCHILLA, 3)
        )
    )
    dc = simulate_ladder("chinchilla", {k: MUENNIGHOFF_C4[k] for k in TRUE_CHINCHILLA}, 4)
    dc["unique_tokens"] = dc["tokens"]  # single-epoch: the data-constrained law at U = D
    ladders.append(
        Ladder(
            "sim-data-constrained",
            "simulated, 40 runs, one epoch",
            frame=dc,
            options=["--law", "data-constrained"],
        )
    )
    ladders.append(
        Ladder(
            "sim-kaplan-e",
            "simulated, 40 runs",
            frame=simulate_ladder("kaplan-e", KAPLAN_E, 5),
            options=["--law", "kaplan-e"],
        )
    )
    from bayescale.checks.simulate import KAPLAN

    ladders.append(
        Ladder(
            "sim-kaplan",
            "simulated, 40 runs",
            frame=simulate_ladder("kaplan", KAPLAN, 6),
            options=["--law", "kaplan"],
        )
    )
    return ladders


#: Seconds a single fit may take before the panel gives up on it (``--timeout``).
TIMEOUT = 600.0


def cli(root: Path, args: list[str], cache: Path, timeout: float = TIMEOUT) -> tuple[float, int, str]:
    """Run ``bayescale`` from ``root`` in a new process: wall seconds, exit status, stderr.

    A fit still running after ``timeout`` seconds is stopped: exit status -1.
    """
    env = {**os.environ, "PYTHONPATH": str(root), "BAYESCALE_CACHE_DIR": str(cache)}
    # The console script's entry (its Ctrl-C handling and hidden Dask included), run from ``root``.
    command = [sys.executable, "-c", "import sys, _bayescale_cli; sys.exit(_bayescale_cli.main())", *args]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=root, timeout=timeout)
    except subprocess.TimeoutExpired:
        return time.perf_counter() - start, -1, f"stopped after {timeout:.0f} s (--timeout)"
    return time.perf_counter() - start, done.returncode, done.stderr


def fit_stats(path: Path) -> dict[str, float]:
    """Min bulk ESS, max r_hat, divergences and each draw's leapfrog steps of a saved fit."""
    import arviz as az

    idata = az.from_netcdf(path)
    posterior, stats = idata.posterior, idata.sample_stats
    names = [v for v in posterior.data_vars if posterior[v].std() > 0 and posterior[v].ndim == 2]
    return {
        # one-variable Datasets: ArviZ 0.x and 1.x take and return them alike
        "ess": float(min(float(az.ess(posterior[n].to_dataset(name="x"))["x"]) for n in names)),
        "rhat": float(max(float(az.rhat(posterior[n].to_dataset(name="x"))["x"]) for n in names)),
        "div": int(stats["diverging"].sum()),
        "steps": np.asarray(stats["n_steps"].values).ravel(),
    }


def measure(ladder: Ladder, backend: str, seeds: list[int], args: argparse.Namespace, work: Path) -> dict:
    root = Path(args.root).resolve()
    cache = work / "cache"
    base = ["fit", ladder.source(work), *ladder.options, "--backend", backend]
    row: dict = {"ladder": ladder.name, "backend": backend}
    out = work / f"{ladder.name}-{backend}.nc"
    if backend == "auto" and not (args.quick or args.no_shape_timing):
        # First fit of this shape: an empty program cache, then one fit to fill the shared cache.
        new_wall, _, _ = cli(
            root, [*base, "--out", str(out), "--seed", "0"], work / f"empty-{ladder.name}", args.timeout
        )
        row["new_shape"] = new_wall
    # Fill the shared cache (not counted).
    cli(root, [*base, "--out", str(out), "--seed", "0"], cache, args.timeout)
    walls, stats = [], []
    for seed in seeds:
        wall, code, err = cli(root, [*base, "--out", str(out), "--seed", str(seed)], cache, args.timeout)
        if code != 0:
            row["error"] = err.strip().splitlines()[-1] if err.strip() else f"exit {code}"
            return row
        walls.append(wall)
        stats.append(fit_stats(out))
    row["cold"] = statistics.median(walls)
    row["cold_max"] = max(walls)
    if "new_shape" in row:
        row["new_extra"] = row.pop("new_shape") - row["cold"]
    steps = np.concatenate([s["steps"] for s in stats])
    row["steps"] = float(np.median(steps))
    row["maxdepth"] = float(np.mean(steps >= MAX_STEPS))
    row["ess"] = min(s["ess"] for s in stats)
    row["rhat"] = max(s["rhat"] for s in stats)
    row["div"] = sum(s["div"] for s in stats)
    row["ok"] = f"{sum(s['rhat'] <= 1.01 and s['ess'] >= 400 for s in stats)}/{len(stats)}"
    if backend == "auto":
        row["warm"] = warm(root, base, work, cache, args.timeout)
    if backend == "auto" and not (args.quick or args.no_shape_timing):
        fewer = ["fit", ladder.less_one_run(work), *ladder.options, "--backend", backend]
        wall, code, _ = cli(
            root, [*fewer, "--out", str(work / "less-one.nc"), "--seed", "1"], cache, args.timeout
        )
        row["less_one_extra"] = wall - row["cold"] if code == 0 else float("nan")
    return row


def warm(root: Path, base: list[str], work: Path, cache: Path, timeout: float) -> float:
    """Wall time of a second ``bayescale fit`` in one process (the first loads the programs)."""
    script = (
        "import sys, time, contextlib, io\n"
        "from bayescale.cli import main\n"
        "args = sys.argv[1:]\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(args + ['--seed', '1'])\n"
        "    t = time.perf_counter(); main(args + ['--seed', '2']); wall = time.perf_counter() - t\n"
        "print(wall)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(root), "BAYESCALE_CACHE_DIR": str(cache)}
    out = work / "warm.nc"
    try:
        done = subprocess.run(
            [sys.executable, "-c", script, *base, "--out", str(out)],
            env=env,
            capture_output=True,
            text=True,
            cwd=root,
            timeout=2 * timeout,
        )
    except subprocess.TimeoutExpired:
        return float("nan")
    try:
        return float(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return float("nan")


def seeds_arg(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def table(rows: list[dict]) -> str:
    head = (
        f"{'ladder':<22} {'backend':<8} {'cold s':>7} {'max s':>6} {'warm s':>7} {'new +s':>7} "
        f"{'-1 run +s':>9} "
        f"{'steps':>6} {'maxdepth':>8} {'min ESS':>8} {'max rhat':>8} {'div':>4} {'ok':>5}"
    )
    lines = [head, "-" * len(head)]

    def num(row: dict, key: str, fmt: str) -> str:
        value = row.get(key)
        return "" if value is None or (isinstance(value, float) and np.isnan(value)) else format(value, fmt)

    for r in rows:
        if "error" in r:
            lines.append(f"{r['ladder']:<22} {r['backend']:<8} error: {r['error']}")
            continue
        lines.append(
            f"{r['ladder']:<22} {r['backend']:<8} {num(r, 'cold', '.1f'):>7} {num(r, 'cold_max', '.1f'):>6} "
            f"{num(r, 'warm', '.1f'):>7} {num(r, 'new_extra', '.1f'):>7} "
            f"{num(r, 'less_one_extra', '.1f'):>9} {num(r, 'steps', '.0f'):>6} "
            f"{num(r, 'maxdepth', '.1%'):>8} {num(r, 'ess', '.0f'):>8} {num(r, 'rhat', '.3f'):>8} "
            f"{r['div']:>4} {r['ok']:>5}"
        )
    auto = [r for r in rows if r["backend"] == "auto" and "cold" in r]
    if auto:
        colds = [r["cold"] for r in auto]
        lines.append(
            f"fast path over {len(auto)} ladders: median cold {statistics.median(colds):.1f} s, "
            f"slowest {max(r['cold_max'] for r in auto):.1f} s; ladders with every seed ok: "
            f"{sum(r['ok'].split('/')[0] == r['ok'].split('/')[1] for r in auto)}"
        )
        new = [r["new_extra"] for r in auto if "new_extra" in r]
        fewer = [r["less_one_extra"] for r in auto if np.isfinite(r.get("less_one_extra", np.nan))]
        if new and fewer:
            lines.append(
                f"first fit on an empty cache: median {statistics.median(new):+.1f} s; the ladder less one "
                f"run after it: median {statistics.median(fewer):+.1f} s, largest {max(fewer):+.1f} s"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ladders", help="comma-separated ladder names, run in that order (default: all)")
    parser.add_argument("--seeds", default="1-3", help="seeds of the fast path, e.g. 1-10 (default 1-3)")
    parser.add_argument("--reference-seeds", default="1", help="seeds of numpyro and pymc (default 1)")
    parser.add_argument("--backends", default="auto,numpyro,pymc", help="default auto,numpyro,pymc")
    parser.add_argument("--quick", action="store_true", help="fast path, seed 1, no first-fit timing")
    parser.add_argument(
        "--no-shape-timing", action="store_true", help="skip the 'new +s' and '-1 run +s' columns"
    )
    parser.add_argument(
        "--timeout", type=float, default=TIMEOUT, help=f"seconds per fit (default {TIMEOUT:.0f})"
    )
    parser.add_argument("--root", default=str(HERE), help="bayescale worktree to measure (default: this one)")
    parser.add_argument("--out", help="also write the table here")
    parser.add_argument("--list", action="store_true", help="list the ladders and exit")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    ladders = panel()
    if args.list:
        for ladder in ladders:
            print(f"{ladder.name:<22} {ladder.what}")
        return
    if args.ladders:
        wanted = args.ladders.split(",")
        unknown = sorted(set(wanted) - {ladder.name for ladder in ladders})
        if unknown:
            parser.error(f"unknown ladders {unknown}; --list shows them")
        by_name = {ladder.name: ladder for ladder in ladders}
        ladders = [by_name[name] for name in wanted]  # in the order given
    backends = ["auto"] if args.quick else args.backends.split(",")
    seeds = [1] if args.quick else seeds_arg(args.seeds)
    reference = [1] if args.quick else seeds_arg(args.reference_seeds)
    command = "python benchmarks/ladders.py " + " ".join(sys.argv[1:])
    started = time.time()
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for ladder in ladders:
            for backend in backends:
                row = measure(ladder, backend, seeds if backend == "auto" else reference, args, work)
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items()}, default=str), file=sys.stderr, flush=True)
    text = "\n".join(
        [
            f"$ {command}",
            f"root {Path(args.root).resolve()}; {len(seeds)} fast-path seeds {seeds}, reference seeds "
            f"{reference}; {os.cpu_count()} cores; load average before {load_before[0]:.2f}, "
            f"after {os.getloadavg()[0]:.2f}; {time.time() - started:.0f} s in all",
            table(rows),
        ]
    )
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
