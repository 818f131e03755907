"""The optimal loss beyond the runs, blended towards the variant law's level (before) or its change
from the edge of the runs (after: ``blend_beyond``'s ``edge``), on misspecified ladders (issue 31).

    PYTHONPATH=$PWD python benchmarks/optimal_anchor.py > benchmarks/results/extrapolation_anchored.txt

The Chinchilla law is fitted (2 chains x 200 draws, seed 3) to ``checks.simulate.misspecified_ladder``;
each row gives the optimal loss's median [5%, 95%] at multiples of the largest run's compute, and the
largest rise of the log optimal loss (median, lower or upper) over 200 budgets from 0.1x to 1000x.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import bayescale as bs
import bayescale.questions.beyond_runs as plan  # where the answers call blend_beyond
from bayescale.checks.simulate import misspecified_ladder

QUICK: dict[str, Any] = {
    "sampler": {"draws": 200, "tune": 300, "chains": 2},
    "progressbar": False,
    "warn": False,
}
MULTIPLES = [1.1, 3.0, 10.0, 100.0, 1000.0]
ANCHORED = plan.blend_beyond


def towards_the_level(*args: Any, edge: Any = None, **kwargs: Any) -> Any:
    """The blend as it was before the anchoring: the edge's gap ignored."""
    return ANCHORED(*args, **kwargs)


def main() -> None:
    for name in ("kaplan-e", "data-constrained", "bending"):
        fit = bs.fit(misspecified_ladder(name, seed=3), law="chinchilla", random_seed=3, **QUICK)
        largest = float(fit.runs.column("compute").max())
        grid = largest * np.geomspace(0.1, 1000.0, 200)
        print(f"== {name} (seed 3, QUICK)")
        for label in ("alone", "before", "after"):
            plan.blend_beyond = towards_the_level if label == "before" else ANCHORED  # type: ignore[assignment]
            table = fit.optimal(grid, average_beyond=label != "alone")
            rise = max(float(np.diff(np.log(table[f"loss_{s}"])).max()) for s in ("median", "lower", "upper"))
            rows = fit.optimal(largest * np.array(MULTIPLES), average_beyond=label != "alone")
            cells = [
                f"{m:g}x {r.loss_median:.4f} [{r.loss_lower:.4f}, {r.loss_upper:.4f}]"
                for m, r in zip(MULTIPLES, rows.itertuples(), strict=True)
            ]
            print(f"  {label:6s}", " | ".join([*cells, f"max rise {100 * max(rise, 0.0):.3f}%"]))
        plan.blend_beyond = ANCHORED


if __name__ == "__main__":
    main()
