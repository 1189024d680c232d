"""Synthetic InSAR generator: empirical vs analytic semivariogram, Mogi formula, layout, determinism, CLI."""
import json
import math
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from datasets import insar_synthetic
from improved_diffusion.dataloaders import create_dataloader

REPO = Path(__file__).resolve().parent.parent


def _read(folder, key="unwrap"):
    return np.concatenate([h5py.File(f, "r")[key][()] for f in sorted(Path(folder).glob("*.hdf5"))])


def _axis_semivariogram_per_field(fields, max_lag):
    """gamma_i(h) = 0.5 mean of squared differences at lag h along rows and columns, per field (N, max_lag)."""
    out = np.empty((len(fields), max_lag))
    for h in range(1, max_lag + 1):
        d_cols = fields[:, :, h:] - fields[:, :, :-h]
        d_rows = fields[:, h:, :] - fields[:, :-h, :]
        out[:, h - 1] = 0.25 * ((d_cols ** 2).mean(axis=(1, 2)) + (d_rows ** 2).mean(axis=(1, 2)))
    return out


@pytest.mark.parametrize("model, size, length, count", [("exponential", 32, 6.0, 3000), ("matern32", 48, 10.0, 1500)])
def test_empirical_semivariogram_matches_analytic_at_every_lag(tmp_path, model, size, length, count):
    sigma, noise = 1.3, 0.25
    truth = insar_synthetic.main(out_dir=str(tmp_path), n_train=count, n_val=0, n_test=0, image_size=size,
                                 covariance_model=model, atmo_sigma_rad=sigma, atmo_length_px=length,
                                 noise_sigma_rad=noise, deformation_fraction=0.0, seed=11)
    assert truth["embedding"]["exact"]
    fields = _read(tmp_path / "train").astype(np.float64)
    max_lag = size // 2
    per_field = _axis_semivariogram_per_field(fields, max_lag)
    mean = per_field.mean(axis=0)
    stderr = per_field.std(axis=0, ddof=1) / math.sqrt(count)
    h = np.arange(1, max_lag + 1)
    s = math.sqrt(3) * h / length
    corr = np.exp(-h / length) if model == "exponential" else (1 + s) * np.exp(-s)
    expected = sigma ** 2 * (1 - corr) + noise ** 2
    z = (mean - expected) / stderr
    assert np.all(np.abs(z) < 4.5), z
    written = np.array(truth["semivariogram"]["gamma_atmosphere_plus_noise"])
    np.testing.assert_allclose(written[1:max_lag + 1], expected, rtol=1e-10)
    on_disk = json.loads((tmp_path / "ground_truth.json").read_text())
    assert on_disk["semivariogram"]["lags_px"][:3] == [0.0, 1.0, 2.0]


def test_semivariogram_cross_checked_with_gstools():
    gs = pytest.importorskip("gstools")
    lags = np.arange(20.0)
    gamma = 1.7 ** 2 - insar_synthetic.covariance(lags, "exponential", 1.7, 5.0)
    np.testing.assert_allclose(gamma, gs.Exponential(dim=2, var=1.7 ** 2, len_scale=5.0).variogram(lags), rtol=1e-10)


def test_mogi_vertical_los_matches_point_source_formula():
    nu, dv, depth_px, px, lam = 0.25, 1e5, 5.0, 100.0, 0.0555
    phase = insar_synthetic.mogi_los_phase(21, np.array([10.0]), np.array([10.0]), np.array([depth_px]),
                                           np.array([dv]), poisson_ratio=nu, pixel_size_m=px, wavelength_m=lam,
                                           incidence_deg=0.0, look_azimuth_deg=0.0)[0]
    d = depth_px * px
    r = 3 * px  # 3 pixels east of the source
    uz = lambda rr: (1 - nu) * dv / math.pi * d / (rr ** 2 + d ** 2) ** 1.5  # noqa: E731
    assert math.isclose(phase[10, 10], -4 * math.pi / lam * uz(0.0), rel_tol=1e-5)
    assert math.isclose(phase[10, 13], -4 * math.pi / lam * uz(r), rel_tol=1e-5)
    assert np.argmin(phase) == 10 * 21 + 10  # uplift moves toward the satellite: most negative at the centre


def test_layout_labels_loader_kwargs_and_wrap(tmp_path):
    truth = insar_synthetic.main(out_dir=str(tmp_path), n_train=300, n_val=20, n_test=10, image_size=16,
                                 fields_per_file=128, write_labels=True, deformation_fraction=0.5, seed=1)
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["train_000.hdf5", "train_001.hdf5",
                                                                      "train_002.hdf5"]
    with h5py.File(tmp_path / "train" / "train_000.hdf5", "r") as f:
        assert sorted(f.keys()) == ["label", "unwrap", "wrap"] and f["unwrap"].dtype == np.float32
        unwrap, wrap, label = f["unwrap"][()], f["wrap"][()], f["label"][()]
    assert np.all((wrap >= -np.pi) & (wrap < np.pi))
    np.testing.assert_allclose(np.exp(1j * wrap), np.exp(1j * unwrap), atol=1e-4)
    assert 0.3 < label.mean() < 0.7
    sources = np.load(tmp_path / "sources_train.npz")["sources"]
    assert np.all(np.isnan(sources[sources[:, 2] == 0, 3])) and np.all(np.isfinite(sources[sources[:, 2] == 1, 3]))
    kw = dict(truth["loader_kwargs"])
    kw.pop("type_dataset")
    loader, info = create_dataloader(str(tmp_path / "train"), type_dataset="hdf5", batch_size=64, class_cond=True,
                                     class_names=truth["class_names"], **kw)
    xs = np.concatenate([x.numpy() for x, _ in loader])
    assert len(xs) == 300 and xs.min() >= -1 and xs.max() <= 1 and info["class_names"] == ["none", "deformation"]


def test_deterministic_and_protected_output(tmp_path):
    a = insar_synthetic.main(out_dir=str(tmp_path / "a"), n_train=50, n_val=5, n_test=5, image_size=8, seed=4)
    insar_synthetic.main(out_dir=str(tmp_path / "b"), n_train=50, n_val=5, n_test=5, image_size=8, seed=4)
    insar_synthetic.main(out_dir=str(tmp_path / "c"), n_train=50, n_val=5, n_test=5, image_size=8, seed=5)
    assert np.array_equal(_read(tmp_path / "a" / "train"), _read(tmp_path / "b" / "train"))
    assert not np.array_equal(_read(tmp_path / "a" / "train"), _read(tmp_path / "c" / "train"))
    assert a["params"]["seed"] == 4
    with pytest.raises(ValueError, match="already holds.*overwrite=True"):
        insar_synthetic.main(out_dir=str(tmp_path / "a"), n_train=5, image_size=8)
    insar_synthetic.main(out_dir=str(tmp_path / "a"), n_train=5, n_val=1, n_test=1, image_size=8, overwrite=True)
    assert len(_read(tmp_path / "a" / "train")) == 5


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(covariance_model="gauss"), "covariance_model='gauss'"),
    (dict(n_train=-1), "n_train=-1"),
    (dict(deformation_fraction=1.5), "deformation_fraction=1.5"),
    (dict(mogi_depth_px=(5.0, 1.0)), r"mogi_depth_px=\[5.0, 1.0\]"),
])
def test_bad_options(tmp_path, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        insar_synthetic.main(out_dir=str(tmp_path), **kwargs)
    assert not (tmp_path / "train").exists()


def test_help_documents_every_option():
    import inspect
    out = subprocess.run([sys.executable, str(REPO / "datasets" / "insar_synthetic.py"), "--help"],
                         capture_output=True, text=True, check=True).stdout
    options = out[out.index("options:"):]
    names = list(inspect.signature(insar_synthetic.main).parameters)
    for name in names:
        # the text between this option and the next one explains it beyond the default value
        section = options.split(f"--{name}", 1)[1].split("\n  --", 1)[0]
        words = section.split("(default:")[0].replace(name.upper(), "").split()
        assert len([w for w in words if w.isalpha()]) >= 2, (name, section)
        assert "default:" in section, name
