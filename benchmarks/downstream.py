"""Downstream benchmark: Gadre et al. (2024)'s two-step forecast, published vs least squares vs bayescale.

For each training set (C4, RedPajama, RefinedWeb) of ``../shared/anchors/gadre-downstream``, the
published design: the C4-eval loss law L(N, M) fitted on 5 runs (the 4 small shapes at M = 20
and the 10.6M model at M = 320), the average top-1 error law Err(L) on those 5 plus the 1.4B at
M = 20. Targets: the over-trained 1.4B (C4 M = 80, RedPajama M = 640, RefinedWeb M = 320) and
the 6.9B at M = 20; their loss and their 17- and 46-task average error.

Printed side by side, per target: the actual value; the published prediction (the anchor's
``published.json``: the repository's notebook for RedPajama 17-task, the same procedure re-run
for the others); a least-squares reimplementation here (``curve_fit`` from the published grid
of starts); and bayescale's chained posterior predictive (median and 90% interval) from
``bs.fit_downstream`` with the default sampler (4 chains x 1000 draws).

With 5 runs and 4 loss-law parameters the runs cannot measure their own scatter, so both
steps' noise scale ``sigma`` (on the log) gets an informed prior, LogNormal(log 0.01, 0.5)
(90% in 0.4%-2.3%): the run-to-run scatter of published ladders' losses, and about the seed
noise of a 17-task average error (OLMo's reruns: ~0.5 points a task).

Run: ``python benchmarks/downstream.py`` (anchors from ``../shared/anchors`` beside the repository,
or ``BAYESCALE_ANCHORS``); writes ``benchmarks/results/downstream.txt``.
"""

from __future__ import annotations

import itertools
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

import bayescale as bs  # noqa: E402

ANCHORS = Path(os.environ.get("BAYESCALE_ANCHORS", REPO.parent / "shared" / "anchors"))
GADRE = ANCHORS / "gadre-downstream"
RESULTS = REPO / "benchmarks" / "results" / "downstream.txt"
SMALL = ("d=96_l=8_h=4", "d=512_l=8_h=4", "d=576_l=24_h=8", "d=1024_l=24_h=8")
METRICS = ("err_avg_17", "err_avg_46")
DATASETS = ("c4_original", "rpj", "rw_original")
SIGMA = bs.Prior("LogNormal", mu=float(np.log(0.01)), sigma=0.5)
PROB = 0.9


def rows_of(d: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The published design's masks: the loss law's 5 runs, the error law's 6, the 2 targets."""
    loss = (d.model_shape.isin(SMALL) & (d.token_multiplier == 20)) | (
        (d.model_shape == SMALL[0]) & (d.token_multiplier == 320)
    )
    link = loss | ((d.model_shape == "open_lm_1b") & (d.token_multiplier == 20))
    targets = ((d.model_shape == "open_lm_1b") & (d.token_multiplier > 20)) | (d.model_shape == "open_lm_7b")
    return loss.to_numpy(), link.to_numpy(), targets.to_numpy()


def least_squares(d: pd.DataFrame, loss_rows: np.ndarray, link_rows: np.ndarray, metric: str):
    """Gadre's procedure: curve_fit of L(N, M) from the published grid of starts, then Err(L)."""
    from scipy.optimize import curve_fit

    def law(nm, a, beta, b, e):
        n, m = nm
        return a * n**b + beta * 6 ** (b / 2) * (m * n) ** b + e

    def err(x, k, gamma, eps):
        return eps - k * np.exp(-gamma * x)

    fit = d[loss_rows]
    nm = (fit.N_params.to_numpy(float), fit.token_multiplier.to_numpy(float))
    y = fit.loss_c4_val.to_numpy(float)
    best, best_score = None, np.inf
    grid = itertools.product((1e2, 3e2, 1e3, 3e3), (1e2, 3e2, 1e3, 3e3), (-0.1, -0.3), (0.0, 1.0, 2.0, 10.0))
    for start in grid:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p, _ = curve_fit(law, nm, y, p0=start, maxfev=10000)
        except RuntimeError:
            continue
        score = np.sqrt(np.sum((law(nm, *p) - y) ** 2) / (len(y) - 2))
        if score < best_score:
            best, best_score = p, score
    on = d[link_rows]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q, _ = curve_fit(err, on.loss_c4_val.to_numpy(float), on[metric].to_numpy(float), maxfev=10000)
    return lambda n, m: law((n, m), *best), lambda x: err(x, *q)


OLMO = ANCHORS / "olmo-ladder"
#: The OLMo ladder's 8 tasks: (bpb column stem, accuracy column stem, chance level of the paper's fit).
OLMO_TASKS = {
    "mmlu": ("bpb_rc_mmlu_avg_test", "acc_rc_mmlu_avg_test__len_norm", 0.25),
    "hellaswag": ("bpb_rc_hellaswag_val", "acc_rc_hellaswag_val__len_norm", 0.25),
    "arc_challenge": ("bpb_rc_arc_challenge_test", "acc_rc_arc_challenge_test__len_norm", 0.25),
    "arc_easy": ("bpb_rc_arc_easy_test", "acc_rc_arc_easy_test__len_norm", 0.25),
    "piqa": ("bpb_rc_piqa_val", "acc_rc_piqa_val__len_norm", 0.5),
    "csqa": ("bpb_rc_csqa_val", "acc_rc_csqa_val__len_norm", 0.2),
    "socialiqa": ("bpb_rc_socialiqa_val", "acc_rc_socialiqa_val__len_norm", 1 / 3),
    "openbookqa": ("bpb_rc_openbookqa_test", "acc_rc_openbookqa_test__len_norm", 0.25),
}


def olmo_3b() -> pd.DataFrame:
    """OLMo ladder, held-out 3B rung: fit on the paper's 16 runs (190M-1B), predict the 6 3B runs.

    Step 1: each task's bits per byte (mean of the last 5 checkpoints) in (N non-embedding, D),
    Chinchilla law, loss unit bits per byte. Step 2: the sigmoid, floor held at the paper's
    chance level, on the 16 runs' checkpoints after the first 10% with a trailing 5-point moving
    average (as the paper), each checkpoint an independent row (no AR(1) along a run yet).
    """
    from bayescale.methods.downstream import Downstream, fit_link

    final = pd.read_csv(OLMO / "ladder_final.csv")
    points = pd.read_csv(OLMO / "ladder_checkpoints.csv")
    used = final.used_in_paper_final_config.astype(bool)
    held = final[final["size"] == "3B"]
    curves = points[points.run.isin(final.run[used])].sort_values(["run", "step"])
    keep = curves.groupby("run").cumcount() >= np.ceil(0.1 * curves.n_checkpoints_in_run)
    records = []
    for i, (task, (bpb, acc, chance)) in enumerate(OLMO_TASKS.items()):
        runs = bs.Runs.from_frame(
            pd.DataFrame({"params": final.N_nonembed[used], "tokens": final.tokens[used],
                          "loss": final[f"{bpb}__last5mean"][used]}),
            f"olmo {task}",
            loss_unit="bits_per_byte",
        )  # fmt: skip
        loss_fit = bs.fit(runs, law="chinchilla", random_seed=10 + i, progressbar=False, warn=False)
        smooth = curves.groupby("run")[[bpb, acc]].transform(lambda c: c.rolling(5, min_periods=1).mean())
        table = pd.DataFrame(
            {"params": curves.N_nonembed, "tokens": curves.tokens, bpb: smooth[bpb], acc: smooth[acc]}
        )[keep.to_numpy()]
        link_fit = fit_link(
            table.reset_index(drop=True), acc, bpb, "link-sigmoid", fix={"floor": chance},
            random_seed=20 + i, progressbar=False, warn=False,
        )  # fmt: skip
        model = Downstream(loss_fit, {task: link_fit})
        pred = model.predict(held.N_nonembed.to_numpy(), held.tokens.to_numpy(), PROB, random_seed=30 + i)
        predictable = bool(model.diagnostics().loc[task, "predictable"])
        for j, (_, run) in enumerate(held.iterrows()):
            actual, row = run[f"{acc}__last5mean"], pred.iloc[j]
            records.append(
                {
                    "task": task,
                    "run": run.run,
                    "bpb": run[f"{bpb}__last5mean"],
                    "bpb_median": row["loss_median"],
                    "bpb_covered": bool(row["loss_lower"] <= run[f"{bpb}__last5mean"] <= row["loss_upper"]),
                    "acc": actual,
                    "acc_median": row[f"{task}_median"],
                    "lower90": row[f"{task}_lower"],
                    "upper90": row[f"{task}_upper"],
                    "abs_err_pts": 100 * abs(row[f"{task}_median"] - actual),
                    "covered": bool(row[f"{task}_lower"] <= actual <= row[f"{task}_upper"]),
                    "predictable": predictable,
                    "fit_ok": bool(loss_fit.diagnostics["ok"] and link_fit.diagnostics["ok"]),
                }
            )
        print(f"olmo {task}: done", flush=True)
    return pd.DataFrame(records)


def main() -> None:
    if not GADRE.exists():
        print(f"skipped: {GADRE} not found (set BAYESCALE_ANCHORS)")
        return
    started, load_before = time.time(), os.getloadavg()
    frame = pd.read_csv(GADRE / "overtrain_104_models_downstream.csv")
    published = json.loads((GADRE / "published.json").read_text())["refit_here"]
    records = []
    for dataset in DATASETS:
        d = frame[frame.dataset == dataset].reset_index(drop=True)
        loss_rows, link_rows, target_rows = rows_of(d)
        runs = pd.DataFrame(
            {"params": d.N_params, "tokens": d.D_tokens, "loss_c4": d.loss_c4_val}
            | {m: d[m] for m in METRICS}
        )
        model = bs.fit_downstream(
            runs,
            list(METRICS),
            "loss_c4",
            loss_rows=loss_rows,
            link_rows=link_rows,
            loss_priors={"sigma": SIGMA},
            link_priors={"sigma": SIGMA},
            loss_likelihood="normal",
            random_seed=2024,
        )
        targets = d[target_rows]
        table = model.predict(targets.N_params.to_numpy(), targets.D_tokens.to_numpy(), PROB, random_seed=7)
        diagnostics = model.diagnostics()
        for metric in METRICS:
            ls_loss, ls_err = least_squares(d, loss_rows, link_rows, metric)
            by_name = {t["name"]: t for t in published[f"{dataset}/{metric}"]["targets"]}
            for i, (_, target) in enumerate(targets.iterrows()):
                pub = by_name[target["name"]]
                ls_l = float(ls_loss(target.N_params, target.token_multiplier))
                for quantity, actual, pub_pred, ls_pred, col in (
                    ("loss", target.loss_c4_val, pub["loss_pred"], ls_l, "loss"),
                    (metric, target[metric], pub["err_pred"], float(ls_err(ls_l)), metric),
                ):
                    if quantity == "loss" and metric != METRICS[0]:
                        continue  # the loss is the same for both metrics
                    row = table.iloc[i]
                    lo, med, hi = row[f"{col}_lower"], row[f"{col}_median"], row[f"{col}_upper"]
                    records.append(
                        {
                            "set": dataset,
                            "target": f"{target.model_shape} M={target.token_multiplier:g}",
                            "quantity": quantity,
                            "actual": actual,
                            "published": pub_pred,
                            "pub_rel%": 100 * abs(pub_pred - actual) / actual,
                            "lsq": ls_pred,
                            "lsq_rel%": 100 * abs(ls_pred - actual) / actual,
                            "bayes_median": med,
                            "bayes_rel%": 100 * abs(med - actual) / actual,
                            "lower90": lo,
                            "upper90": hi,
                            "covered": bool(lo <= actual <= hi),
                            "width%": 100 * (hi - lo) / actual,
                            "predictable": bool(diagnostics.loc[metric, "predictable"])
                            if quantity != "loss"
                            else "",
                        }
                    )
        print(f"{dataset}: done at {time.time() - started:.0f} s", flush=True)
    out = pd.DataFrame(records)
    lines = [
        "Downstream benchmark (benchmarks/downstream.py): Gadre et al. 2024, published 5 + 1 run design,",
        "C4-eval loss -> 17/46-task average top-1 error; bayescale = chained posterior predictive, 90% ETI.",
        f"bayescale {bs.__version__}; load before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}; "
        f"{time.time() - started:.0f} s in all",
        "",
        out.to_string(index=False, float_format=lambda v: f"{v:.4f}"),
        "",
    ]
    for quantity, part in (("loss", out[out.quantity == "loss"]), ("error", out[out.quantity != "loss"])):
        lines.append(
            f"{quantity}: {len(part)} targets, coverage {part.covered.sum()}/{len(part)}; mean relative "
            f"error bayescale {part['bayes_rel%'].mean():.2f}%, "
            f"least squares {part['lsq_rel%'].mean():.2f}%, "
            f"published {part['pub_rel%'].mean():.2f}%; mean 90% width {part['width%'].mean():.1f}% of "
            "the value"
        )
    if OLMO.exists():
        olmo = olmo_3b()
        lines += [
            "",
            "OLMo ladder, held-out 3B rung: fit on the paper's 16 runs (190M-1B), predict 8 tasks x 6 runs",
            "(task bpb = step 1, bits per byte; accuracy = sigmoid, floor at chance); targets: last-5 mean.",
            "",
            olmo.to_string(index=False, float_format=lambda v: f"{v:.4f}"),
            "",
            f"accuracy: MAE {olmo.abs_err_pts.mean():.2f} points (max {olmo.abs_err_pts.max():.2f}); "
            f"90% coverage {olmo.covered.mean():.0%} ({olmo.covered.sum()}/{len(olmo)}); bpb coverage "
            f"{olmo.bpb_covered.mean():.0%}; per task coverage "
            + ", ".join(f"{t} {g.covered.sum()}/{len(g)}" for t, g in olmo.groupby("task", sort=False)),
            f"fits that failed their diagnostics: {int((~olmo.fit_ok).sum() / 6)} of {len(OLMO_TASKS)} "
            f"tasks; load after {os.getloadavg()[0]:.2f}; {time.time() - started:.0f} s in all",
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
