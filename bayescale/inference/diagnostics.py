"""Convergence diagnostics computed on every fit (r_hat, bulk ESS, divergences, modes, tree depth)."""

from __future__ import annotations

import itertools
import json
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bayescale.inference import container, convergence

#: Thresholds a fit must meet (Vehtari et al. 2021 recommend r_hat <= 1.01, ESS >= 400).
MAX_R_HAT = 1.01
MIN_ESS_BULK = 400
#: NUTS's maximum tree depth (numpyro's, PyMC's and nutpie's default): at most 2**10 - 1 leapfrog steps.
MAX_TREE_DEPTH = 10
#: Share of draws at the maximum tree depth above which the fit gets a warning (Stan's practice).
MAX_TREE_DEPTH_SHARE = 0.01
#: The ``sample_stats`` attribute where the fast path records, as JSON, each separate mode's chains and
#: share of the posterior mass (:mod:`bayescale.inference.modes`), ``null`` if it could not weigh them.
MODE_MASS_ATTR = "mode_mass"
#: The NUTS target acceptance rate of :func:`bayescale.fit` (the advice on divergences starts from it).
DEFAULT_TARGET_ACCEPT = 0.95


class FitWarning(UserWarning):
    """A fit whose diagnostics fail: its answers may not be trustworthy."""


#: The keys of a diagnostics report in the order :func:`compute` writes them; the first two only
#: when the sampler recorded them.
_KEYS = (
    "sampler_path",
    "mode_mass",
    "median_steps",
    "max_tree_depth_share",
    "warnings",
    "restarted_chains",
    "divergences",
    "max_r_hat",
    "min_ess_bulk",
    "r_hat",
    "ess_bulk",
    "ok",
    "problems",
)
#: The keys every report has (a saved fit without one is refused).
REQUIRED_KEYS = ("divergences", "max_r_hat", "min_ess_bulk", "r_hat", "ess_bulk", "ok", "problems")


@dataclass(frozen=True, eq=False)
class Diagnostics(Mapping[str, Any]):
    """A fit's convergence diagnostics, from :func:`compute` or read from a saved fit.

    Read by attribute (``fit.diagnostics.ok``); reading by key (``fit.diagnostics["ok"]``,
    ``.get``, ``dict(...)``) gives what the dict of earlier releases held, and :meth:`to_dict`
    the JSON a saved fit stores (the keys it was built from, in their order: a file read back
    is written back the same).

    Attributes
    ----------
    divergences
        Divergent transitions after warm-up.
    max_r_hat, min_ess_bulk
        The worst r_hat and bulk ESS over the free parameters (r_hat NaN with one chain).
    r_hat, ess_bulk
        Per parameter (a vector parameter by its worst element).
    ok
        Whether every check passed.
    problems
        What failed, each with what to do.
    warnings
        What the sampler struggled with without failing (saturated trees).
    median_steps, max_tree_depth_share
        Leapfrog steps per draw and the share of draws at :data:`MAX_TREE_DEPTH` (NaN when the
        sampler does not report them; ``None`` in a fit saved before they were recorded).
    restarted_chains
        Chains restarted after a collapsed warm-up (``None`` when not recorded).
    sampler_path
        Which sampler drew the tree and why, when it said.
    mode_mass
        Each separate mode's chains and share of the posterior mass, when weighed.
    """

    divergences: int
    max_r_hat: float
    min_ess_bulk: float
    r_hat: dict[str, float]
    ess_bulk: dict[str, float]
    ok: bool
    problems: list[str]
    warnings: list[str] = field(default_factory=list)
    median_steps: float | None = None
    max_tree_depth_share: float | None = None
    restarted_chains: list[int] | None = None
    sampler_path: str | None = None
    mode_mass: list[dict[str, Any]] | None = None
    #: The keys the report holds, in order (default: each field that is set, in :func:`compute`'s order).
    keys_held: tuple[str, ...] = field(default=(), repr=False)
    #: Keys of a saved report this version does not know, kept as read.
    other: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.keys_held:
            held = [k for k in _KEYS if k in REQUIRED_KEYS or getattr(self, k) is not None]
            object.__setattr__(self, "keys_held", (*held, *self.other))

    @classmethod
    def from_dict(cls, report: Mapping[str, Any]) -> Diagnostics:
        """The report of a dict such as :meth:`to_dict` gives (a saved fit's); TypeError if not one."""
        if not isinstance(report, Mapping):
            raise TypeError(f"diagnostics must be a JSON object, got {type(report).__name__}")
        missing = [k for k in REQUIRED_KEYS if k not in report]
        if missing:
            raise TypeError(f"diagnostics lack {missing}")
        known = {k: report[k] for k in _KEYS if k in report}
        other = {k: v for k, v in report.items() if k not in _KEYS}
        return cls(**known, keys_held=tuple(report), other=other)

    def to_dict(self) -> dict[str, Any]:
        """The report as a dict, with the keys it holds (JSON-ready: what a saved fit stores)."""
        return {k: self[k] for k in self.keys_held}

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys_held:
            raise KeyError(key)
        return self.other[key] if key in self.other else getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys_held)

    def __len__(self) -> int:
        return len(self.keys_held)


def compute(idata: Any, names: list[str]) -> Diagnostics:
    """Diagnostics of the free parameters ``names`` of a sampled tree (:mod:`~bayescale.inference.container`).

    Returns
    -------
    Diagnostics
        ``divergences``, ``max_r_hat``, ``min_ess_bulk``, per-parameter
        ``r_hat`` and ``ess_bulk``, ``ok``, a list of ``problems``,
        ``restarted_chains`` (chains restarted after a collapsed warm-up),
        ``median_steps`` (leapfrog steps per draw, NaN when the sampler does
        not report them), ``max_tree_depth_share`` (share of draws whose tree
        reached :data:`MAX_TREE_DEPTH`, NaN likewise), ``warnings``, and ``sampler_path``
        (which sampler drew the tree and why, when the sampler recorded it).
        Saturated trees are a warning, not a problem: the draws stay valid
        (r_hat and ESS judge them), but the sampler wastes its work on a
        posterior it cannot cross in one trajectory.
    """
    posterior = container.posterior(idata)[names]
    stats = container.group(idata, "sample_stats")
    chains = posterior.sizes["chain"]
    # A vector variable (one value per group) is judged by its worst element.
    per_r_hat, per_ess = {}, {}
    for n in names:
        columns = _scalar_draws(posterior[n])
        per_r_hat[n] = _worst(max, [convergence.r_hat(c) for c in columns]) if chains > 1 else float("nan")
        per_ess[n] = _worst(min, [convergence.ess_bulk(c) for c in columns])
    divergences = int(stats["diverging"].sum()) if "diverging" in stats else 0
    max_r_hat = max(per_r_hat.values()) if chains > 1 else float("nan")
    min_ess = min(per_ess.values())
    problems = []
    if divergences:
        problems.append(
            f"{divergences} divergent transitions: raise target_accept above the "
            f"{DEFAULT_TARGET_ACCEPT} default (e.g. bayescale.fit(..., sampler={{'target_accept': 0.99}}), "
            "--target-accept 0.99 on the command line), tighten the priors, "
            "or check that the law suits the data"
        )
    if np.isfinite(max_r_hat) and max_r_hat > MAX_R_HAT:
        worst = max(per_r_hat, key=per_r_hat.__getitem__)
        problems.append(
            f"max r_hat {max_r_hat:.3f} > {MAX_R_HAT} (worst: {worst}): chains disagree; "
            "run more tuning steps and draws, or check for a multimodal posterior"
        )
        modes = separate_modes(posterior[worst].values)
        if modes:
            problems.append(_modes_message(worst, posterior[worst].values, modes, idata))
    mode_mass = _mode_mass(stats.attrs.get(MODE_MASS_ATTR))
    if MODE_MASS_ATTR in stats.attrs:
        problems.append(_mass_message(mode_mass))
    if min_ess < MIN_ESS_BULK:
        worst = min(per_ess, key=per_ess.__getitem__)
        problems.append(f"min bulk ESS {min_ess:.0f} < {MIN_ESS_BULK} (worst: {worst}): run more draws")
    # The fast path restarts a chain whose warm-up collapsed from a healthy chain's state
    # (nuts._end_warmup): not a failure, but that chain did not start independently.
    restarted = []
    if "restarted" in stats:
        restarted = [int(c) for c in np.flatnonzero(stats["restarted"].any("draw").values)]
    median_steps, saturated = tree_stats(stats)
    notes = []
    if saturated > MAX_TREE_DEPTH_SHARE:
        notes.append(
            f"{saturated:.1%} of draws reached the maximum tree depth ({MAX_TREE_DEPTH}; median "
            f"{median_steps:.0f} leapfrog steps per draw): the posterior has a long or curved ridge; "
            "sampling is slow and its ESS low. Often parameters the runs cannot tell apart: fix one "
            "or give informed priors (--priors-from), or add runs that separate them"
        )
    path = stats.attrs.get("sampler_path")
    return Diagnostics(
        sampler_path=str(path) if path else None,
        mode_mass=mode_mass or None,
        median_steps=median_steps,
        max_tree_depth_share=saturated,
        warnings=notes,
        restarted_chains=restarted,
        divergences=divergences,
        max_r_hat=max_r_hat,
        min_ess_bulk=min_ess,
        r_hat=per_r_hat,
        ess_bulk=per_ess,
        ok=not problems,
        problems=problems,
    )


def _worst(pick: Any, values: list[float]) -> float:
    """``pick`` (max or min) of the values that are not NaN, or NaN if none is (as xarray's skipna)."""
    finite = [v for v in values if not np.isnan(v)]
    return float(pick(finite)) if finite else float("nan")


def _scalar_draws(variable: Any) -> list[np.ndarray]:
    """The ``(chain, draw)`` draws of each element of a variable with dims ``(chain, draw, ...)``."""
    values = np.asarray(variable.transpose("chain", "draw", ...).values, dtype=float)
    flat = values.reshape(values.shape[0], values.shape[1], -1)
    return [flat[:, :, j] for j in range(flat.shape[2])]


def tree_stats(stats: Any) -> tuple[float, float]:
    """Median leapfrog steps per draw and the share of draws at :data:`MAX_TREE_DEPTH` (NaN if unknown).

    Reads ``sample_stats`` as each backend writes it: ``n_steps`` (every NUTS
    backend), and PyMC's ``reached_max_treedepth`` or nutpie's
    ``maxdepth_reached`` flags where present, else ``n_steps >= 2**MAX_TREE_DEPTH - 1``.
    """
    if "n_steps" not in stats:
        return float("nan"), float("nan")
    steps = np.asarray(stats["n_steps"].values)
    for flag in ("reached_max_treedepth", "maxdepth_reached"):
        if flag in stats:
            return float(np.median(steps)), float(np.mean(np.asarray(stats[flag].values, dtype=bool)))
    return float(np.median(steps)), float(np.mean(steps >= 2**MAX_TREE_DEPTH - 1))


def summary_lines(diagnostics: Mapping[str, Any]) -> list[str]:
    """The diagnostics of a fit as text: one summary line, then each problem and warning.

    The one renderer of every command's diagnostics; reads saved fits of older
    versions too (no tree statistics: left out of the line).
    """
    d = diagnostics
    r_hat = d["max_r_hat"]
    parts = [
        f"{d['divergences']} divergences",
        f"max r_hat {'n/a' if r_hat is None or not np.isfinite(r_hat) else format(r_hat, '.3f')}",
        f"min bulk ESS {d['min_ess_bulk']:.0f}",
    ]
    steps, saturated = d.get("median_steps"), d.get("max_tree_depth_share")
    if steps is not None and np.isfinite(steps):
        parts.append(f"median {steps:.0f} leapfrog steps per draw")
    if saturated is not None and np.isfinite(saturated):
        parts.append(f"{saturated:.1%} at max tree depth")
    lines = [f"diagnostics: {', '.join(parts)} -> {'ok' if d['ok'] else 'FAILED'}"]
    if d.get("sampler_path"):
        lines.append(f"  sampler: {d['sampler_path']}")
    lines += [f"  problem: {p}" for p in d["problems"]]
    lines += [f"  warning: {w}" for w in d.get("warnings", [])]
    return lines


#: Chains whose medians differ by more than this many within-chain sds sit in separate modes.
MODE_GAP = 4.0


def separate_modes(values: np.ndarray, log_positive: bool = True) -> list[list[int]]:
    """Groups of chains that settled in separate modes of one parameter, or ``[]``.

    Chains are sorted by their median; a gap between neighbours of more than
    :data:`MODE_GAP` times the largest within-chain standard deviation splits
    them. Chains that mix slowly in one mode overlap and are not split.
    Positive draws are compared on the log scale, where a scale parameter's
    modes (B ~ 80 against B ~ 8000) are as far apart as they look.

    Parameters
    ----------
    values
        Draws with dims ``(chain, draw)``; anything else returns ``[]``.
    log_positive
        Compare positive draws on the log scale (a parameter's values; not a
        sampler's unconstrained coordinates).
    """
    if values.ndim != 2 or values.shape[0] < 2 or not np.all(np.isfinite(values)):
        return []
    if log_positive and np.all(values > 0):
        values = np.log(values)
    medians = np.median(values, axis=1)
    spread = float(np.max(np.std(values, axis=1)))
    order = np.argsort(medians)
    groups, current = [], [int(order[0])]
    for prev, chain in itertools.pairwise(order):
        if medians[chain] - medians[prev] > MODE_GAP * spread:
            groups.append(current)
            current = []
        current.append(int(chain))
    groups.append(current)
    return [sorted(g) for g in groups] if len(groups) > 1 else []


def _modes_message(name: str, values: np.ndarray, modes: list[list[int]], idata: Any) -> str:
    stats = container.group(idata, "sample_stats")
    lp = stats["lp"].values if "lp" in stats else None
    parts = []
    for group in modes:
        text = f"chains {group}: {name} ~ {np.median(values[group]):.4g}"
        if lp is not None:
            text += f", mean log density {np.mean(lp[group]):.1f}"
        parts.append(text)
    return (
        f"chains settled in {len(modes)} separate modes ({'; '.join(parts)}): more draws will not "
        "fix this. Often the law cannot describe every run alike (see predictive_check): drop or "
        "explain the outlying runs, or fix the parameters the runs cannot pin down"
    )


def _mode_mass(recorded: Any) -> list[dict[str, Any]] | None:
    """The sampler's record of each mode's mass (JSON), or ``None`` if absent, empty or unreadable."""
    try:
        mode_mass = json.loads(recorded) if isinstance(recorded, str) else None
    except ValueError:
        return None
    ok = isinstance(mode_mass, list) and all(
        isinstance(m, dict) and {"chains", "share"} <= set(m) for m in mode_mass
    )
    return mode_mass if ok and mode_mass else None


def _mass_message(mode_mass: list[dict[str, Any]] | None) -> str:
    """The problem of chains in separate modes, with each mode's share of the mass where known."""
    if not mode_mass:
        return (
            "chains sampled separate modes whose shares of the posterior mass could not be "
            "estimated: every answer weighs each chain alike, whatever its mode holds"
        )
    parts = [f"chains {m['chains']} ~{m['share']:.0%}" for m in sorted(mode_mass, key=lambda m: -m["share"])]
    return (
        f"by importance sampling, the modes the chains sampled hold these shares of the posterior "
        f"mass: {'; '.join(parts)}. Every answer weighs each chain alike, so it misweighs the modes"
    )


def warn_if_failed(diagnostics: Mapping[str, Any], stacklevel: int = 3) -> None:
    """Emit a :class:`FitWarning` listing every failed diagnostic, and one for the sampler's warnings."""
    if not diagnostics["ok"]:
        warnings.warn(
            "the fit failed its diagnostics; treat its answers with care:\n  - "
            + "\n  - ".join(diagnostics["problems"]),
            FitWarning,
            stacklevel=stacklevel,
        )
    if diagnostics.get("warnings"):
        warnings.warn(
            "the sampler struggled:\n  - " + "\n  - ".join(diagnostics["warnings"]),
            FitWarning,
            stacklevel=stacklevel,
        )
