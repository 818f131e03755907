"""Approach 2 (IsoFLOP) on every Porian et al. (2024) setting against their published a.

One fit per setting of the bundled ``porian-isoflop`` data; prints a, its 90% interval,
the published a (with their 80% bootstrap interval), whether the published value is inside
ours, divergences, max r_hat, min bulk ESS and the budgets used.

    PYTHONPATH=$PWD nice -n 10 python benchmarks/porian_settings.py [--window 0.1|none]
        [--neighbours K] [--no-bracketed] [--groups G1,G2] [--draws 1000]

Results before session 5 (porian_window.txt, porian_neighbours2.txt) were fitted with every budget
(the behaviour of --no-bracketed).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import pandas as pd

import bayescale as bs
from bayescale.methods.isoflop import fit_isoflop

PUBLISHED = Path(__file__).resolve().parents[2] / "shared/anchors/porian-rsld/published_exponent_fits.csv"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--window", default="0.1")
    parser.add_argument("--neighbours", type=int, default=None)
    parser.add_argument("--bracketed", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--groups", default=None)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--published", type=Path, default=PUBLISHED)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    window = None if args.window.lower() == "none" else float(args.window)
    published = pd.read_csv(args.published).set_index("config")
    runs = bs.Runs.from_any("porian-isoflop")
    groups = args.groups.split(",") if args.groups else sorted(runs.frame["group"].unique())
    print(
        f"window={window} neighbours={args.neighbours} bracketed={args.bracketed} "
        f"draws=tune={args.draws} chains=4 seed=1"
    )
    print(f"{'setting':40s} {'a [90%]':>22s} {'published [80%]':>22s} in  div r_hat   ESS budgets  sec")
    n_in = 0
    for group in groups:
        start = time.perf_counter()
        fit = fit_isoflop(
            runs,
            group=group,
            window=window,
            neighbours=args.neighbours,
            bracketed=args.bracketed,
            sampler={"draws": args.draws, "tune": args.draws},
            random_seed=1,
            progressbar=False,
            warn=False,
        )
        a = fit.exponents(prob=0.9)["a"]
        pub = published.loc[group]
        inside = a["lower"] <= pub["a_N_exponent"] <= a["upper"]
        n_in += inside
        d = fit.diagnostics
        used = f"{int(fit.budgets['used'].sum())}/{len(fit.budgets)}"
        print(
            f"{group:40s} {a['median']:.3f} [{a['lower']:.3f}, {a['upper']:.3f}] "
            f"{pub['a_N_exponent']:.3f} [{pub['a_p10']:.3f}, {pub['a_p90']:.3f}] "
            f"{'yes' if inside else 'no ':3s} {d['divergences']:3d} {d['max_r_hat']:.3f} "
            f"{d['min_ess_bulk']:5.0f} "
            f"{used:>7s} {time.perf_counter() - start:4.0f}",
            flush=True,
        )
    print(f"published a inside the 90% interval: {n_in}/{len(groups)}")


if __name__ == "__main__":
    main()
