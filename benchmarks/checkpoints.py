"""Checkpoints as correlated rows of one run: the run-offset model on the fast path, on real ladders.

OLMo ladder (Bhagia et al. 2024): the 16 runs of the paper's fit (190M-1B x 1, 2, 5, 10 xC), their
checkpoints at the end of the cosine decay (``lr`` within 10% of the run's final ``lr``: the last
~7% of each run, where a checkpoint is, to within that, a run trained to its D; the schedule is
not modelled), fitted with a ``run`` column; against the finals-only fit (the last checkpoint of
each run, no ``run`` column). Both predict the final C4 loss of the six 3B runs (held out): 90%
coverage, mean relative error of the median, the width ratio of the intervals. ``sigma_run`` is
set beside the seed noise the 1xC rerun pairs show (they are not in the fit), and a second fit with the
four 190M-1B 1xC reruns added compares each pair's offsets: seed noise, against the offsets' spread
over (N, D), which holds the law's misfit too.

Gemstones (McLeish et al. 2025): the cooldown endpoints of the 17 models under 1.5B (each row the
loss at the end of a cooldown branched from the model's constant-LR run: decayed, so no schedule
term is needed), a ``run`` per model, fitted at ``--seeds`` seeds: how many pass the diagnostics,
and coverage of the three ~2B models' last cooldown points.

Time: the same OLMo rows on the fast path (offsets in the form the data call for), again with the
offsets non-centred whatever the data (the model before the choice), and on the PyMC model sampled
with numpyro (the path every fit with a ``run`` column took before), with the load average, the
median leapfrog steps per draw and the form of the offsets.

Run from the repository root (the anchors beside it, ``../shared/anchors``)::

    python benchmarks/checkpoints.py [--seeds 10] [--anchors PATH] [--skip-pymc]
        [--out benchmarks/results/checkpoints.txt]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import bayescale as bs  # noqa: E402
from bayescale.inference import run_offsets  # noqa: E402

ANCHORS = REPO.parent / "shared" / "anchors"
#: A checkpoint whose lr is within this factor of its run's final lr counts as the end of the decay.
END_OF_DECAY = 1.10


class Lines(list[str]):
    """The report's lines, each printed as it comes (a run takes minutes)."""

    def append(self, line: str) -> None:
        print(line, flush=True)
        super().append(line)


def olmo_tables(
    folder: Path,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(checkpoints of the 16 runs at the end of decay, their finals, the six 3B finals, the reruns,
    the checkpoints of the 16 runs and of the four 190M-1B 1xC reruns at the end of decay)."""
    frame = pd.read_csv(folder / "ladder_checkpoints.csv")
    frame = frame.rename(columns={"N_nonembed": "params", "loss_c4_en": "loss"})
    frame = frame.sort_values(["run", "step"])
    final_lr = frame.groupby("run")["lr"].transform("last")
    last = frame.groupby("run")["step"].transform("max") == frame["step"]
    keep = ["run", "params", "tokens", "loss"]
    train = frame[frame["used_in_paper_final_config"].astype(bool)]
    checkpoints = train[train["lr"] <= END_OF_DECAY * final_lr[train.index]][keep]
    finals = train[last[train.index]][["params", "tokens", "loss", "run"]].rename(columns={"run": "name"})
    targets = frame[(frame["size"] == "3B") & last][keep]
    reruns = frame[frame["chinchilla_multiple"] == 1.0][["run", "size", "step", "loss", "lr"]]
    paired = frame[
        frame["used_in_paper_final_config"].astype(bool) | (frame["is_rerun"] & (frame["size"] != "3B"))
    ]
    paired = paired[paired["lr"] <= END_OF_DECAY * final_lr[paired.index]][keep]
    return checkpoints, finals, targets, reruns, paired


def rerun_noise(reruns: pd.DataFrame) -> dict[str, float]:
    """Seed noise of log loss from the 1xC rerun pairs of 190M-1B (not 3B: held out).

    ``final``: sd of one run's final log loss, ``sqrt(mean(d^2) / 2)`` over the pairs' differences
    ``d``; ``end``: the same of each pair's mean log-loss difference over the steps both evaluated
    at the end of the decay (what a run's offset is in the fit).
    """
    finals, ends = [], []
    for _, rows in reruns[reruns["size"] != "3B"].groupby("size"):
        first = rows[~rows["run"].str.endswith("rerun")].set_index("step")
        second = rows[rows["run"].str.endswith("rerun")].set_index("step")
        common = first.index.intersection(second.index)
        d = np.log(first.loc[common, "loss"]) - np.log(second.loc[common, "loss"])
        end = first.loc[common, "lr"] <= END_OF_DECAY * first["lr"].iloc[-1]
        finals.append(float(d.iloc[-1]))
        ends.append(float(d[end].mean()))
    return {
        "final": float(np.sqrt(np.mean(np.square(finals)) / 2)),
        "end": float(np.sqrt(np.mean(np.square(ends)) / 2)),
        "pairs": len(finals),
    }


def scores(table: pd.DataFrame, truth: np.ndarray) -> dict[str, float]:
    """Coverage, mean relative error and mean width (share of the loss) of predictive intervals."""
    lower, upper = table["loss_predictive_lower"].to_numpy(), table["loss_predictive_upper"].to_numpy()
    median = table["loss_predictive_median"].to_numpy()
    return {
        "inside": int(np.sum((lower <= truth) & (truth <= upper))),
        "mre": float(np.mean(np.abs(median - truth) / truth)),
        "width": float(np.mean((upper - lower) / truth)),
    }


def timed_fit(runs: pd.DataFrame, seed: int, **kwargs: object) -> tuple[bs.Fit, float]:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bs.fit(runs, law="chinchilla", random_seed=seed, progressbar=False, warn=False, **kwargs)
    return fit, time.perf_counter() - start


def predict(fit: bs.Fit, rows: pd.DataFrame) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit.predict(rows["params"].to_numpy(), rows["tokens"].to_numpy(), random_seed=0)


def steps_per_draw(fit: bs.Fit) -> float:
    """Median leapfrog steps per draw (NaN when the sampler does not record them)."""
    stats = fit.idata["sample_stats"]
    return float(np.median(np.asarray(stats["n_steps"]))) if "n_steps" in stats else float("nan")


def diagnostics_line(fit: bs.Fit) -> str:
    d = fit.diagnostics
    path = str(d.get("sampler_path", ""))
    form = path.split("run offsets ", 1)[1] if "run offsets " in path else ""
    return (
        f"r_hat {d['max_r_hat']:.3f}, min ESS {d['min_ess_bulk']:.0f}, {d['divergences']} divergences, "
        f"{100 * d.get('max_tree_depth_share', float('nan')):.1f}% at max depth, "
        f"median {steps_per_draw(fit):.0f} steps per draw, "
        f"{'ok' if d['ok'] else 'FAILED'} [{fit.sampler.backend}{'; offsets ' + form if form else ''}]"
    )


def interval(fit: bs.Fit, name: str) -> str:
    row = fit.summary().loc[name]
    return f"{row['median']:.4g} [{row['lower']:.4g}, {row['upper']:.4g}]"


@contextlib.contextmanager
def non_centred() -> Iterator[None]:
    """Fits inside take the non-centred offsets whatever the data (the model before the choice)."""
    saved = run_offsets.PINNED_SHARE
    run_offsets.PINNED_SHARE = float("inf")
    try:
        yield
    finally:
        run_offsets.PINNED_SHARE = saved


def olmo(folder: Path, out: list[str], seeds: int, pymc: bool, noncentred: bool = True) -> None:
    checkpoints, finals, targets, reruns, paired = olmo_tables(folder)
    truth = targets["loss"].to_numpy()
    out.append(
        f"OLMo ladder: {len(checkpoints)} checkpoints of {checkpoints['run'].nunique()} runs (lr <= "
        f"{END_OF_DECAY:g} x the run's final lr) vs {len(finals)} finals; "
        f"targets: the {len(targets)} 3B finals"
    )
    fit, seconds = timed_fit(checkpoints, 1)
    out.append(
        f"  checkpoints, fast path: {seconds:.1f} s (load {os.getloadavg()[0]:.1f}); {diagnostics_line(fit)}"
    )
    if noncentred:
        with non_centred():
            before, before_seconds = timed_fit(checkpoints, 1)
        out.append(
            f"  the same, offsets non-centred (the model before): {before_seconds:.1f} s "
            f"(load {os.getloadavg()[0]:.1f}); {diagnostics_line(before)}; "
            f"sigma_run {interval(before, 'sigma_run')}; speed-up {before_seconds / seconds:.1f}x"
        )
    base, base_seconds = timed_fit(finals.drop(columns="name"), 1)
    out.append(
        f"  finals only:            {base_seconds:.1f} s; {diagnostics_line(base)}; "
        f"sigma {interval(base, 'sigma')}"
    )
    a, b = predict(fit, targets), predict(base, targets)
    sa, sb = scores(a, truth), scores(b, truth)
    for label, s in (("checkpoints", sa), ("finals only", sb)):
        out.append(
            f"  {label:12s} 3B: {s['inside']}/6 inside the 90% intervals, MRE {100 * s['mre']:.2f}%, "
            f"mean width {100 * s['width']:.2f}% of the loss"
        )
    out.append(f"  width ratio (checkpoints / finals only): {sa['width'] / sb['width']:.2f}")
    for run, t, row_a, row_b in zip(targets["run"], truth, a.itertuples(), b.itertuples(), strict=True):
        out.append(
            f"    {run:16s} {t:.4f}  ckpt {row_a.loss_predictive_median:.4f} "
            f"[{row_a.loss_predictive_lower:.4f}, "
            f"{row_a.loss_predictive_upper:.4f}]  finals {row_b.loss_predictive_median:.4f} "
            f"[{row_b.loss_predictive_lower:.4f}, {row_b.loss_predictive_upper:.4f}]"
        )
    noise = rerun_noise(reruns)
    out.append(
        f"  sigma_run {interval(fit, 'sigma_run')}; seed noise from the {noise['pairs']} 1xC rerun pairs: "
        f"{noise['end']:.4f} (end of decay), {noise['final']:.4f} (final checkpoint); "
        f"sigma {interval(fit, 'sigma')}"
    )
    for name in ("alpha_N", "alpha_D", "E"):
        out.append(f"  {name}: checkpoints {interval(fit, name)}  finals only {interval(base, name)}")
    effect = fit.posterior["run_effect"].median(("chain", "draw"))
    out.append(
        "  run offsets (median, x1e3): "
        + ", ".join(
            f"{k}: {1e3 * float(v):+.1f}"
            for k, v in zip(effect["run_label"].values, effect.values, strict=True)
        )
    )
    seed_or_misfit(paired, out)
    if seeds > 1:
        passed, covered = 1 if fit.diagnostics["ok"] else 0, [sa["inside"]]
        for seed in range(2, seeds + 1):
            again, again_seconds = timed_fit(checkpoints, seed)
            out.append(f"  seed {seed}: {again_seconds:.1f} s; {diagnostics_line(again)}")
            passed += bool(again.diagnostics["ok"])
            covered.append(scores(predict(again, targets), truth)["inside"])
        out.append(f"  {seeds} seeds: {passed}/{seeds} pass the diagnostics; 3B inside per seed: {covered}")
    if pymc:
        slow, slow_seconds = timed_fit(checkpoints, 1, sampler={"backend": "numpyro"})
        out.append(
            f"  same rows, PyMC model with numpyro: {slow_seconds:.1f} s (load {os.getloadavg()[0]:.1f}); "
            f"{diagnostics_line(slow)}; sigma_run {interval(slow, 'sigma_run')}"
        )
        out.append(f"  speed-up of the fast path: {slow_seconds / seconds:.1f}x")


def seed_or_misfit(paired: pd.DataFrame, out: list[str]) -> None:
    """What a run's offset holds: the 16 runs and four 1xC reruns fitted at once, the pairs' offsets compared.

    A pair shares (N, D): the law's misfit there is the same for both, so the difference of their
    offsets is seed noise alone; the spread of the offsets over the (N, D) of the 16 runs is seed
    noise plus the law's misfit at each.
    """
    fit, seconds = timed_fit(paired, 1)
    out.append(
        f"  with the four 190M-1B 1xC reruns ({len(paired)} checkpoints of {paired['run'].nunique()} runs): "
        f"{seconds:.1f} s (load {os.getloadavg()[0]:.1f}); {diagnostics_line(fit)}; "
        f"sigma_run {interval(fit, 'sigma_run')}"
    )
    effect = fit.posterior["run_effect"]
    median = dict(zip(effect["run_label"].values, effect.median(("chain", "draw")).values, strict=True))
    pairs = []
    for label in sorted(k for k in median if str(k).endswith("-rerun")):
        first = label.removesuffix("-rerun")
        d = (effect.sel(run_label=first) - effect.sel(run_label=label)).values.ravel()
        pairs.append(float(np.median(d)))
        out.append(
            f"    {first}: offset {1e3 * median[first]:+.2f}e-3, its rerun {1e3 * median[label]:+.2f}e-3, "
            f"difference {1e3 * np.median(d):+.2f}e-3 [{1e3 * np.quantile(d, 0.05):+.2f}, "
            f"{1e3 * np.quantile(d, 0.95):+.2f}]"
        )
    configs = [v for k, v in median.items() if not str(k).endswith("-rerun")]
    multiples = {}
    for k, v in median.items():
        if not str(k).endswith("-rerun"):
            multiples.setdefault(str(k).split("-", 1)[1], []).append(1e3 * float(v))
    by_multiple = sorted(multiples.items(), key=lambda kv: float(kv[0][:-2]))
    seed = np.sqrt(np.mean(np.square(pairs)) / 2)
    out.append(
        f"    seed sd from the pairs' offsets {seed:.5f}; sd of the offsets over the 16 (N, D) "
        f"{np.std(configs):.5f}; mean offset by token multiple (x1e3): "
        + ", ".join(f"{m}: {np.mean(v):+.1f}" for m, v in by_multiple)
    )


def gemstones(folder: Path, out: list[str], seeds: int) -> None:
    frame = pd.read_csv(folder / "cooldown_end_checkpoints_to_110B.csv")
    frame = frame.rename(columns={"run_name": "run", "params_active_precise": "params", "final_loss": "loss"})
    frame = frame[["run", "params", "tokens", "loss"]]
    train = frame[frame["params"] < 1.5e9]
    big = frame[frame["params"] >= 1.5e9]
    targets = big[big.groupby("run")["tokens"].transform("max") == big["tokens"]]
    out.append(
        f"Gemstones cooldown endpoints: {len(train)} rows of {train['run'].nunique()} models under 1.5B; "
        f"targets: the last point of the {len(targets)} ~2B models"
    )
    passed, times = 0, []
    for seed in range(1, seeds + 1):
        fit, seconds = timed_fit(train, seed)
        times.append(seconds)
        passed += bool(fit.diagnostics["ok"])
        out.append(
            f"  seed {seed}: {seconds:.1f} s; {diagnostics_line(fit)}; sigma_run {interval(fit, 'sigma_run')}"
        )
        if seed == 1:
            s = scores(predict(fit, targets), targets["loss"].to_numpy())
            out.append(
                f"  seed 1, ~2B: {s['inside']}/{len(targets)} inside the 90% intervals, "
                f"MRE {100 * s['mre']:.2f}%, "
                f"mean width {100 * s['width']:.2f}%"
            )
    out.append(f"  {passed}/{seeds} seeds pass the diagnostics; median time {np.median(times):.1f} s")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print (and write) the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--olmo-seeds", type=int, default=1)
    parser.add_argument("--anchors", type=Path, default=ANCHORS)
    parser.add_argument("--skip-pymc", action="store_true")
    parser.add_argument("--skip-gemstones", action="store_true")
    parser.add_argument("--skip-olmo", action="store_true")
    parser.add_argument(
        "--skip-noncentred", action="store_true", help="no second OLMo fit, offsets non-centred"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    out = Lines()
    out.append(f"bayescale {bs.__version__}; load average at start {load:.1f} on {os.cpu_count()} cores")
    if args.skip_olmo:
        pass
    elif (args.anchors / "olmo-ladder").exists():
        olmo(args.anchors / "olmo-ladder", out, args.olmo_seeds, not args.skip_pymc, not args.skip_noncentred)
    else:
        out.append(f"OLMo ladder skipped: {args.anchors / 'olmo-ladder'} not found")
    if not args.skip_gemstones and (args.anchors / "gemstones").exists():
        gemstones(args.anchors / "gemstones", out, args.seeds)
    out.append(f"load average at the end {os.getloadavg()[0]:.1f}")
    text = "\n".join(out)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
