"""Laws of downstream scaling: Gadre's loss law and the links from a loss to a task's accuracy or error.

A link is a law like the others (named parameters with priors as data, one log-space mean
written over the ops namespace), so the parametric method fits it with the project's sampler,
JAX fast path included. Its covariate is a loss column, ``input_loss`` (see
:data:`LINK_COVARIATE`), and its target (the runs' ``loss`` column when fitted) is the task's
top-1 error or accuracy, in (0, 1]; the noise is on the log of the target, as for a loss.

- ``chinchilla-tied``: ``L = E + A/N^alpha + B/D^alpha`` (one exponent): Gadre et al. (2024)'s
  ``L(N, M) = E + a N^b + beta 6^(b/2) (M N)^b`` with ``alpha = -b``, ``A = a``,
  ``B = beta 6^(b/2)`` and ``D = M N``.
- ``link-exponential``: ``Err(L) = eps - k exp(-gamma L)`` (Gadre et al. 2024, eq. 4).
- ``link-sigmoid``: ``Acc(x) = floor + (1 - floor) headroom / (1 + exp(k (x - x0)))``: the OLMo
  ladder's ``a / (1 + exp(-k (x - x0))) + b`` (Bhagia et al. 2024) with ``b = floor`` (a task's
  chance level) and ``a = (1 - floor) headroom``, so the ceiling ``a + b`` stays at most 1 and
  accuracy falls as the task loss ``x`` grows (``k > 0`` here is ``-k`` there).
- ``link-sigmoid-size``: the sigmoid with its midpoint at ``x0 + shift log(N / 1e9)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any, ClassVar

from bayescale.errors import LawError
from bayescale.model.laws.base import Centering, Parameter, ScalingLaw, register
from bayescale.model.laws.chinchilla import A, B, E, theta_log
from bayescale.model.laws.ops import logsumexp
from bayescale.model.priors import Prior

#: The column a link reads its input loss from (the runs' ``loss`` column holds its target).
LINK_COVARIATE = "input_loss"

#: The smallest mean a link may give: a mean at or below zero has no log (its draws get no weight).
_FLOOR = 1e-12

ALPHA = Parameter(
    "alpha",
    Prior("LogNormal", mu=-1.0, sigma=0.6),
    "exponents of published LM fits lie in 0.05-0.8 (Gadre's -b: 0.24-0.27); median 0.37, 90% in 0.14-0.98",
    "exponent of both the model-size and the data term",
)


class TiedChinchillaLaw(ScalingLaw):
    """L(N, D) = E + A / N^alpha + B / D^alpha: Gadre et al. (2024)'s law, one exponent for N and D."""

    name = "chinchilla-tied"
    title = "Chinchilla with one exponent (Gadre et al. 2024)"
    reference = (
        "Gadre et al. 2024, Language models scale reliably with over-training and on downstream tasks, "
        "eq. 3: L(N, M) = E + a N^b + beta 6^(b/2) (M N)^b"
    )
    formula = "L = E + A / N^alpha + B / D^alpha"
    parameters = (E, A, B, ALPHA)
    centerings = (Centering("A", "alpha", "log_params"), Centering("B", "alpha", "log_tokens"))

    def log_loss(self, theta: Mapping[str, Any], x: Mapping[str, Any], ops: SimpleNamespace) -> Any:
        """``log(E + A N^-alpha + B D^-alpha)`` as a log-sum-exp of three terms."""
        return logsumexp(
            [
                theta_log(theta, "E", ops),
                theta_log(theta, "A", ops) - theta["alpha"] * x["log_params"],
                theta_log(theta, "B", ops) - theta["alpha"] * x["log_tokens"],
            ],
            ops,
        )


class LinkLaw(ScalingLaw):
    """A law of a task's error or accuracy in a loss: reads ``input_loss``, not (N, D).

    Subclasses implement :meth:`mean` (the target in the input loss); :meth:`log_loss`
    takes its log, floored at a tiny positive value so a draw whose mean crosses zero gets
    a vanishing likelihood rather than NaN.
    """

    required_columns: ClassVar[tuple[str, ...]] = (LINK_COVARIATE,)
    #: ``"error"`` or ``"accuracy"``: what the target measures (error falls as the loss falls).
    target: str = "error"

    def mean(self, theta: Mapping[str, Any], loss: Any, ops: SimpleNamespace) -> Any:
        """The mean target at input loss ``loss`` (nats per token or bits per byte, as fitted)."""
        raise NotImplementedError

    def log_loss(self, theta: Mapping[str, Any], x: Mapping[str, Any], ops: SimpleNamespace) -> Any:
        """Log of :meth:`mean` at ``exp(x["log_input_loss"])``."""
        return ops.log(ops.maximum(self.mean(theta, ops.exp(x[f"log_{LINK_COVARIATE}"]), ops), _FLOOR))


EPS = Parameter(
    "eps",
    Prior("Beta", alpha=4.0, beta=1.5),
    "error at infinite loss, i.e. near chance: Gadre's 17/46-task fits give 0.85/0.76, a 4-choice task "
    "0.75, a binary one 0.5; Beta(4, 1.5): median 0.76, 90% in 0.42-0.97",
    "error the law tends to as the loss grows (about the chance error)",
)
K_EXP = Parameter(
    "k",
    Prior("LogNormal", mu=0.5, sigma=1.0),
    "Gadre's fits give k = 1.3-2.2 for losses in nats per token; median 1.65, 90% in 0.32-8.5",
    "amplitude of the exponential",
)
GAMMA = Parameter(
    "gamma",
    Prior("LogNormal", mu=-0.2, sigma=0.7),
    "Gadre's fits give gamma = 0.71-0.97 per nat; median 0.82, 90% in 0.26-2.6",
    "rate of the exponential, per unit of input loss",
)


class ExponentialLink(LinkLaw):
    """Err(L) = eps - k exp(-gamma L): Gadre et al. (2024)'s average top-1 error in the loss."""

    name = "link-exponential"
    title = "Error from loss, exponential (Gadre et al. 2024)"
    reference = "Gadre et al. 2024, eq. 4: Err(L) = eps - k exp(-gamma L)"
    formula = "Err = eps - k exp(-gamma L)"
    parameters = (EPS, K_EXP, GAMMA)
    target = "error"

    def mean(self, theta: Mapping[str, Any], loss: Any, ops: SimpleNamespace) -> Any:
        """``eps - k exp(-gamma L)``."""
        return theta["eps"] - theta["k"] * ops.exp(-theta["gamma"] * loss)


FLOOR = Parameter(
    "floor",
    Prior("Beta", alpha=2.0, beta=4.0),
    "accuracy at chance: 0.25 for 4 choices, 0.5 for 2, ~0 for generation; fix it at the task's chance "
    "level when known. Beta(2, 4): median 0.31, 90% in 0.08-0.66",
    "accuracy as the task loss grows (chance level)",
)
HEADROOM = Parameter(
    "headroom",
    Prior("Beta", alpha=3.0, beta=1.5),
    "share of the way from chance to perfect the ceiling reaches; OLMo's fitted ceilings are 0.6-1.0 of it. "
    "Beta(3, 1.5): median 0.70, 90% in 0.33-0.96",
    "ceiling of the accuracy, as a share of 1 - floor",
)
K_SIGMOID = Parameter(
    "k",
    Prior("LogNormal", mu=1.5, sigma=1.0),
    "OLMo's sigmoids have |k| 2-20 per bit per byte; median 4.5, 90% in 0.87-23",
    "steepness of the sigmoid, per unit of input loss",
)
X0 = Parameter(
    "x0",
    Prior("Normal", mu=1.0, sigma=1.0),
    "midpoint in task loss: OLMo's tasks sit at 0.5-1.5 bits per byte; Normal(1, 1)",
    "input loss at which accuracy is halfway between floor and ceiling",
)


class SigmoidLink(LinkLaw):
    """Acc(x) = floor + (1 - floor) headroom / (1 + exp(k (x - x0))): the OLMo ladder's sigmoid."""

    name = "link-sigmoid"
    title = "Accuracy from task loss, sigmoid (Bhagia et al. 2024)"
    reference = (
        "Bhagia et al. 2024, Establishing Task Scaling Laws via Compute-Efficient Model Ladders, "
        "eq. 3: Acc(x) = a / (1 + exp(-k (x - x0))) + b"
    )
    formula = "Acc = floor + (1 - floor) headroom / (1 + exp(k (x - x0)))"
    parameters = (FLOOR, HEADROOM, K_SIGMOID, X0)
    target = "accuracy"

    def mean(self, theta: Mapping[str, Any], loss: Any, ops: SimpleNamespace) -> Any:
        """``floor + (1 - floor) headroom sigmoid(-k (x - x0))``."""
        floor = theta["floor"]
        return floor + (1.0 - floor) * theta["headroom"] / (1.0 + ops.exp(theta["k"] * (loss - theta["x0"])))

    def log_loss(self, theta: Mapping[str, Any], x: Mapping[str, Any], ops: SimpleNamespace) -> Any:
        """``log floor + log(1 + (1/floor - 1) headroom sigmoid)``: the mean is above ``floor``, never 0."""
        return sigmoid_log_mean(theta, ops.exp(x[f"log_{LINK_COVARIATE}"]), theta["x0"], ops)


def sigmoid_log_mean(theta: Mapping[str, Any], loss: Any, midpoint: Any, ops: SimpleNamespace) -> Any:
    """Log of ``floor + (1 - floor) headroom / (1 + exp(k (loss - midpoint)))``, never of 0."""
    floor = theta["floor"]
    rise = theta["headroom"] / (1.0 + ops.exp(theta["k"] * (loss - midpoint)))
    return ops.log(floor) + ops.log1p((1.0 / floor - 1.0) * rise)


#: Model size at which :class:`SizeSigmoidLink`'s midpoint is ``x0`` (1e9 parameters).
SIZE_PIVOT = 1e9

SHIFT = Parameter(
    "shift",
    Prior("Normal", mu=0.0, sigma=0.1),
    "move of the midpoint per e-fold of parameters, in units of the input loss: on the OLMo ladder a 3x "
    "larger model scores ~3 points higher at the same task loss, a shift of ~0.03 bits per byte; "
    "Normal(0, 0.1) allows 0.3 per e-fold, more than the ladder's whole range of midpoints",
    "how far the midpoint moves per e-fold of model size (> 0: larger models score higher at the same loss)",
)


class SizeSigmoidLink(LinkLaw):
    """The sigmoid with a midpoint that moves with size: ``x0(N) = x0 + shift log(N / 1e9)``.

    At the same task loss a larger model may score higher (the OLMo ladder's 3B rung does): the
    loss of the correct answer does not carry everything the model knows. ``shift = 0`` is
    :class:`SigmoidLink`. The link reads ``params`` besides the input loss, so a chained answer
    takes the query's N too.
    """

    name = "link-sigmoid-size"
    title = "Accuracy from task loss, sigmoid whose midpoint moves with model size"
    reference = (
        "Bhagia et al. 2024's sigmoid (eq. 3) with x0 + shift log(N / 1e9): larger models score higher "
        "at the same task loss"
    )
    formula = "Acc = floor + (1 - floor) headroom / (1 + exp(k (x - x0 - shift log(N / 1e9))))"
    parameters = (FLOOR, HEADROOM, K_SIGMOID, X0, SHIFT)
    required_columns = (LINK_COVARIATE, "params")
    target = "accuracy"

    def log_loss(self, theta: Mapping[str, Any], x: Mapping[str, Any], ops: SimpleNamespace) -> Any:
        """:meth:`SigmoidLink.log_loss` with the midpoint at ``x0 + shift (log N - log 1e9)``."""
        midpoint = theta["x0"] + theta["shift"] * (x["log_params"] - math.log(SIZE_PIVOT))
        return sigmoid_log_mean(theta, ops.exp(x[f"log_{LINK_COVARIATE}"]), midpoint, ops)


TIED = register(TiedChinchillaLaw())

#: The links by name. They are not in the registry of loss laws (:func:`~bayescale.list_laws`):
#: they read a loss, not (N, D), so the loss-law questions (planning, SBC over every law) skip them.
LINKS: dict[str, LinkLaw] = {law.name: law for law in (ExponentialLink(), SigmoidLink(), SizeSigmoidLink())}


def get_link(name: str | LinkLaw) -> LinkLaw:
    """The link called ``name`` (a :class:`LinkLaw` passes through)."""
    if isinstance(name, LinkLaw):
        return name
    try:
        return LINKS[name]
    except KeyError:
        raise LawError(f"unknown link {name!r}; available: {', '.join(sorted(LINKS))}") from None
