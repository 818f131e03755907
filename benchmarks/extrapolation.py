"""Public extrapolation benchmark (issue 16): fit on the small runs of a ladder, score the large ones.

For every protocol (one table, PROTOCOLS) it fits a law with bayescale on the training runs and
scores the posterior predictive of the held-out runs: median absolute relative error (ARE) of
the predictive median, coverage of the central 90% and 50% intervals, mean relative width of
the 90% interval, and the ARE of a least-squares baseline (Chinchilla form, Huber delta 1e-3 on
log-loss residuals, L-BFGS-B from the best starts of Epoch's 4,500-point grid) fitted in the
same process, with its bootstrap (``LSQb``: 200 resamples of the training runs, the fitted curve's
5-95% interval, as peers report uncertainty; ``LSQbp``: plus a resampled training residual, a
predictive interval) scored by coverage and interval score. Pooled figures count each ladder as
one correlated cluster (``bayescale.checks.calibration.cluster_interval``).

    PYTHONPATH=$PWD python benchmarks/extrapolation.py [--protocols P1,P2] [--method none]
        [--draws 500] [--seed 1] [--out benchmarks/results/extrapolation_run.txt]
        [--from-cache]   # re-score the cached predictive draws without refitting

``--method``: ``none`` (the posterior predictive as fitted), ``discrepancy`` (design (a):
tau per e-fold of distance fitted on the other ladder families), ``backtest`` (design (b):
tau from a rolling-origin backtest inside the training ladder), ``combined`` (design (c)),
``mixture``, ``mixture+backtest``, ``hierarchical`` (tau per ladder as a mixture, optionally
reweighted by the ladder's backtest), ``average`` / ``average-beyond`` / ``average-ramp``
(design (c): half the draws from a second law, ``--variant kaplan-e``, everywhere / only beyond
the runs' range / rising over one e-fold), ``all`` (every one, side by side). The methods are
pure numpy in ``benchmarks/extrapolation_method.py``; ``blend`` (the package's answer beyond
the runs since issue 31, ``bayescale.posterior.extrapolation.blend_draws``: the fitted law's draws
moved and widened towards the variant's, weight rising smoothly with distance, plus a discrepancy;
``--blend share,ramp,tau`` to try other values) replaced ``average-beyond`` (issue 16's step).

Full run (fits, then the study from the cache):

    python benchmarks/extrapolation.py --variant kaplan-e --method none,average-beyond
    python benchmarks/extrapolation.py --from-cache --method all

Fits and backtest fits are cached (thinned predictive draws of log loss, float32) in
``benchmarks/results/extrapolation_cache.npz``; ``--out FILE`` writes the table(s) to FILE and
every run's predictions to FILE with suffix ``.json``. Anchors are read from
``../shared/anchors`` beside the repository; a protocol whose files are missing is skipped with
a note.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import extrapolation_method as em

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
ANCHORS = REPO.parent / "shared" / "anchors"
RESULTS = REPO / "benchmarks" / "results"
CACHE = RESULTS / "extrapolation_cache.npz"
KEEP_DRAWS = 500  # thinned predictive draws kept per query in the cache


# --------------------------------------------------------------------------- data


def chinchilla() -> pd.DataFrame:
    return pd.read_csv(DATA / "chinchilla.csv")[["params", "tokens", "loss"]]


def gadre(group: str) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        frame = pd.read_csv(DATA / "gadre_overtrain.csv")
        return frame[frame["group"] == group][["params", "tokens", "loss"]]

    return load


def datablations() -> pd.DataFrame:
    return pd.read_csv(DATA / "datablations.csv")[["params", "tokens", "unique_tokens", "loss"]]


def porian(setting: str) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        frame = pd.read_csv(DATA / "porian_isoflop.csv")
        return frame[frame["group"] == setting][["params", "tokens", "loss"]]

    return load


def gemstones_final() -> pd.DataFrame:
    frame = pd.read_csv(DATA / "gemstones_constant_lr.csv")
    return frame.sort_values("step").groupby("run").tail(1)[["params", "tokens", "loss"]]


def misfitting() -> pd.DataFrame | None:
    path = ANCHORS / "misfitting" / "scaling_results_last_ckpt_only.csv"
    if not path.exists():
        return None
    frame = pd.read_csv(path)
    best = frame.loc[frame.groupby(["N", "D"])["loss"].idxmin()]  # best learning rate per (N, D)
    return best.rename(columns={"N": "params", "D": "tokens"})[["params", "tokens", "loss"]]


def simulated(kind: str, seed: int) -> Callable[[], pd.DataFrame]:
    """A ladder drawn from a law other than the Chinchilla law that is fitted to it."""

    def load() -> pd.DataFrame:
        from bayescale.checks.simulate import misspecified_ladder

        return misspecified_ladder(kind, seed)

    return load


# --------------------------------------------------------------------------- protocols


@dataclass(frozen=True)
class Protocol:
    name: str
    load: Callable[[], pd.DataFrame | None]
    law: str
    by: str  # "compute" (6ND) or "params"
    threshold: float  # train: by < threshold
    ladder: str  # cluster of correlated runs (one data set)
    family: str  # left out together when tau is learnt across ladders


def _p(name, load, law, by, thr, ladder, family=None):
    return Protocol(name, load, law, by, thr, ladder, family or ladder.split(":")[0])


PROTOCOLS = [
    _p("chinchilla-compute", chinchilla, "chinchilla", "compute", 1e21, "chinchilla"),
    _p("chinchilla-size", chinchilla, "chinchilla", "params", 5e9, "chinchilla"),
    _p("gadre-c4", gadre("c4_original"), "chinchilla", "params", 5e8, "gadre:c4"),
    _p("gadre-rpj", gadre("rpj"), "chinchilla", "params", 5e8, "gadre:rpj"),
    _p("gadre-rw", gadre("rw_original"), "chinchilla", "params", 5e8, "gadre:rw"),
    _p("datablations-dc", datablations, "data-constrained", "params", 1e9, "datablations"),
    _p("datablations-chin", datablations, "chinchilla", "params", 1e9, "datablations"),
    _p(
        "porian-final",
        porian("rw|tuned|short|const|standard|val"),
        "chinchilla",
        "compute",
        2.4e18,
        "porian:final",
    ),
    _p(
        "porian-cosine",
        porian("rw|base|short|chinchilla|standard|val"),
        "chinchilla",
        "compute",
        2.4e18,
        "porian:cosine",
    ),
    _p("gemstones-final", gemstones_final, "chinchilla", "params", 1.5e9, "gemstones"),
    _p("misfitting", misfitting, "chinchilla", "params", 4e8, "misfitting"),
] + [
    _p(f"sim-{kind}-{seed}", simulated(kind, seed), "chinchilla", "params", 1e9, f"sim-{kind}:{seed}")
    for kind in ("kaplan-e", "data-constrained", "bending")
    for seed in (1, 2)
]
# Porian: "compute" = 6ND = the budget in the file, so < 2.4e18 keeps budgets <= 1.6e18.
BACKTEST_SHARE = 0.6  # the backtest trains on the smallest ~60% of the training runs (at a level boundary)
MIN_BACKTEST_TRAIN = 8


def split_values(frame: pd.DataFrame, by: str) -> np.ndarray:
    if by == "compute":
        return 6.0 * frame["params"].to_numpy() * frame["tokens"].to_numpy()
    return frame[by].to_numpy(dtype=float)


def backtest_threshold(values: np.ndarray) -> float | None:
    """Smallest level v with at least BACKTEST_SHARE of the training runs below it (and runs above)."""
    for v in np.unique(values):
        below = (values < v).sum()
        if below >= max(BACKTEST_SHARE * len(values), MIN_BACKTEST_TRAIN):
            return float(v)
    return None


# --------------------------------------------------------------------------- fitting


def bayes_log_draws(
    train: pd.DataFrame, query: pd.DataFrame, law: str, args, seed: int
) -> tuple[np.ndarray, dict]:
    """Thinned posterior predictive draws of log loss at the query runs, and the fit's diagnostics."""
    import bayescale as bs
    from bayescale.questions.plan import predict_draws

    columns = ["params", "tokens", "loss"] + (["unique_tokens"] if law == "data-constrained" else [])
    fitted = bs.fit(
        train[columns].reset_index(drop=True),
        law=law,
        random_seed=seed,
        sampler={"draws": args.draws, "tune": args.tune, "chains": args.chains},
        progressbar=False,
        warn=False,
    )
    unique = query["unique_tokens"].to_numpy() if law == "data-constrained" else None
    # One law's draws: the benchmark mixes in the variant law itself (method average-beyond), the
    # same equal mixture beyond the runs that the package's answers make by default.
    draws = predict_draws(
        fitted,
        query["params"].to_numpy(),
        query["tokens"].to_numpy(),
        unique,
        random_seed=seed,
        average_beyond=False,
    )["loss_predictive"]
    log = np.log(draws.values.reshape(-1, draws.shape[-1]))
    step = max(1, log.shape[0] // KEEP_DRAWS)
    diag = {k: fitted.diagnostics[k] for k in ("divergences", "max_r_hat", "min_ess_bulk", "ok")}
    return log[::step][:KEEP_DRAWS].astype(np.float32), diag


HUBER_DELTA = 1e-3


def _lsq_objective(p: np.ndarray, logN: np.ndarray, logD: np.ndarray, logL: np.ndarray):
    e, a, b, alpha, beta = p
    terms = np.stack([a - alpha * logN, b - beta * logD, np.full_like(logN, e)])
    top = terms.max(axis=0)
    w = np.exp(terms - top)
    pred = top + np.log(w.sum(axis=0))
    r = pred - logL
    small = np.abs(r) <= HUBER_DELTA
    loss = np.where(small, 0.5 * r**2, HUBER_DELTA * (np.abs(r) - 0.5 * HUBER_DELTA)).sum()
    dr = np.where(small, r, HUBER_DELTA * np.sign(r))
    soft = w / w.sum(axis=0)
    grad = np.array(
        [
            (dr * soft[2]).sum(),
            (dr * soft[0]).sum(),
            (dr * soft[1]).sum(),
            -(dr * soft[0] * logN).sum(),
            -(dr * soft[1] * logD).sum(),
        ]
    )
    return loss, grad


def _lsq_grid_loss(grid: np.ndarray, logN: np.ndarray, logD: np.ndarray, logL: np.ndarray) -> np.ndarray:
    """The Huber objective at every start of the grid at once (rows: starts)."""
    e, a, b, alpha, beta = (grid[:, [i]] for i in range(5))
    pred = np.logaddexp(np.logaddexp(a - alpha * logN, b - beta * logD), e)
    r = np.abs(pred - logL)
    return np.where(r <= HUBER_DELTA, 0.5 * r**2, HUBER_DELTA * (r - 0.5 * HUBER_DELTA)).sum(axis=1)


def lsq_fit(train: pd.DataFrame, n_best: int = 30) -> np.ndarray:
    """Chinchilla-form least squares as Hoffmann et al./Epoch: (e, a, b, alpha, beta), L = exp(LSE)."""
    from scipy.optimize import minimize

    logN, logD, logL = (np.log(train[c].to_numpy(dtype=float)) for c in ("params", "tokens", "loss"))
    grid = (
        np.array(
            np.meshgrid(
                np.arange(-1, 1.01, 0.5),
                np.arange(0, 26, 5),
                np.arange(0, 26, 5),
                np.arange(0, 2.01, 0.5),
                np.arange(0, 2.01, 0.5),
                indexing="ij",
            )
        )
        .reshape(5, -1)
        .T
    )
    start_loss = _lsq_grid_loss(grid, logN, logD, logL)
    best, best_loss = None, np.inf
    for p0 in grid[np.argsort(start_loss)[:n_best]]:
        res = minimize(_lsq_objective, p0, args=(logN, logD, logL), jac=True, method="L-BFGS-B")
        if res.fun < best_loss:
            best, best_loss = res.x, res.fun
    return best


def lsq_predict(p: np.ndarray, query: pd.DataFrame) -> np.ndarray:
    e, a, b, alpha, beta = p
    logN, logD = np.log(query["params"].to_numpy(float)), np.log(query["tokens"].to_numpy(float))
    return np.exp(np.logaddexp(np.logaddexp(a - alpha * logN, b - beta * logD), e))


LSQ_BOOTSTRAPS = 200
_LSQ_BOOT: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def lsq_bootstrap(name: str, r: dict, seed: int = 31) -> tuple[np.ndarray, np.ndarray]:
    """Least squares with bootstrapped intervals, the way peers report uncertainty: log-loss draws
    (bootstraps x runs) of the fitted curve (training runs resampled with replacement, each refit
    warm-started from the full fit) and of a predictive (plus one resampled training residual each).
    """
    if name in _LSQ_BOOT:
        return _LSQ_BOOT[name]
    from scipy.optimize import minimize

    train = r["train"].astype(bool)
    frame = pd.DataFrame({k: r[k] for k in ("params", "tokens", "loss")})
    best = lsq_fit(frame[train])
    logN, logD, logL = (np.log(frame[c].to_numpy(float)[train]) for c in ("params", "tokens", "loss"))
    resid = logL - np.log(lsq_predict(best, frame[train]))
    rng = np.random.default_rng([seed, len(frame)])
    curves = []
    for _ in range(LSQ_BOOTSTRAPS):
        idx = rng.integers(0, train.sum(), train.sum())
        res = minimize(
            _lsq_objective, best, args=(logN[idx], logD[idx], logL[idx]), jac=True, method="L-BFGS-B"
        )
        curves.append(np.log(lsq_predict(res.x, frame)))
    curve = np.array(curves)
    predictive = curve + resid[rng.integers(0, resid.size, curve.shape)]
    _LSQ_BOOT[name] = (curve, predictive)
    return curve, predictive


def winkler90(lower: np.ndarray, upper: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Winkler (interval) score of a central 90% interval relative to the loss: width + 2 / 0.1 x the miss."""
    miss = np.maximum(lower - loss, 0) + np.maximum(loss - upper, 0)
    return (upper - lower + miss / 0.05) / loss


def run_protocol(p: Protocol, args) -> dict | None:
    """Fit, baseline and backtest of one protocol: the arrays the scores are computed from."""
    frame = p.load()
    if frame is None:
        print(f"note: {p.name} skipped: anchor files not found under {ANCHORS}")
        return None
    frame = frame.reset_index(drop=True)
    values = split_values(frame, p.by)
    train = values < p.threshold
    t0 = time.time()
    log_draws, diag = bayes_log_draws(frame[train], frame, p.law, args, args.seed)
    out = {
        "params": frame["params"].to_numpy(float),
        "tokens": frame["tokens"].to_numpy(float),
        "loss": frame["loss"].to_numpy(float),
        "train": train,
        "log_draws": log_draws,
        "lsq": lsq_predict(lsq_fit(frame[train]), frame),
    }
    inner = backtest_threshold(values[train])
    if inner is not None and args.backtest:
        sub = train & (values < inner)
        hold = train & ~sub
        bt_draws, bt_diag = bayes_log_draws(frame[sub], frame[hold], p.law, args, args.seed + 1)
        out.update(bt_sub=sub, bt_hold=hold, bt_log_draws=bt_draws)
        diag["backtest_ok"] = bt_diag["ok"]
    out["diag"] = json.dumps({**diag, "seconds": round(time.time() - t0, 1)})
    return out


# --------------------------------------------------------------------------- cache


def save_cache(results: dict[str, dict], path: Path) -> None:
    flat = {f"{name}/{key}": np.asarray(value) for name, r in results.items() for key, value in r.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **flat)


def load_cache(path: Path) -> dict[str, dict]:
    results: dict[str, dict] = {}
    if not path.exists():
        return results
    with np.load(path, allow_pickle=False) as data:
        for key in data.files:
            name, field = key.split("/", 1)
            results.setdefault(name, {})[field] = data[key]
    for r in results.values():
        for key in ("diag", "variant_diag"):
            if key in r:
                r[key] = str(r[key])
    return results


# --------------------------------------------------------------------------- methods


def draws_for(r: dict, method: str, kind: str = em.DISTANCE) -> np.ndarray:
    """Predictive draws of log loss a method starts from: the fitted law's, or for the
    "average" methods a mixture with the variant law: "average" half and half everywhere,
    "average-beyond" half and half beyond the runs' range only (d > 0), "average-ramp" with the
    variant's share rising from 0 at d = 0 to one half at d = 1 e-fold."""
    if method.startswith("blend"):
        return blend_for(r, kind)
    if method == "anchored":
        return blend_for(r, kind, anchored=True)
    if not method.startswith("average"):
        return r["log_draws"]
    if "variant_log_draws" not in r:
        raise SystemExit(f"method {method} needs the variant fits: run with --variant kaplan-e first")
    train = r["train"].astype(bool)
    d = em.distance(r["params"][train], r["tokens"][train], r["params"], r["tokens"], kind)
    ramp = {"average-beyond": 0.0, "average-ramp": 1.0}.get(method.split("+")[0], None)
    if ramp is None:  # "average": d-independent
        d, ramp = np.ones_like(d), 1.0
    return em.mix_laws(r["log_draws"], r["variant_log_draws"], d, np.random.default_rng([11, 16]), ramp)


BLEND: dict[str, float] = {}  # the variant's share far out, the ramp, tau: from --blend


EDGE_BANDWIDTH = 0.5  # e-folds in (log N, log D): the kernel that carries the laws' gap to an edge point


def edge_gap(r: dict) -> np.ndarray:
    """The two laws' gap (median log loss, variant minus fitted) at each run's edge point.

    The package evaluates both laws' mean loss at ``edge_point`` exactly; the cache keeps only
    predictive draws at the ladder's runs, so here the gap at the edge point is the Gaussian-kernel
    weighted mean (bandwidth :data:`EDGE_BANDWIDTH` e-folds in log N, log D) of the gaps at the
    training runs, whose medians the noise barely moves (an approximation, said so in the results).
    """
    from bayescale.posterior.extrapolation import RunSpan, edge_point

    train = r["train"].astype(bool)
    n, d = r["params"], r["tokens"]
    gap = np.median(r["variant_log_draws"][:, train], axis=0) - np.median(r["log_draws"][:, train], axis=0)
    span = RunSpan.of(n[train], d[train], 6.0 * n[train] * d[train])
    edge_n, edge_d = edge_point(span, n, d)
    dist2 = (np.log(edge_n)[:, None] - np.log(n[train])[None]) ** 2 + (
        np.log(edge_d)[:, None] - np.log(d[train])[None]
    ) ** 2
    weights = np.exp(-0.5 * dist2 / EDGE_BANDWIDTH**2) + 1e-300
    return (weights * gap[None]).sum(axis=1) / weights.sum(axis=1)


def blend_for(r: dict, kind: str, anchored: bool = False) -> np.ndarray:
    """The package's answer beyond the runs (``bayescale.posterior.extrapolation.blend_draws``):
    the fitted law's draws moved and widened towards the variant's by a weight rising smoothly
    with the distance d, plus a discrepancy of sd ``tau * d``; ``anchored`` (issue 31: the
    package's ``predict`` since it follows ``optimal``'s rule) towards the variant's change from
    each run's edge point (:func:`edge_gap`), not its level."""
    from bayescale.posterior.extrapolation import blend_draws, law_weight

    if "variant_log_draws" not in r:
        raise SystemExit("method blend needs the variant fits: run with --variant kaplan-e first")
    train = r["train"].astype(bool)
    d = em.distance(r["params"][train], r["tokens"][train], r["params"], r["tokens"], kind)
    main = np.asarray(r["log_draws"], dtype=float)
    z = np.random.default_rng([11, 17]).standard_normal(main.shape[0])
    w = law_weight(d, BLEND["share"], BLEND["ramp"])
    offset = edge_gap(r) if anchored else 0.0
    return blend_draws(main, r["variant_log_draws"], w, z, BLEND["tau"] * d, offset)


def residuals(log_draws: np.ndarray, loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    med, scale = em.summary(log_draws)
    return np.log(loss) - med, scale


def held_out_points(
    results: dict[str, dict], names: list[str], kind: str, method: str = "none"
) -> dict[str, np.ndarray]:
    """Residual, scale, distance and ladder id of every held-out run of the named protocols."""
    parts = {"r": [], "s": [], "d": [], "ladder": []}
    for name in names:
        r = results[name]
        test = ~r["train"]
        res, scale = residuals(draws_for(r, method, kind)[:, test], r["loss"][test])
        d = em.distance(
            r["params"][r["train"]], r["tokens"][r["train"]], r["params"][test], r["tokens"][test], kind
        )
        parts["r"].append(res), parts["s"].append(scale), parts["d"].append(d)
        parts["ladder"].append(np.full(test.sum(), PROTOCOL_BY_NAME[name].ladder))
    return {k: np.concatenate(v) for k, v in parts.items()}


def backtest_points(r: dict, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    if "bt_log_draws" not in r:
        return None
    sub, hold = r["bt_sub"].astype(bool), r["bt_hold"].astype(bool)
    res, scale = residuals(r["bt_log_draws"], r["loss"][hold])
    d = em.distance(r["params"][sub], r["tokens"][sub], r["params"][hold], r["tokens"][hold], kind)
    return res, scale, d


def tau_for(name: str, results: dict[str, dict], method: str, args) -> float:
    """tau used to score protocol ``name``: never learnt from its own held-out runs or family."""
    if method in ("none",):
        return 0.0
    others = [n for n in results if PROTOCOL_BY_NAME[n].family != PROTOCOL_BY_NAME[name].family]
    own = backtest_points(results[name], args.distance)
    if method == "backtest":
        return em.fit_tau(*own, objective=args.objective) if own is not None else 0.0
    if not others:
        print(f"note: no other ladder family to learn tau for {name}; scored with tau = 0")
        return 0.0
    pts = held_out_points(results, others, args.distance, method)
    if method in ("average", "average-beyond", "average-ramp", "blend", "anchored"):
        return 0.0
    if method in ("discrepancy", "average+discrepancy", "average-ramp+discrepancy"):
        return em.pooled_tau(pts["r"], pts["s"], pts["d"], pts["ladder"], objective=args.objective)
    if method == "combined":
        return em.pooled_tau(pts["r"], pts["s"], pts["d"], pts["ladder"], own=own, objective=args.objective)
    if method in ("mixture", "mixture+backtest"):  # one tau per other ladder; draws pick one each
        taus = list(em.ladder_taus(pts["r"], pts["s"], pts["d"], pts["ladder"]).values())
        if method == "mixture+backtest" and own is not None:  # own backtest tau: half the weight
            return np.array(taus + [em.fit_tau(*own, objective="likelihood")] * len(taus))
        return np.array(taus)
    if method == "hierarchical":  # other ladders' taus, reweighted by this ladder's own backtest
        taus = np.array(list(em.ladder_taus(pts["r"], pts["s"], pts["d"], pts["ladder"]).values()))
        return np.stack([taus, em.posterior_tau_weights(taus, own)])
    raise ValueError(method)


# --------------------------------------------------------------------------- scores


def score(name: str, r: dict, tau: float, args, method: str = "none") -> tuple[dict, pd.DataFrame]:
    """Scores of one protocol with the discrepancy tau * d added to its predictive draws."""
    train = r["train"].astype(bool)
    d = em.distance(r["params"][train], r["tokens"][train], r["params"], r["tokens"], args.distance)
    rng = np.random.default_rng([args.seed, 7])
    draws = draws_for(r, method, args.distance)
    if np.ndim(tau) == 2:  # (taus, weights)
        pred = np.exp(em.inflate_mixture(draws, d, tau[0], rng, tau[1]))
        tau = float(np.sqrt(np.sum(tau[1] * tau[0] ** 2)))  # root mean square of the mixture
    elif np.ndim(tau):
        pred = np.exp(em.inflate_mixture(draws, d, tau, rng))
        tau = float(np.sqrt(np.mean(tau**2)))
    else:
        pred = np.exp(em.inflate(draws, d, tau, rng))
    q = np.quantile(pred, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
    loss = r["loss"]
    runs = pd.DataFrame(
        {
            "protocol": name,
            "params": r["params"],
            "tokens": r["tokens"],
            "loss": loss,
            "split": np.where(train, "train", "test"),
            "distance": d,
            "lsq": r["lsq"],
            "q05": q[0],
            "q25": q[1],
            "median": q[2],
            "q75": q[3],
            "q95": q[4],
        }
    )
    runs["in90"] = (runs.q05 <= loss) & (loss <= runs.q95)
    # Winkler (interval) score of the central 90% interval, relative to the loss: width plus
    # 2 / 0.1 times the miss, so a narrow interval that misses pays for it.
    runs["score90"] = winkler90(runs.q05.to_numpy(), runs.q95.to_numpy(), loss)
    # the same for least squares' bootstrap: of the curve (as peers report it) and predictive
    for label, boot in zip(("lsqb", "lsqbp"), lsq_bootstrap(name, r), strict=True):
        lo, hi = np.exp(np.quantile(boot, [0.05, 0.95], axis=0))
        runs[f"{label}_in90"] = (lo <= loss) & (loss <= hi)
        runs[f"{label}_score90"] = winkler90(lo, hi, loss)
    runs["in50"] = (runs.q25 <= loss) & (loss <= runs.q75)
    test = runs[runs.split == "test"]
    are = np.abs(test["median"] - test["loss"]) / test["loss"]
    row = {
        "protocol": name,
        "law": PROTOCOL_BY_NAME[name].law,
        "n_train": int(train.sum()),
        "n_test": len(test),
        "tau": tau,
        "ARE%": 100 * np.median(are),
        "cov90": test.in90.mean(),
        "cov50": test.in50.mean(),
        "width90%": 100 * np.mean((test.q95 - test.q05) / test["median"]),
        "score90%": 100 * test.score90.mean(),
        "LSQ_ARE%": 100 * np.median(np.abs(test["lsq"] - test["loss"]) / test["loss"]),
        **lsq_bootstrap_scores(test),
        "in_range_cov90": runs[runs.split == "train"].in90.mean(),
    }
    return row, runs


def lsq_bootstrap_scores(test: pd.DataFrame) -> dict[str, float]:
    """Coverage and interval score of least squares' bootstrap (curve, and predictive) on held-out runs."""
    return {
        "LSQb_cov90": test.lsqb_in90.mean(),
        "LSQb_score90%": 100 * test.lsqb_score90.mean(),
        "LSQbp_cov90": test.lsqbp_in90.mean(),
        "LSQbp_score90%": 100 * test.lsqbp_score90.mean(),
    }


def pooled_rows(table: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Run-weighted pooled coverage with a ladder-clustered 95% interval, and protocol means."""
    from bayescale.checks.calibration import cluster_interval

    test = runs[runs.split == "test"].copy()
    test["ladder"] = test["protocol"].map(lambda n: PROTOCOL_BY_NAME[n].ladder)
    rows = []
    real = test[~test["protocol"].str.startswith("sim-")]
    for label, frame in (("pooled (runs)", test), ("pooled, real data", real)):
        if frame.empty:
            continue
        by_ladder = frame.groupby("ladder").agg(
            n=("loss", "size"), in90=("in90", "sum"), in50=("in50", "sum")
        )
        lo90, hi90 = cluster_interval(by_ladder.in90, by_ladder.n)
        lo50, hi50 = cluster_interval(by_ladder.in50, by_ladder.n)
        are = np.abs(frame["median"] - frame["loss"]) / frame["loss"]
        rows.append(
            {
                "protocol": label,
                "n_test": len(frame),
                "cov90": frame.in90.mean(),
                "cov50": frame.in50.mean(),
                "ARE%": 100 * np.median(are),
                "LSQ_ARE%": 100 * np.median(np.abs(frame.lsq - frame.loss) / frame.loss),
                "width90%": 100 * np.mean((frame.q95 - frame.q05) / frame["median"]),
                "score90%": 100 * frame.score90.mean(),
                **lsq_bootstrap_scores(frame),
                "cov90_ci": f"[{lo90:.2f},{hi90:.2f}]",
                "cov50_ci": f"[{lo50:.2f},{hi50:.2f}]",
            }
        )
    means = table.drop(columns=["protocol", "law"]).mean(numeric_only=True)
    rows.append(
        {
            "protocol": "mean of protocols",
            **{k: means[k] for k in ("cov90", "cov50", "ARE%", "LSQ_ARE%", "width90%", "score90%")},
            **{k: means[k] for k in ("LSQb_cov90", "LSQb_score90%", "LSQbp_cov90", "LSQbp_score90%")},
            "n_test": int(table.n_test.sum()),
        }
    )
    return pd.DataFrame(rows)


def format_table(table: pd.DataFrame, pooled: pd.DataFrame) -> str:
    both = pd.concat([table, pooled], ignore_index=True)
    cols = [
        "protocol",
        "law",
        "n_train",
        "n_test",
        "ARE%",
        "LSQ_ARE%",
        "cov90",
        "cov50",
        "width90%",
        "score90%",
        "LSQb_cov90",
        "LSQb_score90%",
        "LSQbp_cov90",
        "LSQbp_score90%",
        "tau",
        "in_range_cov90",
        "cov90_ci",
        "cov50_ci",
    ]
    both = both[[c for c in cols if c in both]]
    return both.to_string(index=False, na_rep="", float_format=lambda x: f"{x:.3g}")


def targets(table: pd.DataFrame, pooled: pd.DataFrame) -> str:
    p = pooled.iloc[0]
    checks = [
        ("pooled 90% coverage in [0.85, 0.95]", 0.85 <= p.cov90 <= 0.95),
        ("pooled 50% coverage in [0.35, 0.65]", 0.35 <= p.cov50 <= 0.65),
        ("no protocol below 0.75 at 90% (issue 31)", bool((table.cov90 >= 0.75).all())),
        ("mean ARE <= LSQ mean ARE (mean of protocols)", table["ARE%"].mean() <= table["LSQ_ARE%"].mean()),
        ("pooled interval score < LSQ bootstrap's (predictive)", p["score90%"] < p["LSQbp_score90%"]),
    ]
    return "\n".join(f"  [{'met' if ok else 'MISSED'}] {text}" for text, ok in checks)


PROTOCOL_BY_NAME = {p.name: p for p in PROTOCOLS}
METHODS = [
    "none",
    "discrepancy",
    "backtest",
    "combined",
    "mixture",
    "mixture+backtest",
    "hierarchical",
    "average",
    "average+discrepancy",
    "average-beyond",
    "average-ramp",
    "average-ramp+discrepancy",
    "blend",
    "anchored",
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--protocols", default="all", help="comma-separated names, or all")
    parser.add_argument("--method", default="none", help=f"comma-separated, of {METHODS}, or all")
    parser.add_argument("--distance", default=em.DISTANCE, help="compute, params, compute+ratio, max")
    parser.add_argument(
        "--objective", default="likelihood", help="coverage or likelihood (how tau is fitted)"
    )
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--backtest",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also fit the within-ladder backtests (needed by backtest/combined)",
    )
    parser.add_argument(
        "--variant",
        default=None,
        help="also fit this law to every protocol (for the average methods), e.g. kaplan-e",
    )
    parser.add_argument(
        "--blend",
        default=None,
        help="method blend: the variant's share far out, the ramp in e-folds, tau per e-fold "
        "(default: the package's VARIANT_SHARE, VARIANT_RAMP, DISCREPANCY)",
    )
    parser.add_argument("--from-cache", action="store_true", help="score the cached draws, fit nothing")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from bayescale.posterior import extrapolation as ex

    chosen = (ex.VARIANT_SHARE, ex.VARIANT_RAMP, ex.DISCREPANCY)
    values = chosen if args.blend is None else (float(v) for v in args.blend.split(","))
    BLEND.update(zip(("share", "ramp", "tau"), values, strict=True))

    names = [p.name for p in PROTOCOLS] if args.protocols == "all" else args.protocols.split(",")
    results = load_cache(args.cache)
    start = time.time()
    for name in names:
        if args.from_cache or name in results:
            continue
        r = run_protocol(PROTOCOL_BY_NAME[name], args)
        if r is not None:
            results[name] = r
            save_cache(results, args.cache)
            print(f"fitted {name}: {r['diag']}", flush=True)
    for name in names:
        r = results.get(name)
        if args.variant and not args.from_cache and r is not None and "variant_log_draws" not in r:
            p = PROTOCOL_BY_NAME[name]
            frame = p.load().reset_index(drop=True)
            train = split_values(frame, p.by) < p.threshold
            t0 = time.time()
            r["variant_log_draws"], diag = bayes_log_draws(frame[train], frame, args.variant, args, args.seed)
            r["variant_diag"] = json.dumps(
                {**diag, "law": args.variant, "seconds": round(time.time() - t0, 1)}
            )
            save_cache(results, args.cache)
            print(f"fitted {name} with {args.variant}: {r['variant_diag']}", flush=True)
    fit_seconds = time.time() - start
    names = [n for n in names if n in results]
    results = {n: results[n] for n in names}

    methods = METHODS if args.method == "all" else args.method.split(",")
    text, all_runs = [], []
    for method in methods:
        rows, runs = [], []
        for name in names:
            row, per_run = score(name, results[name], tau_for(name, results, method, args), args, method)
            rows.append(row), runs.append(per_run.assign(method=method))
        table, runs_frame = pd.DataFrame(rows), pd.concat(runs, ignore_index=True)
        pooled = pooled_rows(table, runs_frame)
        text.append(
            f"method={method} distance={args.distance} objective={args.objective}\n"
            f"{format_table(table, pooled)}\n{targets(table, pooled)}"
        )
        if method in ("discrepancy", "combined", "average+discrepancy", "average-ramp+discrepancy"):
            pts = held_out_points(results, names, args.distance, method)
            tau_all = em.pooled_tau(pts["r"], pts["s"], pts["d"], pts["ladder"], objective=args.objective)
            text[-1] += (
                f"\n  tau on all ladders (for the package constant; never used to score): {tau_all:.4g}"
            )
        all_runs.append(runs_frame)
    diag = "\n".join(
        f"  {n}: {results[n]['diag']}"
        + (f"\n    variant: {results[n]['variant_diag']}" if "variant_diag" in results[n] else "")
        for n in names
    )
    report = (
        "\n\n".join(text)
        + f"\n\nfits (diagnostics, seconds):\n{diag}\nfit time this run: {fit_seconds:.0f} s\n"
    )
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
        pd.concat(all_runs).to_json(args.out.with_suffix(".json"), orient="records", double_precision=5)


if __name__ == "__main__":
    main()
