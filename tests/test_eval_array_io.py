"""Reading real / generated sets: image folders, HDF5 folders, samples .npz; bad inputs."""
import h5py
import numpy as np
import pytest
from PIL import Image

from utils.evaluation.array_io import check_compatible, load_image_set


def test_image_folder_grayscale_labels_and_range(tmp_path):
    for name, value in (("5_001.png", 255), ("5_002.png", 0), ("3_001.png", 51)):
        Image.fromarray(np.full((8, 6), value, np.uint8), mode="L").save(tmp_path / name)
    s = load_image_set(tmp_path)
    assert s.images.shape == (3, 8, 6, 1) and s.images.dtype == np.float32
    assert s.class_names == ["3", "5"]
    np.testing.assert_array_equal(s.labels, [0, 1, 1])
    np.testing.assert_allclose(s.images[:, 0, 0, 0], [51 / 127.5 - 1, 1.0, -1.0])
    rgb = load_image_set(tmp_path, num_channels=3, image_size=4)
    assert rgb.images.shape == (3, 4, 4, 3)


def test_hdf5_folder_both_layouts_and_subset(tmp_path):
    with h5py.File(tmp_path / "a.hdf5", "w") as f:
        f["unwrap"] = np.arange(3 * 4 * 4, dtype=np.float64).reshape(3, 4, 4)
    with h5py.File(tmp_path / "b.hdf5", "w") as f:
        f["unwrap"] = np.full((2, 1, 4, 4), np.nan)
    s = load_image_set(tmp_path, key_data="unwrap", scale=2.0, offset=1.0)
    assert s.images.shape == (5, 4, 4, 1) and s.labels is None
    assert s.images[1, 0, 1, 0] == 2 * 17 + 1
    assert np.isnan(s.images[3:]).all()
    assert len(load_image_set(tmp_path, key_data="unwrap", num_samples=2).images) == 2
    with pytest.raises(ValueError, match="key_data='wrap'"):
        load_image_set(tmp_path, key_data="wrap")
    with pytest.raises(ValueError, match="key_data=None"):
        load_image_set(tmp_path)


def test_samples_npz_float_and_uint8(tmp_path):
    np.savez(tmp_path / "f.npz", np.zeros((4, 8, 8, 1), np.float32), np.arange(4))
    np.savez(tmp_path / "u.npz", np.full((2, 8, 8, 3), 255, np.uint8))
    f = load_image_set(tmp_path / "f.npz")
    np.testing.assert_array_equal(f.labels, np.arange(4))
    assert load_image_set(tmp_path / "u.npz").images.max() == 1.0


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="source="):
        load_image_set(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="sizes and channels must match"):
        check_compatible(np.zeros((2, 8, 8, 1)), np.zeros((2, 8, 8, 3)))
    with pytest.raises(ValueError, match="sizes and channels must match"):
        check_compatible(np.zeros((2, 16, 16, 1)), np.zeros((2, 8, 8, 1)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        load_image_set(tmp_path / "empty")


def test_hdf5_normalised_as_in_training(tmp_path):
    with h5py.File(tmp_path / "a.hdf5", "w") as f:
        f["unwrap"] = np.array([[[-4.0, 0.0], [2.0, 4.0]]])
    norm = {"kind": "range", "low": -4.0, "high": 4.0, "db": False, "cos_sin": False}
    s = load_image_set(tmp_path, key_data="unwrap", data_normalization=norm)
    np.testing.assert_allclose(s.images[0, :, :, 0], [[-1.0, 0.0], [0.5, 1.0]])


def test_crop_takes_training_style_windows_instead_of_resizing(tmp_path):
    folder = tmp_path / "sar"
    folder.mkdir()
    rng = np.random.default_rng(0)
    sources = [rng.integers(0, 256, (64, 64), dtype=np.uint8) for _ in range(3)]
    for i, a in enumerate(sources):
        Image.fromarray(a).save(folder / f"img{i}.png")
    got = load_image_set(folder, image_size=32, crop=True, num_channels=1, seed=5).images[..., 0]
    assert got.shape == (3, 32, 32)
    scaled = [a.astype(np.float32) / 127.5 - 1 for a in sources]  # the uint8 -> [-1, 1] map of 8-bit folders
    for image in got:  # every crop is an exact 32 px window of one source image (no resampling)
        assert any(np.allclose(image, s[r:r + 32, c:c + 32], atol=1e-6)
                   for s in scaled for r in range(33) for c in range(33))
    with pytest.raises(ValueError, match="crop=True needs image_size"):
        load_image_set(folder, crop=True)
