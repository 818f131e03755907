"""Build the PyMC model of a law on a set of runs.

Observed is the log loss of each run, with a Student-t (default, robust to
outlying runs: the Bayesian counterpart of the Huber loss used by Hoffmann et
al. and Epoch) or Gaussian likelihood around the law's log-space mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from bayescale.data.runs import Runs
from bayescale.errors import PriorError
from bayescale.model.laws import Parameter, ScalingLaw, ops
from bayescale.model.likelihoods import Likelihood, check_likelihood, log_density, pymc_noise
from bayescale.model.priors import Prior, as_prior, prior_table

#: Name of the observed variable in the PyMC model and the InferenceData.
OBSERVED = "log_loss"

SIGMA = Parameter(
    "sigma",
    Prior("HalfNormal", sigma=0.05),
    "run-to-run scatter of log loss is 0.1%-3% in published ladders; half-normal with scale 5%",
    "scale of the noise on log loss",
)
NU = Parameter(
    "nu",
    Prior("Gamma", alpha=2.0, beta=0.1),
    "Juarez & Steel (2010) default for Student-t degrees of freedom: mean 20, allows heavy tails",
    "Student-t degrees of freedom of the noise",
)

RHO = Parameter(
    "rho",
    Prior("Beta", alpha=2.0, beta=2.0),
    "checkpoints of one run share its history, so successive residuals correlate; Beta(2, 2): "
    "mean 0.5, 90% in 0.14-0.86",
    "AR(1) correlation of successive residuals within a run",
)

SIGMA_RUN = Parameter(
    "sigma_run",
    Prior("HalfNormal", sigma=0.01),
    "a run's offset is its seed and data order: reruns differ by 0.02%-0.03% of the final loss on "
    "the OLMo ladder (1xC pairs) and by up to 0.4% mid-curve; half-normal with scale 1% (90% below "
    "1.6%) covers that and lets the data (reruns, when the table has them) say more",
    "spread of each run's offset of log loss (runs with several checkpoints: the `run` column)",
)

#: Posterior variable of each run's offset of log loss, and its dimension.
RUN_EFFECT = "run_effect"
RUN_LABEL = "run_label"
#: The sampler's standard offsets (non-centred), one per run: ``run_effect = sigma_run * P z``.
RUN_Z = "run_effect_z"


def run_labels(runs: Runs) -> tuple[np.ndarray, np.ndarray] | None:
    """Labels of the runs and each row's index into them, when some run has several rows.

    Rows sharing a ``run`` label are checkpoints of one run; their residuals share
    the run's offset (:func:`build_model`). ``None`` without a ``run`` column or
    when every label is on one row only (nothing to share).
    """
    if "run" not in runs.frame.columns:
        return None
    labels, index = np.unique(runs.frame["run"].astype(str).to_numpy(), return_inverse=True)
    if len(labels) == len(runs):
        return None
    return labels, index


#: A covariate is a property of the run (it enters :func:`run_basis`) when at most this share of its
#: variance over the rows lies within runs: N always (0), the tokens of checkpoints at the end of
#: each run's decay (OLMo, last ~7% of each run: under 0.1%), not those of whole curves (~25%).
RUN_LEVEL_SHARE = 0.1


def run_basis(law: ScalingLaw, runs: Runs, index: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the runs' design, which the run offsets are kept orthogonal to.

    One row per run (``index`` maps rows to runs, :func:`run_labels`): a constant and the mean
    over the run's rows of each log covariate the law reads (``log params``, ``log tokens``, ...)
    that is a property of the run (:data:`RUN_LEVEL_SHARE`).
    :func:`build_model` gives the offsets ``sigma_run * (z - Q Q^T z)`` with ``z`` standard
    normal: the zero-sum normal generalised from the constant to the whole design. Offsets free
    to vary with ``log N`` or ``log D`` across runs can take the law's trend (seen on 16 OLMo
    runs: offsets ordered by size and token multiple, sigma_run 7x the seed noise); orthogonal
    to the design they cannot, and the law alone carries the trend. Columns that do not vary or
    repeat others drop out (the basis has the design's rank). Shape ``(runs, rank)``.
    """
    runs_count = int(index.max()) + 1
    counts = np.bincount(index, minlength=runs_count).astype(float)
    columns = [np.ones(runs_count)]
    for values in law_covariates(law, runs).values():
        means = np.bincount(index, weights=values, minlength=runs_count) / counts
        within = float(np.sum((values - means[index]) ** 2))
        total = float(np.sum((values - values.mean()) ** 2))
        # Only a covariate that is (nearly) a property of the run: one that moves along a run's
        # checkpoints has its trend pinned by them, and forcing the offsets off it then bends the
        # law (seen: tokens spanning 8x per run, alpha_D 0.38 [0.373, 0.392] against a true 0.37).
        if within <= RUN_LEVEL_SHARE * total:
            columns.append(means)
    design = np.column_stack(columns)
    # Centred and scaled columns, so the rank's tolerance does not depend on the units.
    scaled = design - np.r_[0.0, design[:, 1:].mean(axis=0)]
    spread = np.abs(scaled).max(axis=0)
    scaled = scaled / np.where(spread > 0, spread, 1.0)
    u, s, _ = np.linalg.svd(scaled, full_matrices=False)
    rank = int(np.sum(s > 1e-8 * s[0]))
    return np.ascontiguousarray(u[:, :rank])


def project_offsets(z: Any, basis: Any, sigma_run: Any) -> Any:
    """``sigma_run * (z - (z Q) Q^T)``: standard offsets ``z`` (last axis: runs) off the design ``Q``.

    Written once for numpy, JAX and PyTensor (operators only); ``sigma_run`` broadcasts over
    the leading axes of ``z``.
    """
    return sigma_run * (z - (z @ basis) @ basis.T)


def noise_parameters(likelihood: Likelihood) -> tuple[Parameter, ...]:
    """The noise parameters a likelihood adds to the law's parameters."""
    check_likelihood(likelihood)
    return (SIGMA, NU) if likelihood == "student_t" else (SIGMA,)


def model_parameters(
    law: ScalingLaw, likelihood: Likelihood, run_effects: bool = False
) -> tuple[Parameter, ...]:
    """Every parameter of the model: the law's, the spread of its pooled ones, then the noise's.

    A law's :attr:`~bayescale.model.laws.base.ScalingLaw.noise_defaults` replace the noise's default priors.

    ``run_effects``: the runs have checkpoints (:func:`run_labels`), adding ``sigma_run``.
    """
    extra = (SIGMA_RUN,) if run_effects else ()
    own = {p.name: p for p in law.noise_defaults}
    noise = tuple(own.get(p.name, p) for p in noise_parameters(likelihood))
    return tuple(law.parameters) + law.pooling_parameters() + noise + extra


def group_variable(name: str) -> str:
    """Name of the per-group values of pooled parameter ``name`` (dims ``chain, draw, group``)."""
    return f"{name}_group"


def resolve_priors(
    law: ScalingLaw,
    likelihood: Likelihood,
    priors: Mapping[str, Prior | Mapping[str, Any]] | None = None,
    fixed: Mapping[str, float] | None = None,
    run_effects: bool = False,
) -> tuple[dict[str, Prior], dict[str, float]]:
    """Merge user priors and fixed values with the defaults, checking every name.

    ``run_effects``: the runs have checkpoints (:func:`run_labels`), adding ``sigma_run``.

    Returns
    -------
    priors, fixed
        The prior of every free parameter, and the value of every fixed one.
    """
    params = {p.name: p for p in model_parameters(law, likelihood, run_effects)}
    merged = {name: p.prior for name, p in params.items()}
    for name, spec in prior_table(priors).items():
        if name not in params:
            raise PriorError(
                f"prior given for {name!r}, which is not a parameter of law {law.name!r} "
                f"with {likelihood} likelihood; parameters: {list(params)}"
            )
        merged[name] = as_prior(spec)
    fixed_values: dict[str, float] = {}
    for name, value in (fixed or {}).items():
        if name not in params:
            raise PriorError(
                f"cannot fix {name!r}: not a parameter of law {law.name!r}; parameters: {list(params)}"
            )
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise PriorError(f"fixed value for {name!r} is not a number: {value!r}") from None
        if not np.isfinite(number):
            raise PriorError(f"fixed value for {name!r} must be finite, got {value!r}")
        if merged[name].is_positive and number <= 0:
            raise PriorError(f"fixed value for {name!r} must be > 0, got {number}")
        fixed_values[name] = number
    pooled_fixed = [name for name in law.pooled if name in fixed_values or f"{name}_tau" in fixed_values]
    if pooled_fixed:
        raise PriorError(
            f"cannot fix {pooled_fixed}: law {law.name!r} gives them a value per group; "
            "fit a law without pooling to hold them fixed"
        )
    free = {name: prior for name, prior in merged.items() if name not in fixed_values}
    if not free:
        raise PriorError("every parameter is fixed: nothing left to fit")
    for c in law.centerings:
        if c.amplitude in free and not free[c.amplitude].is_positive:
            raise PriorError(
                f"prior of {c.amplitude!r} must be on positive values, got {free[c.amplitude]!r}"
            )
    return free, fixed_values


def law_covariates(law: ScalingLaw, runs: Runs) -> dict[str, np.ndarray]:
    """The log covariates of the runs that the law's mean reads."""
    runs.require(law.required_columns, f"law {law.name!r}")
    return {f"log_{col}": np.log(runs.column(col)) for col in law.required_columns}


def build_model(
    law: ScalingLaw,
    runs: Runs,
    priors: Mapping[str, Prior],
    fixed: Mapping[str, float],
    likelihood: Likelihood = "student_t",
) -> Any:
    """Return the ``pymc.Model`` of ``law`` on ``runs``.

    Positive parameters are sampled on the log scale (their priors are
    positive distributions). Each amplitude paired with an exponent (see
    :class:`~bayescale.model.laws.Centering`) is sampled at the reference point of
    its covariate, with the user's prior on the amplitude kept exactly.
    """
    import pymc as pm
    import pytensor.tensor as pt

    check_likelihood(likelihood)
    x = law_covariates(law, runs)
    observed = np.log(runs.column("loss"))
    centered = {c.amplitude: c for c in law.centerings if c.amplitude in priors and c.exponent in priors}
    coords: dict[str, Any] = {"run": np.arange(len(runs))}
    if law.pooled:
        groups, group_index = run_groups(law, runs)
        coords["group"] = groups
    labels = run_labels(runs)
    if labels is not None:
        coords[RUN_LABEL] = labels[0]
    with pm.Model(coords=coords) as model:
        # numpy float64, not Python floats: PyTensor casts a float like 2000.0 to float32.
        theta: dict[str, Any] = {k: np.float64(v) for k, v in fixed.items()}
        for p in model_parameters(law, likelihood, labels is not None):
            if p.name in priors and p.name not in centered:
                theta[p.name] = priors[p.name].create_variable(p.name)
        for name, c in centered.items():
            ref = float(np.mean(x[c.covariate]))
            prior = priors[name]
            start = float(np.median(np.log(prior.sample(np.random.default_rng(0), 101))))
            start -= float(np.median(priors[c.exponent].sample(np.random.default_rng(1), 101))) * ref
            # z = log(amplitude) - exponent * ref: the log of the term at the reference point.
            at_ref = pm.Flat(f"{name}_log_at_ref", initval=start)
            log_amplitude = at_ref + theta[c.exponent] * ref
            amplitude = pm.Deterministic(name, pt.exp(log_amplitude))
            # Prior on the amplitude, moved to log scale (+ log A) and sheared (unit Jacobian).
            pm.Potential(f"{name}_prior", pm.logp(_dist(prior), amplitude) + log_amplitude)
            theta[f"log_{name}"] = log_amplitude
            theta[name] = amplitude
        for name in law.pooled:
            log_population = theta[f"log_{name}"] if f"log_{name}" in theta else pt.log(theta[name])
            if name in law.pooled_noncentred:
                # Groups barely tell this parameter apart: tau near 0 makes a funnel of the centred
                # form (229 divergences for A, B on gadre-overtrain); sample standard offsets.
                offsets = pm.Normal(f"{name}_z", 0.0, 1.0, dims="group")
                log_group = log_population + theta[f"{name}_tau"] * offsets
            else:
                # Centred, log P_g ~ Normal(log P, tau): each group's runs pin its value, and the
                # centred form samples without the divergences the non-centred one showed for E.
                log_group = pm.Normal(
                    f"{name}_log_group", mu=log_population, sigma=theta[f"{name}_tau"], dims="group"
                )
            pm.Deterministic(group_variable(name), pt.exp(log_group), dims="group")
            theta[f"log_{name}"] = log_group[group_index]
            theta[name] = pt.exp(theta[f"log_{name}"])
        data = {k: pm.Data(k, v, dims="run") for k, v in x.items()}
        mu = law.log_loss(theta, data, ops.tensor())
        if labels is not None:
            # Checkpoints of one run share its offset: they are not independent runs. The offsets
            # are orthogonal to the runs' design (run_basis): their mean would be a ridge with the
            # law's level, their trend in N or D one with its exponents. Non-centred, so that
            # sigma_run near 0 (no offsets to see) is no funnel.
            z = pm.Normal(RUN_Z, 0.0, 1.0, dims=RUN_LABEL)
            basis = run_basis(law, runs, labels[1])
            sigma_run = theta["sigma_run"]
            effect = pm.Deterministic(RUN_EFFECT, project_offsets(z, basis, sigma_run), dims=RUN_LABEL)
            mu = mu + effect[labels[1]]
        pymc_noise(likelihood, mu, theta["sigma"], theta.get("nu"), OBSERVED, observed=observed, dims="run")
    return model


def draw_log_noise(
    rng: np.random.Generator, likelihood: Likelihood, theta: Mapping[str, Any], shape: tuple[int, ...]
) -> np.ndarray:
    """Run-to-run noise on log loss, one draw per (chain, draw, query) cell of ``shape``.

    With ``sigma_run`` in ``theta`` (a fit to checkpoints) each query is a new run:
    its own offset, drawn from the runs' spread, is added.
    """
    sigma = np.asarray(theta["sigma"])[..., None]
    if likelihood == "student_t":
        noise = rng.standard_t(np.asarray(theta["nu"])[..., None], size=shape) * sigma
    else:
        noise = rng.standard_normal(shape) * sigma
    if "sigma_run" in theta:
        noise = noise + rng.standard_normal(shape) * np.asarray(theta["sigma_run"])[..., None]
    return noise


def run_groups(law: ScalingLaw, runs: Runs) -> tuple[np.ndarray, np.ndarray]:
    """The sorted group labels of the runs and each run's index into them."""
    runs.require(("group",), f"law {law.name!r}")
    groups, index = np.unique(runs.frame["group"].astype(str).to_numpy(), return_inverse=True)
    return groups, index


def internal_variables(law: ScalingLaw) -> list[str]:
    """Names of sampler-only variables, dropped from the posterior a user sees."""
    return (
        [f"{c.amplitude}_log_at_ref" for c in law.centerings]
        + [f"{name}_z" if name in law.pooled_noncentred else f"{name}_log_group" for name in law.pooled]
        + [RUN_Z]
    )


def _dist(prior: Prior) -> Any:
    import pymc as pm

    return getattr(pm, prior.distribution).dist(**prior.kwargs)


def with_run_effects(theta: Mapping[str, Any], posterior: Any) -> dict[str, Any]:
    """``theta`` plus the posterior's per-run offsets (:data:`RUN_EFFECT`), when it has them.

    For densities of the fit's own checkpoints (:func:`log_likelihood_draws`,
    :func:`predictive_cdf`), which are conditional on their run's offset.
    """
    out = dict(theta)
    if RUN_EFFECT in posterior:
        out[RUN_EFFECT] = posterior[RUN_EFFECT]
    return out


def _residuals(
    law: ScalingLaw, likelihood: Likelihood, theta: Mapping[str, Any], runs: Runs
) -> tuple[Any, Any]:
    """Standardised residuals of log loss and their scale, dims ``chain``, ``draw``, ``run``.

    Without run offsets: ``(log loss - law's log mean) / sigma``. A fit to checkpoints
    (``sigma_run`` in ``theta``) subtracts the offset of a row's run where ``theta``
    has it (:func:`with_run_effects`, the fit's own runs); a row of any other run is
    a new run, whose unknown offset widens the scale to ``sqrt(sigma^2 + sigma_run^2)``
    (exact for the normal likelihood, an approximation for the Student-t).
    """
    import xarray as xr

    check_likelihood(likelihood)
    x = {k: xr.DataArray(v, dims="run") for k, v in law_covariates(law, runs).items()}
    observed = xr.DataArray(np.log(runs.column("loss")), dims="run")
    residual = observed - law.log_loss(theta, x, ops.NUMPY)
    scale = theta["sigma"]
    if "sigma_run" in theta:
        effects = theta.get(RUN_EFFECT)
        known: dict[str, int] = {}
        if effects is not None:
            known = {str(label): i for i, label in enumerate(effects[RUN_LABEL].values)}
        labels = runs.frame["run"].astype(str).to_numpy() if "run" in runs.frame else []
        index = np.array([known.get(label, -1) for label in labels] or [-1] * len(runs))
        seen = xr.DataArray(index >= 0, dims="run")
        if effects is not None and seen.any():
            offset = effects.isel({RUN_LABEL: xr.DataArray(np.maximum(index, 0), dims="run")})
            residual = residual - offset.where(seen, 0.0).drop_vars(RUN_LABEL, errors="ignore")
        scale = np.sqrt(theta["sigma"] ** 2 + xr.where(seen, 0.0, theta["sigma_run"] ** 2))
    z = residual / scale
    return z.transpose("chain", "draw", "run"), scale


def log_likelihood_draws(
    law: ScalingLaw, likelihood: Likelihood, theta: Mapping[str, Any], runs: Runs
) -> Any:
    """Log density of each run's log loss under each posterior draw, with numpy.

    The density the sampler uses (:func:`build_model`), evaluated on any runs:
    the fit's own (for PSIS-LOO) or held-out ones (for extrapolation). Every law
    is a density on log loss, so values of different laws on the same runs are
    comparable.

    Parameters
    ----------
    law, likelihood
        The law and the noise model (``"student_t"`` or ``"normal"``).
    theta
        Draws of every parameter (``xarray.DataArray`` with dims ``chain``, ``draw``).
    runs
        Runs with ``loss`` and the columns the law needs.

    Returns
    -------
    xarray.DataArray
        Dims ``chain``, ``draw``, ``run``: ``log p(log loss_i | theta_s)``.
    """
    z, sigma = _residuals(law, likelihood, theta, runs)
    logp = log_density(likelihood, z, sigma, theta.get("nu"), ops.NUMPY)
    return logp.transpose("chain", "draw", "run")


def predictive_cdf(law: ScalingLaw, likelihood: Likelihood, theta: Mapping[str, Any], runs: Runs) -> Any:
    """Posterior predictive probability of a loss below each run's observed loss (the PIT).

    The noise model's CDF at the observed log loss, averaged over draws: uniform
    on (0, 1) across runs when the predictive distribution is calibrated.

    Returns
    -------
    xarray.DataArray
        Dim ``run``.
    """
    from scipy import special

    z, _ = _residuals(law, likelihood, theta, runs)
    cdf = special.stdtr(theta["nu"], z) if likelihood == "student_t" else special.ndtr(z)
    return cdf.mean(dim=("chain", "draw"))
