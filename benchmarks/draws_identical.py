"""Save the posterior draws of every fitting method at fixed seeds, and compare two such runs.

For a change that must not alter results (issue 18: the likelihoods, priors and sampler
settings written once). Run it on the code before the change, keep the output outside the
repository, then run it after the change against that output:

    python benchmarks/draws_identical.py --out /tmp/once_before
    ... change ...
    python benchmarks/draws_identical.py --out /tmp/once_after --compare /tmp/once_before

Each fit is small (2 chains of 100 draws after 100 tuning steps) on bundled data and saves
its posterior variables to ``OUT/<case>.npz``; ``--compare`` reports, per case, whether every
variable is equal bit for bit (NaN equal to NaN), else the variables that differ and by how
much. ``--only`` runs some cases (substrings of their names). Exit status 1 when a case differs.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# This checkout's bayescale, not the installed one: run from a worktree, the script would
# otherwise import the main checkout's package (the editable install) and compare it with itself.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import bayescale as bs  # noqa: E402
from bayescale.data import datasets  # noqa: E402

#: Sampler settings of every case: small, so the whole panel runs in minutes on 2 loaded cores.
SMALL: dict[str, Any] = {"draws": 100, "tune": 100, "chains": 2}

_ISOFLOP_GROUP = "rw|tuned|short|const|standard|val"


def _fit(data: Any, seed: int, sampler: dict[str, Any] | None = None, **options: Any) -> Callable[[], Any]:
    """A case: ``bayescale.fit`` of ``data`` (a bundled name or a loader) with SMALL's settings."""

    def run() -> Any:
        loaded = data() if callable(data) else datasets.load(data)
        settings = {**SMALL, **(sampler or {})}
        return bs.fit(loaded, sampler=settings, random_seed=seed, progressbar=False, **options)

    return run


def _curves() -> Any:
    return datasets.load_curves("gemstones")


def _multipower(seed: int, **options: Any) -> Callable[[], Any]:
    """A case: ``bayescale.fit_curves`` of three simulated curves (cosine, constant, WSD) of one size."""

    def run() -> Any:
        import pandas as pd

        from bayescale.data.schedule import curve_features
        from bayescale.model.curve_laws import features_dict, multipower_loss

        truth = {"L0": 3.0, "A": 0.5, "alpha": 0.5, "B": 400.0, "C": 2.0, "beta": 0.6, "gamma": 0.6}
        schedules = {
            "cosine": bs.Schedule(3e-4, 4000, 200, "cosine", 0.1),
            "constant": bs.Schedule(3e-4, 4000, 200, "constant"),
            "wsd": bs.Schedule(3e-4, 4000, 200, "wsd", 0.1, decay_start=3000),
        }
        steps = np.arange(300, 4000, 100)
        rng = np.random.default_rng(4)
        frames = []
        for name, schedule in schedules.items():
            features = features_dict(curve_features(schedule.per_step(), steps, 32))
            loss = multipower_loss({k: np.asarray(v) for k, v in truth.items()}, features, np)
            noisy = loss * np.exp(rng.normal(0, 1e-3, steps.size))
            frames.append(pd.DataFrame({"run": name, "step": steps, "loss": noisy}))
        return bs.fit_curves(
            pd.concat(frames), schedules, bins=32, sampler=SMALL, random_seed=seed, warn=False, **options
        )

    return run


#: name -> a function fitting it. Names say method, data, law and what is varied.
CASES: dict[str, Callable[[], Any]] = {
    "fit-chinchilla-jax": _fit("chinchilla", 1, law="chinchilla"),
    "fit-chinchilla-jax-normal": _fit("chinchilla", 1, law="chinchilla", likelihood="normal"),
    "fit-chinchilla-numpyro": _fit("chinchilla", 1, {"backend": "numpyro"}, law="chinchilla"),
    "fit-kaplan-e-jax": _fit("chinchilla", 2, law="kaplan-e"),
    "fit-data-constrained-jax": _fit("datablations", 3, law="data-constrained"),
    # A grouped law samples the PyMC model; target acceptance given, then left to the default.
    "fit-grouped-ta095": _fit("gadre-overtrain", 7, {"target_accept": 0.95}, law="chinchilla-grouped"),
    "fit-grouped-default": _fit("gadre-overtrain", 7, law="chinchilla-grouped"),
    "isoflop-porian": _fit("porian-isoflop", 4, method="isoflop", group=_ISOFLOP_GROUP),
    "envelope-gemstones": _fit(_curves, 5, method="envelope"),
    "steps-gemstones": _fit(_curves, 6, method="steps"),
    "steps-gemstones-student-t": _fit(_curves, 6, method="steps", likelihood="student_t"),
    "curves-multipower-offsets": _multipower(8),
    "curves-multipower-ar1": _multipower(8, correlation="ar1"),
    "curves-multipower-walk": _multipower(8, walk=True),
}


def posterior_arrays(result: Any) -> dict[str, np.ndarray]:
    """Every posterior variable of a result as a numpy array."""
    posterior = result.posterior
    return {str(name): np.asarray(posterior[name].values) for name in posterior.data_vars}


def compare(before: Path, after: Path, names: list[str]) -> list[str]:
    """Print, per case, whether the two folders' draws are equal bit for bit; return those that differ."""
    changed = []
    for name in names:
        old, new = before / f"{name}.npz", after / f"{name}.npz"
        if not old.exists():
            print(f"{name:28s} no earlier draws in {before}")
            continue
        with np.load(old) as a, np.load(new) as b:
            keys = sorted(set(a.files) | set(b.files))
            diffs = []
            for key in keys:
                if key not in a.files or key not in b.files:
                    diffs.append(f"{key}: only {'after' if key in b.files else 'before'}")
                elif a[key].shape != b[key].shape or a[key].dtype != b[key].dtype:
                    diffs.append(f"{key}: {a[key].dtype}{a[key].shape} -> {b[key].dtype}{b[key].shape}")
                elif not np.array_equal(a[key], b[key], equal_nan=a[key].dtype.kind == "f"):
                    gap = np.nanmax(np.abs(a[key].astype(float) - b[key].astype(float)))
                    diffs.append(f"{key}: max |diff| {gap:.3g}")
        if diffs:
            changed.append(name)
            print(f"{name:28s} DIFFERENT: {'; '.join(diffs)}")
        else:
            print(f"{name:28s} identical ({len(keys)} variables)")
    return changed


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for this run's draws")
    parser.add_argument("--compare", type=Path, default=None, help="folder of an earlier run")
    parser.add_argument("--only", nargs="*", default=None, help="run the cases whose names contain these")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    names = [n for n in CASES if not args.only or any(part in n for part in args.only)]
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        start = time.perf_counter()
        result = CASES[name]()
        np.savez(args.out / f"{name}.npz", **posterior_arrays(result))
        print(f"{name:28s} fitted in {time.perf_counter() - start:5.1f} s", flush=True)
    if args.compare is None:
        return 0
    changed = compare(args.compare, args.out, names)
    print(f"identical: {len(names) - len(changed)} of {len(names)}; changed: {changed or 'none'}")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
