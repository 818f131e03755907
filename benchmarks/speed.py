"""Speed benchmark of issue 7, in one run: samplers side by side, the least-squares peer, scaling, cold CLI.

Usage::

    python benchmarks/speed.py            # full: 4 chains x 1000 draws after 1000 tuning steps everywhere
    python benchmarks/speed.py --quick    # shorter PyMC run, fewer peer starts/bootstraps, short scaling fits

Every sampler fits the same model (bundled Chinchilla runs, Chinchilla law,
Student-t likelihood on log loss, default priors). ESS per second is the
minimum bulk ESS over the free parameters divided by the sampler's wall time
(compile included). The least-squares peer (Hoffmann et al. / Epoch: Huber
loss on log loss from a grid of starts, then bootstrap refits) is
reimplemented with scipy; with ``--quick`` it runs a subset of the grid and
of the bootstraps and its time is scaled to the full 4,500 starts and 4,000
bootstraps (the table says so).
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bayescale as bs  # noqa: E402
from bayescale.inference import diagnostics, sampling  # noqa: E402
from bayescale.model.jax_density import build_density  # noqa: E402
from bayescale.model.pymc_model import resolve_priors  # noqa: E402

BUDGET = 5.76e23
NAMES = ["E", "A", "B", "alpha_N", "alpha_D", "sigma", "nu"]


def load() -> str:
    return os.getloadavg().__repr__()


def summarise(label: str, idata, wall: float) -> dict:
    report = diagnostics.compute(idata, NAMES)
    ess = report["min_ess_bulk"]
    return {
        "method": label,
        "wall": wall,
        "ess": ess,
        "ess_per_s": ess / wall,
        "div": report["divergences"],
        "r_hat": report["max_r_hat"],
    }


def model_setup():
    runs = bs.datasets.load("chinchilla")
    law = bs.get_law("chinchilla")
    free, fixed = resolve_priors(law, "student_t")
    return law, runs, free, fixed


def run_pymc(draws: int, tune: int, seed: int) -> dict:
    import pymc as pm

    from bayescale.model.pymc_model import build_model

    law, runs, free, fixed = model_setup()
    t = time.perf_counter()
    model = build_model(law, runs, free, fixed, "student_t")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = pm.sample(model=model, draws=draws, tune=tune, chains=4, random_seed=seed, progressbar=False)
    return summarise(f"plain PyMC pm.sample ({draws}+{tune})", idata, time.perf_counter() - t)


def run_pymc_backend(backend: str, draws: int, tune: int, seed: int) -> dict:
    from bayescale.model.pymc_model import build_model

    law, runs, free, fixed = model_setup()
    t = time.perf_counter()
    model = build_model(law, runs, free, fixed, "student_t")
    config = sampling.SamplerConfig(draws=draws, tune=tune, backend=backend)
    idata = sampling.sample(model, config, seed, False)
    return summarise(f"{backend} on the PyMC model ({draws}+{tune})", idata, time.perf_counter() - t)


def run_fast(draws: int, tune: int, seed: int) -> tuple[dict, float]:
    """``bs.fit`` with its default backend, and its time to a 90% interval on N_opt (fit + plan.optimal)."""
    law, runs, _, _ = model_setup()
    t = time.perf_counter()
    fit = bs.fit(
        runs, law=law, sampler={"draws": draws, "tune": tune}, random_seed=seed, progressbar=False, warn=False
    )
    row = fit.optimal(BUDGET).iloc[0]
    wall = time.perf_counter() - t
    result = summarise(f"bayescale default (auto -> {fit.sampler.backend}) ({draws}+{tune})", fit.idata, wall)
    result["interval"] = (row["params_median"], row["params_lower"], row["params_upper"])
    return result, wall


# --- least-squares peer ---------------------------------------------------------------------------


def huber(r: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    small = np.abs(r) <= delta
    value = np.where(small, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta))
    grad = np.where(small, r, delta * np.sign(r))
    return value, grad


def peer_objective(p: np.ndarray, log_n, log_d, log_l, delta=1e-3):
    """Hoffmann et al.'s objective: Huber of LSE(a - alpha log N, b - beta log D, e) - log L."""
    a, b, e, alpha, beta = p
    t1, t2 = a - alpha * log_n, b - beta * log_d
    top = np.maximum(np.maximum(t1, t2), e)
    w = np.stack([np.exp(t1 - top), np.exp(t2 - top), np.exp(e - top)])
    total = w.sum(axis=0)
    pred = top + np.log(total)
    w /= total
    value, g = huber(pred - log_l, delta)
    grad = np.array([(g * w[0]).sum(), (g * w[1]).sum(), (g * w[2]).sum(), -(g * w[0] * log_n).sum()])
    grad = np.append(grad, -(g * w[1] * log_d).sum())
    return value.sum(), grad


def peer_fit(start, log_n, log_d, log_l):
    res = minimize(peer_objective, start, args=(log_n, log_d, log_l), jac=True, method="L-BFGS-B")
    return res.x, res.fun


def peer_n_opt(p: np.ndarray, compute: float) -> float:
    a, b, _, alpha, beta = p
    theta = {"A": np.exp(a), "B": np.exp(b), "alpha_N": alpha, "alpha_D": beta}
    return float(bs.get_law("chinchilla").optimal_allocation(theta, compute)["params"])


def run_peer(n_starts: int, n_boot: int, seed: int) -> dict:
    runs = bs.datasets.load("chinchilla")
    log_n, log_d = np.log(runs.column("params")), np.log(runs.column("tokens"))
    log_l = np.log(runs.column("loss"))
    grid = list(
        itertools.product(
            np.arange(0, 30, 5),
            np.arange(0, 30, 5),
            np.arange(-1, 1.5, 0.5),
            [0, 0.5, 1, 1.5, 2],
            [0, 0.5, 1, 1.5, 2],
        )
    )
    assert len(grid) == 4500
    rng = np.random.default_rng(seed)
    chosen = [grid[i] for i in rng.choice(len(grid), n_starts, replace=False)] if n_starts < 4500 else grid
    t = time.perf_counter()
    fits = [peer_fit(np.asarray(s, dtype=float), log_n, log_d, log_l) for s in chosen]
    best = min(fits, key=lambda f: f[1])[0]
    t_grid = time.perf_counter() - t
    t = time.perf_counter()
    n_opt = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(log_l), len(log_l))
        p, _ = peer_fit(best, log_n[idx], log_d[idx], log_l[idx])
        n_opt.append(peer_n_opt(p, BUDGET))
    t_boot = time.perf_counter() - t
    full = t_grid * 4500 / n_starts + t_boot * 4000 / n_boot
    lo, hi = np.quantile(n_opt, [0.05, 0.95])
    return {
        "starts": n_starts,
        "boot": n_boot,
        "wall": t_grid + t_boot,
        "full": full,
        "interval": (peer_n_opt(best, BUDGET), lo, hi),
    }


# --- scaling ----------------------------------------------------------------------------------------


def scaling(sizes, draws: int, tune: int, chains: int, seed: int, fits: bool = True) -> list[dict]:
    import jax
    import jax.numpy as jnp
    import pandas as pd

    law = bs.get_law("chinchilla")
    truth = {"E": 1.8, "A": 480.0, "B": 2100.0, "alpha_N": 0.35, "alpha_D": 0.37}
    rows = []
    for n in sizes:
        rng = np.random.default_rng(seed)
        N = np.exp(rng.uniform(np.log(5e7), np.log(2e9), n))
        D = N * np.exp(rng.uniform(np.log(5), np.log(80), n))
        loss = law.loss(truth, N, D) * np.exp(rng.standard_t(5, n) * 0.01)
        runs = bs.Runs.from_any(pd.DataFrame({"params": N, "tokens": D, "loss": loss}))
        free, fixed = resolve_priors(law, "student_t")
        density = build_density(law, runs, free, fixed)
        data = jax.tree.map(jnp.asarray, density.data)
        grad = jax.jit(jax.vmap(jax.value_and_grad(density.logp), in_axes=(0, None)))
        x = jnp.asarray(np.tile(density.initial_point(), (chains, 1)))
        grad(x, data)[0].block_until_ready()
        reps = max(3, int(2e6 // n))
        t = time.perf_counter()
        for _ in range(reps):
            out = grad(x, data)
        out[0].block_until_ready()
        per_grad = (time.perf_counter() - t) / reps / chains
        if not fits:
            rows.append({"n": n, "per_grad_ms": per_grad * 1e3, "peak_rss_mb": peak_rss_mb()})
            print(f"  gradient n={n:>8}: {rows[-1]}", flush=True)
            continue
        # Shorter runs for the largest sizes keep the benchmark in minutes; ms/ESS stays comparable.
        n_draws = max(150, min(draws, int(3e7 // n)))
        config = sampling.SamplerConfig(draws=n_draws, tune=max(150, min(tune, int(3e7 // n))), chains=chains)
        t = time.perf_counter()
        idata = sampling.sample_density(density, config, seed, False)
        wall = time.perf_counter() - t
        report = diagnostics.compute(idata, NAMES)
        rows.append(
            {
                "n": n,
                "draws": n_draws,
                "per_grad_ms": per_grad * 1e3,
                "wall": wall,
                "ess": report["min_ess_bulk"],
                "per_ess_ms": wall / report["min_ess_bulk"] * 1e3,
                "steps": float(idata.sample_stats["n_steps"].mean()),
                "div": report["divergences"],
                "peak_rss_mb": peak_rss_mb(),
            }
        )
        print(f"  scaling n={n:>8}: {rows[-1]}", flush=True)
    return rows


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cold_cli(runs: int, backend: str = "auto") -> list[float]:
    times = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            cmd = [sys.executable, "-m", "bayescale.cli", "fit", "chinchilla", "--law", "chinchilla"]
            cmd += ["--seed", str(i + 1), "--backend", backend, "--out", str(Path(tmp) / "fit.nc")]
            t = time.perf_counter()
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            times.append(time.perf_counter() - t)
            print(
                f"  cold CLI ({backend}) run {i + 1}: {times[-1]:.1f} s; {done.stdout.splitlines()[-2]}",
                flush=True,
            )
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="shorter runs (see module docstring)")
    parser.add_argument("--skip-pymc", action="store_true", help="skip the plain PyMC sampler (slowest)")
    parser.add_argument("--max-n", type=float, default=1e6, help="largest scaling size (default 1e6)")
    parser.add_argument("--cold-runs", type=int, default=5, help="cold CLI fits for the median")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--parts",
        default="samplers,peer,scaling,cold",
        help="comma list of samplers,peer,scaling,gradients,cold",
    )
    args = parser.parse_args()
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
    print(f"load average at start: {load()}", flush=True)
    parts = set(args.parts.split(","))
    full = (1000, 1000)
    pymc_draws = (300, 300) if args.quick else full
    rows, fast, peer, scale, cold = [], None, None, [], {}
    if "samplers" in parts:
        if not args.skip_pymc:
            rows.append(run_pymc(*pymc_draws, args.seed))
            print(f"  {rows[-1]}", flush=True)
        if importlib.util.find_spec("nutpie"):
            rows.append(run_pymc_backend("nutpie", *full, args.seed))
        else:
            print("  nutpie: not installed (pip install bayescale[nutpie])")
        rows.append(run_pymc_backend("numpyro", *full, args.seed))
        print(f"  {rows[-1]}", flush=True)
    sampling.setup_jax()
    if "samplers" in parts or "peer" in parts:
        fast, fast_interval_wall = run_fast(*full, args.seed)
        rows.append(fast)
        print(f"  {rows[-1]}", flush=True)
    if "peer" in parts:
        peer = run_peer(100 if args.quick else 4500, 200 if args.quick else 4000, args.seed)
        print(f"  peer: {peer}", flush=True)
    short = (300, 300, 2) if args.quick else (1000, 1000, 4)
    if "scaling" in parts:
        sizes = [int(s) for s in (1e3, 1e4, 1e5, 1e6) if s <= args.max_n]
        scale = scaling(sizes, *short, args.seed)
    if "gradients" in parts:
        sizes = [int(s) for s in (1e3, 1e4, 1e5, 1e6) if s <= args.max_n]
        scaling(sizes, *short, args.seed, fits=False)
    if "cold" in parts:
        # The default backend ("auto": the JAX fast path when the `fast` extra is installed).
        cold = {"auto": cold_cli(max(1, args.cold_runs), "auto")}

    if rows:
        base = rows[0]["ess_per_s"]
        print("\n## Samplers: Chinchilla runs, Chinchilla law, Student-t likelihood, 4 chains")
        print(
            f"{'method':<44} {'wall s':>8} {'min ESS':>8} {'ESS/s':>8} {'x base':>7} {'div':>4} {'r_hat':>6}"
        )
        for r in rows:
            print(
                f"{r['method']:<44} {r['wall']:>8.1f} {r['ess']:>8.0f} {r['ess_per_s']:>8.1f} "
                f"{r['ess_per_s'] / base:>7.1f} {r['div']:>4} {r['r_hat']:>6.3f}"
            )
        if peer is not None:
            label = "least-squares peer: 4500 starts + 4000 boots"
            ratio = peer["full"] / rows[0]["wall"]
            print(f"{label:<44} {peer['full']:>8.1f} {'-':>8} {'-':>8} {'-':>7}   (wall {ratio:.2f}x base)")
        print(f"(x base: ESS/s relative to the first row: {rows[0]['method']})")
    if peer is not None:
        print("\n## Time to a 90% interval on N_opt at C = 5.76e23")
        m, lo, hi = fast["interval"]
        print(f"bayescale default: {fast_interval_wall:.1f} s, N_opt {m:.3g} [{lo:.3g}, {hi:.3g}]")
        m, lo, hi = peer["interval"]
        note = (
            f"ran {peer['starts']} of 4500 starts and {peer['boot']} of 4000 bootstraps "
            f"in {peer['wall']:.1f} s, "
            "scaled linearly to the full counts"
            if args.quick
            else "full 4500 starts and 4000 bootstraps"
        )
        print(f"least-squares peer (scipy L-BFGS, Huber 1e-3): {peer['full']:.1f} s ({note}),")
        print(
            f"  N_opt {m:.3g} [{lo:.3g}, {hi:.3g}] -> "
            f"bayescale is {peer['full'] / fast_interval_wall:.1f}x faster"
        )
    if scale:
        print(
            f"\n## Scaling (Student-t, {short[2]} chains; ms/grad: one chain's share of a vectorised "
            "gradient)"
        )
        print("(draws = tuning steps per chain shrink as 3e7 / n, at least 150, for the largest sizes;")
        print(" wall: whole fit incl. Laplace start and compile; peak MB: process RSS so far)")
        print(
            f"{'n obs':>9} {'draws':>6} {'ms/grad':>9} {'wall s':>8} {'min ESS':>8} "
            f"{'ms/ESS':>8} {'steps':>6} {'div':>4} {'peak MB':>8}"
        )
        for r in scale:
            print(
                f"{r['n']:>9} {r['draws']:>6} {r['per_grad_ms']:>9.3f} {r['wall']:>8.1f} {r['ess']:>8.0f} "
                f"{r['per_ess_ms']:>8.2f} {r['steps']:>6.1f} {r['div']:>4} {r['peak_rss_mb']:>8.0f}"
            )
    if cold:
        print(
            "\n## Cold CLI: bayescale fit chinchilla --law chinchilla --backend B "
            "(new process each, on-disk caches warm)"
        )
        for backend, times in cold.items():
            runs = ", ".join(f"{t:.1f}" for t in times)
            print(f"{backend:>5}: runs {runs} s; median {statistics.median(times):.1f} s")
    print(f"\nload average at end: {load()}")


if __name__ == "__main__":
    main()
