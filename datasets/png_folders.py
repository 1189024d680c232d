"""Shared helpers of the dataset scripts: output-folder checks and labelled PNG folders."""
from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image
from tqdm import tqdm

T = TypeVar("T")


def prepare_folders(folders: list[Path], overwrite: bool) -> None:
    """Create empty output folders; existing ones are an error unless ``overwrite`` (then emptied)."""
    existing = [str(f) for f in folders if f.exists()]
    if existing and not overwrite:
        raise ValueError(f"output folders {existing} already exist; expected new folders or overwrite=True")
    for f in folders:
        shutil.rmtree(f, ignore_errors=True)
        f.mkdir(parents=True)


def val_split(n: int, frac_val: float, seed: int) -> np.ndarray:
    """Boolean (n,) mask of a seeded random subset of round(frac_val * n) items."""
    if not 0.0 <= frac_val <= 1.0:
        raise ValueError(f"pct_val={frac_val}; expected a fraction in [0, 1]")
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).permutation(n)[:round(frac_val * n)]] = True
    return mask


def write_labelled_pngs(images: np.ndarray, labels: list[str], folder: Path, desc: str) -> None:
    """Write images (N, H, W) or (N, H, W, 3) uint8 as ``{folder}/{label}_{i:05d}.png``."""
    for i, (img, label) in enumerate(tqdm(list(zip(images, labels)), desc=desc)):
        Image.fromarray(img).save(folder / f"{label}_{i:05d}.png")


def locate_source(source: Path, find: Callable[[Path], T | None], download: bool, fetch: Callable[[Path], None],
                  expected: str) -> T:
    """``find(source)``; when it finds nothing, ``fetch(source)`` first (only with download=True)."""
    found = find(source) if source.is_dir() else None
    if found is None and download:
        fetch(source)
        found = find(source)
    if found is None:
        raise FileNotFoundError(f"source_dir={str(source)!r} lacks {expected}; expected them there, "
                                "or pass download=True")
    return found
