"""The figure kinds of ``bayescale plot``: the function drawing each and the options it takes.

A kind is drawn from a saved result by :func:`draw`. Options a kind does not take are
refused, naming the kinds that take them, so a mistyped command never silently draws
the default figure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from bayescale.errors import BayescaleError
from bayescale.plots import comparison, curves, methods, posterior
from bayescale.plots._common import check_range


@dataclass(frozen=True)
class PlotOptions:
    """What a figure can be told (the ``plot`` command's options); ``None`` keeps its default.

    Attributes
    ----------
    compute
        Budgets [FLOPs] (``--compute``, repeatable): the IsoFLOP profiles drawn.
    params
        Model sizes N (``--params``, repeatable): the curves of ``loss``, ``loss-tokens``, ``epochs``.
    unique_tokens
        U (``--unique-tokens``): the unique data repeated in ``epochs``.
    x_range
        (low, high) of the x axis (``--x-range LO HI``): compute, N, D or epochs, by kind.
    train_below
        Compute [FLOPs] below which ``extrapolation`` refits the law (``--train-below``).
    """

    compute: Sequence[float] | None = None
    params: Sequence[float] | None = None
    unique_tokens: float | None = None
    x_range: Sequence[float] | None = None
    train_below: float | None = None


#: Command-line spelling of each option, for messages.
FLAGS = {
    "compute": "--compute",
    "params": "--params",
    "unique_tokens": "--unique-tokens",
    "x_range": "--x-range",
    "train_below": "--train-below",
}


def default_train_below(fit: Any) -> float:
    """The default split of a fit's runs by compute (see ``checks.extrapolation.default_train_below``)."""
    from bayescale.checks.extrapolation import default_train_below as on_values

    return on_values(fit.runs.frame["compute"])


def _extrapolation(fit: Any, o: PlotOptions) -> Any:
    from bayescale.checks.extrapolation import extrapolate

    threshold = o.train_below if o.train_below is not None else default_train_below(fit)
    settings = fit.sampler.to_dict()
    result = extrapolate(
        fit.runs,
        fit.law.name,
        threshold=threshold,
        by="compute",
        random_seed=fit.random_seed if isinstance(fit.random_seed, int) else None,
        priors=fit.priors,
        fix=fit.fixed,
        likelihood=fit.likelihood,
        sampler={k: settings[k] for k in ("draws", "tune", "chains")},
        progressbar=False,
        warn=False,
    )
    ax = comparison.plot_extrapolation(result.runs, prob=0.9)
    ax.set_title(
        f"{fit.law.name} law fitted below {threshold:.3g} FLOPs:\n"
        f"{ax.get_title().removeprefix('Extrapolation: ')}",
        fontsize="medium",
    )
    return ax


def _prior_predictive(fit: Any, o: PlotOptions) -> Any:
    from bayescale.checks.prior_predictive import prior_predictive

    seed = fit.random_seed if isinstance(fit.random_seed, int) else 0
    draws = prior_predictive(
        fit.law, fit.runs, priors=fit.priors, fix=fit.fixed, likelihood=fit.likelihood, random_seed=seed
    )
    return posterior.plot_prior_predictive(draws, fit.runs)


def _range(o: PlotOptions) -> tuple[float, float] | None:
    return check_range(o.x_range, "the x range (--x-range)")


@dataclass(frozen=True)
class Kind:
    """One figure kind: what it draws from, the options it takes, and the drawing."""

    draw: Callable[[Any, PlotOptions], Any]
    options: tuple[str, ...] = ()
    result: str = "fit"  # the saved result it draws: "fit" (a law) or "isoflop"
    help: str = ""


def _loss(x: str, help: str) -> Kind:
    """Loss against ``x``; curves at the given N (``--params``) where N is what each curve fixes."""
    by_params = x != "params"
    return Kind(
        lambda f, o: curves.plot_loss(f, x, curves=o.params if by_params else None, x_range=_range(o)),
        ("params", "x_range") if by_params else ("x_range",),
        help=help,
    )


_ALLOCATION = Kind(
    lambda f, o: curves.plot_allocation(f, compute_range=_range(o)),
    ("x_range",),
    help="compute-optimal N_opt(C) and D_opt(C)",
)

#: Every kind of ``bayescale plot``.
KINDS: dict[str, Kind] = {
    "frontier": _ALLOCATION,
    "allocation": _ALLOCATION,
    "loss-frontier": Kind(
        lambda f, o: curves.plot_frontier(f, compute_range=_range(o)),
        ("x_range",),
        help="compute-optimal loss against compute, with the runs",
    ),
    "loss": _loss("compute", "loss against compute at fixed N"),
    "loss-params": _loss("params", "loss against N at fixed D"),
    "loss-tokens": _loss("tokens", "loss against D at fixed N"),
    "isoflop": Kind(
        lambda f, o: curves.plot_isoflop(f, budgets=o.compute),
        ("compute",),
        help="the law's IsoFLOP profiles at fixed budgets",
    ),
    "pair": Kind(lambda f, o: posterior.plot_pair(f), help="joint posterior of E, alpha_N, alpha_D"),
    "prior-posterior": Kind(lambda f, o: posterior.plot_prior_posterior(f), help="prior against posterior"),
    "prior-predictive": Kind(_prior_predictive, help="what the fit's priors predict for its runs"),
    "residuals": Kind(lambda f, o: posterior.plot_residuals(f), help="residuals with predictive intervals"),
    "ppc": Kind(lambda f, o: posterior.plot_ppc(f), help="posterior predictive check"),
    "extrapolation": Kind(
        _extrapolation,
        ("train_below",),
        help="refit below a compute, predict the held-out larger runs",
    ),
    "epochs": Kind(
        lambda f, o: curves.plot_epochs(f, unique_tokens=o.unique_tokens, params=o.params, epochs=_range(o)),
        ("unique_tokens", "params", "x_range"),
        help="loss against epochs over U unique tokens (repeated-data laws)",
    ),
    "repeated-value": Kind(
        lambda f, o: curves.plot_repeated_value(f, epochs=_range(o)),
        ("x_range",),
        help="effective data D'/U against epochs (data-constrained law)",
    ),
    "isoflop-fit": Kind(
        lambda r, o: methods.plot_isoflop_fit(r),
        result="isoflop",
        help="a saved IsoFLOP fit's profiles and its line of optima",
    ),
}

#: What each kind of result is called in messages.
RESULT_NAMES = {
    "fit": "a parametric fit (bayescale fit)",
    "isoflop": "an IsoFLOP fit (bayescale isoflop)",
    "envelope": "a training-curve envelope fit (bayescale envelope)",
    "steps": "a Kaplan L(N, S) fit (bayescale steps)",
}


def draw(kind: str, result: Any, options: PlotOptions | None = None) -> Any:
    """Draw figure ``kind`` of a saved result; returns the Axes or Figure drawn.

    Parameters
    ----------
    kind
        A key of :data:`KINDS`.
    result
        A loaded result (:func:`bayescale.load_fit`): a parametric fit, or an IsoFLOP fit for
        ``isoflop-fit``.
    options
        The figure's options; each given one must be among the kind's.
    """
    if kind not in KINDS:
        raise BayescaleError(f"unknown figure kind {kind!r}; use one of {sorted(KINDS)}")
    from bayescale.methods.io import kind_of

    spec = KINDS[kind]
    options = options or PlotOptions()
    result_kind = kind_of(result)
    if result_kind != spec.result:
        fitting = sorted(k for k, s in KINDS.items() if s.result == result_kind)
        raise BayescaleError(
            f"the {kind!r} figure needs {RESULT_NAMES[spec.result]}; this is "
            f"{RESULT_NAMES.get(result_kind, 'another result')}"
            + (f", whose figures are {', '.join(fitting)}" if fitting else ", which has no figure kind yet")
        )
    for field in fields(PlotOptions):
        if getattr(options, field.name) is not None and field.name not in spec.options:
            takers = sorted(k for k, s in KINDS.items() if field.name in s.options)
            raise BayescaleError(
                f"{FLAGS[field.name]} does not apply to the {kind!r} figure; "
                f"it applies to {', '.join(takers)}"
            )
    return spec.draw(result, options)
