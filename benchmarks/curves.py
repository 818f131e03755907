"""Multi-power law replication (Luo et al. 2025): Bayesian fit per size against the published fit.

Per model size (25M, 100M, 400M): fit ``cosine_24000``, ``constant_24000`` and ``wsdcon_9``;
predict the six test curves. Printed side by side: the published parameters' mean relative error
(PredE, the README's metric), a least-squares fit of the same law (Huber on log loss, as the paper
fits it), and :func:`bayescale.fit_curves` (posterior median), with the Bayesian fit's 90%
intervals: the 6 test curves' final points inside them, mean half-width (% of the loss),
pointwise coverage per curve; wall time and the load.

Run from the repository root (the anchors beside it, ``../shared/anchors``)::

    python benchmarks/curves.py [--sizes 25M 100M 400M] [--draws 500] [--tune 500] [--bins 64]
        [--correlation none] [--no-offsets] [--max-points 100] [--speed] [--anchors PATH]
        [--out benchmarks/results/curves.txt]

``--speed`` also times a fit of all nine curves of each size (about 2,000 checkpoints), the
issue's speed target (<= 10 s per size).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bayescale.data.schedule import curve_features, per_step_lr  # noqa: E402
from bayescale.methods.curves import fit_curves, fit_curves_least_squares  # noqa: E402
from bayescale.model.curve_laws import MULTIPOWER_PARAMETERS, features_dict, multipower_loss  # noqa: E402

ANCHORS = REPO.parent / "shared" / "anchors"
PUBLISHED_PREDE = {"25M": 0.00110, "100M": 0.00142, "400M": 0.00168}


def _mre(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - y) / y))


def main(argv: list[str] | None = None) -> int:
    """Run the replication and print (and write) the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["25M", "100M", "400M"])
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--bins", type=int, default=64)
    parser.add_argument("--correlation", default="none")
    parser.add_argument("--no-offsets", dest="offsets", action="store_false")
    parser.add_argument("--max-points", type=int, default=100, help="checkpoints per curve; 0: all")
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--anchors", type=Path, default=ANCHORS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    folder = args.anchors / "multipower-lr-schedules"
    if not folder.exists():
        print(f"note: skipped: {folder} not found")
        return 0
    per = per_step_lr(pd.read_csv(folder / "lr_schedules_per_step.csv").rename(columns={"schedule": "run"}))
    table = pd.read_csv(folder / "loss_curves.csv").rename(columns={"schedule": "run"})
    published = json.loads((folder / "published.json").read_text())["best_params_L0_A_alpha_B_C_beta_gamma"]
    lines = [
        f"# benchmarks/curves.py --sizes {' '.join(args.sizes)} --draws {args.draws} --tune {args.tune} "
        f"--chains {args.chains} --bins {args.bins} --correlation {args.correlation} --seed {args.seed} "
        f"--max-points {args.max_points}{'' if args.offsets else ' --no-offsets'}"
        f"{' --speed' if args.speed else ''}",
        "# MRE: mean |y - pred| / y over the 6 test curves' checkpoints (README's PredE, curve average)",
    ]

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    options = {
        "correlation": args.correlation,
        "offsets": args.offsets,
        "max_points": args.max_points or None,
        "bins": args.bins,
        "sampler": {"draws": args.draws, "tune": args.tune, "chains": args.chains},
    }
    totals_all = {"final": 0, "curves": 0}
    for size in args.sizes:
        rows = table[table["model_size"] == size]
        train, test = rows[rows["repo_split"] == "train"], rows[rows["repo_split"] == "test"]
        load0 = os.getloadavg()[0]
        start = time.perf_counter()
        lsq = fit_curves_least_squares(train, per, bins=args.bins, starts=8, seed=args.seed)
        lsq_time = time.perf_counter() - start
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = fit_curves(train, per, random_seed=args.seed, **options)
        bayes_time = time.perf_counter() - start
        load1 = os.getloadavg()[0]
        pub = dict(zip(MULTIPOWER_PARAMETERS, published[size], strict=True))
        say(f"\n== {size}: train {len(train)} checkpoints (3 curves), test {len(test)} (6 curves)")
        d = fit.diagnostics
        say(
            f"fit_curves: {bayes_time:.0f} s (load {load0:.1f} -> {load1:.1f} on 2 cores); least squares "
            f"{lsq_time:.0f} s; divergences {d['divergences']}, max r_hat {d['max_r_hat']:.3f}, "
            f"min ESS {d['min_ess_bulk']:.0f}, max-depth share {d['max_tree_depth_share']:.3f}, "
            f"ok {d['ok']}; warnings {len(caught)}"
        )
        summary = fit.parameters()
        say("param      published     least-sq      bayes median [90%]")
        for k in MULTIPOWER_PARAMETERS:
            r = summary.loc[k]
            say(
                f"{k:7s} {pub[k]:12.4g} {lsq[k]:12.4g} {r['median']:12.4g} "
                f"[{r['lower']:.4g}, {r['upper']:.4g}]"
            )
        for k in [i for i in summary.index if i not in MULTIPOWER_PARAMETERS]:
            if k != "C_ref":
                r = summary.loc[k]
                say(f"{k:7s} {'':12s} {'':12s} {r['median']:12.4g} [{r['lower']:.4g}, {r['upper']:.4g}]")
        say(
            f"{'curve':18s} {'pub MRE':>8s} {'lsq MRE':>8s} {'bay MRE':>8s} {'final in':>8s} "
            f"{'half-w %':>8s} {'cover':>6s}"
        )
        totals = {"pub": [], "lsq": [], "bay": [], "final": [], "hw": [], "cover": []}
        for run, curve in test.groupby("run", sort=True):
            steps, y = curve["step"].to_numpy(), curve["loss"].to_numpy()
            feats = features_dict(curve_features(per[run], steps, args.bins))
            pred_pub = multipower_loss({k: np.asarray(v) for k, v in pub.items()}, feats, np)
            pred_lsq = multipower_loss({k: np.asarray(v) for k, v in lsq.items()}, feats, np)
            band = fit.predict(per[run], steps, prob=0.9)
            inside = (y >= band["lower"].to_numpy()) & (y <= band["upper"].to_numpy())
            half = float(np.mean((band["upper"] - band["lower"]) / 2 / band["median"]))
            vals = {
                "pub": _mre(pred_pub, y),
                "lsq": _mre(pred_lsq, y),
                "bay": _mre(band["median"].to_numpy(), y),
                "final": float(inside[-1]),
                "hw": 100 * half,
                "cover": float(inside.mean()),
            }
            for k, v in vals.items():
                totals[k].append(v)
            say(
                f"{run:18s} {vals['pub']:8.5f} {vals['lsq']:8.5f} {vals['bay']:8.5f} {int(vals['final']):8d} "
                f"{vals['hw']:8.3f} {vals['cover']:6.2f}"
            )
        say(
            f"{'mean (README ' + str(PUBLISHED_PREDE[size]) + ')':18s} {np.mean(totals['pub']):8.5f} "
            f"{np.mean(totals['lsq']):8.5f} {np.mean(totals['bay']):8.5f} "
            f"{int(np.sum(totals['final'])):6d}/6 "
            f"{np.mean(totals['hw']):8.3f} {np.mean(totals['cover']):6.2f}"
        )
        totals_all["final"] += int(np.sum(totals["final"]))
        totals_all["curves"] += len(totals["final"])
        if args.speed:
            load0 = os.getloadavg()[0]
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                every = fit_curves(rows, per, random_seed=args.seed, **options)
            d = every.diagnostics
            say(
                f"speed, all 9 curves ({len(rows)} checkpoints): {time.perf_counter() - start:.1f} s "
                f"(load {load0:.1f} -> {os.getloadavg()[0]:.1f} on 2 cores); max r_hat {d['max_r_hat']:.3f}, "
                f"min ESS {d['min_ess_bulk']:.0f}, divergences {d['divergences']}, "
                f"max-depth share {d['max_tree_depth_share']:.3f}"
            )
    say(f"\nfinal points inside their 90% intervals: {totals_all['final']} of {totals_all['curves']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
