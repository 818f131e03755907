import json
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import bayescale as bs
from bayescale.errors import FitFileError

# The quick fit is deliberately short; its diagnostics warning is not under test here.
pytestmark = pytest.mark.filterwarnings("ignore::bayescale.FitWarning")


def test_round_trip_is_exact(quick_fit, quick_fit_path):
    loaded = bs.load_fit(quick_fit_path)
    for name in quick_fit.posterior.data_vars:
        np.testing.assert_array_equal(loaded.posterior[name].values, quick_fit.posterior[name].values)
    assert loaded.priors == quick_fit.priors
    assert loaded.fixed == quick_fit.fixed
    assert loaded.law.name == quick_fit.law.name
    assert loaded.random_seed == quick_fit.random_seed
    assert loaded.runs.frame.equals(quick_fit.runs.frame)
    assert loaded.optimal(1e22).equals(quick_fit.optimal(1e22))


def test_failed_write_keeps_earlier_file(quick_fit, tmp_path, monkeypatch):
    path = tmp_path / "fit.nc"
    quick_fit.save(path)
    before = path.read_bytes()

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(type(quick_fit.idata), "to_netcdf", explode)
    with pytest.raises(OSError, match="disk full"):
        quick_fit.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["fit.nc"]


def test_corrupt_truncated_and_foreign_files(quick_fit_path, tmp_path):
    truncated = tmp_path / "truncated.nc"
    truncated.write_bytes(quick_fit_path.read_bytes()[:2000])
    with pytest.raises(FitFileError, match="not a readable NetCDF fit"):
        bs.load_fit(truncated)
    text = tmp_path / "text.nc"
    text.write_text("hello")
    with pytest.raises(FitFileError, match="not a readable NetCDF fit"):
        bs.load_fit(text)
    with pytest.raises(FitFileError, match="no saved fit at"):
        bs.load_fit(tmp_path / "missing.nc")


#: Stand-ins for the HDF5 library spinning forever or crashing on a damaged header, run by the probe.
HANGING_PROBE = "import time; time.sleep(120)"
CRASHING_PROBE = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"


def test_load_fit_reads_a_file_in_a_child_process_before_this_one(quick_fit_path, tmp_path, monkeypatch):
    """Issue 20, item 15: a header that makes HDF5 hang or crash must not take the caller down.

    The child here hangs or crashes whatever the file (see test_fault_properties for a real
    flipped bit): load_fit refuses within the timeout, or names the signal, and carries on.
    """
    from bayescale.methods import file_probe

    copy = tmp_path / "copy.nc"  # a file this process did not save
    copy.write_bytes(quick_fit_path.read_bytes())
    monkeypatch.setattr(file_probe, "_PROBE", HANGING_PROBE)
    start = time.monotonic()
    with pytest.raises(FitFileError, match=r"reading its structure did not finish within 2 s"):
        bs.load_fit(copy, probe_timeout=2)
    assert time.monotonic() - start < 30
    monkeypatch.setattr(file_probe, "_PROBE", CRASHING_PROBE)
    with pytest.raises(FitFileError, match=r"reading it crashed the HDF5 library \(signal 11\)"):
        bs.load_fit(copy)
    assert len(bs.load_fit(copy, probe=False).runs) == 40  # opted out: read here, trusted


def test_a_file_this_process_saved_is_not_probed_until_it_changes(quick_fit, tmp_path, monkeypatch):
    from bayescale.methods import file_probe

    path = quick_fit.save(tmp_path / "fit.nc")
    monkeypatch.setattr(file_probe, "_PROBE", CRASHING_PROBE)
    assert len(bs.load_fit(path).runs) == 40
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # changed since: probed again
    path.write_bytes(bytes(data))
    with pytest.raises(FitFileError, match="crashed the HDF5 library"):
        bs.load_fit(path)


def test_foreign_inference_data(tmp_path):
    import arviz as az

    foreign = tmp_path / "foreign.nc"
    az.from_dict({"posterior": {"x": np.zeros((2, 10))}}).to_netcdf(foreign)
    with pytest.raises(FitFileError, match="not a bayescale fit"):
        bs.load_fit(foreign)


def test_altered_posterior_is_refused(quick_fit, tmp_path):
    path = tmp_path / "altered.nc"
    quick_fit.save(path)
    import arviz as az

    idata = az.from_netcdf(path)
    idata.posterior["E"] = idata.posterior["E"] + 0.1
    idata.to_netcdf(tmp_path / "altered2.nc")
    with pytest.raises(FitFileError, match="do not match the recorded checksum"):
        bs.load_fit(tmp_path / "altered2.nc")


def _rewrite(src, dst, **attrs):
    """Copy a saved fit to ``dst`` with some posterior attrs replaced (None deletes)."""
    import arviz as az

    idata = az.from_netcdf(src)
    for key, value in attrs.items():
        if value is None:
            idata.posterior.attrs.pop(key)
        else:
            idata.posterior.attrs[key] = value
    idata.to_netcdf(dst)
    return dst


def test_saved_fit_carries_version_law_priors_runs_and_hash(quick_fit_path):
    import arviz as az

    from bayescale.model.priors import priors_from_json

    attrs = az.from_netcdf(quick_fit_path).posterior.attrs
    assert attrs["bayescale_version"] == bs.__version__
    assert attrs["law"] == "chinchilla"
    assert set(priors_from_json(attrs["priors"])) == {"E", "A", "B", "alpha_N", "alpha_D", "sigma", "nu"}
    assert len(attrs["config_hash"]) == 64 and len(attrs["posterior_checksum"]) == 64
    assert len(bs.load_fit(quick_fit_path).runs) == 40


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"format_version": 99}, r"has fit format 99 .* reads format 2"),
        ({"format_version": "x"}, r"has fit format x"),
        ({"format": "other-tool"}, r"not a bayescale fit \(no 'bayescale-fit' stamp\)"),
        ({"config_hash": "0" * 64}, r"configuration or runs do not match the recorded hash"),
        (
            {"priors": '{"E": {"distribution": "Normal", "mu": 0, "sigma": 1}}'},
            r"do not match the recorded hash",
        ),
        ({"posterior_checksum": None}, r"lacks the attribute 'posterior_checksum'"),
    ],
)
def test_altered_or_incompatible_files_say_which(quick_fit_path, tmp_path, attrs, message):
    path = _rewrite(quick_fit_path, tmp_path / "changed.nc", **attrs)
    with pytest.raises(FitFileError, match=message):
        bs.load_fit(path)


def test_unknown_law_is_incompatible(quick_fit_path, tmp_path, monkeypatch):
    # A law this version does not know (newer release, plug-in); rehashed so only the law differs.
    import arviz as az

    from bayescale.methods import file_format

    idata = az.from_netcdf(quick_fit_path)
    attrs = idata.posterior.attrs
    attrs["law"] = "future-law"
    attrs["config_hash"] = file_format.config_hash(attrs, idata.constant_data)
    idata.to_netcdf(tmp_path / "future.nc")
    with pytest.raises(FitFileError, match=r"incompatible with this bayescale .*unknown law 'future-law'"):
        bs.load_fit(tmp_path / "future.nc")


def test_interrupted_write_keeps_earlier_file(quick_fit, tmp_path, monkeypatch):
    """The write dies after putting half a file on disk (as a full disk or Ctrl-C would)."""
    path = tmp_path / "fit.nc"
    quick_fit.save(path)
    before = path.read_bytes()
    import os

    original = os.fdopen

    class HalfThenInterrupt:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            raise KeyboardInterrupt

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: HalfThenInterrupt(original(fd, mode)))
    with pytest.raises(KeyboardInterrupt):
        quick_fit.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["fit.nc"]
    assert bs.load_fit(path).posterior["E"].equals(quick_fit.posterior["E"])


def test_failed_replace_keeps_earlier_file(quick_fit, tmp_path, monkeypatch):
    import os

    path = tmp_path / "fit.nc"
    quick_fit.save(path)
    before = path.read_bytes()

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(OSError, match="No space left"):
        quick_fit.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["fit.nc"]


def test_failed_diagnostics_are_saved_and_every_answer_warns(quick_fit, quick_fit_path):
    # The quick fit (2 chains x 200 draws) fails the ESS >= 400 rule: its failure travels with the file.
    assert not quick_fit.diagnostics["ok"]
    with pytest.warns(bs.FitWarning, match=r"(?s)failed its diagnostics.*bulk ESS"):
        loaded = bs.load_fit(quick_fit_path)
    assert loaded.diagnostics["ok"] is False
    assert loaded.diagnostics["problems"] == quick_fit.diagnostics["problems"]
    for answer in (lambda: loaded.predict(1e10, 2e11), lambda: loaded.optimal(1e23)):
        with pytest.warns(bs.FitWarning, match="bulk ESS"):
            table = answer()
        assert "bulk ESS" in table.attrs["fit_warning"]
    # warn=False (as the quick fit was made) silences the warning but the table still says so.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = quick_fit.optimal(1e23)
    assert "bulk ESS" in table.attrs["fit_warning"]


def test_same_seed_same_data_same_posterior_bit_for_bit():
    from conftest import TRUE_CHINCHILLA, simulate_ladder

    runs = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=21)
    tiny = {"sampler": {"draws": 30, "tune": 40, "chains": 2}, "progressbar": False, "warn": False}
    first = bs.fit(runs, law="kaplan-n", random_seed=5, **tiny)
    again = bs.fit(runs, law="kaplan-n", random_seed=5, **tiny)
    for name in first.posterior.data_vars:
        assert first.posterior[name].values.tobytes() == again.posterior[name].values.tobytes(), name


def test_cli_strict_turns_failed_diagnostics_into_exit_3(quick_fit_path, capsys):
    from bayescale.cli import EXIT_DIAGNOSTICS, main

    assert main(["plan", str(quick_fit_path), "--compute", "1e22"]) == 0
    out, err = capsys.readouterr()
    assert "compute-optimal plan" in out and "warning: this fit failed its diagnostics" in err
    assert main(["plan", str(quick_fit_path), "--compute", "1e22", "--strict"]) == EXIT_DIAGNOSTICS
    out, err = capsys.readouterr()
    assert "compute-optimal plan" in out and "error: the fit failed its diagnostics (--strict)" in err
    assert main(["predict", str(quick_fit_path), "--params", "1e9", "--tokens", "2e10", "--strict"]) == 3


FIXTURES = Path(__file__).parent / "fixtures"
#: A fit saved by bayescale 0.1.0 (Python 3.11, PyMC 5.28, ArviZ 0.23: an InferenceData, format 2):
#: `bayescale fit chinchilla --law chinchilla --seed 2 --draws 250 --tune 500 --chains 4`, with the
#: `summary --json` and `plan --compute 1e22 --json` that release printed for it.
OLD_FIT = FIXTURES / "fit_format2_bayescale0.1.0.nc"


def _cli_json(argv, capsys):
    from bayescale.cli import main

    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_a_fit_saved_by_the_previous_release_loads_with_the_answers_it_gave(capsys, tmp_path):
    summary = _cli_json(["summary", str(OLD_FIT), "--json"], capsys)
    expected = json.loads((FIXTURES / "fit_format2_bayescale0.1.0.summary.json").read_text())
    # this release adds keys (residual trends, tree-depth statistics); the old ones keep their meaning
    assert summary.keys() >= expected.keys() and summary["parameters"].keys() == expected["parameters"].keys()
    for name, row in expected["parameters"].items():
        got = summary["parameters"][name]
        # the same draws: the same quantiles; r_hat and ESS now come from arviz-stats, not ArviZ 0.23
        assert {k: got[k] for k in ("median", "lower", "upper", "fixed")} == {
            k: row[k] for k in ("median", "lower", "upper", "fixed")
        }
        assert got["r_hat"] == pytest.approx(row["r_hat"], rel=1e-6)
        assert got["ess_bulk"] == pytest.approx(row["ess_bulk"], rel=1e-6)
    plan = _cli_json(["plan", str(OLD_FIT), "--compute", "1e22", "--json"], capsys)
    expected_plan = json.loads((FIXTURES / "fit_format2_bayescale0.1.0.plan1e22.json").read_text())
    assert {key: plan[key] for key in expected_plan} == expected_plan
    # saved again, it is a file of this release that loads with the same draws
    fit = bs.load_fit(OLD_FIT)
    again = bs.load_fit(fit.save(tmp_path / "resaved.nc"))
    for name in fit.posterior.data_vars:
        np.testing.assert_array_equal(again.posterior[name].values, fit.posterior[name].values)


def test_a_fit_of_an_older_format_is_refused_with_how_to_refit(tmp_path):
    import xarray as xr

    tree = xr.open_datatree(OLD_FIT, engine="h5netcdf").load()
    tree["posterior"].attrs["format_version"] = 1
    tree.to_netcdf(tmp_path / "format1.nc", engine="h5netcdf")
    with pytest.raises(FitFileError, match=r"fit format 1 .* fit the runs again with this version"):
        bs.load_fit(tmp_path / "format1.nc")


def test_the_second_law_is_saved_with_the_fit_and_never_refitted(quick_fit, quick_fit_path, monkeypatch):
    from bayescale.methods import parametric

    def refit(*args, **kwargs):
        raise AssertionError("a loaded fit refitted its second law")

    monkeypatch.setattr(parametric, "fit_parametric", refit)
    expected = quick_fit.caveats(fit_variant=False)
    from bayescale.questions import compare

    def judge(*args, **kwargs):
        raise AssertionError("a loaded fit recomputed LOO for its caveats")

    monkeypatch.setattr(compare, "compare", judge)  # the caveats were judged when the file was saved
    loaded = bs.load_fit(quick_fit_path)
    assert loaded.caveats(fit_variant=False) == expected
    variant = loaded.variant_fit()
    assert variant.law.name == quick_fit.variant_fit().law.name
    for name in variant.posterior.data_vars:
        np.testing.assert_array_equal(
            variant.posterior[name].values, quick_fit.variant_fit().posterior[name].values
        )
    assert variant.priors == quick_fit.variant_fit().priors and variant.fixed == quick_fit.variant_fit().fixed
    assert not any(g.startswith("variant_") for g in loaded.idata.children)  # kept apart from the fit's own
    far = 1e3 * float(quick_fit.runs.column("compute").max())
    assert loaded.optimal(far).equals(quick_fit.optimal(far))


def test_an_altered_second_law_is_refused(quick_fit_path, tmp_path):
    from bayescale.inference import container

    tree = container.read_netcdf(quick_fit_path)
    posterior = container.group(tree, "variant_posterior")
    posterior["E"] = posterior["E"] + 0.1
    altered = container.with_group(tree, "variant_posterior", posterior)
    (tmp_path / "altered.nc").write_bytes(container.netcdf_bytes(altered))
    with pytest.raises(FitFileError, match="do not match the recorded hash"):
        bs.load_fit(tmp_path / "altered.nc")
