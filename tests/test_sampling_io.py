"""Sample I/O: shards streamed into the original .npz layout, PNG grid, HDF5 in physical units."""
import h5py
import numpy as np
import pytest
from PIL import Image

from improved_diffusion.data_normalization import make_normalization, value_unit
from improved_diffusion.file_io import check_free
from utils.sampling import sample_io


def test_shards_merge_into_savez_layout(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (7, 4, 4, 2)).astype(np.float32)
    labels = rng.integers(0, 5, 7)
    store = sample_io.ShardStore(tmp_path / "shards", {"run": 1})
    for b in range(3):
        store.write(b, images[3 * b:3 * b + 3], labels[3 * b:3 * b + 3])
    out = tmp_path / sample_io.npz_name(6, 4, 2)
    sample_io.merge_shards(store, 3, 6, out)
    with np.load(out) as data:
        assert sorted(data) == ["arr_0", "arr_1"]
        np.testing.assert_array_equal(data["arr_0"], images[:6])
        assert data["arr_1"].dtype == np.int64 and data["arr_1"].tolist() == labels[:6].tolist()
    with pytest.raises(ValueError, match="different run"):
        sample_io.ShardStore(tmp_path / "shards", {"run": 2})
    assert sample_io.ShardStore(tmp_path / "shards", {"run": 2}, overwrite=True).done(0) is False


def test_uint8_png_grid_and_hdf5_units(tmp_path):
    x = np.array([-1.0, -0.5, 0.0, 1.0], dtype=np.float32).reshape(1, 2, 2, 1).repeat(5, axis=0)
    assert sample_io.to_uint8(x)[0, :, :, 0].ravel().tolist() == [0, 63, 127, 255]
    sample_io.save_png_grid(x, tmp_path / "grid.png")
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape == (2 * 4 + 2, 3 * 4 + 2)  # 5 samples -> 3 columns x 2 rows, 2 px borders
    np.savez(tmp_path / "s.npz", x)
    norm = make_normalization("range", low=0.0, high=10.0)
    assert sample_io.save_hdf5(tmp_path / "s.npz", tmp_path / "s.hdf5", norm) == "physical"
    with h5py.File(tmp_path / "s.hdf5") as f:
        assert f["data"].shape == (5, 2, 2) and f.attrs["units"] == "physical"
        np.testing.assert_allclose(f["data"][0].ravel(), [0.0, 2.5, 5.0, 10.0], atol=1e-6)
    assert sample_io.save_hdf5(tmp_path / "s.npz", tmp_path / "m.hdf5", None) == "model"


def test_check_free(tmp_path):
    (tmp_path / "a").write_text("x")
    with pytest.raises(FileExistsError, match="overwrite"):
        check_free([tmp_path / "b", tmp_path / "a"], overwrite=False)
    check_free([tmp_path / "a"], overwrite=True)


def test_run_figure_takes_samples_from_every_batch_with_a_colorbar(tmp_path):
    rng = np.random.default_rng(2)
    images = rng.uniform(-1, 1, (10, 8, 8, 1)).astype(np.float32)
    store = sample_io.ShardStore(tmp_path / "shards", {"run": 3})
    for b in range(5):  # batches of 2: the first batch alone holds 2 samples
        store.write(b, images[2 * b:2 * b + 2], None)
    np.testing.assert_array_equal(sample_io.first_samples(store, 5, count=7), images[:7])
    np.testing.assert_array_equal(sample_io.first_samples(store, 5), images)
    path = tmp_path / "run.png"
    sample_io.save_sample_figure(images, path, make_normalization("range", low=-3.0, high=3.0), total=10,
                                 key_data="unwrap")
    figure = np.asarray(Image.open(path))
    assert figure.ndim == 3 and figure.shape[1] > figure.shape[0] * 0.9  # a figure (grid + colorbar), not the grid


def test_value_units():
    assert value_unit(make_normalization("range", -3.0, 3.0), key_data="unwrap") == "rad"
    assert value_unit(make_normalization("range", -20.0, 10.0, db=True)) == "linear power"
    assert value_unit(make_normalization("image_8bit", 0.0, 255.0)) == "8-bit level"
    assert value_unit(make_normalization("cos_sin", cos_sin=True)) == "rad"
    assert value_unit(make_normalization("range", -3.0, 3.0), physical=False) == "model units"
    assert value_unit(None) == "model units"
