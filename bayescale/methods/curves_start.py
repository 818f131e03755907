"""Where a curves fit starts: a prior per site, the least-squares point fit, the whitened density.

:func:`fit_curves_least_squares` is the point fit of the multi-power law the way Luo et al. fit
it (Huber loss, delta 1e-3, on log loss); :func:`~bayescale.methods.curves.fit_curves` searches
the posterior mode from the same fit and samples on coordinates whitened there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from bayescale.data.prepared_curves import CurvesData, ScheduleLike, prepare_curves
from bayescale.data.schedule import BINS
from bayescale.errors import BayescaleError
from bayescale.inference.sampling import mode_and_root
from bayescale.model.curve_density import CurveDensity
from bayescale.model.curve_laws import (
    MULTIPOWER_PARAMETERS,
    default_priors,
    features_dict,
    law_parameters,
    law_site_names,
    multipower_loss,
    noise_site_names,
)
from bayescale.model.jax_backend import setup_jax
from bayescale.model.likelihoods import Correlation
from bayescale.model.priors import Prior


def whitened_at_mode(density: CurveDensity) -> CurveDensity:
    """``density`` on coordinates whitened at its posterior mode (Laplace), or itself without a usable mode.

    The project's driver whitens only a posterior close to Gaussian 2 sds out; this one is
    not (its loss-drop parameters bend along a ridge: measured falls of 32-59 against the
    Gaussian's 2 on the 25M curves) and on the original coordinates, which differ in scale by
    ~1e3, NUTS crawls. Whitened, the driver samples these coordinates from jittered starts
    around the mode with a dense mass matrix adapted to what is left.
    """
    jax = setup_jax()
    import jax.numpy as jnp

    data = jax.tree.map(jnp.asarray, density.data)
    value_and_grad = jax.jit(jax.value_and_grad(lambda x: -density.logp(x, data)))
    hessian = jax.jit(jax.hessian(lambda x: -density.logp(x, data)))
    found = mode_and_root(value_and_grad, hessian, density.initial_point())
    return density if found is None else density.whitened(*found)


def _default_priors(data: CurvesData) -> dict[str, Prior]:
    return default_priors(data.lr_ref, float(data.frame["loss"].min()))


def site_priors(
    data: CurvesData, given: Mapping[str, Prior], correlation: Correlation, offsets: bool, walk: bool = False
) -> dict[str, Prior]:
    """A prior for every sampled parameter: ``given`` by site or base name, else the defaults.

    A size's ``L0`` prior sits below that size's lowest loss.
    """
    base = _default_priors(data)
    names = law_site_names(data.sizes) + noise_site_names(data.sizes, correlation, offsets, walk)
    known = set(base) | set(names)
    unknown = sorted(set(given) - known)
    if unknown:
        raise BayescaleError(f"priors for unknown parameters {unknown}; the parameters are {sorted(known)}")
    out = {}
    group = data.group
    loss = data.frame["loss"].to_numpy()
    for name in names:
        stem = name.split("[")[0]
        if name in given or stem in given:
            out[name] = given[name] if name in given else given[stem]
        elif stem == "L0" and len(data.sizes) > 1:
            size = data.sizes.index(name[3:-1])
            out[name] = default_priors(data.lr_ref, float(loss[group == size].min()))["L0"]
        else:
            out[name] = base[stem]
    return out


def least_squares_start(
    data: CurvesData, priors: Mapping[str, Prior], starts: int, seed: int
) -> dict[str, float]:
    """Huber (delta 1e-3) fit of log loss from ``starts`` starts drawn around the priors' centres.

    Over the law's sampled parameters (:func:`~bayescale.model.curve_laws.law_site_names`), the
    positive ones on the log scale; returns their values.
    """
    from scipy.optimize import least_squares

    jax = setup_jax()
    import jax.numpy as jnp

    features = {k: jnp.asarray(v) for k, v in features_dict(data.features).items()}
    y = jnp.asarray(np.log(data.frame["loss"].to_numpy()))
    names = law_site_names(data.sizes)
    logged = np.array([priors[k].distribution == "LogNormal" for k in names])
    log_lr_ref = math.log(data.lr_ref)
    group, log_size = jnp.asarray(data.group), jnp.asarray(data.log_size)

    def theta_of(x: Any, xp: Any) -> dict[str, Any]:
        values = xp.where(xp.asarray(logged), xp.exp(x), x)
        return {k: values[i] for i, k in enumerate(names)}

    def resid(x: Any) -> Any:
        law = law_parameters(theta_of(x, jnp), data.sizes, group, log_size, log_lr_ref, jnp)
        loss = multipower_loss(law, features, jnp)
        r = y - jnp.log(jnp.where(loss > 0, loss, 1e-300))
        return jnp.where(jnp.isfinite(r), r, 1e3)

    value, jacobian = jax.jit(resid), jax.jit(jax.jacfwd(resid))
    rng = np.random.default_rng(seed)
    best: Any = None
    for _ in range(starts):
        x0 = np.array([rng.normal(priors[k].kwargs["mu"], 0.5 * priors[k].kwargs["sigma"]) for k in names])
        res = least_squares(
            lambda x: np.asarray(value(x)),
            x0,
            jac=lambda x: np.asarray(jacobian(x)),
            loss="huber",
            f_scale=1e-3,
            method="trf",
            max_nfev=500,
        )
        if best is None or res.cost < best.cost:
            best = res
    return {k: float(v) for k, v in theta_of(best.x, np).items()}


def fit_curves_least_squares(
    curves: pd.DataFrame,
    schedules: Mapping[str, ScheduleLike],
    bins: int = BINS,
    starts: int = 20,
    seed: int = 0,
) -> dict[str, float]:
    """The multi-power law's point fit as Luo et al. make it: Huber (delta 1e-3) on log loss.

    Minimised with scipy's ``least_squares`` (``loss="huber"``, Jacobian by JAX) over the log
    parameters from ``starts`` starts drawn around the default priors' centres; the best end
    point is returned: the law's parameters
    (:data:`~bayescale.model.curve_laws.MULTIPOWER_PARAMETERS`) for one size, the sampled ones
    (``L0[<size>]``, ..., ``B_slope``, ``C_ref``) when ``curves`` has several N.
    """
    data = prepare_curves(curves, schedules, bins)
    fitted = least_squares_start(data, site_priors(data, {}, "none", False), starts, seed)
    if len(data.sizes) > 1:
        return fitted
    law = law_parameters(fitted, data.sizes, 0, data.log_size, math.log(data.lr_ref))
    return {k: float(law[k]) for k in MULTIPOWER_PARAMETERS}
