"""Kaplan et al. (2020) L(N, S_min) fitted to loss curves: :func:`fit_steps` and its :class:`StepsFit`.

The law, B_crit(L) and their formulas with fixed parameters are in
:mod:`bayescale.model.laws.kaplan_steps` (which explains them), the curves' preparation
(steps, batch sizes, whether B_crit is identified) in :mod:`bayescale.data.steps` and the PyMC
model in :mod:`bayescale.model.steps`; their names are importable from here as before. With one
batch size B_crit is not identified: the law is then fitted with S_min = S, the steps as run, and
the summary says so.

Checkpoints of one run share its history: as in :mod:`bayescale.methods.envelope`, residuals on log
loss are an AR(1) series within a run (``correlation="ar1"``) unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.data.curves import Curves
from bayescale.data.steps import MIN_BATCH_RATIO, StepsData, _steps_data, batch_sizes, prepare
from bayescale.data.storage import table_from_dataset, table_to_dataset
from bayescale.errors import RunsError
from bayescale.inference import container
from bayescale.inference.diagnostics import Diagnostics
from bayescale.inference.sampling import SAMPLER_DEFAULTS as BASE_SAMPLER_DEFAULTS
from bayescale.inference.sampling import (
    SamplerConfig,
    SamplerSettings,
    resolve_sampler,
    resolve_seed,
    sample_checked,
)
from bayescale.methods.saved import MethodResult, check_setting, with_data
from bayescale.model.laws import ops as _ops
from bayescale.model.laws.kaplan_steps import (
    ALPHA_B,
    ALPHA_S,
    B_STAR,
    BATCH_PARAMETERS,
    KAPLAN_2020,
    LAW_PARAMETERS,
    MODEL_ITERATIONS,
    S_C,
    _theta,
    compute_efficient_exponents,
    compute_optimal,
    critical_batch,
    log_loss,
    loss_at_min_steps,
    loss_at_steps,
    min_compute,
    min_steps,
)
from bayescale.model.likelihoods import CORRELATIONS, Correlation, Likelihood, check_correlation
from bayescale.model.priors import Prior, override_priors, priors_from_json, priors_to_json
from bayescale.model.pymc_model import check_likelihood
from bayescale.model.steps import build_model, default_priors
from bayescale.posterior.intervals import AllocationAnswers, check_interval, interval_dict, interval_table
from bayescale.posterior.query import make_query

__all__ = [
    "ALPHA_B",
    "ALPHA_S",
    "BATCH_PARAMETERS",
    "B_STAR",
    "CORRELATIONS",
    "KAPLAN_2020",
    "LAW_PARAMETERS",
    "MIN_BATCH_RATIO",
    "MODEL_ITERATIONS",
    "SAMPLER_DEFAULTS",
    "S_C",
    "StepsData",
    "StepsFit",
    "_theta",
    "batch_sizes",
    "build_model",
    "compute_efficient_exponents",
    "compute_optimal",
    "critical_batch",
    "default_priors",
    "fit_steps",
    "log_loss",
    "loss_at_min_steps",
    "loss_at_steps",
    "min_compute",
    "min_steps",
    "prepare",
]

#: Sampler settings of :func:`fit_steps` unless told otherwise (``sampler=`` or keywords).
SAMPLER_DEFAULTS: dict[str, Any] = {**BASE_SAMPLER_DEFAULTS, "target_accept": 0.9}


# ---------------------------------------------------------------------------------------------
# Fit


@dataclass(repr=False)
class StepsFit(MethodResult, AllocationAnswers):
    """Posterior of Kaplan's L(N, S_min) (and B_crit when identified) on loss curves.

    Attributes
    ----------
    idata
        ``xarray.DataTree`` (:mod:`~bayescale.inference.container`); posterior ``alpha_N``,
        ``alpha_S``, ``N_c``, ``S_c``,
        ``sigma`` (and ``B_star``, ``alpha_B``, ``rho``, ``nu`` when in the model).
    data
        The curves as arrays, with :attr:`StepsData.batch_note` saying whether B_crit was fitted.
    """

    title: ClassVar[str] = "Kaplan L(N, S_min) fit"

    idata: Any
    data: StepsData
    priors: dict[str, Prior]
    correlation: Correlation
    likelihood: Likelihood
    sampler: SamplerConfig
    random_seed: int | None
    diagnostics: Diagnostics

    @property
    def posterior(self) -> xr.Dataset:
        """Posterior draws (dims ``chain``, ``draw``)."""
        return container.posterior(self.idata)

    @property
    def parameter_names(self) -> list[str]:
        """The law's parameters reported: alpha_N, alpha_S, N_c, S_c (+ B_star, alpha_B)."""
        return [p.name for p in LAW_PARAMETERS] + (
            [p.name for p in BATCH_PARAMETERS] if self.data.batch_fitted else []
        )

    def parameters(self, prob: float = 0.9, kind: str = "eti") -> dict[str, dict[str, float]]:
        """``{name: {"median", "lower", "upper"}}`` for every parameter of the law."""
        return {name: interval_dict(self.posterior[name], prob, kind) for name in self.parameter_names}

    def theta(self) -> dict[str, xr.DataArray]:
        """Draws of the law's parameters, keyed as the numpy functions want them."""
        return {name: self.posterior[name] for name in self.parameter_names}

    def compare_published(self, prob: float = 0.9, kind: str = "eti") -> pd.DataFrame:
        """Posterior intervals next to Kaplan et al.'s published values (:data:`KAPLAN_2020`)."""
        rows = []
        for name, iv in self.parameters(prob, kind).items():
            published = KAPLAN_2020[name]
            inside = iv["lower"] <= published <= iv["upper"]
            rows.append({"parameter": name, **iv, "kaplan_2020": published, "kaplan_inside": inside})
        return pd.DataFrame(rows)

    def predict(
        self, params: Any, steps: Any, batch: Any = None, prob: float = 0.9, kind: str = "eti"
    ) -> Any:
        """Mean loss at (N, S[, B]) with intervals, one row per query (B in tokens).

        Without a batch ``steps`` are S_min (a fit without B_crit: the steps at its batch size).
        """
        check_interval(prob, kind)
        n, s = np.broadcast_arrays(
            np.atleast_1d(np.asarray(params, float)), np.atleast_1d(np.asarray(steps, float))
        )
        query = {"params": n, "steps": s}
        x = {
            "log_params": xr.DataArray(np.log(n), dims="query"),
            "log_steps": xr.DataArray(np.log(s), dims="query"),
        }
        t: dict[str, Any] = dict(self.theta())
        t["log_N_c"], t["log_S_c"] = np.log(t["N_c"]), np.log(t["S_c"])
        if batch is not None and not self.data.batch_fitted:
            raise RunsError(f"a batch size was given but B_crit was not fitted: {self.data.batch_note}")
        if batch is not None:
            b = np.broadcast_to(np.asarray(batch, float), n.shape)
            query["batch"] = b
            x["log_batch"] = xr.DataArray(np.log(b), dims="query")
            t["log_B_star"] = np.log(t["B_star"])
            level = log_loss(t, x, _ops.NUMPY, log_start=None)
            level = log_loss(t, x, _ops.NUMPY, log_start=level, iterations=30)
        else:
            level = log_loss(t, x, _ops.NUMPY)
        draws = xr.Dataset({"loss": np.exp(level).transpose("chain", "draw", "query")})
        return interval_table(draws, prob, kind, xr.Dataset({k: ("query", v) for k, v in query.items()}))

    def critical_batch(self, loss: Any, prob: float = 0.9, kind: str = "eti") -> pd.DataFrame:
        """B_crit [tokens] at the given loss(es) with intervals; needs B* and alpha_B fitted."""
        if not self.data.batch_fitted:
            raise RunsError(f"B_crit was not fitted: {self.data.batch_note}")
        check_interval(prob, kind)
        level = xr.DataArray(np.atleast_1d(np.asarray(loss, float)), dims="query")
        draws = self.posterior["B_star"] * level ** (-1.0 / self.posterior["alpha_B"])
        query = xr.Dataset({"loss": level})
        return interval_table(xr.Dataset({"critical_batch": draws}), prob, kind, query)

    def compute_efficient(self, prob: float = 0.9, kind: str = "eti") -> dict[str, dict[str, float]]:
        """Intervals of the frontier exponents of :func:`compute_efficient_exponents`; needs alpha_B."""
        if not self.data.batch_fitted:
            raise RunsError(f"the compute-efficient exponents need alpha_B: {self.data.batch_note}")
        post = self.posterior
        exps = compute_efficient_exponents(post["alpha_N"], post["alpha_S"], post["alpha_B"])
        return {k: interval_dict(v, prob, kind) for k, v in exps.items()}

    def plan_batch(self) -> float | None:
        """The batch size :meth:`optimal` plans at: ``None`` on Kaplan's frontier (B_crit fitted).

        Without B_crit the law was fitted with S_min = S at the batch size the runs used, so
        the plan holds at that batch size only; it is that size (tokens per step).

        Raises
        ------
        RunsError
            When B_crit was not fitted but the runs used several batch sizes (``critical_batch=
            False`` on such curves): then no single batch size is the one the law describes.
        """
        if self.data.batch_fitted:
            return None
        batch = np.exp(self.data.log_batch)
        if batch.max() / batch.min() >= MIN_BATCH_RATIO:
            raise RunsError(
                f"no compute-optimal plan: the runs used batch sizes {batch.min():.3g}-{batch.max():.3g} "
                "tokens but B* and alpha_B were not fitted, so neither Kaplan's C_min frontier "
                "(needs B_crit) nor a plan at the runs' one batch size applies; fit with "
                "critical_batch=True (or None)"
            )
        return float(np.exp(np.mean(self.data.log_batch)))

    def exponent_draws(self) -> xr.Dataset:
        """Draws of ``a`` (N_opt ∝ C^a), ``b = 1 - a`` (D_opt ∝ C^b) and ``alpha_C`` (L ∝ C^-alpha_C).

        With B_crit: Kaplan's frontier, ``a = alpha_C / alpha_N`` with ``1/alpha_C = 1/alpha_N +
        1/alpha_S + 1/alpha_B``; at the runs' one batch size: ``a = alpha_S / (alpha_N + alpha_S)``.
        """
        frontier = self.plan_batch() is None  # raises first when there is no plan
        post = self.posterior
        inv_c = 1.0 / post["alpha_N"] + 1.0 / post["alpha_S"]
        if frontier:
            inv_c = inv_c + 1.0 / post["alpha_B"]
        a = (1.0 / inv_c) / post["alpha_N"]
        return xr.Dataset({"a": a, "b": 1.0 - a, "alpha_C": 1.0 / inv_c}).transpose("chain", "draw")

    def optimal_draws(self, compute: Any) -> xr.Dataset:
        """Draws of the compute-optimal model at each budget (dim ``query``), see :meth:`optimal`."""
        query = make_query(compute=compute)
        batch = self.plan_batch()
        best = compute_optimal(query["compute"], self.theta(), batch=batch, kappa=self.data.kappa)
        steps, batch_name = ("steps_min", "critical_batch") if batch is None else ("steps", "batch")
        out = xr.Dataset(
            {
                "params": best["params"],
                "tokens": best["tokens"],
                "tokens_per_param": best["tokens"] / best["params"],
                steps: best["steps"],
                batch_name: best["batch"],
                "loss": best["loss"],
            }
        )
        return out.transpose("chain", "draw", "query")

    def optimal(
        self, compute: Any, prob: float = 0.9, kind: str = "eti", *, random_seed: int | None = None
    ) -> pd.DataFrame:
        """The compute-optimal model at budget(s) ``compute`` [FLOPs] with intervals, one row each.

        ``random_seed`` is accepted as by ``Fit.optimal``: the answer draws no random numbers.

        Two cases, decided by the fit (:func:`compute_optimal` has the formulas):

        * B* and alpha_B fitted: Kaplan's compute-efficient frontier. ``compute`` is C_min
          (eq. 5.5: the compute at a batch far below B_crit); the columns are ``params``,
          ``tokens`` = E_min = C_min/(kappa N), ``steps_min``, ``critical_batch`` = B_crit(L)
          and ``loss``. Training at B = B_crit takes 2 S_min steps, 2 E_min tokens, 2 C_min.
        * One batch size B in the runs, B_crit not fitted: the plan at that batch size, the only
          one the fitted law describes (S_min = S there). ``compute`` = kappa N B S; the columns
          are ``params``, ``tokens``, ``steps``, ``batch`` (= B) and ``loss``. Whether another
          batch size would do better is not answered: that needs runs at several batch sizes.
          If B_crit(L) does vary with the loss, L(N, S) at one batch size is only approximate
          and so is this plan: on curves simulated from Kaplan's constants at B = 2.5e5 tokens
          the fitted a was 0.886 [0.869, 0.900] against 0.73 for the true plan at that B
          (``benchmarks/steps_one_batch.py``).

        Raises
        ------
        RunsError
            When B_crit was not fitted and the runs used several batch sizes (:meth:`plan_batch`).
        """
        return super().optimal(compute, prob, kind)

    def plan_note(self) -> str:
        """What :meth:`optimal` assumes, in one line."""
        batch = self.plan_batch()
        if batch is None:
            return "Kaplan's C_min frontier with fitted B_crit(L) (budget = C_min; at B = B_crit it costs 2x)"
        return f"at the runs' one batch size {batch:.3g} tokens/step (B_crit not identified, S_min = S)"

    def to_dict(self, prob: float = 0.9, kind: str = "eti") -> dict[str, Any]:
        """JSON-ready: the law's parameters, the batch note, noise and diagnostics."""
        out: dict[str, Any] = {
            "law": "L(N, S_min) = (N_c/N)^alpha_N + (S_c/S_min)^alpha_S (Kaplan et al. 2020, eq. 5.6)",
            "n_points": len(self.data.run),
            "n_runs": len(self.data.curves.run_names),
            "prob": prob,
            "priors": {name: prior.to_dict() for name, prior in sorted(self.priors.items())},
            "correlation": self.correlation,
            "likelihood": self.likelihood,
            "critical_batch_fitted": self.data.batch_fitted,
            "batch_note": self.data.batch_note,
            **self.parameters(prob, kind),
            "sigma": interval_dict(self.posterior["sigma"], prob, kind),
            "kaplan_2020": {k: KAPLAN_2020[k] for k in self.parameter_names},
        }
        if "rho" in self.posterior:
            out["rho"] = interval_dict(self.posterior["rho"], prob, kind)
        if self.data.batch_fitted:
            out["compute_efficient"] = self.compute_efficient(prob, kind)
        try:
            out["plan"] = self.plan_note()
            out.update(self.exponents(prob, kind))
        except RunsError as exc:  # several batch sizes without B_crit: no plan, say why
            out["plan"] = str(exc)
        out["diagnostics"] = {
            k: self.diagnostics[k] for k in ("divergences", "max_r_hat", "min_ess_bulk", "ok", "problems")
        }
        return out

    def saved_parts(self) -> tuple[Any, dict[str, Any]]:
        """The draws with the checkpoints fitted (dim ``checkpoint``) and their steps; the settings."""
        data = self.data
        const = table_to_dataset(data.curves.frame, data.curves.source, "checkpoint")
        const["_log_steps"] = ("checkpoint", data.log_steps)
        const["_log_batch"] = ("checkpoint", data.log_batch)
        observed = xr.Dataset({"log_loss": (("checkpoint",), data.log_loss)})
        settings = {
            "correlation": self.correlation,
            "likelihood": self.likelihood,
            "priors": priors_to_json(self.priors),
            "batch_fitted": data.batch_fitted,
            "batch_note": data.batch_note,
        }
        return with_data(self.idata, const, observed), settings

    @classmethod
    def from_saved(cls, idata: Any, settings: dict[str, Any], common: dict[str, Any]) -> StepsFit:
        """Rebuild a fit from :meth:`saved_parts`; TypeError for a setting of the wrong type."""
        check_setting("correlation", settings["correlation"], settings["correlation"] in CORRELATIONS)
        check_likelihood(settings["likelihood"])
        check_setting("batch_fitted", settings["batch_fitted"], isinstance(settings["batch_fitted"], bool))
        check_setting("batch_note", settings["batch_note"], isinstance(settings["batch_note"], str))
        const = container.group(idata, "constant_data")
        frame, source = table_from_dataset(const)
        data = _steps_data(
            Curves(frame=frame, source=source),
            np.asarray(const["_log_batch"].values, dtype=float),
            np.asarray(const["_log_steps"].values, dtype=float),
            settings["batch_fitted"],
            settings["batch_note"],
        )
        return cls(
            idata=idata,
            data=data,
            priors=priors_from_json(settings["priors"]),
            correlation=settings["correlation"],
            likelihood=settings["likelihood"],
            **common,
        )

    def _facts(self) -> dict[str, Any]:
        return {
            "data": self.data.curves.source,
            "curves": len(self.data.curves.run_names),
            "checkpoints": len(self.data.run),
            "batch": "B* and alpha_B fitted" if self.data.batch_fitted else "one batch size (S_min = S)",
            "residuals": f"{self.correlation}, {self.likelihood}",
        }

    def _intervals(self) -> dict[str, dict[str, float]]:
        return {**self.parameters(), "sigma": interval_dict(self.posterior["sigma"])}


def fit_steps(
    curves: Any,
    *,
    critical_batch: bool | None = None,
    correlation: Correlation = "ar1",
    likelihood: Likelihood = "normal",
    priors: Mapping[str, Prior | Mapping[str, Any]] | None = None,
    min_step: float = 0.0,
    sampler: SamplerSettings | None = None,
    random_seed: int | None = None,
    progressbar: bool = True,
    warn: bool = True,
) -> StepsFit:
    """Fit Kaplan's L(N, S_min), and B_crit(L) when the runs differ in batch size, to loss curves.

    Parameters
    ----------
    curves
        :class:`~bayescale.data.curves.Curves`, a DataFrame, a CSV/Parquet path or a bundled
        curve data set, with ``run``, ``params``, ``tokens``, ``loss`` and ``step`` (or
        ``batch_size`` in tokens).
    critical_batch
        ``None`` (default): fit B* and alpha_B when the batch sizes (tokens / step) differ
        across checkpoints, else warn (:class:`~bayescale.errors.RunsWarning`) and fit
        L(N, S) with S_min = S; ``True``: require them (an error with one batch size);
        ``False``: never fit them.
    correlation
        ``"ar1"`` (default): residuals of one run are an AR(1) series; ``"none"``: independent.
    likelihood
        ``"normal"`` (default) or ``"student_t"`` innovations on log loss.
    priors
        Priors replacing the defaults (:func:`default_priors`), by parameter name.
    min_step
        Leave out checkpoints before this step.
    sampler, random_seed, progressbar
        Sampler settings, seed and progress bar (see :func:`bayescale.fit`); the sampler's
        defaults are :data:`SAMPLER_DEFAULTS`.
    warn
        Emit a :class:`~bayescale.inference.diagnostics.FitWarning` when diagnostics fail.

    Returns
    -------
    StepsFit
    """
    check_correlation(correlation)
    check_likelihood(likelihood)
    curves_obj = Curves.from_any(curves)
    data = prepare(curves_obj, critical_batch, min_step)
    if data.curves.frame["params"].nunique() < 2:
        raise RunsError("L(N, S) needs curves of at least 2 model sizes")
    params = default_priors(data.batch_fitted, correlation, likelihood)
    merged = override_priors({name: p.prior for name, p in params.items()}, priors, ("N_c", "S_c", "B_star"))
    config = resolve_sampler(SAMPLER_DEFAULTS, sampler)
    free = [n for n in merged if n not in ("N_c", "S_c", "B_star")]
    free += ["N_c_log_at_ref", "S_c_log_at_ref"] + (["B_crit_log_at_ref"] if data.batch_fitted else [])
    model = build_model(data, merged, correlation, likelihood)
    random_seed = resolve_seed(random_seed)
    idata, report, ran = sample_checked(model, free, config, random_seed, progressbar, warn)
    return StepsFit(
        idata=idata,
        data=data,
        priors=merged,
        correlation=correlation,
        likelihood=likelihood,
        sampler=ran,
        random_seed=random_seed,
        diagnostics=report,
    )
