"""The front door of every fitting method: :func:`fit`.

``fit(runs, law)`` fits a parametric law (Approach 3); ``method=`` picks another method
of :data:`METHODS`: the IsoFLOP profiles (Approach 2), the training-curve envelope
(Approach 1) or Kaplan's L(N, S). Every method takes its sampler settings the same way
(``sampler=``, a :class:`~bayescale.SamplerConfig` or a mapping of some settings) and
returns a result with the same protocol (summary, intervals, ``save``/``load``,
``to_dict``, ``_repr_html_``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from bayescale.errors import BayescaleError
from bayescale.inference.sampling import SAMPLER_DEFAULTS, SamplerSettings, fold_sampler_keywords
from bayescale.methods.downstream import fit_link
from bayescale.methods.envelope import fit_envelope
from bayescale.methods.isoflop import fit_isoflop
from bayescale.methods.parametric import fit_parametric
from bayescale.methods.training_steps import fit_steps
from bayescale.model.laws import ScalingLaw

#: The fitting function of each ``method``; each takes the runs (curves, for ``envelope`` and
#: ``steps``) as its first argument, then its own options.
METHODS: dict[str, Callable[..., Any]] = {
    "parametric": fit_parametric,
    "isoflop": fit_isoflop,
    "envelope": fit_envelope,
    "steps": fit_steps,
    "link": fit_link,
}

#: The loader options ``fit`` hands to :meth:`~bayescale.Runs.from_any` (or
#: :meth:`~bayescale.Curves.from_any` for ``envelope`` and ``steps``) to read a raw table.
LOADER_OPTIONS = ("columns", "where", "best_of", "flops_per_param_token")


def load_data(runs: Any, method: str, options: dict[str, Any]) -> Any:
    """The data of ``method`` read with the loader options popped from ``options`` (none: as given)."""
    from bayescale.data.curves import Curves
    from bayescale.data.runs import Runs

    load = {name: options.pop(name) for name in LOADER_OPTIONS if name in options}
    load = {name: value for name, value in load.items() if value is not None}
    if not load:
        return runs
    return (Curves if method in ("envelope", "steps") else Runs).from_any(runs, **load)


def fit(
    runs: Any,
    law: str | ScalingLaw | None = None,
    *,
    method: str = "parametric",
    sampler: SamplerSettings | None = None,
    random_seed: int | None = None,
    progressbar: bool = True,
    warn: bool = True,
    **options: Any,
) -> Any:
    """Fit a scaling law, or another method of :data:`METHODS`, and return its posterior.

    Parameters
    ----------
    runs
        The data: a :class:`~bayescale.Runs` (a :class:`~bayescale.Curves` for ``envelope``
        and ``steps``), a DataFrame, a CSV/Parquet path or the name of a bundled data set.
    law
        The parametric law (``method="parametric"`` only): a registered name (see
        :func:`bayescale.list_laws`) or a :class:`~bayescale.ScalingLaw`; default
        ``"chinchilla"``.
    method
        ``"parametric"`` (default; :func:`~bayescale.methods.parametric.fit_parametric`, a
        :class:`~bayescale.Fit`), ``"isoflop"`` (:func:`~bayescale.methods.isoflop.fit_isoflop`,
        an :class:`~bayescale.IsoflopFit`), ``"envelope"``
        (:func:`~bayescale.methods.envelope.fit_envelope`, an :class:`~bayescale.EnvelopeFit`),
        ``"steps"`` (:func:`~bayescale.methods.training_steps.fit_steps`, a
        :class:`~bayescale.StepsFit`) or ``"link"`` (:func:`~bayescale.methods.downstream.fit_link`,
        a :class:`~bayescale.Fit` of a task's error or accuracy in a loss).
    sampler
        Sampler settings: a :class:`~bayescale.SamplerConfig`, or a mapping of some of
        ``draws``, ``tune``, ``chains``, ``backend`` and ``target_accept``, e.g.
        ``{"draws": 500, "chains": 2}``; the rest are the method's defaults (its
        ``SAMPLER_DEFAULTS``; for the parametric method
        :func:`~bayescale.methods.parametric.sampler_defaults`).
    random_seed
        Seed for reproducible draws. When ``None``, one is drawn and kept as the result's
        ``random_seed`` (and saved with it), so the fit can be re-run exactly.
    progressbar
        Show the sampler's progress: a line per stage on stderr, and on a terminal a bar
        (long fits only on the JAX fast path).
    warn
        Emit a :class:`~bayescale.FitWarning` when the diagnostics fail.
    **options
        The method's own options, e.g. ``priors=``, ``fix=``, ``likelihood=`` (parametric),
        ``group=``, ``window=``, ``shape=`` (isoflop), ``correlation=`` (envelope, steps):
        see each method's function. The sampler keywords of earlier releases (``draws=``,
        ``tune=``, ``chains=``, ``backend=``, ``target_accept=``) are deprecated: give them in
        ``sampler``. Until the next release they still override it, with a
        :class:`DeprecationWarning`. The loader options ``columns=`` (``{"loss": "loss_c4_en"}``),
        ``where=``, ``best_of=`` and ``flops_per_param_token=`` (the table's FLOP convention)
        read a raw table (see :meth:`bayescale.Runs.from_any`) before the method sees it.

    Returns
    -------
    Fit, IsoflopFit, EnvelopeFit or StepsFit

    Examples
    --------
    >>> import bayescale as bs
    >>> fit = bs.fit("chinchilla", law="chinchilla", sampler={"chains": 2}, random_seed=1)  # doctest: +SKIP
    >>> iso = bs.fit("chinchilla", method="isoflop", random_seed=1)  # doctest: +SKIP
    """
    if method not in METHODS:
        raise BayescaleError(f"unknown method {method!r}; use one of {list(METHODS)}")
    runs = load_data(runs, method, options)
    deprecated = {name: options.pop(name) for name in SAMPLER_DEFAULTS if name in options}
    sampler = fold_sampler_keywords(sampler, deprecated, "bayescale.fit")
    if method == "parametric":
        options["law"] = "chinchilla" if law is None else law
    elif law is not None:
        raise BayescaleError(
            f"law={law!r} applies to the parametric method only; method={method!r} fits no named law"
        )
    return METHODS[method](
        runs, sampler=sampler, random_seed=random_seed, progressbar=progressbar, warn=warn, **options
    )


def deprecated_method_function(name: str, method: str) -> Callable[..., Any]:
    """The thin wrapper kept for one release under ``bayescale.<name>``: ``fit(..., method=method)``."""

    def wrapper(runs: Any, **kwargs: Any) -> Any:
        warnings.warn(
            f"bayescale.{name}(...) is deprecated and will be removed in the next release; "
            f"use bayescale.fit(..., method={method!r})",
            DeprecationWarning,
            stacklevel=2,
        )
        return fit(runs, method=method, **kwargs)

    wrapper.__name__ = wrapper.__qualname__ = name
    wrapper.__doc__ = f"Deprecated: ``bayescale.fit(runs, method={method!r}, ...)``."
    return wrapper
