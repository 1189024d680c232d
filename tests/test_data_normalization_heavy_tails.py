"""Heavy-tail-safe normalisation: robust scale + asinh round trip, range reports and warnings, and a sampler
default that keeps values beyond [-1, 1]."""
import json
import math
import warnings

import h5py
import numpy as np
import pytest
import tifffile
import torch

from improved_diffusion.checkpoint import write_metadata
from improved_diffusion.data_normalization import (
    check_normalization,
    default_clip,
    denormalize,
    make_normalization,
    normalize,
    range_report,
    robust_normalization,
)
from improved_diffusion.dataloaders import create_dataloader
from improved_diffusion.script_util import create_model_and_diffusion
from sample import main_sample

KW = dict(type_dataset="hdf5", image_size=8, num_channels=1, batch_size=4000, deterministic=True)


@pytest.fixture
def heavy(tmp_path):
    """1000 fields N(0, 1), 1 % of them 100x larger, in one HDF5 file."""
    rng = np.random.default_rng(0)
    data = rng.normal(size=(1000, 8, 8)).astype(np.float32)
    big = rng.choice(1000, 10, replace=False)
    data[big] *= 100.0
    with h5py.File(tmp_path / "a.hdf5", "w") as f:
        f["unwrap"] = data
    return tmp_path, data, big


def test_robust_scale_ignores_the_heavy_fields_and_round_trip_is_exact(heavy):
    folder, data, big = heavy
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loader, info = create_dataloader(str(folder), normalization="robust", **KW)
    norm = info["data_normalization"]
    assert norm["kind"] == "robust" and norm["asinh"]
    # median 0 and MAD = 0.6745 sigma of the unit normal bulk: the half width is ~4 sigma = 4 (not ~400)
    assert abs((norm["low"] + norm["high"]) / 2) < 0.05 and 3.8 < (norm["high"] - norm["low"]) / 2 < 4.3
    x = np.concatenate([b.numpy() for b, _ in loader])[:, 0]
    assert np.abs(x[np.setdiff1d(np.arange(1000), big)]).max() < 1.5
    assert 1.5 < np.abs(x[big]).max() < 8.0  # tails compressed by asinh, not clipped
    np.testing.assert_allclose(denormalize(x, norm), data, rtol=2e-6, atol=2e-5)
    report = norm["report"]
    outside = (np.abs(data) > (norm["high"] - norm["low"]) / 2).mean()
    assert math.isclose(report["fraction_outside"], outside, rel_tol=0.05) and report["values_checked"] == data.size
    assert any("robust" in str(w.message) and "keeps them" in str(w.message) for w in caught)
    assert check_normalization(json.loads(json.dumps(norm))) == norm
    assert default_clip(norm)[0] is False


def test_asinh_map_fixes_plus_minus_one_and_is_odd_about_the_centre():
    norm = make_normalization("robust", 2.0, 6.0, asinh=True)
    v = np.array([2.0, 4.0, 6.0, 4.0 + 2.0 * math.sinh(3 * math.asinh(1.0))], dtype=np.float32)
    np.testing.assert_allclose(normalize(v, norm), [-1.0, 0.0, 1.0, 3.0], rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="median absolute deviation is 0"):
        robust_normalization(np.zeros(10))


def test_range_too_small_warns_and_turns_the_sampler_clamp_off(heavy):
    folder, data, _ = heavy
    with pytest.warns(UserWarning, match=r"'range' maps .*outside \[-1, 1\].*use normalization='robust'"):
        _, info = create_dataloader(str(folder), normalization="range", norm_range=(-5.0, 5.0), **KW)
    report = info["data_normalization"]["report"]
    assert math.isclose(report["fraction_outside"], (np.abs(data) > 5).mean(), rel_tol=1e-6)
    assert math.isclose(report["max_abs_model"], np.abs(data).max() / 5, rel_tol=1e-5)
    assert default_clip(info["data_normalization"])[0] is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, wide = create_dataloader(str(folder), normalization="range", norm_range=(-1000.0, 1000.0), **KW)
    assert wide["data_normalization"]["report"]["fraction_outside"] == 0 and default_clip(wide["data_normalization"])[0]


def test_db_images_report_clipped_zero_power(tmp_path):
    a = np.full((4, 4), 2.0, np.float32)
    a[0] = [0.0, 0.0, 1.0, 5.0]
    tifffile.imwrite(tmp_path / "s_0.tif", a)
    with pytest.warns(UserWarning, match=r"clips 12.50% of 16 values"):
        _, info = create_dataloader(str(tmp_path), image_size=4, num_channels=1, batch_size=1, db=True)
    assert info["data_normalization"]["report"]["fraction_clipped"] == 2 / 16


def test_sampling_keeps_values_beyond_the_old_range(tmp_path):
    """A fresh UNet predicts eps = 0 (zero-initialised output layer), so DDIM returns x_T / sqrt(alpha_bar_T)-like
    values far beyond [-1, 1]: kept with the robust normalisation's default, clamped when asked."""
    args = {"image_size": 32, "num_input_channels": 1, "num_model_channels": 32, "num_res_blocks": 1,
            "attention_resolutions": "8", "diffusion_steps": 20, "noise_schedule": "cosine", "learn_sigma": False,
            "class_cond": False}
    model, _ = create_model_and_diffusion(args)
    torch.save(model.state_dict(), tmp_path / "model.pt")
    norm = make_normalization("robust", -4.0, 4.0, asinh=True)
    write_metadata(tmp_path, {**args, "data_normalization": norm})
    common = dict(model_path=str(tmp_path / "model.pt"), num_samples=2, use_ddim=True, sampling_steps=2, seed=0,
                  batch_size=2, device="cpu", progress=False, plot=False)
    kept = main_sample(url_save_path=str(tmp_path / "kept"), **common)
    clamped = main_sample(url_save_path=str(tmp_path / "clamped"), clip_denoised=True, **common)
    assert np.abs(np.load(kept)["arr_0"]).max() > 1.5
    assert np.abs(np.load(clamped)["arr_0"]).max() <= 1.0
    provenance = json.loads(kept.with_suffix(".json").read_text())
    assert provenance["clip_denoised"] is False and "robust" in provenance["clip_denoised_reason"]
    assert json.loads(clamped.with_suffix(".json").read_text())["clip_denoised_reason"] == "set by the caller"


def test_the_report_records_the_model_unit_std_of_heavy_tailed_data():
    # a Student-t (3 dof) sample with outliers under a fixed range map: the model values are (v - 0) / 2, so their
    # std is half the stored one; a robust map records the std of its asinh-compressed values
    v = np.random.default_rng(5).standard_t(3, 20000)
    v[:20] = 500.0
    report = range_report(v, make_normalization("range", -2.0, 2.0))
    assert report["std_model"] == pytest.approx(np.std(v) / 2, rel=1e-6)
    robust = robust_normalization(v)
    assert robust["report"]["std_model"] == pytest.approx(np.std(normalize(v.astype(np.float32), robust)), rel=1e-5)
    assert robust["report"]["std_model"] < report["std_model"]
