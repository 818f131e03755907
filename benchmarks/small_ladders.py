"""Small-ladder benchmark (issue 31, item 4): 3-7 runs, predicted far beyond, leave-one-paper-out priors.

Cases:

- Gadre et al. 2024's own 5-run design on each training set (C4, RedPajama, RefinedWeb): the four
  small shapes at 20 tokens per parameter and the 10.6M model at 320; targets: every run of 1.4B
  and 6.9B parameters (3 per set).
- 4-7 size ladders made from the panel: at k sizes spread over the smaller part of a ladder, the
  run nearest 20 tokens per parameter (one run per size, the way a small lab builds a ladder);
  targets: every run of the ladder larger than the largest training size, at any ratio.

Priors compared, in one run, on the same cases and seeds:

- ``population``: the ``published-ladders`` set rebuilt by ``benchmarks/population_prior.py``
  without every ladder of the case's own paper (the ladder predicted never informs its prior);
- ``epoch``: today's ``--priors-from epoch-chinchilla --prior-params A,B,alpha_N,alpha_D`` (widen 2);
- ``default``: the law's default priors, passed explicitly (a small ladder on the defaults is
  otherwise refused, or now gets the population prior);
- ``lsq``: the least-squares baseline of ``benchmarks/extrapolation.py`` (medians only).

Scores per target: the posterior predictive of the fitted law alone (``average_beyond=False``:
the package's answer beyond the runs also blends in a second law, which only widens it), 90% and
50% central interval coverage, absolute relative error of the median (MRE), relative 90% width.

    PYTHONPATH=$PWD python benchmarks/small_ladders.py [--cases gadre-rpj,olmo-4] [--draws 500]
        [--out benchmarks/results/small_ladders.txt]

Each finished fit is appended to ``--out`` with suffix ``.jsonl`` and reused by a rerun.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import population_prior as pp  # noqa: E402
from extrapolation import lsq_fit, lsq_predict, misfitting  # noqa: E402

REPO = HERE.parent
DATA = REPO / "data"
ANCHORS = REPO.parent / "shared" / "anchors"
PRIORS = ("population", "epoch", "default")


@dataclass(frozen=True)
class Case:
    name: str
    family: str  # the paper left out of the population prior ("" when it is not in it)
    make: Callable[[], tuple[pd.DataFrame, pd.DataFrame] | None]  # (train, targets)


def gadre_design(group: str) -> Callable[[], tuple[pd.DataFrame, pd.DataFrame]]:
    def make() -> tuple[pd.DataFrame, pd.DataFrame]:
        frame = pd.read_csv(DATA / "gadre_overtrain.csv")
        frame = frame[frame["group"] == group]
        m = frame["token_multiplier"]
        train = frame[((m == 20) & (frame["params"] < 1e9)) | ((m == 320) & (frame["params"] < 2e7))]
        return train, frame[frame["params"] > 1e9]

    return make


def size_ladder(load: Callable[[], pd.DataFrame | None], k: int, top: float) -> Callable[[], tuple | None]:
    """k sizes log-spaced over the smallest ``top`` share (in log params) of the ladder's sizes.

    At each, the run nearest 20 tokens per parameter among the runs within 10-40 (all runs when
    none is, as on Gemstones, every model at 350B tokens).
    """

    def make() -> tuple[pd.DataFrame, pd.DataFrame] | None:
        frame = load()
        if frame is None:
            return None
        frame = frame[["params", "tokens", "loss"]].reset_index(drop=True)
        ratio = frame["tokens"] / frame["params"]
        near = frame[(ratio >= 10) & (ratio <= 40)]
        pool = near if near["params"].nunique() >= k else frame
        sizes = np.unique(pool["params"].to_numpy(float))
        log = np.log(sizes)
        wanted = np.linspace(log[0], log[0] + top * (log[-1] - log[0]), k)
        chosen = np.unique([sizes[np.argmin(np.abs(log - w))] for w in wanted])
        rows = []
        for size in chosen:
            at = pool[pool["params"] == size]
            rows.append(at.index[np.argmin(np.abs(np.log(at["tokens"] / at["params"] / 20)))])
        train = frame.loc[rows]
        return train, frame[frame["params"] > train["params"].max() * 1.01]

    return make


def _bundled(csv: str, group: str | None = None, final: bool = False) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        frame = pd.read_csv(DATA / csv)
        if group is not None:
            frame = frame[frame["group"] == group]
        if final:
            frame = frame.sort_values("step").groupby("run").tail(1)
        return frame

    return load


CASES = [
    Case("gadre-c4", "gadre", gadre_design("c4_original")),
    Case("gadre-rpj", "gadre", gadre_design("rpj")),
    Case("gadre-rw", "gadre", gadre_design("rw_original")),
    Case("chinchilla-5", "epoch", size_ladder(_bundled("chinchilla.csv"), 5, 0.5)),
    Case("chinchilla-7", "epoch", size_ladder(_bundled("chinchilla.csv"), 7, 0.6)),
    Case("olmo-4", "olmo", size_ladder(pp._olmo, 4, 0.8)),
    Case(
        "porian-rw-5",
        "porian",
        size_ladder(_bundled("porian_isoflop.csv", "rw|tuned|short|const|standard|val"), 5, 0.6),
    ),
    Case("datablations-5", "datablations", size_ladder(pp._datablations_one_epoch, 5, 0.6)),
    Case("misfitting-5", "", size_ladder(misfitting, 5, 0.6)),
    Case("misfitting-6", "", size_ladder(misfitting, 6, 0.7)),
    Case("gemstones-6", "", size_ladder(_bundled("gemstones_constant_lr.csv", final=True), 6, 0.5)),
]


def priors_for(kind: str, family: str) -> dict | None:
    import bayescale as bs
    from bayescale.model.pymc_model import resolve_priors

    if kind == "population":
        leave = [name for name in pp.ladder_names() if pp.family_of(name) == family]
        entry = pp.population_prior(leave)
        return {
            p: bs.Prior("LogNormal", mu=float(np.log(e["value"])), sigma=e["log_se"])
            for p, e in entry["estimates"].items()
        }
    if kind == "epoch":
        return bs.published_priors("epoch-chinchilla", parameters=["A", "B", "alpha_N", "alpha_D"])
    if kind == "default":
        return resolve_priors(bs.get_law("chinchilla"), "student_t")[0]
    raise ValueError(kind)


def fit_case(train: pd.DataFrame, targets: pd.DataFrame, priors: dict, args) -> dict:
    import bayescale as bs
    from bayescale.questions.plan import predict_draws

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bs.fit(
            train.reset_index(drop=True),
            priors=priors,
            random_seed=args.seed,
            sampler={"draws": args.draws, "tune": args.tune, "chains": args.chains},
            progressbar=False,
            warn=False,
        )
    draws = predict_draws(
        fit,
        targets["params"].to_numpy(float),
        targets["tokens"].to_numpy(float),
        random_seed=args.seed,
        average_beyond=False,
    )["loss_predictive"]
    flat = draws.values.reshape(-1, draws.shape[-1])
    q = np.quantile(flat, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
    return {
        "q": q.T.tolist(),
        "ok": bool(fit.diagnostics["ok"]),
        "divergences": int(fit.diagnostics["divergences"]),
    }


def within_guard(train: pd.DataFrame, targets: pd.DataFrame) -> np.ndarray:
    """Targets within the distances past which every answer warns (``GUARD``: compute, size, ratio)."""
    from bayescale.posterior.extrapolation import GUARD, RunSpan, distance_columns

    k = 6.0
    span = RunSpan.of(train["params"], train["tokens"], k * train["params"] * train["tokens"])
    columns = distance_columns(
        span, targets["params"], targets["tokens"], k * targets["params"] * targets["tokens"]
    )
    return np.logical_and.reduce([np.asarray(columns[name]) <= limit for name, limit in GUARD.items()])


def scores(q: np.ndarray, actual: np.ndarray) -> dict:
    lo90, lo50, med, hi50, hi90 = q.T
    return {
        "cov90": float(np.mean((actual >= lo90) & (actual <= hi90))),
        "cov50": float(np.mean((actual >= lo50) & (actual <= hi50))),
        "mre": float(np.mean(np.abs(med / actual - 1))),
        "width90": float(np.mean((hi90 - lo90) / actual)),
        "n": len(actual),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(c.name for c in CASES))
    parser.add_argument("--priors", default=",".join(PRIORS))
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "small_ladders.txt")
    args = parser.parse_args()
    start, load0 = time.time(), os.getloadavg()[0]
    cache_path = args.out.with_suffix(".jsonl")
    done = {}
    if cache_path.exists():
        for line in cache_path.read_text().splitlines():
            row = json.loads(line)
            done[(row["case"], row["prior"])] = row
    rows, guarded = [], []  # scores on every target; on the targets within the guard's distances
    wanted = args.cases.split(",")
    for case in (c for c in CASES if c.name in wanted):
        made = case.make()
        if made is None:
            print(f"note: {case.name} skipped: anchor files not found under {ANCHORS}")
            continue
        train, targets = made
        actual = targets["loss"].to_numpy(float)
        inside = within_guard(train, targets)
        lsq = lsq_predict(lsq_fit(train), targets)
        lsq_q = np.c_[lsq, lsq, lsq, lsq, lsq]
        rows.append({"case": case.name, "prior": "lsq", "runs": len(train), **scores(lsq_q, actual)})
        guarded.append({"case": case.name, "prior": "lsq", **scores(lsq_q[inside], actual[inside])})
        for kind in args.priors.split(","):
            key = (case.name, kind)
            if key not in done:
                t0 = time.time()
                result = fit_case(train, targets, priors_for(kind, case.family), args)
                done[key] = {
                    "case": case.name,
                    "prior": kind,
                    **result,
                    "seconds": round(time.time() - t0, 1),
                }
                with cache_path.open("a") as f:
                    f.write(json.dumps(done[key]) + "\n")
            r = done[key]
            guarded.append(
                {"case": case.name, "prior": kind, **scores(np.array(r["q"])[inside], actual[inside])}
            )
            rows.append(
                {
                    "case": case.name,
                    "prior": kind,
                    "runs": len(train),
                    **scores(np.array(r["q"]), actual),
                    "ok": r["ok"],
                    "div": r["divergences"],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    table = pd.DataFrame(rows)
    subsets = {
        "every case": table,
        "Gadre's 5-run designs": table[table["case"].str.startswith("gadre")],
        "the panel's size ladders": table[~table["case"].str.startswith("gadre")],
        "every case but porian-rw-5": table[table["case"] != "porian-rw-5"],
        "targets within the guard": pd.DataFrame(guarded),
    }
    pooled = []
    for subset, part in subsets.items():
        for kind, g in part.groupby("prior", sort=False):
            w = g["n"].to_numpy(float)
            pooled.append(
                {
                    "cases": subset,
                    "prior": kind,
                    "targets": int(w.sum()),
                    "cov90": (g["cov90"] * w).sum() / w.sum(),
                    "cov50": (g["cov50"] * w).sum() / w.sum(),
                    "mre": (g["mre"] * w).sum() / w.sum(),
                    "width90": (g["width90"] * w).sum() / w.sum(),
                    "case_cov90": g["cov90"].mean(),
                    "case_cov50": g["cov50"].mean(),
                    "case_mre": g["mre"].mean(),
                }
            )
    header = (
        f"# small ladders: {' '.join(sys.argv[1:]) or '(defaults)'}; {args.chains}x{args.draws} draws after "
        f"{args.tune}; load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end; 2 cores; "
        f"{time.time() - start:.0f} s; the {len(done)} fits took "
        f"{sum(r['seconds'] for r in done.values()):.0f} s when fitted (cached in {cache_path.name})"
    )
    text = "\n".join(
        [
            header,
            "",
            "## per case (cov90/cov50: share of the targets inside the 90%/50% interval;",
            "## mre: mean abs rel error of the median; width90: mean 90% width / actual)",
            table.to_string(index=False, float_format=lambda v: f"{v:.3f}"),
            "",
            "## pooled over the targets (cov90, cov50, mre, width90), and each case weighing one (case_*)",
            pd.DataFrame(pooled).to_string(index=False, float_format=lambda v: f"{v:.3f}"),
        ]
    )
    print(text)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
