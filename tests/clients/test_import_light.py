"""``import bayescale`` loads no sampler: PyMC, PyTensor, JAX and numpyro wait for the first fit.

A notebook that only reads a saved fit, and every command that answers from one, start without
them; a module-level import of one of them anywhere the package's ``__init__`` reaches fails here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: The sampler stack: the packages a fit needs and a saved fit's answers do not.
SAMPLER_MODULES = ("pymc", "pytensor", "jax", "jaxlib", "numpyro", "nutpie")


def test_importing_the_package_loads_no_sampler():
    program = (
        "import sys, bayescale\n"
        f"print(sorted(name for name in {SAMPLER_MODULES!r} if name in sys.modules))\n"
        "print(callable(bayescale.fit), all(hasattr(bayescale, name) for name in bayescale.__all__))\n"
    )
    # a fresh interpreter with this checkout first on its path (the test session has imported them)
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    loaded, public = done.stdout.splitlines()
    assert loaded == "[]", f"import bayescale loaded {loaded}"
    assert public == "True True"
