"""HDF5-folder loaders: layouts, dtypes, labels, normalisation, shuffling, NaN policy, cos/sin, errors."""
import h5py
import numpy as np
import pytest
import torch

from improved_diffusion.dataloaders import create_dataloader, denormalize, set_loader_epoch


def _write(folder, name, **arrays):
    folder.mkdir(parents=True, exist_ok=True)
    with h5py.File(folder / name, "w") as f:
        for key, value in arrays.items():
            f[key] = value


def _indexed_folder(folder, counts=(5, 7, 4), size=4, dtype=np.float64):
    """Files whose example with global index g is the constant image g (and label g % 3)."""
    start = 0
    for k, n in enumerate(counts):
        g = np.arange(start, start + n)
        _write(folder, f"part{k}.hdf5", unwrap=np.broadcast_to(g[:, None, None], (n, size, size)).astype(dtype),
               wrap=np.zeros((n, size, size), np.float32), label=(g % 3).astype(np.int64), count=np.zeros(n))
        start += n
    return start


KEYS = ("wrap", "unwrap", "label", "count")


def _epoch(loader, epoch=0):
    set_loader_epoch(loader, epoch)
    return list(loader)


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int16, np.uint8])
def test_any_dtype_read_as_float32_with_labels(tmp_path, dtype):
    total = _indexed_folder(tmp_path, dtype=dtype)
    loader, info = create_dataloader(str(tmp_path), type_dataset="hdf5", image_size=4, num_channels=1, batch_size=4,
                                     class_cond=True, list_keys_hdf5_original=KEYS, key_other="count",
                                     key_class="label")
    assert info["class_names"] == ["0", "1", "2"] and info["data_normalization"]["kind"] == "none"
    assert info["class_counts"] == [len(range(k, total, 3)) for k in range(3)]  # labels are index % 3
    seen = []
    for x, cond in _epoch(loader):
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 4, 4)
        g = x[:, 0, 0, 0].long()
        assert torch.equal(cond["y"], g % 3)
        seen += g.tolist()
    assert sorted(seen) == list(range(total))


def test_shuffles_across_and_within_files_and_is_seeded(tmp_path):
    total = _indexed_folder(tmp_path, counts=(40, 40, 40))
    kw = dict(type_dataset="hdf5", image_size=4, num_channels=1, batch_size=8, list_keys_hdf5_original=KEYS)
    loader, info = create_dataloader(str(tmp_path), seed=3, **kw)
    assert "class_counts" not in info  # recorded for class-conditional runs only
    order = [int(v) for x, _ in _epoch(loader) for v in x[:, 0, 0, 0]]
    assert sorted(order) == list(range(total))
    first = [order[i:i + 8] for i in range(0, 24, 8)]
    assert any(len({v // 40 for v in b}) > 1 for b in first)  # batches mix files
    assert any(np.ptp(b) > 8 for b in first)  # not contiguous blocks within a file
    again = [int(v) for x, _ in _epoch(create_dataloader(str(tmp_path), seed=3, **kw)[0]) for v in x[:, 0, 0, 0]]
    other = [int(v) for x, _ in _epoch(loader, 1) for v in x[:, 0, 0, 0]]
    assert again == order and other != order
    fixed = [int(v) for x, _ in _epoch(create_dataloader(str(tmp_path), deterministic=True, **kw)[0])
             for v in x[:, 0, 0, 0]]
    assert fixed == list(range(total))


def test_channel_first_layout(tmp_path):
    data = np.random.default_rng(0).normal(size=(6, 2, 4, 4))
    _write(tmp_path, "a.h5", unwrap=data)
    loader, _ = create_dataloader(str(tmp_path), type_dataset="hdf5", image_size=4, num_channels=2, batch_size=6,
                                  deterministic=True)
    x, _ = next(iter(loader))
    np.testing.assert_allclose(x.numpy(), data.astype(np.float32))
    with pytest.raises(ValueError, match=r"num_channels=1.*2 channel.*expected num_channels=2"):
        create_dataloader(str(tmp_path), type_dataset="hdf5", image_size=4, num_channels=1, batch_size=6)


def test_minmax_and_range_normalisation_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    a, b = rng.uniform(-3, 1, (5, 4, 4)), rng.uniform(0, 5, (5, 4, 4))
    _write(tmp_path, "a.hdf5", unwrap=a)
    _write(tmp_path, "b.hdf5", unwrap=b)
    kw = dict(type_dataset="hdf5", image_size=4, num_channels=1, batch_size=10, deterministic=True)
    loader, info = create_dataloader(str(tmp_path), normalization="minmax", **kw)
    norm = info["data_normalization"]
    lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
    assert norm["kind"] == "minmax" and np.isclose(norm["low"], lo) and np.isclose(norm["high"], hi)
    x, _ = next(iter(loader))
    assert np.isclose(float(x.min()), -1) and np.isclose(float(x.max()), 1)
    stored = np.concatenate([a, b])[:, None]
    np.testing.assert_allclose(denormalize(x.numpy(), norm), stored, rtol=1e-5, atol=1e-5)
    loader, info = create_dataloader(str(tmp_path), normalization="range", norm_range=(-10, 10), **kw)
    x, _ = next(iter(loader))
    np.testing.assert_allclose(x.numpy(), stored / 10, rtol=1e-5, atol=1e-6)
    # reusing the training statistics (e.g. for the val loader) skips the computation
    loader, info2 = create_dataloader(str(tmp_path), norm_stats=info["data_normalization"], **kw)
    assert info2["data_normalization"] == info["data_normalization"]
    with pytest.raises(ValueError, match=r"norm_range=None"):
        create_dataloader(str(tmp_path), normalization="range", **kw)
    with pytest.raises(ValueError, match=r"normalization='zscore'"):
        create_dataloader(str(tmp_path), normalization="zscore", **kw)


def test_nan_error_names_file_key_and_example(tmp_path):
    data = np.zeros((4, 4, 4))
    data[2, 1, 1] = np.nan
    _write(tmp_path, "bad.hdf5", unwrap=data)
    loader, _ = create_dataloader(str(tmp_path), type_dataset="hdf5", image_size=4, num_channels=1, batch_size=4)
    with pytest.raises(ValueError, match=r"bad\.hdf5.*'unwrap'.*example 2.*NaN"):
        next(iter(loader))
    with pytest.raises(ValueError, match=r"bad\.hdf5.*example 2"):
        create_dataloader(str(tmp_path), type_dataset="hdf5", image_size=4, num_channels=1, batch_size=4,
                          normalization="minmax")


def test_nan_fill_gives_mask(tmp_path):
    data = np.random.default_rng(2).normal(size=(4, 4, 4))
    data[1, 0, :2] = np.nan
    data[3, 2, 2] = np.inf
    _write(tmp_path, "a.hdf5", unwrap=data)
    loader, info = create_dataloader(str(tmp_path), type_dataset="hdf5", image_size=4, num_channels=1, batch_size=4,
                                     nan_policy="fill", normalization="minmax", deterministic=True)
    x, cond = next(iter(loader))
    finite = np.isfinite(data)[:, None]
    assert cond["mask"].dtype == torch.float32 and cond["mask"].shape == x.shape
    np.testing.assert_array_equal(cond["mask"].numpy(), finite.astype(np.float32))
    assert torch.isfinite(x).all() and torch.all(x[cond["mask"] == 0] == 0)
    assert np.isclose(info["data_normalization"]["high"], data[np.isfinite(data)].max())
    with pytest.raises(ValueError, match=r"nan_policy='drop'"):
        create_dataloader(str(tmp_path), type_dataset="hdf5", image_size=4, num_channels=1, batch_size=4,
                          nan_policy="drop")


def test_phase_as_cos_sin(tmp_path):
    phase = np.random.default_rng(3).uniform(-8, 8, (5, 4, 4))
    _write(tmp_path, "a.hdf5", wrap=phase)
    loader, info = create_dataloader(str(tmp_path), type_dataset="hdf5", image_size=4, num_channels=2, batch_size=5,
                                     key_data="wrap", phase_as_cos_sin=True, deterministic=True)
    x, _ = next(iter(loader))
    assert x.shape == (5, 2, 4, 4) and info["data_normalization"]["cos_sin"]
    np.testing.assert_allclose((x[:, 0] ** 2 + x[:, 1] ** 2).numpy(), 1.0, atol=1e-5)
    back = denormalize(x.numpy(), info["data_normalization"], channel_axis=1)[:, 0]
    wrapped = np.angle(np.exp(1j * phase))
    np.testing.assert_allclose(np.exp(1j * back), np.exp(1j * wrapped), atol=1e-5)


def test_low_res_mode_on_hdf5_with_mask(tmp_path):
    data = np.random.default_rng(4).normal(size=(3, 8, 8))
    data[0, 0, 0] = np.nan
    _write(tmp_path, "a.hdf5", unwrap=data)
    loader, _ = create_dataloader(str(tmp_path), type_dataset="hdf5", image_size=4, image_size_hr=8, num_channels=1,
                                  batch_size=3, deterministic=True, nan_policy="fill")
    x, cond = next(iter(loader))
    assert x.shape == (3, 1, 4, 4) and cond["mask"].shape == (3, 1, 4, 4)
    np.testing.assert_allclose(x[1, 0].numpy(), data[1].reshape(4, 2, 4, 2).mean(axis=(1, 3)), atol=1e-6)
    assert cond["mask"][0, 0, 0, 0] == 0 and cond["mask"].sum() == 3 * 16 - 1


@pytest.mark.parametrize("arrays, kwargs, pattern", [
    (dict(unwrap=np.zeros((2, 4, 4)), extra=np.zeros(2)), {}, r"f\.hdf5.*keys \['extra'\].*list_keys_hdf5_original"),
    (dict(wrap=np.zeros((2, 4, 4))), {}, r"f\.hdf5.*key_data='unwrap'"),
    (dict(unwrap=np.zeros((2, 5, 5))), {}, r"f\.hdf5.*'unwrap'.*\(2, 5, 5\).*\(n, 4, 4\)"),
    (dict(unwrap=np.zeros((2, 4, 4))), dict(key_other="count"), r"key_other='count'.*list_keys_hdf5_original"),
    (dict(unwrap=np.zeros((2, 4, 4)), wrap=np.zeros(3)), dict(key_other="wrap"), r"counts 3.*holds 2"),
    (dict(unwrap=np.zeros((2, 4, 4))), dict(class_cond=True), r"needs key_class"),
    (dict(unwrap=np.zeros((2, 4, 4)), wrap=np.array([0, 5])),
     dict(class_cond=True, key_class="wrap", num_class=3), r"labels.*up to 5.*num_class=3"),
])
def test_errors_name_file_key_and_expectation(tmp_path, arrays, kwargs, pattern):
    _write(tmp_path, "f.hdf5", **arrays)
    args = dict(type_dataset="hdf5", image_size=4, num_channels=1, batch_size=2) | kwargs
    with pytest.raises(ValueError, match=pattern):
        create_dataloader(str(tmp_path), **args)


def test_no_hdf5_file(tmp_path):
    with pytest.raises(ValueError, match="no HDF5 file"):
        create_dataloader(str(tmp_path), type_dataset="hdf5", image_size=4, num_channels=1, batch_size=2)
