"""Dataset scripts on small local inputs: synthetic SAR, TenGeoP GeoTIFF conversion, MNIST, CIFAR-10."""
import gzip
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from datasets import TenGeoP_SAR, cifar10, mnist, sar_synthetic
from improved_diffusion.dataloaders import create_dataloader


def _names(folder):
    return sorted(p.name for p in Path(folder).iterdir())


def test_sar_synthetic_classes_feed_the_class_conditional_loader(tmp_path):
    sar_synthetic.main(out_dir=str(tmp_path), n_train_per_class=6, n_val_per_class=2, n_test_per_class=1,
                       image_size=16, seed=2)
    assert len(_names(tmp_path / "train")) == 24 and "waves_00005.png" in _names(tmp_path / "train")
    loader, info = create_dataloader(str(tmp_path / "train"), image_size=16, num_channels=1, batch_size=8,
                                     class_cond=True, num_class=4)
    assert info["class_names"] == ["edge", "homogeneous", "patches", "waves"]
    x, cond = next(iter(loader))
    assert x.shape == (8, 1, 16, 16) and cond["y"].max() < 4
    # classes differ: 4x4 block means (speckle averaged out) vary across an edge image, not a homogeneous one
    spread = {c: np.mean([np.asarray(Image.open(tmp_path / "train" / f"{c}_{i:05d}.png"), float)
                          .reshape(4, 4, 4, 4).mean(axis=(1, 3)).std() for i in range(6)])
              for c in ("homogeneous", "edge")}
    assert spread["edge"] > 2 * spread["homogeneous"]
    with pytest.raises(ValueError, match="already holds"):
        sar_synthetic.main(out_dir=str(tmp_path), n_train_per_class=1, image_size=16)
    with pytest.raises(ValueError, match=r"classes=\['ships'\]"):
        sar_synthetic.main(out_dir=str(tmp_path / "x"), classes=("ships",))


@pytest.fixture
def geotiff_folder(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("F", "G"):
        (tmp_path / "tif" / cls).mkdir(parents=True)
        for i in range(10):
            tifffile.imwrite(tmp_path / "tif" / cls / f"s1a-wv_{i:02d}.tiff",
                             rng.uniform(1, 100 + 100 * i, (12, 12)).astype(np.float32))
    return tmp_path


def test_tengeop_listing_split_and_per_image_normalisation(geotiff_folder):
    out = geotiff_folder / "png"
    TenGeoP_SAR.main(url_folder_tif=str(geotiff_folder / "tif"), url_folder_png=str(out), frac_train=0.6,
                     frac_val=0.2, split="listing")
    train = _names(out / "train")
    assert train == sorted(f"{c}_s1a-wv_{i:02d}.png" for c in "FG" for i in range(6))
    assert _names(out / "val") == sorted(f"{c}_s1a-wv_{i:02d}.png" for c in "FG" for i in (6, 7))
    img = np.asarray(Image.open(out / "train" / "F_s1a-wv_03.png"))
    assert img.dtype == np.uint8 and img.min() == 0 and img.max() == 255


def test_tengeop_shuffled_split_is_seeded_and_percentile_is_dataset_wide(geotiff_folder):
    kw = dict(url_folder_tif=str(geotiff_folder / "tif"), frac_train=0.6, frac_val=0.2, split="shuffled",
              normalization="percentile", percentiles=(0.0, 100.0))
    TenGeoP_SAR.main(url_folder_png=str(geotiff_folder / "a"), seed=1, **kw)
    TenGeoP_SAR.main(url_folder_png=str(geotiff_folder / "b"), seed=1, **kw)
    TenGeoP_SAR.main(url_folder_png=str(geotiff_folder / "c"), seed=2, **kw)
    a, c = _names(geotiff_folder / "a" / "train"), _names(geotiff_folder / "c" / "train")
    assert a == _names(geotiff_folder / "b" / "train") and a != c and len(a) == 12
    # dataset-wide range: the dimmest image (index 0, values <= 100) stays dark
    dim = [n for n in _names(geotiff_folder / "a" / "train") + _names(geotiff_folder / "a" / "test")
           + _names(geotiff_folder / "a" / "val") if n.endswith("_00.png")][0]
    split = next(s for s in ("train", "val", "test") if (geotiff_folder / "a" / s / dim).exists())
    assert np.asarray(Image.open(geotiff_folder / "a" / split / dim)).max() < 40
    with pytest.raises(ValueError, match="already exist"):
        TenGeoP_SAR.main(url_folder_png=str(geotiff_folder / "a"), **kw)
    with pytest.raises(ValueError, match="split='random'"):
        TenGeoP_SAR.main(url_folder_png=str(geotiff_folder / "d"), **(kw | dict(split="random")))


def _idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + np.array(array.shape, dtype=">i4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_mnist_from_local_idx_archives(tmp_path):
    raw = tmp_path / "src" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train_y, test_y = rng.integers(0, 10, 30), rng.integers(0, 10, 20)
    train_x = np.broadcast_to(train_y[:, None, None] * 20, (30, 28, 28))
    _idx(raw / "train-images-idx3-ubyte.gz", train_x)
    _idx(raw / "train-labels-idx1-ubyte.gz", train_y)
    _idx(raw / "t10k-images-idx3-ubyte.gz", np.broadcast_to(test_y[:, None, None] * 20, (20, 28, 28)))
    _idx(raw / "t10k-labels-idx1-ubyte.gz", test_y)
    mnist.main(data_folder=str(tmp_path / "out"), source_dir=str(tmp_path / "src"), pct_val=0.25, seed=3)
    out = tmp_path / "out"
    assert len(_names(out / "mnist_train")) == 30 and len(_names(out / "mnist_val")) == 5
    assert len(_names(out / "mnist_test")) == 15
    for name in _names(out / "mnist_train") + _names(out / "mnist_val"):
        folder = out / ("mnist_train" if (out / "mnist_train" / name).exists() else "mnist_val")
        img = np.asarray(Image.open(folder / name))
        assert img.shape == (28, 28) and img[0, 0] == 20 * int(name.split("_")[0])
    with pytest.raises(FileNotFoundError, match="download=True"):
        mnist.main(data_folder=str(tmp_path / "empty"))


def _cifar_batch(n, rng):
    labels = rng.integers(0, 10, n)
    data = np.repeat(labels[:, None] * 25, 3072, axis=1).astype(np.uint8)
    return pickle.dumps({b"data": data, b"labels": labels.tolist()}), labels


def test_cifar10_from_local_archive_and_restricted_unpickling(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    src.mkdir()
    with tarfile.open(src / "cifar-10-python.tar.gz", "w:gz") as tar:
        for name in cifar10.TRAIN_BATCHES + ("test_batch",):
            raw, _ = _cifar_batch(4, rng)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    cifar10.main(data_folder=str(tmp_path / "out"), source_dir=str(src), pct_val=0.5)
    out = tmp_path / "out"
    assert len(_names(out / "cifar_train")) == 20 and len(_names(out / "cifar_val")) == 2
    for name in _names(out / "cifar_train"):
        img = np.asarray(Image.open(out / "cifar_train" / name))
        assert img.shape == (32, 32, 3) and cifar10.CLASS_WORDS[img[0, 0, 0] // 25] == name.split("_")[0]
    evil = pickle.dumps({b"data": np.zeros(3), b"labels": [print]})
    with pytest.raises(ValueError, match="builtins.print"):
        cifar10.read_batch(evil, "evil")
