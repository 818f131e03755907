"""Which law to believe, with its evidence: LOO, the ladder's own backtest, and what the choice moves.

:func:`verdict` fits each law to all the runs (PSIS-LOO, :func:`~bayescale.compare`)
and below a threshold (the held-out larger runs, :func:`~bayescale.extrapolate`),
checks that every fit can be trusted, says which law each yardstick prefers and
how clearly, names the runs that drive a disagreement, and sets the laws' plans
at the user's budget side by side.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bayescale.checks.extrapolation import Extrapolation, default_train_below, extrapolate, split_values
from bayescale.data.runs import Runs
from bayescale.errors import BayescaleError, LawError
from bayescale.methods.front import fit as fit_law
from bayescale.methods.parametric import Fit
from bayescale.questions.compare import LooWarning, compare, input_checks, loo

#: A gap of this many standard errors or more is "clear"; below :data:`TIE_Z` the laws tie.
CLEAR_Z = 4.0
TIE_Z = 2.0

#: How many runs :func:`verdict` names as driving a yardstick's preference.
DRIVING_RUNS = 3


def strength(z: float) -> str:
    """``"clear"`` (z >= :data:`CLEAR_Z`), ``"moderate"`` (>= :data:`TIE_Z`) or ``"tie"``."""
    return "clear" if z >= CLEAR_Z else "moderate" if z >= TIE_Z else "tie"


def paired_gap(first: np.ndarray, second: np.ndarray) -> tuple[float, float]:
    """Sum of pointwise log-density differences ``first - second`` and its standard error (sqrt(n) sd)."""
    diff = np.asarray(first, dtype=float) - np.asarray(second, dtype=float)
    se = float(np.sqrt(len(diff)) * np.std(diff, ddof=1)) if len(diff) > 1 else float("nan")
    return float(diff.sum()), se


@dataclass
class Verdict:
    """Which law to believe and why; build one with :func:`verdict`.

    Attributes
    ----------
    loo
        :func:`~bayescale.compare`'s table (all runs), with its reliability columns.
    backtest
        One row per law (best first): the law alone's held-out scores
        (:meth:`~bayescale.Extrapolation.score_table`), ``elpd_diff``/``se_diff``
        against the best, and the fit's ``reliable``/``checks``.
    plans
        One row per law: ``params``, ``tokens``, ``loss`` (medians and
        intervals) and ``epochs`` at the budget (empty without a budget).
    loo_choice, backtest_choice
        The law each yardstick prefers and how clearly (:func:`strength`).
    believe, confidence
        The law to believe and ``"high"``, ``"moderate"`` or ``"low"``.
    disagreement
        Whether the yardsticks prefer different laws (each at least moderately).
    driving_runs
        Per yardstick, the runs (rows of the runs table, with N, D, U) where
        the preferred law gains most over the runner-up.
    reasons
        The verdict in sentences, each with its evidence.
    """

    loo: pd.DataFrame
    backtest: pd.DataFrame
    plans: pd.DataFrame
    loo_choice: tuple[str, str]
    backtest_choice: tuple[str, str]
    believe: str
    confidence: str
    disagreement: bool
    driving_runs: dict[str, pd.DataFrame]
    reasons: list[str]
    fits: dict[str, Fit] = field(repr=False, default_factory=dict)
    extrapolations: dict[str, Extrapolation] = field(repr=False, default_factory=dict)

    def plan_spread(self) -> dict[str, float]:
        """Largest over smallest median across the laws' plans, per quantity (1 = the law does not matter)."""
        out = {}
        for q in ("params", "tokens", "loss", "epochs"):
            column = f"{q}_median"
            if column in self.plans and self.plans[column].notna().sum() >= 2:
                values = self.plans[column].dropna()
                out[q] = float(values.max() / values.min())
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the choice, its confidence and reasons, and the three tables."""

        def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
            return [
                {"law": str(law), **{k: _plain(v) for k, v in row.items()}} for law, row in frame.iterrows()
            ]

        return {
            "believe": self.believe,
            "confidence": self.confidence,
            "disagreement": self.disagreement,
            "loo_choice": {"law": self.loo_choice[0], "strength": self.loo_choice[1]},
            "backtest_choice": {"law": self.backtest_choice[0], "strength": self.backtest_choice[1]},
            "reasons": list(self.reasons),
            "plan_spread": self.plan_spread(),
            "loo": records(self.loo),
            "backtest": records(self.backtest),
            "plans": records(self.plans),
            "driving_runs": {k: v.to_dict(orient="records") for k, v in self.driving_runs.items()},
        }

    def __str__(self) -> str:
        lines = [f"believe {self.believe} (confidence {self.confidence})"]
        lines += [f"  - {r}" for r in self.reasons]
        if not self.plans.empty:
            lines.append("plans at the budget, law by law (median [90% interval]):")
            for law, row in self.plans.iterrows():
                parts = [
                    f"N {row['params_median']:.3g}",
                    f"D {row['tokens_median']:.3g}",
                    f"loss {row['loss_median']:.4g} [{row['loss_lower']:.4g}, {row['loss_upper']:.4g}]",
                ]
                if "epochs_median" in row and np.isfinite(row["epochs_median"]):
                    parts.append(f"epochs {row['epochs_median']:.3g}")
                lines.append(
                    f"  {law:<18} " + ", ".join(parts) + (f"  ({row['note']})" if row["note"] else "")
                )
        return "\n".join(lines)


def _plain(value: Any) -> Any:
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _describe(runs: Runs, index: np.ndarray, gain: np.ndarray) -> pd.DataFrame:
    columns = [c for c in ("params", "tokens", "unique_tokens", "loss") if c in runs.frame]
    table = runs.frame[columns].iloc[index].reset_index(drop=True)
    table.insert(0, "run", index)
    table["gain"] = gain
    return table


def plan_table(
    fits: Mapping[str, Fit], budget: float, unique_tokens: float | None = None, prob: float = 0.9
) -> pd.DataFrame:
    """Each law's own plan at the budget (not averaged with another law: the laws are what is compared).

    A law that cannot see U plans without it (its epochs are D / U, its loss ignores them).

    Returns
    -------
    pandas.DataFrame
        One row per law (index ``law``): ``{params,tokens,loss}_{median,lower,upper}``, ``epochs_*``
        with U, and ``note``; ``attrs`` hold ``budget``, ``unique_tokens`` and ``prob``
        (:func:`bayescale.plots.plot_plans` draws it).
    """
    rows: dict[str, dict[str, Any]] = {}
    for name, f in fits.items():
        sees_u = "unique_tokens" in f.law.required_columns
        note = ""
        try:
            table = f.optimal(budget, unique_tokens if sees_u else None, prob=prob, average_beyond=False)
        except LawError as error:
            rows[name] = {"note": f"no plan: {error}"}
            continue
        row = table.iloc[0]
        out: dict[str, Any] = {
            k: float(row[k])
            for q in ("params", "tokens", "loss")
            for k in (f"{q}_median", f"{q}_lower", f"{q}_upper")
        }
        if sees_u:
            out |= {k: float(row[k]) for k in ("epochs_median", "epochs_lower", "epochs_upper")}
        elif unique_tokens is not None:
            out |= {f"epochs_{s}": out[f"tokens_{s}"] / unique_tokens for s in ("median", "lower", "upper")}
            note = "this law cannot see repetition: its loss ignores the epochs"
        rows[name] = {**out, "note": note}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "law"
    if "note" in frame:
        frame["note"] = frame["note"].fillna("")
    frame.attrs.update(budget=budget, unique_tokens=unique_tokens, prob=prob)
    return frame


def verdict(
    runs: Any,
    laws: Sequence[str] | Mapping[str, Fit],
    *,
    budget: float | None = None,
    unique_tokens: float | None = None,
    by: str = "compute",
    threshold: float | None = None,
    prob: float = 0.9,
    random_seed: int | None = None,
    **fit_kwargs: Any,
) -> Verdict:
    """Compare laws on LOO and on the ladder's own backtest, say which to believe and what it moves.

    Two yardsticks: PSIS-LOO on all runs (how well each law describes the runs
    it has) and the backtest (each law fitted on the runs with ``by`` below
    ``threshold``, scored by the exact held-out log density of the law alone on
    the larger runs: how well it extrapolates, which a plan needs). A gap is
    "clear" at :data:`CLEAR_Z` standard errors, a "tie" below :data:`TIE_Z`.
    The backtest leads (plans extrapolate); LOO confirms it or, when the
    yardsticks disagree, lowers the confidence, and the runs that drive each
    preference are named. A fit that failed its diagnostics or whose LOO is
    unreliable (:func:`~bayescale.questions.compare.input_checks`) lowers the
    confidence to "low" and is named.

    Parameters
    ----------
    runs
        Anything :meth:`Runs.from_any` reads.
    laws
        Law names to fit, or ``{name: fit}`` already fitted to these runs
        (the backtest still fits each law below the threshold).
    budget, unique_tokens
        Compute (FLOPs) to plan at, and the unique tokens available; without
        a budget there is no plan table.
    by, threshold
        The backtest's split (see :func:`~bayescale.extrapolate`); default by
        compute at :func:`~bayescale.checks.extrapolation.default_train_below`.
    prob
        Probability of the plans' intervals.
    random_seed, **fit_kwargs
        Passed to every fit (:func:`bayescale.fit`).

    Returns
    -------
    Verdict
    """
    runs_obj = Runs.from_any(runs)
    if isinstance(laws, Mapping):
        fits = dict(laws)
    else:
        names = list(dict.fromkeys(laws))
        if len(names) < 2:
            raise BayescaleError(f"a verdict needs at least two laws, got {names}")
        fits = {law: fit_law(runs_obj, law, random_seed=random_seed, **fit_kwargs) for law in names}
    if threshold is None:
        threshold = default_train_below(split_values(runs_obj, by))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LooWarning)  # read from the table's reliability columns below
        loo_table = compare(fits)
    ex = {
        name: extrapolate(
            runs_obj,
            f.law.name,
            threshold=threshold,
            by=by,
            random_seed=random_seed,
            averaged=False,
            **fit_kwargs,
        )
        for name, f in fits.items()
    }
    # --- the backtest table, best held-out density first, gaps to the best with paired standard errors
    rows = []
    for name, e in ex.items():
        checks = input_checks(e.fit)
        rows.append({"law": name, **e.scores, "reliable": not checks, "checks": "; ".join(checks)})
    backtest = pd.DataFrame(rows).set_index("law").sort_values("elpd_test", ascending=False)
    lpd = {name: e.test["log_predictive_density"].to_numpy() for name, e in ex.items()}
    best_bt = str(backtest.index[0])
    gaps = [paired_gap(lpd[best_bt], lpd[name]) for name in backtest.index]
    backtest["elpd_diff"] = [g[0] for g in gaps]
    backtest["se_diff"] = [g[1] for g in gaps]
    # --- each yardstick's choice and its strength against the runner-up
    best_loo, second_loo = str(loo_table.index[0]), str(loo_table.index[1])
    z_loo = float(loo_table.loc[second_loo, "elpd_diff"] / loo_table.loc[second_loo, "dse"])
    second_bt = str(backtest.index[1])
    z_bt = float(backtest.loc[second_bt, "elpd_diff"] / backtest.loc[second_bt, "se_diff"])
    loo_choice = (best_loo, strength(z_loo))
    bt_choice = (best_bt, strength(z_bt))
    disagreement = best_loo != best_bt and "tie" not in (loo_choice[1], bt_choice[1])
    # --- the runs that drive each preference
    test_index = np.flatnonzero(split_values(runs_obj, by) >= threshold)
    driving = {}
    diff_bt = lpd[best_bt] - lpd[second_bt]
    top = np.argsort(-diff_bt)[:DRIVING_RUNS]
    driving["backtest"] = _describe(runs_obj, test_index[top], diff_bt[top])
    loo_i = {name: np.asarray(loo(fits[name]).elpd_i) for name in (best_loo, second_loo)}
    diff_loo = loo_i[best_loo] - loo_i[second_loo]
    top = np.argsort(-diff_loo)[:DRIVING_RUNS]
    driving["loo"] = _describe(runs_obj, top, diff_loo[top])
    # --- the verdict
    believe = best_bt
    unreliable = [n for n in fits if not loo_table.loc[n, "reliable"] or not backtest.loc[n, "reliable"]]
    if disagreement or unreliable or bt_choice[1] == "tie":
        confidence = "low"
    elif bt_choice[1] == "clear" and best_loo == best_bt:
        confidence = "high"
    else:
        confidence = "moderate"
    reasons = [
        f"backtest (fit on {int(backtest['n_train'].iloc[0])} runs with {by} < {threshold:.3g}, "
        f"scored on the {int(backtest['n_test'].iloc[0])} above): {best_bt} beats {second_bt} by "
        f"{backtest.loc[second_bt, 'elpd_diff']:.1f} ± {backtest.loc[second_bt, 'se_diff']:.1f} nats "
        f"({bt_choice[1]}); 90% coverage {backtest.loc[best_bt, 'coverage']:.2f} vs "
        f"{backtest.loc[second_bt, 'coverage']:.2f}",
        f"LOO on all {len(runs_obj)} runs: {best_loo} beats {second_loo} by "
        f"{loo_table.loc[second_loo, 'elpd_diff']:.1f} ± {loo_table.loc[second_loo, 'dse']:.1f} "
        f"({loo_choice[1]})",
    ]
    if best_loo != best_bt:
        runs_text = ", ".join(
            f"run {int(r.run)} (N={r.params:.3g}, D={r.tokens:.3g})" for r in driving["backtest"].itertuples()
        )
        reasons.append(
            f"the yardsticks {'disagree' if disagreement else 'differ'}: LOO prefers {best_loo}, "
            f"the backtest {best_bt}; the held-out runs that favour {best_bt} most: {runs_text}. "
            "The backtest is believed: a plan extrapolates"
        )
    for name in unreliable:
        parts = (
            ("fit to all runs", loo_table.loc[name, "checks"]),
            ("backtest fit", backtest.loc[name, "checks"]),
        )
        why = "; ".join(f"{which}: {checks}" for which, checks in parts if checks)
        reasons.append(f"{name}'s evidence is not to be trusted ({why})")
    plans = pd.DataFrame()
    if budget is not None:
        plans = plan_table(fits, float(budget), unique_tokens, prob)
    result = Verdict(
        loo=loo_table,
        backtest=backtest,
        plans=plans,
        loo_choice=loo_choice,
        backtest_choice=bt_choice,
        believe=believe,
        confidence=confidence,
        disagreement=disagreement,
        driving_runs=driving,
        reasons=reasons,
        fits=fits,
        extrapolations=ex,
    )
    if budget is not None:
        spread = result.plan_spread()
        if spread:
            result.reasons.append(
                "the choice of law moves the plan by a factor of "
                + ", ".join(f"{v:.2f} in {k}" for k, v in spread.items())
                + " (largest over smallest median)"
            )
    return result
