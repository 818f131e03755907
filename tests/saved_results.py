"""Checks every saved result type must pass: the same answers after loading; altered, crafted and
corrupt files refused with a message that says what is wrong; text from a file escaped in HTML."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import bayescale as bs
from bayescale.errors import FitFileError
from bayescale.methods import file_format

SCRIPT = "<script>alert(1)</script>"


def round_trip(result: Any, tmp_path: Path) -> tuple[Any, Path]:
    """Save ``result``, load it back, and check it is the same type with the same draws and summary."""
    path = result.save(tmp_path / f"{type(result).__name__}.nc")
    loaded = bs.load_fit(path)
    assert type(loaded) is type(result)
    assert isinstance(loaded, bs.Result)
    for name in result.posterior.data_vars:
        assert loaded.posterior[name].values.tobytes() == result.posterior[name].values.tobytes(), name
    assert loaded.sampler.to_dict() == result.sampler.to_dict() and loaded.random_seed == result.random_seed
    assert json.dumps(loaded.to_dict(), default=str) == json.dumps(result.to_dict(), default=str)
    assert loaded.summary().equals(result.summary())
    listed = {name: prior.to_dict() for name, prior in sorted(result.priors.items())}
    assert loaded.to_dict()["priors"] == listed != {}
    assert list(loaded.summary().columns) == ["median", "lower", "upper"] and len(loaded.summary()) >= 2
    check_answers_in_a_new_process(result, path)
    assert repr(loaded) == repr(result) and len(repr(result)) < 300
    return loaded, path


#: The answers compared across processes: what the fit says, and its plan at a budget where it has one.
ANSWERS = """
import json, warnings
import bayescale as bs

def answers(result):
    out = {"to_dict": result.to_dict()}
    try:
        out["optimal"] = result.optimal(1e21).to_dict("list")
    except (AttributeError, bs.BayescaleError) as exc:
        out["optimal"] = type(exc).__name__
    return json.dumps(out, default=str, sort_keys=True)
"""


def check_answers_in_a_new_process(result: Any, path: Path) -> None:
    """A new Python process, which imported nothing but ``bayescale``, loads the saved file and gives
    the same answers as ``result``."""
    namespace: dict[str, Any] = {}
    exec(ANSWERS, namespace)  # the same code in both processes
    # the result's class is imported by load_fit, from the kind the file names: nothing imported it before
    load = (
        "import sys\nwarnings.simplefilter('ignore')\n"
        f"assert {type(result).__module__!r} not in sys.modules, 'imported before load_fit'\n"
        "print(answers(bs.load_fit(sys.argv[1])))\n"
    )
    script = ANSWERS + "\n" + load
    proc = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == namespace["answers"](result)


def _rewrite(src: Path, dst: Path, change: Any, rehash: bool = False) -> Path:
    """Copy a saved file with ``change(idata)`` applied; with ``rehash`` the hashes are made to match."""
    import arviz as az

    idata = az.from_netcdf(src).load()
    change(idata)
    if rehash:
        attrs = idata.posterior.attrs
        attrs["config_hash"] = file_format.config_hash(attrs, idata.constant_data)
        attrs["content_hash"] = file_format.content_hash(attrs, idata)
    idata.to_netcdf(dst)
    return dst


def _set_setting(name: str, value: Any) -> Any:
    def change(idata: Any) -> None:
        settings = json.loads(idata.posterior.attrs["settings"])
        settings[name] = value
        idata.posterior.attrs["settings"] = json.dumps(settings, sort_keys=True)

    return change


def without_setting(path: Path, tmp_path: Path, name: str) -> Path:
    """A copy of a method's saved file without the setting ``name``, as an earlier release wrote it."""

    def change(idata: Any) -> None:
        settings = json.loads(idata.posterior.attrs["settings"])
        del settings[name]
        idata.posterior.attrs["settings"] = json.dumps(settings, sort_keys=True)

    return _rewrite(path, tmp_path / f"without_{name}.nc", change, rehash=True)


def check_refusals(path: Path, tmp_path: Path, array: str, setting: str, bad_value: Any) -> None:
    """Every way a method's saved file can be wrong is refused with a precise FitFileError.

    ``array`` is a variable of ``constant_data`` the answers read; ``setting`` a saved
    setting and ``bad_value`` a value of it bayescale never writes.
    """
    from bayescale.cli import main

    def flip(idata: Any) -> None:
        values = idata.constant_data[array].values.copy()
        values[0] = not values[0] if values.dtype == bool else values[0] * 1.5
        idata.constant_data[array] = idata.constant_data[array].copy(data=values)

    def shift_posterior(idata: Any) -> None:
        name = next(iter(idata.posterior.data_vars))
        idata.posterior[name] = idata.posterior[name] * 1.001

    def kind(idata: Any) -> None:
        idata.posterior.attrs["kind"] = "magic"

    cases = [
        (flip, False, r"configuration or runs do not match the recorded hash"),
        (_set_setting(setting, bad_value), False, r"configuration or runs do not match the recorded hash"),
        (shift_posterior, False, r"posterior draws do not match the recorded checksum"),
        (kind, False, r"holds a result of kind 'magic'"),
        (_set_setting(setting, bad_value), True, rf"incompatible .*setting '{setting}' has a value"),
    ]
    for i, (change, rehash, message) in enumerate(cases):
        altered = _rewrite(path, tmp_path / f"altered{i}.nc", change, rehash)
        with pytest.raises(FitFileError, match=message):
            bs.load_fit(altered)
    truncated = tmp_path / "truncated.nc"
    truncated.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(FitFileError, match="not a readable NetCDF fit"):
        bs.load_fit(truncated)
    assert main(["summary", str(truncated)]) == 2
    assert main(["summary", str(tmp_path / "altered0.nc")]) == 2


def check_html_escapes_file_text(path: Path, tmp_path: Path, capsys: Any) -> None:
    """A ``<script>`` in the data set name and in the diagnostics' problems comes out as text."""

    def craft(idata: Any) -> None:
        idata.constant_data.attrs["source"] = SCRIPT
        diagnostics = json.loads(idata.posterior.attrs["diagnostics"])
        diagnostics.update(ok=False, problems=[SCRIPT])
        idata.posterior.attrs["diagnostics"] = json.dumps(diagnostics)

    crafted = _rewrite(path, tmp_path / "crafted.nc", craft, rehash=True)
    with pytest.warns(bs.FitWarning):
        loaded = bs.load_fit(crafted)
    text = loaded._repr_html_()
    assert "<script" not in text.lower()
    assert text.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 2
    assert SCRIPT in repr(loaded)  # plain text (not HTML) shows the name as it is, quoted
