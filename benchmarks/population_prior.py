"""Learn the ``published-ladders`` prior set (issue 31, item 4): the Chinchilla law across public ladders.

Each public ladder whose licence allows shipping derived numbers is fitted by least squares
(Chinchilla form, Huber on log loss, L-BFGS-B from the best starts of Epoch's grid:
``benchmarks/extrapolation.py``'s ``lsq_fit``); Chinchilla itself enters through Epoch's published
headline estimates (the runs have no licence, the published numbers are cited). The prior over a
new ladder's parameters is moment-matched on the log scale: for each of E, A, B, alpha_N, alpha_D
and the run-to-run scatter sigma, a LogNormal centred on the mean over ladders of the log estimate,
with the between-paper standard deviation (which holds each ladder's own estimation noise too)
times sqrt(1 + 1/K), the predictive spread of one more ladder drawn from K papers (each paper's
ladders share one weight: Gadre's three data sets are one recipe).

What transfers between tokenizers and data sets is mostly the exponents; E, A and B carry the loss's
units (nats per token of each tokenizer), so their spread over ladders is wide and the data of the
user's own ladder decide them. The set is written into ``data/prior_sets.json``.

    PYTHONPATH=$PWD python benchmarks/population_prior.py            # print, and rewrite the json
    PYTHONPATH=$PWD python benchmarks/population_prior.py --dry-run  # print only
    PYTHONPATH=$PWD python benchmarks/population_prior.py --leave-out gadre-rpj --dry-run

``population_prior(leave_out=...)`` is what ``benchmarks/small_ladders.py`` calls to score a ladder
with a prior it never informed. Anchors are read from ``../shared/anchors`` beside the repository.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from extrapolation import gadre, lsq_fit, porian  # noqa: E402

REPO = HERE.parent
DATA = REPO / "data"
ANCHORS = REPO.parent / "shared" / "anchors"
PRIOR_SETS = DATA / "prior_sets.json"
NAME = "published-ladders"
#: Order of lsq_fit's vector: log E, log A, log B, alpha_N, alpha_D.
LSQ_ORDER = ("E", "A", "B", "alpha_N", "alpha_D")
PARAMETERS = (*LSQ_ORDER, "sigma")


@dataclass(frozen=True)
class Ladder:
    name: str
    source: str
    licence: str
    load: Callable[[], pd.DataFrame | None]

    @property
    def family(self) -> str:
        """One paper's ladders (same code and recipe): weighted as one ladder, left out together."""
        return self.name.split("-")[0]


def _datablations_one_epoch() -> pd.DataFrame:
    frame = pd.read_csv(DATA / "datablations.csv")
    return frame[frame["tokens"] <= 1.01 * frame["unique_tokens"]][["params", "tokens", "loss"]]


def _olmo() -> pd.DataFrame | None:
    path = ANCHORS / "olmo-ladder" / "ladder_final.csv"
    if not path.exists():
        return None
    frame = pd.read_csv(path)
    frame = frame[~frame["is_rerun"].astype(bool)]
    return frame.rename(columns={"N_nonembed": "params", "loss_c4_en__last5mean": "loss"})[
        ["params", "tokens", "loss"]
    ]


#: The ladders of the population. Left out: (Mis)Fitting and the Llama 3 isoFLOPs (no licence:
#: internal test use only), Gemstones and ColPret's families (one token count per family, so
#: alpha_D is not identified; T5/LaMDA losses of unknown units), the multi-power schedules (3 sizes).
LADDERS = (
    Ladder("gadre-c4", "Gadre et al. 2024, C4 (bundled gadre_overtrain.csv)", "MIT", gadre("c4_original")),
    Ladder("gadre-rpj", "Gadre et al. 2024, RedPajama (bundled)", "MIT", gadre("rpj")),
    Ladder("gadre-rw", "Gadre et al. 2024, RefinedWeb (bundled)", "MIT", gadre("rw_original")),
    Ladder(
        "datablations",
        "Muennighoff et al. 2023, the single-epoch C4 runs (bundled datablations.csv, D <= U)",
        "Apache-2.0",
        _datablations_one_epoch,
    ),
    Ladder(
        "porian-rw",
        "Porian et al. 2024 isoFLOPs, RefinedWeb, tuned, constant LR (bundled porian_isoflop.csv)",
        "MIT",
        porian("rw|tuned|short|const|standard|val"),
    ),
    Ladder(
        "porian-owt2",
        "Porian et al. 2024 isoFLOPs, OpenWebText2, tuned, constant LR (bundled)",
        "MIT",
        porian("owt2|tuned|short|const|standard|val"),
    ),
    Ladder(
        "olmo-ladder",
        "OLMo ladder (Bhagia et al. 2024), final C4 loss (mean of the last 5 checkpoints), no reruns",
        "Apache-2.0",
        _olmo,
    ),
)

#: Chinchilla (Epoch's extraction has no licence): Epoch's published headline estimates, cited.
CHINCHILLA_PUBLISHED = {"E": 1.81686, "A": 482.00572, "B": 2085.4342, "alpha_N": 0.34781, "alpha_D": 0.36585}
CHINCHILLA_SOURCE = "Besiroglu et al. 2024 (arXiv:2404.10102), headline estimates (published numbers, cited)"


@cache
def ladder_estimates(name: str) -> dict[str, float] | None:
    """Least-squares estimates of one ladder; sigma: 1.4826 x the median absolute log residual.

    A robust scale, as the Student-t's sigma is: a few far-off runs (Porian's isoFLOP edges, Gadre's
    5-tokens-per-parameter runs) would otherwise double it.
    """
    if name == "epoch-chinchilla":
        return dict(CHINCHILLA_PUBLISHED)
    ladder = next(ladder for ladder in LADDERS if ladder.name == name)
    frame = ladder.load()
    if frame is None:
        return None
    log_e, log_a, log_b, alpha, beta = lsq_fit(frame)
    logn, logd = np.log(frame["params"].to_numpy(float)), np.log(frame["tokens"].to_numpy(float))
    pred = np.logaddexp(np.logaddexp(log_a - alpha * logn, log_b - beta * logd), log_e)
    resid = np.log(frame["loss"].to_numpy(float)) - pred
    return {
        "E": float(np.exp(log_e)),
        "A": float(np.exp(log_a)),
        "B": float(np.exp(log_b)),
        "alpha_N": float(alpha),
        "alpha_D": float(beta),
        "sigma": float(1.4826 * np.median(np.abs(resid - np.median(resid)))),
        "runs": len(frame),
    }


def ladder_names() -> list[str]:
    return ["epoch-chinchilla", *(ladder.name for ladder in LADDERS)]


def family_of(name: str) -> str:
    """The paper a ladder comes from: its ladders share code and recipe (``gadre-rpj`` -> ``gadre``)."""
    return name.split("-")[0]


def population_prior(leave_out: Iterable[str] = ()) -> dict:
    """The prior set's entry (``law``, ``estimates`` with ``value`` and ``log_se``, provenance).

    ``leave_out``: ladders that must not inform the prior (scoring a ladder leave-one-out); every
    ladder of their paper goes with them (Gadre's three sets share code, recipe and evaluation).
    Each paper weighs as one ladder: its ladders share the weight 1 equally. The spread is the
    weighted between-paper standard deviation times sqrt(1 + 1/K), K papers.
    """
    unknown = set(leave_out) - set(ladder_names())
    if unknown:
        raise ValueError(f"unknown ladders {sorted(unknown)}; the population has {ladder_names()}")
    gone = {family_of(name) for name in leave_out}
    fits = {name: ladder_estimates(name) for name in ladder_names() if family_of(name) not in gone}
    fits = {name: f for name, f in fits.items() if f is not None}
    estimates = {}
    for parameter in PARAMETERS:
        names = [name for name, f in fits.items() if parameter in f]
        logs = np.log([fits[name][parameter] for name in names])
        families = [family_of(name) for name in names]
        w = np.array([1.0 / families.count(f) for f in families])
        k = len(set(families))
        mean = float((w * logs).sum() / w.sum())
        # Reliability-weighted unbiased variance: with equal weights, the usual ddof=1 variance.
        var = float((w * (logs - mean) ** 2).sum() / (w.sum() - (w**2).sum() / w.sum()))
        spread = float(np.sqrt(var * (1 + 1 / k)))
        estimates[parameter] = {"value": float(np.exp(mean)), "log_se": round(spread, 4), "papers": k}
    sources = {ladder.name: f"{ladder.source}; licence {ladder.licence}" for ladder in LADDERS}
    sources["epoch-chinchilla"] = CHINCHILLA_SOURCE
    papers = len({family_of(name) for name in fits})
    return {
        "law": "chinchilla",
        "widen": 1.0,
        "description": (
            f"Population prior: the Chinchilla law fitted to {len(fits)} public ladders from {papers} "
            "papers, a LogNormal per parameter at the papers' mean log estimate with their spread "
            "(x sqrt(1 + 1/K)); "
            "the default of a ladder of 3-7 runs"
        ),
        "source": (
            "benchmarks/population_prior.py (least squares per ladder, moment-matched on the log scale, "
            f"each paper weighing as one ladder); learnt {datetime.date.today().isoformat()}. "
            "Only derived numbers are shipped."
        ),
        "ladders": {name: sources[name] for name in fits},
        "fits": {name: {k: round(float(v), 6) for k, v in f.items()} for name, f in fits.items()},
        "estimates": estimates,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leave-out", default="", help="comma-separated ladders to leave out")
    parser.add_argument("--dry-run", action="store_true", help="print the prior, do not rewrite the json")
    args = parser.parse_args()
    leave = [s for s in args.leave_out.split(",") if s]
    entry = population_prior(leave)
    rows = pd.DataFrame(entry["fits"]).T
    print(rows.to_string(float_format=lambda v: f"{v:.4g}"))
    print()
    for parameter, e in entry["estimates"].items():
        lo, hi = (e["value"] * np.exp(s * 1.645 * e["log_se"]) for s in (-1, 1))
        print(f"{parameter:8s} median {e['value']:.4g}  log sd {e['log_se']:.3f}  90% [{lo:.4g}, {hi:.4g}]")
    if args.dry_run or leave:
        return
    catalog = json.loads(PRIOR_SETS.read_text())
    catalog[NAME] = entry
    PRIOR_SETS.write_text(json.dumps(catalog, indent=2) + "\n")
    print(f"wrote {NAME!r} into {PRIOR_SETS}")


if __name__ == "__main__":
    main()
