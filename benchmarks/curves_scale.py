"""Envelope (Approach 1) fit time and convergence against the number of checkpoints.

Simulated curves: ``runs`` model sizes (3e7-2e9 params), each with ``points / runs``
log-spaced checkpoints, loss from the Chinchilla law of bayescale.checks.simulate times an AR(1)
series (rho 0.9, sigma 0.004) on log loss. Prints one row per size: points, draws, wall and
CPU seconds, divergences, max r_hat, min bulk ESS, mean leapfrog steps, a against the truth.

    PYTHONPATH=$PWD nice -n 10 python benchmarks/curves_scale.py 1e3 1e4 1e5 [--no-whiten]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

import bayescale as bs
from bayescale.methods.envelope import fit_envelope

TRUTH = {"E": 1.8, "A": 480.0, "B": 2100.0, "alpha_N": 0.35, "alpha_D": 0.37}  # TRUE_CHINCHILLA


def simulate(
    points: int, runs: int = 20, seed: int = 0, rho: float = 0.9, sigma: float = 0.004
) -> pd.DataFrame:
    """``points`` checkpoints of ``runs`` curves with AR(1) residuals on log loss."""
    rng = np.random.default_rng(seed)
    law = bs.get_law("chinchilla")
    per = points // runs
    frames = []
    for n in np.geomspace(3e7, 2e9, runs):
        tokens = np.geomspace(2e8, 1.5e11, per)
        shocks = rng.normal(0.0, sigma, per)
        eps = np.empty(per)
        eps[0] = shocks[0] / np.sqrt(1 - rho**2)
        for t in range(1, per):
            eps[t] = rho * eps[t - 1] + shocks[t]
        loss = law.loss(TRUTH, n, tokens) * np.exp(eps)
        frames.append(pd.DataFrame({"run": f"m{n:.3g}", "params": n, "tokens": tokens, "loss": loss}))
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("points", nargs="+", type=float)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--no-whiten", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    true_a = TRUTH["alpha_D"] / (TRUTH["alpha_N"] + TRUTH["alpha_D"])
    print(f"whiten={not args.no_whiten}  chains={args.chains}  true a={true_a:.3f}")
    print("  points  draws  wall_s   cpu_s  div  r_hat    ESS  steps  a [90%]")
    for points in args.points:
        curves = bs.Curves.from_any(simulate(int(points)))
        wall, cpu = time.perf_counter(), time.process_time()
        fit = fit_envelope(
            curves,
            sampler={"draws": args.draws, "tune": args.draws, "chains": args.chains},
            random_seed=1,
            progressbar=False,
            warn=False,
            whiten=not args.no_whiten,
        )
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        d = fit.diagnostics
        a = fit.exponents()["a"]
        steps = float(fit.idata.sample_stats["n_steps"].mean())
        print(
            f"{len(curves.frame):8d} {args.draws:6d} {wall:7.1f} {cpu:7.1f} {d['divergences']:4d} "
            f"{d['max_r_hat']:6.3f} {d['min_ess_bulk']:6.0f} {steps:6.1f}  "
            f"{a['median']:.3f} [{a['lower']:.3f}, {a['upper']:.3f}]",
            flush=True,
        )


if __name__ == "__main__":
    main()
