"""Security: nothing a file says is trusted blindly (issue 20, findings 1-3)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cheap_fits import cheap_fit, cheap_fit_file

import bayescale as bs
from bayescale.cli import main
from bayescale.errors import FitFileError

pytestmark = pytest.mark.filterwarnings("ignore::bayescale.FitWarning")


# Finding 1: fit-many path traversal ------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "../escaped",
        "/abs/path/x",
        "sub/x",
        "sub\\x",
        "x\x00y",
        "..",
        ".",
        "",
        ".hidden",
        "tab\tname",
        "x" * 260,
    ],
)
def test_fit_many_refuses_job_names_that_leave_out_dir(tmp_path, capsys, name):
    out_dir = tmp_path / "out" / "fits"
    out_dir.mkdir(parents=True)
    jobs = tmp_path / "jobs.json"
    jobs.write_text(
        json.dumps([{"name": "fine", "runs": "chinchilla"}, {"name": name, "runs": "chinchilla"}])
    )
    code = main(["fit-many", str(jobs), "--out-dir", str(out_dir), "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: job 1 has name ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    # Refused before any fit ran: nothing written anywhere.
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["jobs.json"]


def test_fit_many_refuses_a_symlink_out_of_out_dir(tmp_path, capsys):
    out_dir = tmp_path / "fits"
    out_dir.mkdir()
    (out_dir / "a.nc").symlink_to(tmp_path / "victim.nc")
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([{"name": "a", "runs": "chinchilla"}]))
    assert main(["fit-many", str(jobs), "--out-dir", str(out_dir)]) == 2
    assert "outside --out-dir" in capsys.readouterr().err


# Finding 2: HTML injection from a crafted fit -------------------------------------------------------


def _rewrite(src, dst, edit, rehash=False):
    """Copy a saved fit with ``edit(idata)`` applied; ``rehash`` recomputes every hash (a forger)."""
    import arviz as az

    from bayescale.methods import file_format

    idata = az.from_netcdf(src)
    idata.load()
    edit(idata)
    if rehash:
        attrs = idata.posterior.attrs
        attrs["config_hash"] = file_format.config_hash(attrs, idata.constant_data)
        attrs["posterior_checksum"] = file_format.posterior_checksum(idata.posterior)
        attrs["content_hash"] = file_format.content_hash(attrs, idata)
    idata.to_netcdf(dst)
    return dst


SCRIPT = "<script>alert(1)</script>"


@pytest.mark.parametrize(
    ("attr", "value", "message"),
    [
        ("random_seed", json.dumps(SCRIPT), "random_seed must be an integer"),
        ("random_seed", "true", "random_seed must be an integer"),
        ("likelihood", SCRIPT, "unknown likelihood"),
        ("fixed", json.dumps({"E": SCRIPT}), "could not convert|not a number"),
    ],
)
def test_crafted_attrs_with_recomputed_hashes_are_refused_on_load(tmp_path, attr, value, message):
    src = cheap_fit_file(tmp_path / "fit.nc")

    def edit(idata):
        idata.posterior.attrs[attr] = value

    path = _rewrite(src, tmp_path / "crafted.nc", edit, rehash=True)
    with pytest.raises(FitFileError, match=message):
        bs.load_fit(path)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("problems", [SCRIPT, 3]),
        ("divergences", SCRIPT),
        ("ok", "yes"),
        ("max_r_hat", SCRIPT),
        ("r_hat", {"E": SCRIPT}),
    ],
)
def test_crafted_diagnostics_are_type_checked(tmp_path, key, value):
    src = cheap_fit_file(tmp_path / "fit.nc")

    def edit(idata):
        diagnostics = json.loads(idata.posterior.attrs["diagnostics"])
        diagnostics[key] = value
        idata.posterior.attrs["diagnostics"] = json.dumps(diagnostics)

    path = _rewrite(src, tmp_path / "crafted.nc", edit, rehash=True)
    with pytest.raises(FitFileError, match=rf"diagnostics\['{key}'\] is missing or of the wrong type"):
        bs.load_fit(path)


def test_report_escapes_every_value_from_the_file(tmp_path):
    from bayescale.report import build_report

    fit = cheap_fit()
    # Values a file can carry and the report shows: the runs' source, a problem, a group-free seed.
    fit.runs = bs.Runs(fit.runs.frame, source=SCRIPT)
    fit.random_seed = SCRIPT  # as if it had passed a check; the report must still escape it
    fit.diagnostics = {**fit.diagnostics, "ok": False, "problems": [SCRIPT]}
    fit.fixed = {}
    text = build_report(fit)
    assert "<script" not in text.lower()
    # the source, the seed, the problem, and the problem again in the comparison's failed-fit warning
    assert text.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 4


def test_crafted_source_loads_and_is_escaped_in_the_report(tmp_path):
    """A text attr (the runs' source) may hold anything: it loads and the report escapes it."""
    src = cheap_fit_file(tmp_path / "fit.nc")

    def edit(idata):
        idata.constant_data.attrs["source"] = SCRIPT

    path = _rewrite(src, tmp_path / "crafted.nc", edit, rehash=True)
    out = tmp_path / "report.html"
    assert main(["report", str(path), "--out", str(out)]) == 0
    text = out.read_text()
    assert "<script" not in text.lower() and "&lt;script&gt;" in text


# Finding 3: the integrity hash covers everything the answers read ------------------------------------


def _flip_ok(idata):
    d = json.loads(idata.posterior.attrs["diagnostics"])
    flipped = {"ok": True, "problems": []} if not d["ok"] else {"ok": False, "problems": ["edited"]}
    idata.posterior.attrs["diagnostics"] = json.dumps({**d, **flipped})


def _drop_loss_column(idata):
    columns = json.loads(idata.constant_data.attrs["columns"])
    idata.constant_data.attrs["columns"] = json.dumps([c for c in columns if c != "loss"])


EDITS = {
    "diagnostics.ok": _flip_ok,
    "bayescale_version": lambda i: i.posterior.attrs.update(bayescale_version="0.0.1"),
    "sample_stats": lambda i: i.sample_stats.__setitem__("diverging", i.sample_stats["diverging"] | True),
    "observed_data": lambda i: i.observed_data.__setitem__("log_loss", i.observed_data["log_loss"] + 0.1),
    "runs columns attr": _drop_loss_column,
    "runs source attr": lambda i: i.constant_data.attrs.update(source="elsewhere.csv"),
    "posterior coordinate": lambda i: i.__setitem__(
        "posterior", i["posterior"].to_dataset().assign_coords(draw=i.posterior.draw + 1)
    ),
}


@pytest.mark.parametrize("what", sorted(EDITS))
def test_each_edit_is_refused_on_load(tmp_path, what):
    src = cheap_fit_file(tmp_path / "fit.nc")
    path = _rewrite(src, tmp_path / "edited.nc", EDITS[what])
    with pytest.raises(FitFileError, match="do not match the recorded hash"):
        bs.load_fit(path)


def test_unedited_copy_still_loads(tmp_path):
    src = cheap_fit_file(tmp_path / "fit.nc")
    path = _rewrite(src, tmp_path / "copy.nc", lambda idata: None)
    loaded = bs.load_fit(path)
    assert loaded.diagnostics == json.loads(json.dumps(cheap_fit().diagnostics.to_dict()))


def test_flipped_diagnostics_no_longer_pass_summary_strict(tmp_path, capsys):
    failed = cheap_fit()
    failed.diagnostics = {**failed.diagnostics, "ok": False, "problems": ["min bulk ESS 6 < 400 (worst: nu)"]}
    src = failed.save(tmp_path / "fit.nc")
    assert main(["summary", str(src), "--strict"]) == 3
    capsys.readouterr()
    path = _rewrite(src, tmp_path / "edited.nc", _flip_ok)
    assert main(["summary", str(path), "--strict"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "do not match the recorded hash" in err


def test_observed_name_is_what_fit_writes():
    from bayescale.model.pymc_model import OBSERVED

    assert OBSERVED == "log_loss"
    assert np.isfinite(cheap_fit().idata.observed_data[OBSERVED].values).all()


# Issue 32, findings 3-5: terminal control and Unicode format characters ------------------------------

#: Sequences that retitle the terminal, clear it, move the cursor up and erase a line; 8-bit CSI;
#: right-to-left override and zero-width space (Unicode format characters, category Cf).
HOSTILE = "a\x1b]0;PWNED\x07\x1b[2J\x1b[1A\x1b[2K\x9b31m\r\u202eb\u200b\x7f"


def _no_control(text: str) -> bool:
    import unicodedata

    return not any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text.replace("\n", ""))


@pytest.mark.parametrize("ch", list(HOSTILE))
def test_printable_escapes_every_control_and_format_character(ch):
    from bayescale.errors import printable

    shown = printable(f"x{ch}y")
    assert _no_control(shown)
    assert shown == "x" + (ch if ch.isprintable() else repr(ch)[1:-1]) + "y"
    assert printable("line one\nline two") == "line one\nline two"


def test_every_line_a_command_prints_on_stdout_is_printable(capsys, monkeypatch):
    """Finding 3: a group label, run name or any string from a table reaches stdout escaped."""
    from bayescale.cli import entry

    monkeypatch.setitem(entry.COMMANDS, "laws", lambda args: print(f"E[{HOSTILE}] 1.7\nnext") or 0)
    assert main(["laws"]) == 0
    out = capsys.readouterr().out
    assert _no_control(out) and "\\x1b]0;PWNED\\x07" in out and "\\u202e" in out
    assert out.endswith("\nnext\n")


@pytest.mark.parametrize("where", ["problems", "sampler_path"])
def test_summary_of_a_forged_fit_prints_its_strings_escaped(tmp_path, capsys, where):
    """Finding 4: escapes in diagnostics.problems or sampler_path, printed by summary."""
    from cheap_fits import forge

    src = cheap_fit_file(tmp_path / "fit.nc")

    def edit(tree):
        diagnostics = json.loads(tree["posterior"].attrs["diagnostics"])
        if where == "problems":
            diagnostics.update(ok=False, problems=[HOSTILE])
        else:
            diagnostics["sampler_path"] = HOSTILE
        tree["posterior"].attrs["diagnostics"] = json.dumps(diagnostics)

    path = forge(src, tmp_path / "forged.nc", edit)
    assert main(["summary", str(path)]) == 0
    out, err = capsys.readouterr()
    assert _no_control(out) and _no_control(err)
    assert "PWNED" in out + err  # shown, escaped: not dropped


def test_job_name_with_a_format_character_is_refused(tmp_path):
    """Finding 5: U+202E makes 'fit<RLO>gnp.nc' display as 'fitcn.png'."""
    from bayescale.cli.many import _job_output
    from bayescale.errors import BayescaleError

    for name in ("fit\u202egnp", "a\u200bb", "a\ufeffb"):
        with pytest.raises(BayescaleError, match="Unicode format character"):
            _job_output(tmp_path, name, 0)
    assert _job_output(tmp_path, "café-run", 0) == tmp_path / "café-run.nc"


# Issue 32, finding 9: a job's priors given as a path --------------------------------------------------


def test_priors_given_as_a_path_say_what_is_expected():
    from bayescale.errors import PriorError

    with pytest.raises(PriorError, match=r"priors must map parameter names to priors .* got str 'file.toml'"):
        bs.fit("chinchilla", priors="file.toml", progressbar=False)
