"""Image-folder loaders: classes, crops, resizing, GeoTIFF ranges, dB, low-/super-res modes, errors."""
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from improved_diffusion.dataloaders import create_dataloader, denormalize, set_loader_epoch


def _png(path, array):
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


def _all(loader):
    xs, conds = zip(*loader)
    out = {k: torch.cat([c[k] for c in conds]) for k in conds[0]}
    return torch.cat(xs), out


def test_classes_sorted_prefix_and_val_folder_reuses_training_classes(tmp_path):
    train, val = tmp_path / "train", tmp_path / "val"
    (train / "sub").mkdir(parents=True)
    val.mkdir()
    # class value encoded in the pixel value to check labels independently
    values = {"cat": 10, "ant": 20, "bee": 30}
    for name, v in values.items():
        _png(train / f"{name}_0.png", np.full((8, 8), v))
        _png(train / "sub" / f"{name}_x_1.PNG", np.full((8, 8), v))
    _png(val / "cat_9.png", np.full((8, 8), values["cat"]))
    loader, info = create_dataloader(str(train), image_size=8, num_channels=1, batch_size=4, class_cond=True)
    assert info["class_names"] == ["ant", "bee", "cat"]
    x, cond = _all(loader)
    assert x.shape == (6, 1, 8, 8) and x.dtype == torch.float32 and cond["y"].dtype == torch.int64
    pixel = denormalize(x[:, 0, 0, 0].numpy(), info["data_normalization"])
    expected = {values[c]: i for i, c in enumerate(info["class_names"])}
    assert [expected[round(float(p))] for p in pixel] == cond["y"].tolist()
    vloader, vinfo = create_dataloader(str(val), image_size=8, num_channels=1, batch_size=4, class_cond=True,
                                       num_class=3, class_names=info["class_names"])
    assert vinfo["class_names"] == info["class_names"] and _all(vloader)[1]["y"].tolist() == [2]


def test_num_class_mismatch_and_unknown_class_are_errors(tmp_path):
    for c in "ab":
        _png(tmp_path / f"{c}_0.png", np.zeros((8, 8)))
    with pytest.raises(ValueError, match=r"num_class=3.*2 classes"):
        create_dataloader(str(tmp_path), image_size=8, num_channels=1, batch_size=2, class_cond=True, num_class=3)
    with pytest.raises(ValueError, match=r"\['b'\].*not in class_names"):
        create_dataloader(str(tmp_path), image_size=8, num_channels=1, batch_size=2, class_cond=True,
                          class_names=["a"])


def test_pixels_map_to_minus_one_one(tmp_path):
    img = np.zeros((8, 8, 3))
    img[:4] = 255
    _png(tmp_path / "a_0.png", img)
    x, _ = _all(create_dataloader(str(tmp_path), image_size=8, num_channels=3, batch_size=1)[0])
    assert x.shape == (1, 3, 8, 8)
    assert torch.all(x[:, :, :4] == 1.0) and torch.all(x[:, :, 4:] == -1.0)
    x1, _ = _all(create_dataloader(str(tmp_path), image_size=8, num_channels=1, batch_size=1)[0])
    assert x1.shape == (1, 1, 8, 8) and torch.allclose(x1[0, 0], x[0, 0])


def test_random_crop_reaches_every_offset_and_accepts_exact_size(tmp_path):
    # pixel value = 10 * row + col, so the crop's top-left pixel gives its offset
    rows, cols = np.meshgrid(np.arange(10), np.arange(10), indexing="ij")
    _png(tmp_path / "a_0.png", 10 * rows + cols)
    _png(tmp_path / "b_0.png", np.zeros((8, 8)))
    loader, info = create_dataloader(str(tmp_path), image_size=8, num_channels=1, batch_size=2, crop=True,
                                     deterministic=True)
    offsets = set()
    for epoch in range(60):
        set_loader_epoch(loader, epoch)
        x, _ = _all(loader)
        corner = round(float(denormalize(x[0, 0, 0, 0].numpy(), info["data_normalization"])))
        offsets.add(divmod(corner, 10))
        assert torch.all(x[1] == -1.0)
    assert offsets == {(r, c) for r in range(3) for c in range(3)}


def test_crop_larger_than_image_is_an_error_naming_the_file(tmp_path):
    _png(tmp_path / "a_small.png", np.zeros((6, 9)))
    loader, _ = create_dataloader(str(tmp_path), image_size=8, num_channels=1, batch_size=1, crop=True)
    with pytest.raises(ValueError, match=r"a_small\.png.*6x9.*crop size 8"):
        next(iter(loader))


def test_resize_non_square_short_side_then_centre_crop(tmp_path):
    # horizontal ramp 0..255 over 64 columns, 32 rows: resized to 16x32 then centre columns 8..24
    ramp = np.tile(np.linspace(0, 255, 64), (32, 1))
    _png(tmp_path / "a_0.png", np.round(ramp))
    x, _ = _all(create_dataloader(str(tmp_path), image_size=16, num_channels=1, batch_size=1)[0])
    assert x.shape == (1, 1, 16, 16)
    row = x[0, 0, 8].numpy()
    # centre crop covers the middle half of the ramp: model values about -0.5 .. 0.5, increasing
    assert np.all(np.diff(row) > 0)
    assert abs(row[0] + 0.5) < 0.08 and abs(row[-1] - 0.5) < 0.08


def test_geotiff_16bit_and_float_use_dataset_wide_range(tmp_path):
    tifffile.imwrite(tmp_path / "a_0.tif", np.array([[100, 200], [150, 200]], dtype=np.uint16))
    tifffile.imwrite(tmp_path / "a_1.tiff", np.array([[300.0, 1000.0], [500.0, 700.0]], dtype=np.float32))
    loader, info = create_dataloader(str(tmp_path), image_size=2, num_channels=1, batch_size=2, deterministic=True)
    norm = info["data_normalization"]
    assert (norm["low"], norm["high"], norm["db"]) == (100.0, 1000.0, False)
    x, _ = _all(loader)
    assert x[0, 0, 0, 0] == -1.0 and x[1, 0, 0, 1] == 1.0
    np.testing.assert_allclose(denormalize(x[1, 0].numpy(), norm), [[300, 1000], [500, 700]], rtol=1e-5)


def test_geotiff_db_conversion(tmp_path):
    tifffile.imwrite(tmp_path / "s_0.tif", np.array([[0.01, 0.1], [1.0, 10.0]], dtype=np.float32))
    loader, info = create_dataloader(str(tmp_path), image_size=2, num_channels=1, batch_size=1, db=True)
    norm = info["data_normalization"]
    assert norm["db"] and abs(norm["low"] + 20) < 1e-4 and abs(norm["high"] - 10) < 1e-4
    x, _ = _all(loader)
    # dB values -20, -10, 0, 10 over the range [-20, 10] -> -1, -1/3, 1/3, 1
    np.testing.assert_allclose(x[0, 0].numpy(), [[-1, -1 / 3], [1 / 3, 1]], atol=1e-5)
    np.testing.assert_allclose(denormalize(x[0, 0].numpy(), norm), [[0.01, 0.1], [1, 10]], rtol=1e-4)


def test_low_res_mode_is_area_downscale_of_hr(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (16, 16))
    _png(tmp_path / "a_0.png", img)
    _png(tmp_path / "b_0.png", img[::-1])
    loader, info = create_dataloader(str(tmp_path), image_size=8, image_size_hr=16, num_channels=1, batch_size=2,
                                     class_cond=True, deterministic=True)
    x, cond = _all(loader)
    expected = (img / 127.5 - 1).reshape(8, 2, 8, 2).mean(axis=(1, 3))
    assert x.shape == (2, 1, 8, 8) and info["image_size_hr"] == 16 and cond["y"].tolist() == [0, 1]
    np.testing.assert_allclose(x[0, 0].numpy(), expected, atol=1e-5)


def test_super_res_mode_gives_hr_and_area_downscaled_low_res(tmp_path):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (16, 16))
    _png(tmp_path / "a_0.png", img)
    x, cond = _all(create_dataloader(str(tmp_path), image_size=16, image_size_lr=4, num_channels=1,
                                     batch_size=1)[0])
    assert x.shape == (1, 1, 16, 16) and cond["low_res"].shape == (1, 1, 4, 4) and "y" not in cond
    np.testing.assert_allclose(cond["low_res"][0, 0].numpy(), x[0, 0].numpy().reshape(4, 4, 4, 4).mean(axis=(1, 3)),
                               atol=1e-5)
    np.testing.assert_allclose(x[0, 0].numpy(), img / 127.5 - 1, atol=1e-5)


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(image_size=8, image_size_hr=8), r"image_size_hr=8.*> image_size=8"),
    (dict(image_size=8, image_size_lr=8), r"image_size_lr=8.*< image_size=8"),
    (dict(image_size=8, num_channels=2), r"num_channels=2.*1 or 3"),
])
def test_bad_arguments(tmp_path, kwargs, pattern):
    _png(tmp_path / "a_0.png", np.zeros((8, 8)))
    args = dict(num_channels=1, batch_size=1) | kwargs
    with pytest.raises(ValueError, match=pattern):
        create_dataloader(str(tmp_path), **args)


def test_missing_or_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        create_dataloader(str(tmp_path / "nowhere"), image_size=8, num_channels=1, batch_size=1)
    with pytest.raises(ValueError, match="no image file"):
        create_dataloader(str(tmp_path), image_size=8, num_channels=1, batch_size=1)
