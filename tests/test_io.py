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


def test_foreign_inference_data(tmp_path):
    import arviz as az

    foreign = tmp_path / "foreign.nc"
    az.from_dict(posterior={"x": np.zeros((2, 10))}).to_netcdf(foreign)
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
