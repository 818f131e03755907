"""Simulation-based calibration of every shipped law, and extrapolation coverage.

Usage (from the repository root)::

    PYTHONPATH=$PWD python benchmarks/sbc.py --sims 100 --workers 2 --out benchmarks/results/sbc
    PYTHONPATH=$PWD python benchmarks/sbc.py --laws chinchilla:150 kaplan-n:60 --draws 500

For each law: prior draws -> simulated ladder (bayescale.checks.calibration.ladder) ->
fit on the smaller sizes through bayescale.fit_many -> rank of the truth per
parameter and for N_opt at 1e23 FLOPs; then uniformity tests of the ranks, the
held-out coverage of 90% predictive intervals and how many fits failed their
diagnostics. ``--out PREFIX`` writes PREFIX.json (everything, ranks included)
and PREFIX.csv (one row per law and quantity), rewritten after each law.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import pathlib
import shlex
import subprocess
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor

import pandas as pd

import bayescale as bs
from bayescale.checks import calibration


def non_grouped_laws() -> list[str]:
    """Laws fitted to one ladder (the grouped ones need a ``group`` column)."""
    return [name for name in bs.list_laws() if not bs.get_law(name).pooled]


def table_rows(summary: dict) -> list[dict]:
    """One CSV row per ranked quantity of one law."""
    rows = []
    for quantity, tests in summary["uniformity"].items():
        rows.append(
            {
                "law": summary["law"],
                "quantity": quantity,
                "sims": summary["sims"],
                "rejected": summary["rejected"],
                "fit_errors": summary["fit_errors"],
                "failed_diagnostics": summary["failed_diagnostics"],
                "fits_with_divergences": summary["fits_with_divergences"],
                "fits_r_hat_over_1_05": summary["fits_r_hat_over_1_05"],
                "ks_pvalue": tests["ks_pvalue"],
                "chi2_pvalue": tests["chi2_pvalue"],
                "edge_fraction": tests["edge_fraction"],
                "mean_u": tests["mean_u"],
                "heldout_coverage_90": summary["coverage"]["predictive"],
                "heldout_coverage_ci_low": summary["coverage"]["predictive_95ci"][0],
                "heldout_coverage_ci_high": summary["coverage"]["predictive_95ci"][1],
                "heldout_coverage_ladder_ci_low": summary["coverage"]["predictive_95ci_ladders"][0],
                "heldout_coverage_ladder_ci_high": summary["coverage"]["predictive_95ci_ladders"][1],
                "heldout_runs": summary["coverage"]["runs"],
                "mean_coverage_90": summary["coverage"]["mean"],
                "seconds": summary["seconds"],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--laws", nargs="*", default=None, help="laws to check, LAW or LAW:SIMS (default: all non-grouped)"
    )
    parser.add_argument("--sims", type=int, default=100, help="simulations per law without :SIMS")
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument(
        "--backend",
        default="jax",
        help="fit backend; 'jax' (default) takes the data as arguments of one compiled, disk-cached "
        "program, so every same-shaped ladder reuses it (~5 s a fit instead of ~60 s of recompiling)",
    )
    parser.add_argument("--workers", type=int, default=2, help="processes of the fit_many pool")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat the plan with new seeds, pooling the simulations"
    )
    parser.add_argument(
        "--until",
        default=None,
        help="UTC time HH:MM after which no new law chunk is started (time-boxed run)",
    )
    parser.add_argument("--out", default=None, help="write PREFIX.json and PREFIX.csv")
    parser.add_argument(
        "--resummarize",
        default=None,
        metavar="PREFIX",
        help="no fits: recompute the summaries of PREFIX.json's ranks with this code and rewrite PREFIX.*",
    )
    args = parser.parse_args()
    if args.resummarize:
        resummarize(args.resummarize)
        return
    warnings.simplefilter("ignore", bs.FitWarning)
    plan = [
        (spec.split(":")[0], int(spec.split(":")[1]) if ":" in spec else args.sims)
        for spec in args.laws or []
    ]
    plan = plan or [(law, args.sims) for law in non_grouped_laws()]
    deadline = None
    if args.until:
        hour, minute = (int(x) for x in args.until.split(":"))
        now = datetime.datetime.now(datetime.UTC)
        deadline = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    command = "python " + shlex.join(sys.argv)
    commit = source_commit()
    parts: dict[str, list] = {law: [] for law, _ in plan}
    seconds = dict.fromkeys(parts, 0.0)
    # One pool for the whole run: spawning workers (importing PyMC and JAX) costs seconds each time.
    pool = ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        for round_ in range(args.rounds):
            for law, sims in plan:
                if deadline is not None and datetime.datetime.now(datetime.UTC) >= deadline:
                    print(f"deadline {args.until} UTC reached: not starting {law} round {round_}", flush=True)
                    continue
                start = time.perf_counter()
                parts[law].append(
                    calibration.sbc(
                        law,
                        sims,
                        seed=args.seed + 100_000 * round_,
                        fit_kwargs={
                            "sampler": {
                                "draws": args.draws,
                                "tune": args.tune,
                                "chains": args.chains,
                                "backend": args.backend,
                            }
                        },
                        executor=pool,
                        chunk=2 * args.workers,
                        progress=lambda line: print(line, flush=True),
                    )
                )
                seconds[law] += time.perf_counter() - start
                write(parts, seconds, command, args.seed, args.out, commit)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def source_commit() -> str | None:
    """Commit of the code being run: ``git rev-parse HEAD`` (with ``+dirty`` when files differ), or
    ``$BAYESCALE_COMMIT`` for a copy outside git (e.g. a snapshot run while the worktree changes)."""
    root = pathlib.Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("BAYESCALE_COMMIT")
    return head + ("+dirty" if dirty else "")


def resummarize(prefix: str) -> None:
    """Rebuild every law's result from ``PREFIX.json`` (ranks and settings) and rewrite the outputs."""
    with open(f"{prefix}.json") as handle:
        saved = json.load(handle)
    parts, seconds = {}, {}
    for law, entry in saved["laws"].items():
        result = calibration.SBCResult(
            law, pd.DataFrame(entry["ranks"]), entry["rejected"], list(entry["uniformity"]), entry["settings"]
        )
        parts[law], seconds[law] = [result], entry["seconds"]
    seed = int(saved["command"].split("--seed ")[1].split()[0]) if "--seed " in saved["command"] else 2026
    extra = {"summarised_by": source_commit()}
    write(parts, seconds, saved["command"], seed, prefix, saved.get("commit"), extra)


def write(
    parts: dict,
    seconds: dict,
    command: str,
    seed: int,
    out: str | None,
    commit: str | None = None,
    extra: dict | None = None,
) -> None:
    """Print the pooled result of every law so far and rewrite the output files."""
    report = {"command": command, "commit": commit, **(extra or {}), "laws": {}}
    rows: list[dict] = []
    for law, results in parts.items():
        if not results:
            continue
        result = results[0] if len(results) == 1 else calibration.SBCResult.combine(results)
        summary = {**result.summary(seed=seed), "seconds": seconds[law]}
        report["laws"][law] = {
            **summary,
            "settings": result.settings,
            "ranks": result.ranks.to_dict(orient="list"),
        }
        rows.extend(table_rows(summary))
        print(
            f"\n== {law}: {summary['sims']} fits in {summary['seconds']:.0f}s, {result.rejected} redrawn, "
            f"{summary['fit_errors']} fit errors, {summary['failed_diagnostics']} failed diagnostics, "
            f"{summary['fits_with_divergences']} with divergences, "
            f"{summary['fits_r_hat_over_1_05']} with r_hat > 1.05"
        )
        print(result.uniformity(seed=seed).round(3).to_string())
        print(f"held-out 90% coverage: {summary['coverage']}\n", flush=True)
    if out:
        with open(f"{out}.json", "w") as handle:
            json.dump(report, handle, indent=1, default=float)
        pd.DataFrame(rows).to_csv(f"{out}.csv", index=False, float_format="%.4g")


if __name__ == "__main__":
    main()
