"""``import bayescale`` imports no module of its own: each public name, and each saved result's
class, is imported the first time it is used."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from cheap_fits import cheap_fit_file

import bayescale as bs
from bayescale.methods import io

ROOT = Path(__file__).resolve().parents[2]


def _run(program: str, *args: str) -> list[str]:
    """The lines ``program`` prints in a fresh interpreter with this checkout first on its path."""
    done = subprocess.run(
        [sys.executable, "-c", program, *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.splitlines()


def test_importing_the_package_imports_none_of_its_modules_nor_numpy():
    program = (
        "import sys, bayescale\n"
        "print(sorted(m for m in sys.modules if m.startswith('bayescale')))\n"
        "print(sorted(m for m in ('numpy', 'pandas', 'xarray', 'scipy', 'matplotlib') if m in sys.modules))\n"
        "print('Runs' in dir(bayescale), 'Runs' in vars(bayescale))\n"
        "bayescale.Runs\n"
        "print('Runs' in vars(bayescale), 'bayescale.data.runs' in sys.modules)\n"
    )
    own, heavy, listed, used = _run(program)
    assert own == "['bayescale', 'bayescale._aliases', 'bayescale._version']"
    assert heavy == "[]"
    assert listed == "True False"  # listed before it is imported
    assert used == "True True"  # imported on first use, then kept


def test_every_public_name_is_its_module_s_object_and_mypy_sees_the_same_names():
    for name in bs.__all__:
        obj = getattr(bs, name)
        assert obj is not None, name
    assert set(bs.__all__) <= set(dir(bs))
    assert bs.Fit.__module__ == "bayescale.methods.parametric" and bs.compare.__module__.endswith("compare")
    assert bs.plan.__name__ == "bayescale.questions.plan" and bs.plots.__name__ == "bayescale.plots"
    with pytest.raises(AttributeError, match="module 'bayescale' has no attribute 'Fitt'"):
        bs.Fitt  # noqa: B018
    # the names imported under TYPE_CHECKING (what mypy sees) are the public ones, from the same modules
    tree = ast.parse((ROOT / "bayescale" / "__init__.py").read_text(encoding="utf-8"))
    guarded = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    typed = {}
    for node in guarded.body:
        assert isinstance(node, ast.ImportFrom)
        for alias in node.names:
            typed[alias.name] = f"{node.module}.{alias.name}"
    lazy = {name: f"{module}.{name}" for module, names in bs._NAMES_BY_MODULE.items() for name in names}
    lazy |= {name: module for name, module in bs._MODULES.items()}
    assert typed == lazy
    assert set(typed) == set(bs.__all__) - {"__version__"}


def test_the_kinds_table_names_each_result_class():
    classes = {
        "fit": bs.Fit,
        "isoflop": bs.IsoflopFit,
        "envelope": bs.EnvelopeFit,
        "steps": bs.StepsFit,
        "curves": bs.CurvesFit,
        "downstream": bs.Downstream,
    }
    assert sorted(io.RESULT_TYPES) == sorted(classes)
    for kind, cls in classes.items():
        assert io.result_type(kind) is cls


def test_a_saved_fit_loads_in_a_process_that_imported_nothing_else(tmp_path):
    """The round trips of the other kinds (tests/methods) load in such a process too (saved_results)."""
    path = cheap_fit_file(tmp_path / "fit.nc")
    program = (
        "import sys, warnings\n"
        "import bayescale as bs\n"
        "warnings.simplefilter('ignore')\n"
        "print('bayescale.methods.parametric' in sys.modules)\n"
        "fit = bs.load_fit(sys.argv[1])\n"
        "print(type(fit).__module__, type(fit).__name__, len(fit.runs))\n"
    )
    before, loaded = _run(program, str(path))
    assert before == "False"
    assert loaded == "bayescale.methods.parametric Fit 40"
