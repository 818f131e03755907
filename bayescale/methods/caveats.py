"""Reasons not to take a parametric fit's answers at face value, each with its evidence and a remedy.

:meth:`bayescale.Fit.caveats` lists them: the Student-t likelihood's degrees of freedom below
:data:`NU_CAUTION` (:func:`nu_caveat`, with a ``--where`` filter dropping the outlying runs when
they share a range of D or N: :func:`outlier_cut`), and PSIS-LOO preferring the second law fitted
to the same runs (:func:`loo_caveat`).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from bayescale.errors import BayescaleError
from bayescale.posterior.extrapolation import VARIANT_LAW
from bayescale.posterior.protocol import FitLike

#: Below this posterior median of the Student-t degrees of freedom, most runs are outliers to
#: the fit: :meth:`bayescale.Fit.caveats` says so.
NU_CAUTION = 3.0

#: A ``--where`` cut is suggested when the runs it drops hold at least this share of the outliers...
CUT_COVERS = 0.8
#: ...and the outliers' share of the runs it drops is at least this many times their share of all
#: runs (it drops a range where the outliers gather, not the ladder's good runs with scattered ones).
CUT_ENRICHMENT = 2.0


def nu_caveat(fit: FitLike, residuals: np.ndarray) -> str | None:
    """Whether nu's posterior median is below :data:`NU_CAUTION`, naming the runs beyond 3 sigma.

    ``residuals`` are the fit's log residuals on its own runs (posterior medians of the law).
    ``None`` for a normal likelihood, a fixed nu, or nu at or above :data:`NU_CAUTION`.
    """
    if fit.likelihood != "student_t" or "nu" not in fit.posterior or "nu" in fit.fixed:
        return None
    nu = fit.posterior["nu"].values.ravel()
    median = float(np.median(nu))
    if median >= NU_CAUTION:
        return None
    low, high = np.quantile(nu, [0.05, 0.95])
    sigma = float(np.median(fit.posterior["sigma"].values))
    z = np.abs(residuals) / sigma
    outlying = np.flatnonzero(z > 3)
    frame = fit.runs.frame
    worst = outlying[np.argsort(-z[outlying])][:5]
    named = "; ".join(
        f"run {i} (N {frame['params'].iloc[i]:.3g}, D {frame['tokens'].iloc[i]:.3g}, {z[i]:.0f} sigma)"
        for i in worst
    )
    remedy = "check them, and refit without them"
    if outlying.size:
        cut = outlier_cut(frame, outlying)
        remedy = (
            "they share no range of N or D that a filter could drop without good runs: check them "
            "one by one, and refit without the bad ones"
            if cut is None
            else cut
        )
    return (
        f"nu = {median:.3g} [{low:.3g}, {high:.3g}] (Student-t degrees of freedom): most runs are "
        f"treated as outliers (nu < {NU_CAUTION:g}), so the fit follows a few runs and its plans "
        f"may not describe the rest; {outlying.size} of {len(frame)} runs lie beyond 3 sigma"
        + (f", the largest: {named}" if named else "")
        + f". {remedy[0].upper()}{remedy[1:]}, or fit another law (--law {VARIANT_LAW}; "
        "`bayescale compare`)"
    )


def loo_caveat(fit: FitLike, variant: FitLike | None) -> str | None:
    """Whether PSIS-LOO prefers ``variant`` (the second law, same runs) by more than the difference's SE."""
    if variant is None:
        return None
    from bayescale.questions.compare import LooWarning, compare

    try:
        with warnings.catch_warnings():
            # a caveat, not the comparison: `bayescale compare` reports LOO's own diagnostics
            warnings.simplefilter("ignore", LooWarning)
            warnings.simplefilter("ignore", UserWarning)
            table = compare({fit.law.name: fit, variant.law.name: variant})
    except (BayescaleError, ValueError, KeyError):
        return None
    best = str(table.index[0])
    row = table.loc[variant.law.name]
    if best != variant.law.name:
        return None
    other = table.loc[fit.law.name]
    if not other["elpd_diff"] > other["dse"]:
        return None
    return (
        f"PSIS-LOO prefers {variant.law.name} (fitted to the same runs) over {fit.law.name} by "
        f"{other['elpd_diff']:.1f} ± {other['dse']:.1f} nats (stacking weight {row['weight']:.2f}); "
        f"answers beyond the runs blend it in, but to plan with it fit --law {variant.law.name}, "
        "and see `bayescale compare` for the evidence"
    )


def outlier_cut(frame: pd.DataFrame, outlying: np.ndarray) -> str | None:
    """A ``--where`` filter dropping the outlying runs when they share a range of D or N, else ``None``.

    Among the cuts at each value of tokens or params (dropping the runs below it, or above it),
    the one that drops the fewest runs while dropping :data:`CUT_COVERS` of the outliers, with
    the outliers :data:`CUT_ENRICHMENT` times as common among the runs it drops as among all, and
    keeping more than half of the runs. Outliers scattered over the ladder (the bundled Chinchilla
    runs) gather in no such range, so no cut is suggested. The share is relative, not absolute:
    the (Mis)Fitting ladder's outliers are 10 of the 24 runs below 7.9e8 tokens (11 of 81 in all),
    and dropping that regime is what makes its fit well-behaved.
    """
    is_out = np.zeros(len(frame), dtype=bool)
    is_out[outlying] = True
    best: tuple[int, str] | None = None
    for column, symbol, unit in (("tokens", "D", "tokens"), ("params", "N", "parameters")):
        values = frame[column].to_numpy(dtype=float)
        for cut in np.unique(values):
            for dropped, keep, side in ((values < cut, ">=", "fewer"), (values > cut, "<=", "more")):
                n_dropped, n_out = int(dropped.sum()), int((dropped & is_out).sum())
                if (
                    n_dropped
                    and n_out >= CUT_COVERS * is_out.sum()
                    and n_out * len(values) >= CUT_ENRICHMENT * is_out.sum() * n_dropped
                    and len(values) - n_dropped > len(values) / 2
                    and (best is None or n_dropped < best[0])
                ):
                    best = (
                        n_dropped,
                        f"{n_out} of them have {side} than {cut:.3g} {unit}, with {n_dropped - n_out} other "
                        f"run(s): try refitting with --where '{symbol} {keep} {cut:.3g}'",
                    )
    return None if best is None else best[1]
