"""How far two saved fits' posteriors lie apart, in units of their Monte Carlo error.

For a change that should leave the posterior alone but not the draws (padding the runs, a new
summation order): fit the same runs at the same settings before and after, then

    python benchmarks/posterior_shift.py before.nc after.nc [more pairs ...]

prints, per parameter, the 5%, 50% and 95% quantiles of each and their difference divided by
the combined Monte Carlo standard error of the two quantiles (``z``), and the largest ``|z|``.
Independent chains of one posterior give ``|z|`` mostly below 2; a shifted posterior, far more.
"""

from __future__ import annotations

import sys

import numpy as np

PROBS = (0.05, 0.5, 0.95)


def shift(before_path: str, after_path: str) -> float:
    """Print the table of one pair of fits; return the largest ``|z|``."""
    import arviz as az
    import arviz_stats

    before, after = az.from_netcdf(before_path), az.from_netcdf(after_path)
    names = [
        v
        for v in before.posterior.data_vars
        if before.posterior[v].ndim == 2 and float(before.posterior[v].std()) > 0
    ]
    print(f"{before_path} -> {after_path}")
    largest = 0.0
    for name in names:
        row = [f"  {name:<10}"]
        for prob in PROBS:
            values, errors = [], []
            for idata in (before, after):
                draws = idata.posterior[name].to_dataset(name="x")
                values.append(float(np.quantile(draws["x"].values, prob)))
                errors.append(float(arviz_stats.mcse(draws, method="quantile", prob=prob)["x"]))
            z = (values[1] - values[0]) / np.hypot(*errors)
            largest = max(largest, abs(z))
            row.append(f"q{prob:.2f} {values[0]:.5g} -> {values[1]:.5g} (z {z:+.2f})")
        print("  ".join(row))
    print(f"  largest |z| {largest:.2f} over {len(names) * len(PROBS)} quantiles")
    return largest


def main() -> None:
    paths = sys.argv[1:]
    if not paths or len(paths) % 2:
        raise SystemExit("usage: python benchmarks/posterior_shift.py BEFORE.nc AFTER.nc [BEFORE AFTER ...]")
    for before, after in zip(paths[::2], paths[1::2], strict=True):
        shift(before, after)


if __name__ == "__main__":
    main()
