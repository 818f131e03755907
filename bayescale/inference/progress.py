"""Stage lines on stderr while a fit runs: ``bayescale: <stage>``, or nothing when not asked for.

The fast path runs warm-up and sampling as one compiled program, which no bar can look into
unless the fit is sampled in pieces (:func:`bayescale.inference.sampling.sample_density` does so
for long fits). The stages say what is happening in the meantime (the Laplace step, preparing
or compiling the sampler, warm-up and sampling) and how long each took. A bar is drawn only
when stderr is a terminal (:func:`on_terminal`); elsewhere the stage lines stand alone.
"""

from __future__ import annotations

import sys
import time


class Progress:
    """Print ``bayescale: message`` lines to stderr when ``enabled``; nothing otherwise.

    Parameters
    ----------
    enabled
        Whether to print (the fit's ``progressbar`` / the CLI's ``--progress``).
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = bool(enabled)
        self._since = time.perf_counter()

    def __call__(self, message: str) -> None:
        """Print one stage line (stderr is looked up each time, so redirections apply)."""
        if self.enabled:
            print(f"bayescale: {message}", file=sys.stderr, flush=True)

    def lap(self) -> float:
        """Seconds since the last lap (or since this reporter was made), and start a new lap."""
        now = time.perf_counter()
        seconds, self._since = now - self._since, now
        return seconds


def on_terminal() -> bool:
    """Whether stderr is a terminal: a progress bar is drawn only there.

    Off a terminal (a log file, a pipe) a bar's carriage-return updates pile up as one
    line tens of kilobytes long; stage lines say the same in a few lines.
    """
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False
