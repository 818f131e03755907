"""Fit every shipped law to every bundled data set it applies to and print the posterior tables.

Usage: python benchmarks/law_posteriors.py [--draws 1000] [--only DATASET]

Prints, per (data set, law): the median, 90% interval, r_hat and bulk ESS of each
parameter, the divergences, max r_hat, min bulk ESS, any failed diagnostic, the
posterior predictive coverage and residual trends (misfit), and the wall time of the
fit, as markdown.
"""

from __future__ import annotations

import argparse
import time
import warnings

import bayescale as bs
from bayescale.checks import predictive as diagnostics

#: Which laws apply to which bundled data set (by the columns each needs).
PLAN = {
    "chinchilla": ["chinchilla", "kaplan", "kaplan-e"],
    "datablations": ["data-constrained", "chinchilla", "kaplan", "kaplan-e"],
    "gadre-overtrain": ["chinchilla-grouped-full", "chinchilla-grouped", "chinchilla"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--only", default=None)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    for dataset, laws in PLAN.items():
        if args.only and dataset != args.only:
            continue
        for law in laws:
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = bs.fit(
                    dataset, law=law, sampler={"draws": args.draws}, random_seed=args.seed, progressbar=False
                )
            wall = time.perf_counter() - start
            d = fit.diagnostics
            print(f"\n### {dataset} / {law}  ({len(fit.runs)} runs, {wall:.0f} s)")
            print(
                f"divergences {d['divergences']}, max r_hat {d['max_r_hat']:.3f}, "
                f"min bulk ESS {d['min_ess_bulk']:.0f}, ok: {d['ok']}"
            )
            for problem in d["problems"]:
                print(f"- {problem}")
            # Convergence says nothing about fit: a law that misses the runs' shape leaves residuals
            # that trend with a covariate (e.g. a law without unique tokens, against epochs).
            check = diagnostics.predictive_check(fit, random_seed=args.seed)
            trends = diagnostics.residual_trends(check)
            print(
                f"posterior predictive: {check['covered'].mean():.0%} of runs inside their 90% interval; "
                "residual trend (Spearman rho, p) "
                + ", ".join(
                    f"{c} {r.spearman_rho:+.2f} ({r.pvalue:.1g}){' TREND' * r.trend}"
                    for c, r in trends.iterrows()
                )
            )
            print("| parameter | median | 90% interval | r_hat | bulk ESS |\n| --- | --- | --- | --- | --- |")
            for name, row in fit.summary().iterrows():
                print(
                    f"| {name} | {row['median']:.4g} | {row['lower']:.4g} – {row['upper']:.4g} "
                    f"| {row['r_hat']:.3f} | {row['ess_bulk']:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
