"""TenGeoP-SARwv GeoTIFF class folders -> 8-bit PNG folders ``{split}/{class}_{name}.png``.

Input: ``{url_folder_tif}/{class}/*.tif[f]`` (the TenGeoP-SARwv classes F..O, one folder each);
band 1 of each GeoTIFF is read with tifffile. Grey levels: ``per_image`` min-max (the original)
or ``percentile``: one dataset-wide clip range (low/high percentiles of a seeded pixel sample of
every image), optionally in dB. Split per class: ``shuffled`` (seeded) or ``listing`` (sorted
order, the original split), fractions ``frac_train``, ``frac_val``, rest = test.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from datasets.png_folders import prepare_folders  # noqa: E402
from utils.changed_defaults import notice_changed_default  # noqa: E402
from utils.cli import run_cli  # noqa: E402

SPLITS = ("train", "val", "test")


def read_band(path: Path, db: bool) -> np.ndarray:
    """Band 1 of a GeoTIFF as (H, W) float64 (``10 log10`` with db; non-positive -> NaN)."""
    a = tifffile.imread(path)
    if a.ndim == 3:
        a = a[0] if a.shape[0] < a.shape[-1] else a[..., 0]
    if a.ndim != 2:
        raise ValueError(f"GeoTIFF {str(path)!r} has shape {a.shape}; expected (H, W) or a band stack")
    a = a.astype(np.float64)
    if db:
        a = np.where(a > 0, 10.0 * np.log10(np.where(a > 0, a, 1.0)), np.nan)
    return a


def to_uint8(a: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clip to [low, high] and map linearly to 0..255 (NaN -> 0)."""
    scaled = np.clip((np.nan_to_num(a, nan=low) - low) / max(high - low, 1e-12), 0.0, 1.0)
    return np.round(255.0 * scaled).astype(np.uint8)


def dataset_percentiles(files: list[Path], percentiles: tuple[float, float], db: bool, pixels_per_image: int,
                        seed: int) -> tuple[float, float]:
    """Percentiles of a seeded sample of ``pixels_per_image`` finite pixels of every image."""
    rng, samples = np.random.default_rng(seed), []
    for f in tqdm(files, desc="percentiles"):
        a = read_band(f, db)
        a = a[np.isfinite(a)]
        samples.append(rng.choice(a, min(pixels_per_image, a.size), replace=False))
    low, high = np.percentile(np.concatenate(samples), percentiles)
    return float(low), float(high)


def split_files(files: list[Path], frac_train: float, frac_val: float, split: str, rng: np.random.Generator) -> dict:
    """{split name: files} of one class; ``listing`` keeps the sorted order, ``shuffled`` permutes."""
    order = rng.permutation(len(files)) if split == "shuffled" else np.arange(len(files))
    n_train, n_val = int(frac_train * len(files)), int(frac_val * len(files))
    ordered = [files[i] for i in order]
    return {"train": ordered[:n_train], "val": ordered[n_train:n_train + n_val], "test": ordered[n_train + n_val:]}


def main(
        url_folder_tif: str = "data/GeoTIFF/",  # folder of class sub-folders holding the GeoTIFFs
        url_folder_png: str = "data/sar_tengeop/",  # output folder (train/, val/, test/)
        frac_train: float = 0.8,  # fraction of each class in train
        frac_val: float = 0.05,  # fraction of each class in val (the rest goes to test)
        split: str = "shuffled",  # shuffled (seeded random per class) or listing (sorted order, as the original)
        normalization: str = "per_image",  # per_image (min-max per image, the original) or percentile
        percentiles: tuple[float, float] = (1.0, 99.0),  # low,high percentiles of the dataset-wide clip range
        db: bool = False,  # convert values to 10 log10 before normalising
        pixels_per_image: int = 10000,  # pixels sampled per image to estimate the percentiles
        seed: int = 0,  # seed of the split and of the percentile sample
        overwrite: bool = False,  # replace existing output folders
) -> None:
    """Convert TenGeoP-SARwv GeoTIFF class folders into train/val/test PNG folders."""
    src = Path(url_folder_tif)
    if not src.is_dir():
        raise FileNotFoundError(f"url_folder_tif={url_folder_tif!r} is not a folder")
    if split not in ("shuffled", "listing"):
        raise ValueError(f"split={split!r}; expected 'shuffled' or 'listing'")
    if split == "shuffled":
        notice_changed_default("tengeop.split")
    if normalization not in ("per_image", "percentile"):
        raise ValueError(f"normalization={normalization!r}; expected 'per_image' or 'percentile'")
    if not (0 <= frac_train and 0 <= frac_val and frac_train + frac_val <= 1):
        raise ValueError(f"frac_train={frac_train}, frac_val={frac_val}; expected non-negative with sum <= 1")
    if len(percentiles) != 2 or not 0 <= percentiles[0] < percentiles[1] <= 100:
        raise ValueError(f"percentiles={percentiles}; expected low,high with 0 <= low < high <= 100")
    classes = {d.name: sorted(p for p in d.iterdir() if p.suffix.lower() in (".tif", ".tiff"))
               for d in sorted(src.iterdir()) if d.is_dir()}
    classes = {c: files for c, files in classes.items() if files}
    bad = [c for c in classes if "_" in c]
    if not classes or bad:
        raise ValueError(f"url_folder_tif={url_folder_tif!r} has class folders {sorted(classes)}; expected at least "
                         f"one folder of .tif files, names without '_' (got {bad})")
    all_files = [f for files in classes.values() for f in files]
    clip = dataset_percentiles(all_files, tuple(percentiles), db, pixels_per_image, seed) \
        if normalization == "percentile" else None
    out = Path(url_folder_png)
    prepare_folders([out / s for s in SPLITS], overwrite)
    rng = np.random.default_rng(seed)
    for cls, files in classes.items():
        for name, part in split_files(files, frac_train, frac_val, split, rng).items():
            for f in tqdm(part, desc=f"{cls} {name}", disable=not part):
                a = read_band(f, db)
                low, high = clip if clip is not None else (np.nanmin(a), np.nanmax(a))
                Image.fromarray(to_uint8(a, low, high), mode="L").save(out / name / f"{cls}_{f.stem}.png")


if __name__ == "__main__":
    run_cli(main)
