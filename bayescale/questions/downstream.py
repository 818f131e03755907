"""Downstream answers chained through two fits: (N, D) -> loss -> a task's error or accuracy.

Step 1 is a loss fit (any law of :func:`~bayescale.list_laws` fitted to a validation loss or a
task's loss); step 2 a link fit (:mod:`bayescale.model.laws.downstream`: the target in the
input loss). A chained answer pushes each posterior draw of step 1's *predictive* loss at the
query (the law's mean plus a new run's noise) through a draw of step 2, then adds step 2's
own noise: never a point plugged into the second model. The two posteriors are independent
(fitted apart), so their draws are paired by a random permutation.

Both fits are taken as the small posterior protocol of :mod:`bayescale.questions.plan`
(``law``, ``likelihood``, ``runs``, ``theta()``), so nothing here imports a method.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.data.units import LOSS_UNITS
from bayescale.errors import BayescaleError
from bayescale.model.laws import ops
from bayescale.model.laws.downstream import LINK_COVARIATE, LinkLaw
from bayescale.model.pymc_model import draw_log_noise
from bayescale.posterior.intervals import SAMPLE_DIMS, check_interval, interval_table
from bayescale.posterior.query import make_query
from bayescale.posterior.residuals import spearman
from bayescale.questions import compare, plan

#: A task whose fitted target moves less than this across the ladder (absolute, in accuracy or
#: error) is flat: its changes are within what seed noise moves a benchmark by (~0.5-1 point).
FLAT_CHANGE = 0.02
#: A task whose change across the ladder is less than this many noise scales is noisy.
MIN_SIGNAL_TO_NOISE = 3.0
#: A task whose rank correlation with the input loss, in the expected direction, is below this
#: is non-monotone (the OLMo ladder's well-behaved tasks reach 0.9 and more).
MIN_MONOTONE_RHO = 0.6


def _link(fit: Any) -> LinkLaw:
    if not isinstance(fit.law, LinkLaw):
        raise BayescaleError(
            f"the second step must be a link fit (link-exponential, link-sigmoid), got law {fit.law.name!r}"
        )
    return fit.law


def _flat_theta(fit: Any, index: np.ndarray, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """The fit's draws picked by ``index`` (into its flattened draws), shaped ``shape + (1,)``."""
    out = {}
    for name, draws in fit.theta().items():
        flat = np.asarray(draws.transpose(*SAMPLE_DIMS).values).reshape(-1)
        out[name] = flat[index].reshape(*shape, 1)
    return out


def link_draws(
    link_fit: Any,
    input_loss: np.ndarray,
    rng: np.random.Generator,
    predictive: bool = True,
    params: np.ndarray | None = None,
) -> np.ndarray:
    """Draws of a link's target at draws of its input loss, shape ``(chain, draw, query)``.

    Each cell of ``input_loss`` gets its own draw of the link's parameters (a random
    permutation of the link's draws, with replacement when it has fewer) and, with
    ``predictive``, its own draw of the link's noise. ``params`` (one per query) is the model
    size of each query, for a link that reads it (``link-sigmoid-size``).
    """
    law = _link(link_fit)
    x = {f"log_{LINK_COVARIATE}": np.log(input_loss)}
    if "params" in law.required_columns:
        if params is None:
            raise BayescaleError(f"link {law.name!r} reads the model size: give the queries' params")
        x["log_params"] = np.log(np.broadcast_to(np.asarray(params, dtype=float), input_loss.shape))
    chains, draws_, _ = input_loss.shape
    size = int(np.prod([link_fit.posterior.sizes[d] for d in SAMPLE_DIMS]))
    wanted = chains * draws_
    index = rng.permutation(size)[:wanted] if size >= wanted else rng.integers(0, size, wanted)
    theta = _flat_theta(link_fit, index, (chains, draws_))
    with np.errstate(invalid="ignore", divide="ignore"):
        log_mean = law.log_loss(theta, x, ops.NUMPY)
    if not predictive:
        return np.exp(log_mean)
    noise = draw_log_noise(rng, link_fit.likelihood, {k: v[..., 0] for k, v in theta.items()}, log_mean.shape)
    return np.exp(log_mean + noise)


def link_predict(
    link_fit: Any,
    input_loss: Any,
    prob: float = 0.9,
    kind: str = "eti",
    random_seed: int | None = None,
    predictive: bool = True,
    params: Any = None,
) -> pd.DataFrame:
    """A link's answer at known input losses (step 2 alone): the target of a new run at each loss.

    For a loss that is measured rather than forecast (a checkpoint's own validation loss).
    With ``predictive`` each answer carries the link's noise (and, for a link fitted with
    run offsets, a new run's offset); without, it is the link's mean. ``params``: the model
    size at each loss (one, or one per loss), for a link that reads it (``link-sigmoid-size``).

    Returns
    -------
    pandas.DataFrame
        One row per loss: ``input_loss``, then ``<target>_{median,lower,upper}`` where
        ``<target>`` is the link's ``"error"`` or ``"accuracy"``.
    """
    check_interval(prob, kind)
    law = _link(link_fit)
    loss = np.atleast_1d(np.asarray(input_loss, dtype=float))
    if loss.ndim != 1 or not np.all(np.isfinite(loss) & (loss > 0)):
        raise BayescaleError(f"input losses must be finite and > 0, got {input_loss!r}")
    shape = tuple(link_fit.posterior.sizes[d] for d in SAMPLE_DIMS)
    sizes = None if params is None else np.broadcast_to(np.asarray(params, dtype=float), loss.shape)
    draws = link_draws(
        link_fit,
        np.broadcast_to(loss, (*shape, loss.size)),
        np.random.default_rng(random_seed),
        predictive,
        sizes,
    )
    values = xr.Dataset({law.target: (("chain", "draw", "query"), draws)})
    query = xr.Dataset({LINK_COVARIATE: ("query", loss)})
    return interval_table(values, prob, kind, query)


def chained_draws(
    loss_fit: Any,
    link_fits: Mapping[str, Any],
    params: Any,
    tokens: Any,
    random_seed: int | None = None,
    average_beyond: bool = True,
    scores: Mapping[str, str] | None = None,
) -> xr.Dataset:
    """Draws of the chained answer at each (N, D) query, dims ``chain, draw, query``.

    Parameters
    ----------
    loss_fit
        Step 1: a fit of the input loss (a :class:`~bayescale.Fit`).
    link_fits
        Step 2 by task name: link fits whose input is ``loss_fit``'s loss.
    params, tokens
        The queries.
    random_seed
        Seed of the noise draws and the pairing of draws.
    average_beyond
        Step 1 beyond the runs as :meth:`bayescale.Fit.predict` answers it, by the same function
        (:func:`~bayescale.questions.plan.predict_draws`): with it (default, as there), mixed with
        its variant law more as the distance grows; without, the fitted law alone.
    scores
        What each task's answer measures, ``"error"`` or ``"accuracy"`` (default each link's own
        target): a task whose link fits the other one answers ``1 -`` the link's draws.

    Returns
    -------
    xarray.Dataset
        ``loss`` (step 1's predictive loss), then per task ``<task>`` (the predictive target in
        ``scores``' terms: both steps' noise) and, with several tasks, ``average`` (their mean, draw by draw:
        every task sees the same loss draw, so their errors add up as they would).
    """
    if not link_fits:
        raise BayescaleError("chaining needs at least one link fit (task name -> fit)")
    unit = loss_fit.runs.loss_unit
    for task, link_fit in link_fits.items():
        _link(link_fit)
        wanted = getattr(link_fit, "input_loss_unit", unit)
        if wanted != unit:
            raise BayescaleError(
                f"the link of {task!r} reads a loss in {LOSS_UNITS[wanted]}, but the loss fit's loss is in "
                f"{LOSS_UNITS[unit]}: fit both steps on the same loss column"
            )
    rng = np.random.default_rng(random_seed)
    step1 = plan.predict_draws(loss_fit, params, tokens, None, random_seed, average_beyond)
    loss = step1["loss_predictive"].transpose(*SAMPLE_DIMS, "query")
    values = np.asarray(loss.values)
    sizes = np.asarray(make_query(params=params, tokens=tokens)["params"].values, dtype=float)
    out = {"loss": loss}
    for task, link_fit in link_fits.items():
        draws = link_draws(link_fit, values, rng, params=sizes)
        if (scores or {}).get(str(task), link_fit.law.target) != link_fit.law.target:
            draws = 1.0 - draws
        out[str(task)] = loss.copy(data=draws)
    if len(link_fits) > 1:
        out["average"] = xr.concat([out[str(t)] for t in link_fits], "task").mean("task")
    return xr.Dataset(out, attrs={"loss_unit": unit})


def chained_predict(
    loss_fit: Any,
    link_fits: Mapping[str, Any],
    params: Any,
    tokens: Any,
    prob: float = 0.9,
    kind: str = "eti",
    random_seed: int | None = None,
    average_beyond: bool = True,
    scores: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Table of :func:`chained_draws`: the inputs, then ``<quantity>_{median,lower,upper}``."""
    check_interval(prob, kind)
    query = make_query(params=params, tokens=tokens)
    draws = chained_draws(loss_fit, link_fits, params, tokens, random_seed, average_beyond, scores)
    table = interval_table(draws, prob, kind, query)
    table.attrs["loss_unit"] = draws.attrs["loss_unit"]
    return table


def task_diagnostics(link_fits: Mapping[str, Any]) -> pd.DataFrame:
    """Per task, whether it scales predictably across the ladder its link was fitted on.

    A task is flagged

    - ``flat`` when its fitted target moves less than :data:`FLAT_CHANGE` across the ladder's
      input losses (posterior median of the change);
    - ``noisy`` when that change is under :data:`MIN_SIGNAL_TO_NOISE` noise scales (the link's
      ``sigma``, on log target, taken at the target's median);
    - ``non_monotone`` when the rank correlation of target and input loss, signed so that
      better loss gives a better score, is under :data:`MIN_MONOTONE_RHO`.

    ``predictable`` is none of them. Chained answers for an unpredictable task are given
    all the same, but their intervals rest on a link the ladder does not support.
    """
    rows = []
    for task, fit in link_fits.items():
        law = _link(fit)
        x = fit.runs.column(LINK_COVARIATE)
        y = fit.runs.column("loss")
        ends = np.array([np.argmin(x), np.argmax(x)])  # the ladder's two ends, each at its own size
        at = {f"log_{LINK_COVARIATE}": np.log(x[ends]), "log_params": np.log(fit.runs.column("params")[ends])}
        theta = {k: v.values[..., None] for k, v in fit.theta().items()}
        means = np.exp(law.log_loss(theta, at, ops.NUMPY))
        change = float(np.median(np.abs(means[..., 1] - means[..., 0])))
        noise = float(np.median(fit.posterior["sigma"].values)) * float(np.median(y))
        # Error rises with the loss; accuracy falls.
        direction = 1.0 if law.target == "error" else -1.0
        rho = direction * spearman(x, y)[0] if len(x) > 2 else float("nan")
        flat = change < FLAT_CHANGE
        noisy = change < MIN_SIGNAL_TO_NOISE * noise
        non_monotone = not rho >= MIN_MONOTONE_RHO
        rows.append(
            {
                "task": str(task),
                "runs": len(x),
                "change": change,
                "noise": noise,
                "signal_to_noise": change / noise if noise > 0 else float("inf"),
                "monotone_rho": rho,
                "flat": flat,
                "noisy": noisy,
                "non_monotone": non_monotone,
                "predictable": not (flat or noisy or non_monotone),
            }
        )
    return pd.DataFrame(rows).set_index("task")


def accuracy_log_likelihood(link_fit: Any) -> xr.DataArray:
    """Log density of each row's *accuracy* under each draw of a link, dims ``chain, draw, run``.

    A link's noise is on the log of its target (error or accuracy), so its density of the
    target is that of the log less ``log target`` (the Jacobian); an error link's density of
    the accuracy ``1 - error`` is the same as of the error. Links of either kind fitted to
    the same rows are then scored on one scale.
    """
    _link(link_fit)
    target = link_fit.runs.column("loss")
    return compare.log_likelihood(link_fit) - xr.DataArray(np.log(target), dims="run")


def _accuracy(fit: Any) -> np.ndarray:
    target = fit.runs.column("loss")
    return target if _link(fit).target == "accuracy" else 1.0 - target


def compare_links(link_fits: Mapping[str, Any], method: str = "stacking") -> pd.DataFrame:
    """Rank links fitted to the same rows by PSIS-LOO of the accuracy, with stacking weights.

    Parameters
    ----------
    link_fits
        ``{name: link fit}``: any links (sigmoid on accuracy, exponential on error, one link
        with different fixed values), fitted to the same rows (same ``params``, ``tokens``,
        input loss and accuracy).
    method
        ArviZ's weighting: ``"stacking"``, ``"BB-pseudo-BMA"`` or ``"pseudo-BMA"``.

    Returns
    -------
    pandas.DataFrame
        Index ``link`` (the names), best first: ``rank``, ``elpd_loo``, ``p_loo``, ``se``,
        ``elpd_diff`` (best minus this, >= 0), ``dse``, ``weight``, ``pareto_k_max``.
        With a ``run`` column (run offsets) the LOO leaves out one checkpoint, not one run.
    """
    import arviz_stats as azs

    from bayescale.inference import container

    if len(link_fits) < 2:
        raise BayescaleError("comparing links needs at least two link fits (name -> fit)")
    names = list(link_fits)
    first = link_fits[names[0]]
    ref = [first.runs.column(c) for c in ("params", "tokens", LINK_COVARIATE)] + [_accuracy(first)]
    for name in names[1:]:
        fit = link_fits[name]
        mine = [fit.runs.column(c) for c in ("params", "tokens", LINK_COVARIATE)] + [_accuracy(fit)]
        if len(fit.runs) != len(first.runs) or not all(
            np.allclose(a, b, rtol=1e-12) for a, b in zip(ref, mine, strict=True)
        ):
            raise BayescaleError(
                f"links {names[0]!r} and {name!r} were fitted to different rows; "
                "LOO compares links on the same rows only"
            )
    loos = {}
    for name, fit in link_fits.items():
        ll = accuracy_log_likelihood(fit).assign_coords(run=np.arange(len(fit.runs)))
        tree = container.from_groups(
            posterior=fit.posterior[fit.free_parameters], log_likelihood=ll.to_dataset(name="accuracy")
        )
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message="Estimated shape parameter of Pareto", category=UserWarning
            )
            loos[str(name)] = azs.loo(tree, pointwise=True)
    table = azs.compare(loos, method=method, round_to="none")  # type: ignore[arg-type]
    table = table.rename(columns={"elpd": "elpd_loo", "p": "p_loo"})
    table["elpd_diff"] = 0.0 - table["elpd_diff"]  # as questions.compare: best minus this, >= 0
    table = table[["rank", "elpd_loo", "p_loo", "se", "elpd_diff", "dse", "weight"]]
    table["pareto_k_max"] = [float(np.max(np.asarray(loos[n].pareto_k))) for n in table.index]
    table.index.name = "link"
    return table
