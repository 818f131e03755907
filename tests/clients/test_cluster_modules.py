"""The ``bayescale`` command hides Dask from xarray unless it needs a cluster (``_bayescale_cli``)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from cheap_fits import cheap_fit_file

from _bayescale_cli import CLUSTER_MODULES

BAYESCALE = str(Path(sys.executable).with_name("bayescale"))

needs_dask = pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None, reason="dask's distributed is not installed"
)

#: Saves and reads a fit with the cluster modules hidden, then reveals them and imports them.
PROGRAM = r"""
import sys
import _bayescale_cli
_bayescale_cli.hide_cluster_modules()
sys.path.insert(0, {tests!r})
from cheap_fits import cheap_fit_file
import bayescale as bs
path = cheap_fit_file(__import__("pathlib").Path({out!r}))
fit = bs.load_fit(path)
assert fit.summary() is not None
cluster = _bayescale_cli.CLUSTER_MODULES
hidden = [name for name, mod in sys.modules.items() if name.split(".")[0] in cluster and mod is not None]
assert not hidden, hidden
_bayescale_cli.reveal_cluster_modules()
import distributed, dask.base
print("ok", dask.base.__name__)
"""


@needs_dask
def test_a_fit_saves_and_loads_with_dask_hidden_and_dask_imports_once_revealed(tmp_path):
    tests = str(Path(__file__).parents[1])
    program = PROGRAM.format(tests=tests, out=str(tmp_path / "fit.nc"))
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok dask.base"


@needs_dask
def test_the_command_does_not_import_dask_to_read_a_fit(tmp_path):
    """``-X importtime`` lists every module the command imported: no dask, no distributed."""
    cheap_fit_file(tmp_path / "fit.nc")
    done = subprocess.run(
        [sys.executable, "-X", "importtime", BAYESCALE, "summary", str(tmp_path / "fit.nc")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line]
    assert "xarray" in imported
    assert not [name for name in imported if name.split(".")[0] in CLUSTER_MODULES]
