"""Approach 2 (IsoFLOP) with and without ``bracketed`` (budgets whose lowest loss is at an end size
left out) on Gemstones (profiles read off the curves, as compare-methods' A2 row), Chinchilla
(Epoch AI's extraction of the IsoFLOP runs) and one Porian et al. setting with unbracketed budgets.

One fit per data set and setting, 4 chains x 1000 draws (1000 tuning), seed 1, as compare-methods
runs them; prints a and N_opt at the compute given (median [90%]), divergences, max r_hat and
min bulk ESS (each with the worst parameter), budgets used, seconds.

    PYTHONPATH=$PWD nice -n 10 python benchmarks/isoflop_bracketed.py [--sets gemstones,chinchilla,porian]
        [--porian SETTING]
"""

from __future__ import annotations

import argparse
import time
import warnings

import bayescale as bs
from bayescale.methods.isoflop import fit_isoflop, left_out_unbracketed
from bayescale.methods.side_by_side import isoflop_from_curves

PORIAN = "owt2|base|long|kaplan|standard|val"
#: data set -> the compute (FLOPs) at which N_opt is read
COMPUTE = {"gemstones": 1e22, "chinchilla": 5.76e23, "porian": 1e21}


def runs_of(name: str, setting: str) -> bs.Runs:
    if name == "gemstones":
        return isoflop_from_curves(bs.datasets.load_curves("gemstones"))
    if name == "chinchilla":
        return bs.Runs.from_any("chinchilla")
    runs = bs.Runs.from_any("porian-isoflop")
    return runs.subset(runs.frame["group"].to_numpy() == setting)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sets", default="gemstones,chinchilla,porian")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--porian", default=PORIAN, help="the porian-isoflop setting (group)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(f"draws=tune={args.draws} chains=4 seed=1; Porian setting {args.porian}")
    for name in args.sets.split(","):
        runs = runs_of(name, args.porian)
        for bracketed in (False, True):
            start = time.perf_counter()
            fit = fit_isoflop(
                runs,
                bracketed=bracketed,
                sampler={"draws": args.draws, "tune": args.draws},
                random_seed=1,
                progressbar=False,
            )
            a = fit.exponents(prob=0.9)["a"]
            opt = fit.optimal(COMPUTE[name], prob=0.9).iloc[0]
            d = fit.diagnostics
            worst_r = max(d["r_hat"], key=d["r_hat"].__getitem__)
            worst_e = min(d["ess_bulk"], key=d["ess_bulk"].__getitem__)
            b = fit.budgets
            dropped = b.index[left_out_unbracketed(b)].tolist()
            print(
                f"{name:10s} bracketed={bracketed!s:5s} "
                f"a {a['median']:.3f} [{a['lower']:.3f}, {a['upper']:.3f}] "
                f"N_opt({COMPUTE[name]:.3g}) {opt['params_median']:.3g} "
                f"[{opt['params_lower']:.3g}, {opt['params_upper']:.3g}] div {d['divergences']} "
                f"r_hat {d['max_r_hat']:.4f} ({worst_r}) ESS {d['min_ess_bulk']:.0f} ({worst_e}) "
                f"budgets {int(b['used'].sum())}/{len(b)} dropped {dropped} ok {d['ok']} "
                f"{time.perf_counter() - start:.0f}s",
                flush=True,
            )


if __name__ == "__main__":
    main()
