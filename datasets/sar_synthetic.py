"""Synthetic SAR amplitude images with classes, as PNG folders for class-conditional runs offline.

Each image is a reflectivity map R (one texture per class) times fully developed speckle
(intensity ~ R * Gamma(L, 1/L), L looks), shown in dB and mapped from a fixed dataset-wide dB
range to 8-bit grey levels. Classes (names have no '_', as the loader's class = prefix before '_'):

- ``homogeneous``: constant reflectivity;
- ``waves``: sinusoidal swell modulation, random direction and wavelength;
- ``patches``: log-normal reflectivity (Gaussian-smoothed white noise in dB);
- ``edge``: two half-planes of different reflectivity split by a random line.

Output: ``{out_dir}/{train,val,test}/{class}_{i:05d}.png``. Run ``python datasets/sar_synthetic.py --help``.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from utils.cli import run_cli  # noqa: E402

SPLITS = ("train", "val", "test")


def reflectivity(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Reflectivity (n, n) float64 > 0 of one image of class ``kind`` (linear power units)."""
    level_db = rng.uniform(-5.0, 5.0)
    rows, cols = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    if kind == "homogeneous":
        r_db = np.full((n, n), level_db)
    elif kind == "waves":
        theta, wavelength = rng.uniform(0, np.pi), rng.uniform(n / 8, n / 3)
        phase = 2 * np.pi * (cols * np.cos(theta) + rows * np.sin(theta)) / wavelength + rng.uniform(0, 2 * np.pi)
        r_db = level_db + 4.0 * np.sin(phase)
    elif kind == "patches":
        field = gaussian_filter(rng.standard_normal((n, n)), sigma=n / 12, mode="wrap")
        r_db = level_db + 5.0 * field / field.std()
    elif kind == "edge":
        theta, offset = rng.uniform(0, 2 * np.pi), rng.uniform(-n / 4, n / 4)
        side = (cols - n / 2) * np.cos(theta) + (rows - n / 2) * np.sin(theta) > offset
        r_db = np.where(side, level_db + 6.0, level_db - 6.0)
    else:
        raise ValueError(f"class {kind!r}; expected one of homogeneous, waves, patches, edge")
    return 10.0 ** (r_db / 10.0)


def speckled_png(kind: str, n: int, looks: int, db_range: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """One 8-bit image (n, n) uint8: 10 log10(R * speckle) mapped linearly from db_range to 0..255."""
    intensity = reflectivity(kind, n, rng) * rng.gamma(looks, 1.0 / looks, (n, n))
    db = 10.0 * np.log10(intensity)
    return np.round(255.0 * np.clip((db - db_range[0]) / (db_range[1] - db_range[0]), 0, 1)).astype(np.uint8)


def main(
        out_dir: str = "data/sar_synthetic",  # output folder (train/, val/, test/)
        classes: tuple[str, ...] = ("homogeneous", "waves", "patches", "edge"),  # texture classes (see above)
        n_train_per_class: int = 500,  # training images per class
        n_val_per_class: int = 50,  # validation images per class
        n_test_per_class: int = 50,  # test images per class
        image_size: int = 32,  # side of each square image in pixels
        looks: int = 4,  # number of looks L of the speckle (1 = single look, exponential intensity)
        db_range: tuple[float, float] = (-25.0, 15.0),  # dB range mapped to grey levels 0..255
        seed: int = 0,  # random seed; the output is a function of the options and the seed only
        overwrite: bool = False,  # replace existing train/val/test folders in out_dir
) -> None:
    """Write class folders of synthetic speckled SAR images as 8-bit PNGs."""
    for name, value in (("n_train_per_class", n_train_per_class), ("n_val_per_class", n_val_per_class),
                        ("n_test_per_class", n_test_per_class)):
        if value < 0:
            raise ValueError(f"{name}={value}; expected >= 0")
    if image_size < 8 or looks < 1:
        raise ValueError(f"image_size={image_size}, looks={looks}; expected image_size >= 8 and looks >= 1")
    if len(db_range) != 2 or not db_range[0] < db_range[1]:
        raise ValueError(f"db_range={db_range}; expected min,max with min < max")
    bad = [c for c in classes if c not in ("homogeneous", "waves", "patches", "edge") or "_" in c]
    if bad or not classes:
        raise ValueError(f"classes={list(classes)}; expected a non-empty subset of homogeneous, waves, patches, edge")
    out = Path(out_dir)
    existing = [str(out / s) for s in SPLITS if (out / s).exists()]
    if existing and not overwrite:
        raise ValueError(f"out_dir={out_dir!r} already holds {existing}; expected a fresh folder or overwrite=True")
    for split_id, (split, count) in enumerate(zip(SPLITS, (n_train_per_class, n_val_per_class, n_test_per_class))):
        shutil.rmtree(out / split, ignore_errors=True)
        (out / split).mkdir(parents=True)
        for class_id, kind in enumerate(tqdm(classes, desc=f"sar {split}")):
            rng = np.random.default_rng([seed, split_id, class_id])
            for i in range(count):
                img = speckled_png(kind, image_size, looks, tuple(db_range), rng)
                Image.fromarray(img, mode="L").save(out / split / f"{kind}_{i:05d}.png")


if __name__ == "__main__":
    run_cli(main)
