"""Evaluation reads data through the training readers: same values, resizing and normalization as
training (16-bit GeoTIFF acceptance test), physical units back, one home for shared conversions."""
import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import torch

from improved_diffusion.dataloaders import create_dataloader
from utils.evaluation.array_io import load_image_set
from utils.evaluation.report import evaluate_samples
from utils.evaluation.semivariogram import empirical_semivariogram

ROOT = Path(__file__).resolve().parent.parent


def _geotiff_folder(folder, sizes, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir()
    stored = []
    for i, (h, w) in enumerate(sizes):
        a = rng.integers(1000, 40000, (h, w)).astype(np.uint16)
        tifffile.imwrite(folder / f"{i // 2}_{i:02d}.tif", a)
        stored.append(a)
    return stored


def _training_batch(folder, image_size, norm_stats=None):
    loader, info = create_dataloader(str(folder), image_size=image_size, num_channels=1, batch_size=64,
                                     deterministic=True, class_cond=True, norm_stats=norm_stats)
    (x, cond), = list(loader)
    return x.permute(0, 2, 3, 1).numpy(), cond["y"].numpy(), info


def test_16bit_geotiff_training_folder_reads_the_same_values_as_training(tmp_path):
    stored = _geotiff_folder(tmp_path / "train", [(8, 8)] * 4)
    x_train, y_train, info = _training_batch(tmp_path / "train", 8)
    for norm in (None, info["data_normalization"]):  # recomputed as training does, or from metadata
        s = load_image_set(tmp_path / "train", num_channels=1, image_size=8, data_normalization=norm)
        np.testing.assert_array_equal(s.images, x_train)
        np.testing.assert_array_equal(s.labels, y_train)
    # independent expectation: the dataset-wide range of the stored 16-bit values onto [-1, 1]
    low, high = min(a.min() for a in stored), max(a.max() for a in stored)
    expected = (np.stack(stored).astype(np.float64) - low) / (high - low) * 2 - 1
    np.testing.assert_allclose(s.images[..., 0], expected, atol=1e-6)
    np.testing.assert_allclose(s.physical()[..., 0], np.stack(stored), rtol=1e-5)


def test_resizing_is_the_training_short_side_resize_and_centre_crop(tmp_path):
    _geotiff_folder(tmp_path / "train", [(12, 20), (16, 10), (8, 8)])
    x_train, _, info = _training_batch(tmp_path / "train", 8)
    s = load_image_set(tmp_path / "train", image_size=8, data_normalization=info["data_normalization"])
    assert s.images.shape == (3, 8, 8, 1)
    np.testing.assert_array_equal(s.images, x_train)


def test_hdf5_physical_units_and_report_in_physical_units(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "real").mkdir()
    fields = rng.normal(0, 1.5, (20, 16, 16)).astype(np.float32)
    with h5py.File(tmp_path / "real" / "a.hdf5", "w") as f:
        f["unwrap"] = fields
    norm = {"kind": "range", "low": -6.0, "high": 6.0, "db": False, "cos_sin": False}
    s = load_image_set(tmp_path / "real", key_data="unwrap", data_normalization=norm)
    np.testing.assert_allclose(s.images[..., 0], fields / 6.0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s.physical()[..., 0], fields, rtol=1e-5, atol=1e-5)
    samples = rng.uniform(-0.5, 0.5, (10, 16, 16, 1)).astype(np.float32)
    np.savez(tmp_path / "samples.npz", samples)
    (tmp_path / "metadata.json").write_text(json.dumps({"data_normalization": norm}))
    common = dict(metrics="semivariogram", key_data="unwrap", metadata_json=str(tmp_path / "metadata.json"))
    report = evaluate_samples(str(tmp_path / "real"), str(tmp_path / "samples.npz"), str(tmp_path / "phys"),
                              units="physical", **common)
    assert report["field_units"] == "physical"
    gamma_real = empirical_semivariogram(fields.astype(np.float64), progress=False).gamma
    gamma_gen = empirical_semivariogram(samples[..., 0] * 6.0, progress=False).gamma
    np.testing.assert_allclose(report["semivariogram"]["gamma_real"], gamma_real, rtol=1e-4)
    np.testing.assert_allclose(report["semivariogram"]["gamma_generated"], gamma_gen, rtol=1e-4)
    model = evaluate_samples(str(tmp_path / "real"), str(tmp_path / "samples.npz"), str(tmp_path / "model"), **common)
    assert "field_units" not in model
    np.testing.assert_allclose(model["semivariogram"]["gamma_real"], gamma_real / 36, rtol=1e-4)
    with pytest.raises(ValueError, match="units='physical' needs metadata_json"):
        evaluate_samples(str(tmp_path / "real"), str(tmp_path / "samples.npz"), str(tmp_path / "x"),
                         metrics="semivariogram", key_data="unwrap", units="physical")


def test_npz_samples_record_the_normalization_and_uint8_maps_to_model_units(tmp_path):
    np.savez(tmp_path / "u.npz", np.array([0, 51, 255], np.uint8).reshape(3, 1, 1, 1))
    norm = {"kind": "range", "low": 0.0, "high": 10.0, "db": False, "cos_sin": False}
    s = load_image_set(tmp_path / "u.npz", data_normalization=norm)
    np.testing.assert_allclose(s.images.ravel(), [-1.0, 51 / 127.5 - 1, 1.0], atol=1e-6)
    np.testing.assert_allclose(s.physical().ravel(), [0.0, 51 / 25.5, 10.0], atol=1e-5)
    with pytest.raises(ValueError, match="data_normalization is unknown"):
        load_image_set(tmp_path / "u.npz").physical()


def _python_sources():
    skip = {"tests", ".venv", ".git"}
    return [p for p in ROOT.rglob("*.py") if not skip & set(p.relative_to(ROOT).parts)]


@pytest.mark.parametrize("pattern, home", [
    (r"/\s*127\.5", "improved_diffusion/data_normalization.py"),  # uint8 -> model units
    (r"\+\s*1\)\s*\*\s*127\.5\s*,\s*0\s*,\s*255", "improved_diffusion/data_normalization.py"),  # model -> uint8
    (r"matplotlib\.use\(", "utils/evaluation/plots.py"),  # matplotlib backend set-up
])
def test_shared_conversions_are_defined_once(pattern, home):
    found = sorted(str(p.relative_to(ROOT)) for p in _python_sources() if re.search(pattern, p.read_text()))
    assert found == [home]


def test_evaluation_dataset_is_the_training_dataset_class(tmp_path):
    """The classifier of the feature metrics reads its folders with the training ImageDataset too."""
    from utils.evaluation.fine_tuning import labelled_datasets
    _geotiff_folder(tmp_path / "train", [(8, 8)] * 4)
    _geotiff_folder(tmp_path / "val", [(8, 8)] * 2, seed=1)
    x_train, y_train, _ = _training_batch(tmp_path / "train", 8)
    train_set, _, class_names = labelled_datasets(tmp_path / "train", tmp_path / "val", 1, 8, crop=False)
    assert class_names == ["0", "1"]
    images = torch.stack([train_set[i][0] for i in range(len(train_set))]).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(images, x_train)
    assert [train_set[i][1] for i in range(len(train_set))] == y_train.tolist()
