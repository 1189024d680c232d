"""Image-folder datasets: PNG/JPEG/GIF and 8/16-bit or float GeoTIFF, 1 or 3 channels.

Files are listed recursively and sorted; the class of a file is its name's prefix before the
first ``_`` (``5_00182.png`` -> ``"5"``), classes sorted as strings. Values are mapped to
[-1, 1] by one dataset-wide ``data_normalization`` (see ``data_normalization.py``): 0..255
for 8-bit folders, else the dataset-wide finite range (optionally in dB); or, on request, the
robust range (median -+ 4 robust standard deviations) or a fixed range.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tifffile
import torch
from PIL import Image
from tqdm import tqdm

from improved_diffusion.data_normalization import (
    NORMALIZATIONS,
    check_db_quantity,
    make_normalization,
    normalize,
    robust_normalization,
    to_db,
    warn_outside,
)
from improved_diffusion.file_io import DATA_EXTENSIONS, other_kind_hint

IMAGE_EXTENSIONS = DATA_EXTENSIONS["image"]
TIFF_EXTENSIONS = (".tif", ".tiff")


def list_image_files_recursively(data_dir: str | os.PathLike) -> list[str]:
    """Sorted paths of every image file (extensions ``IMAGE_EXTENSIONS``, any case) under data_dir."""
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"data_dir={str(data_dir)!r} is not a folder")
    files = sorted(str(p) for p in root.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(f"data_dir={str(data_dir)!r} holds no image files; expected one of {IMAGE_EXTENSIONS}"
                         + other_kind_hint(data_dir, "image"))
    return files


def class_of_file(path: str) -> str:
    """Class name of an image file: the base name up to its first ``_``."""
    name = os.path.basename(path)
    if "_" not in name:
        raise ValueError(f"image file {path!r} has no '_' in its name; class-conditional data "
                         "needs names like '{class}_{anything}.png'")
    return name.split("_", 1)[0]


def resolve_class_labels(files: list[str], class_names: list[str] | None = None,
                         num_class: int | None = None) -> tuple[list[str], np.ndarray]:
    """Class list and int64 labels (N,) of files; reuses ``class_names`` when given (e.g. from training)."""
    classes = [class_of_file(f) for f in files]
    if class_names is None:
        class_names = sorted(set(classes))
        source = "found in the folder"
    else:
        class_names = [str(c) for c in class_names]
        source = "given by class_names"
        unknown = sorted(set(classes) - set(class_names))
        if unknown:
            raise ValueError(f"classes {unknown} of the image folder are not in class_names={class_names}")
    if num_class is not None and num_class != len(class_names):
        raise ValueError(f"num_class={num_class} but {len(class_names)} classes were {source}: {class_names}")
    index = {c: i for i, c in enumerate(class_names)}
    return class_names, np.array([index[c] for c in classes], dtype=np.int64)


def _fit_channels(a: np.ndarray, num_channels: int, path: str) -> np.ndarray:
    """(H, W[, C]) or (C, H, W) array -> (H, W, num_channels) float32 (luminance or repeat)."""
    if a.ndim == 2:
        a = a[:, :, None]
    elif a.ndim == 3 and a.shape[-1] > 4 and a.shape[0] <= 4:
        a = np.moveaxis(a, 0, -1)
    if a.ndim != 3 or a.shape[-1] > 4:
        raise ValueError(f"image {path!r} has shape {a.shape}; expected (H, W), (H, W, C) or (C, H, W) with C <= 4")
    a = a.astype(np.float32)
    if a.shape[-1] == num_channels:
        return a
    if num_channels == 1 and a.shape[-1] >= 3:
        return a[:, :, :3] @ np.array([[0.299], [0.587], [0.114]], dtype=np.float32)
    if num_channels == 3 and a.shape[-1] in (1, 2):
        return np.repeat(a[:, :, :1], 3, axis=-1)
    return a[:, :, :num_channels]


# bit depth of a PIL mode ("8": 8 bits per channel, "16" / "32": integer, "float": 32-bit float)
_MODE_DEPTH = {"1": "8", "L": "8", "P": "8", "RGB": "8", "RGBA": "8", "LA": "8", "CMYK": "8", "YCbCr": "8",
               "I;16": "16", "I;16B": "16", "I;16L": "16", "I;16N": "16", "I": "32", "F": "float"}


def image_bit_depth(path: str) -> str:
    """Bit depth of an image file's values ("8", "16", "32" or "float"), checking cheaply that the file is
    complete (PNG/JPEG chunks read through, TIFF strips inside the file); ValueError naming the file otherwise."""
    try:
        if path.lower().endswith(TIFF_EXTENSIONS):
            with tifffile.TiffFile(path) as tif:
                page = tif.pages[0]
                end = max((o + c for o, c in zip(page.dataoffsets, page.databytecounts)), default=0)
                if end > os.path.getsize(path):
                    raise OSError(f"truncated: its image data ends at byte {end}, the file has "
                                  f"{os.path.getsize(path)}")
                dtype = np.dtype(page.dtype)
            return "float" if dtype.kind == "f" else str(8 * dtype.itemsize)
        with Image.open(path) as img:
            mode = img.mode
            img.verify()
        return _MODE_DEPTH.get(mode, mode)
    except (OSError, ValueError, SyntaxError, tifffile.TiffFileError) as err:
        raise ValueError(f"image {path!r} cannot be read ({err}); expected a complete image file "
                         f"({', '.join(IMAGE_EXTENSIONS)})") from None


def check_image_files(files: list[str]) -> str:
    """"8" when every file of `files` is 8-bit, else "range" (16/32-bit and float files, which share one
    dataset-wide value range); every file is checked (image_bit_depth) before training writes anything. A
    folder mixing 8-bit with other files (e.g. 8-bit and 16-bit PNGs) is refused: one dataset-wide range would
    squash the 8-bit files into a sliver of [-1, 1], and 8-bit files have their own 0..255 convention."""
    by_depth: dict[str, list[str]] = {}
    for f in tqdm(files, desc="checking image files", disable=len(files) < 2000):
        by_depth.setdefault(image_bit_depth(f), []).append(f)
    if "8" in by_depth and len(by_depth) > 1:
        parts = [f"{d}{'-bit' if d != 'float' else ''} ({len(fs)} files, e.g. {os.path.basename(fs[0])!r})"
                 for d, fs in sorted(by_depth.items())]
        raise ValueError(f"the image folder {os.path.dirname(files[0])!r} mixes bit depths: {' and '.join(parts)}; "
                         "expected 8-bit files only or none (convert the files, e.g. 8-bit values x 257 for "
                         "16-bit, or split the folder): refused rather than normalised together")
    return "8" if "8" in by_depth else "range"


def file_channels(path: str) -> int:
    """Channels an image file holds natively: 3 for colour (RGB, palette, ...), else 1."""
    if path.lower().endswith(TIFF_EXTENSIONS):
        with tifffile.TiffFile(path) as tif:
            shape = tif.pages[0].shape
        return 3 if len(shape) == 3 and min(shape[0], shape[-1]) >= 3 else 1
    with Image.open(path) as img:
        return 3 if img.mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr") else 1


def read_image(path: str, num_channels: int) -> np.ndarray:
    """Stored pixel values of one image as (H, W, num_channels) float32 (no scaling)."""
    try:
        if path.lower().endswith(TIFF_EXTENSIONS):
            a = tifffile.imread(path)
        else:
            with Image.open(path) as img:
                if img.mode in ("1", "P", "RGBA", "LA", "CMYK", "YCbCr"):
                    img = img.convert("RGB")
                a = np.asarray(img)
    except (OSError, ValueError, SyntaxError, tifffile.TiffFileError) as err:
        raise ValueError(f"image {path!r} cannot be read ({err}); expected a complete image file") from None
    a = _fit_channels(a, num_channels, path)
    if np.isnan(a).any():
        raise ValueError(f"image {path!r} contains NaN values; expected finite pixels")
    return a


ROBUST_MAX_VALUES = 2 ** 22  # values read for the robust range (evenly spread whole files)


def _robust_image_normalization(files: list[str], num_channels: int, db: bool, db_quantity: str) -> dict:
    """``robust`` normalisation (``data_normalization.robust_normalization``) on the values of whole files spread
    evenly over the folder, at most about ``ROBUST_MAX_VALUES`` values."""
    per_file = read_image(files[0], num_channels).size
    count = max(1, min(len(files), ROBUST_MAX_VALUES // per_file))
    picks = np.unique(np.linspace(0, len(files) - 1, count).astype(int))
    values = np.concatenate([read_image(files[i], num_channels).ravel()
                             for i in tqdm(picks, desc="image value sample", disable=len(picks) < 200)])
    return robust_normalization(values, db=db, db_quantity=db_quantity)


def image_normalization(files: list[str], num_channels: int, db: bool = False, depth: str | None = None,
                        normalization: str = "none", norm_range: tuple | None = None,
                        db_quantity: str = "power") -> dict:
    """Dataset-wide ``data_normalization`` of an image list.

    ``normalization`` "none" / "minmax" (the original behaviour): 0..255 if all 8-bit and not dB, else the
    finite min/max of all files (after dB conversion), read once with a progress bar; "robust": median -+
    4 robust standard deviations (a few saturated pixels do not set the range); "range": ``norm_range``.
    ``db``: values to decibels first (``db_quantity`` "power": 10 log10, "amplitude": 20 log10).
    ``depth``: the files' common bit depth when already known (``check_image_files``, which runs otherwise)."""
    if normalization not in NORMALIZATIONS:  # "none" / "minmax": the default described below
        raise ValueError(f"normalization={normalization!r}; expected one of {NORMALIZATIONS}")
    factor = check_db_quantity(db_quantity)
    if normalization == "robust":
        norm = _robust_image_normalization(files, num_channels, db, db_quantity)
        warn_outside(norm, f"images of {os.path.dirname(files[0])!r}")
        return norm
    if normalization == "range":
        if norm_range is None or len(norm_range) != 2:
            raise ValueError(f"norm_range={norm_range!r}; expected (low, high) with normalization='range'")
        return make_normalization("range", *norm_range, db=db, db_quantity=db_quantity)
    if (depth or check_image_files(files)) == "8" and not db:
        return make_normalization("image_8bit", 0.0, 255.0)
    low, high, total, clipped = np.inf, -np.inf, 0, 0
    for f in tqdm(files, desc="image value range", disable=len(files) < 200):
        a = read_image(f, num_channels)
        a = to_db(a, factor) if db else a
        total += a.size
        clipped += int((~np.isfinite(a)).sum())  # zero power in dB: clipped to low by normalize
        a = a[np.isfinite(a)]
        if a.size:
            low, high = min(low, float(a.min())), max(high, float(a.max()))
    if not low < high:
        raise ValueError(f"the images of {os.path.dirname(files[0])!r} have no finite value range "
                         f"(min={low}, max={high}{', in dB' if db else ''}); expected varying pixels")
    norm = make_normalization("image_range", low, high, db=db, db_quantity=db_quantity, report={
        "fraction_outside": 0.0, "fraction_clipped": clipped / total, "values_checked": total, "max_abs_model": 1.0})
    warn_outside(norm, f"images of {os.path.dirname(files[0])!r}")
    return norm


def _resize_channels(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, C) float32 -> (size[1], size[0], C) by per-channel antialiased bicubic resampling."""
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(a[:, :, c]), mode="F").resize(
        size, Image.BICUBIC, reducing_gap=2.0)) for c in range(a.shape[-1])]
    return np.stack(chans, axis=-1)


def resize_center_crop(a: np.ndarray, image_size: int) -> np.ndarray:
    """Resize so the short side is ``image_size`` (aspect kept), then centre-crop to a square."""
    h, w = a.shape[:2]
    scale = image_size / min(h, w)
    nh, nw = max(image_size, round(h * scale)), max(image_size, round(w * scale))
    if (nh, nw) != (h, w):
        a = _resize_channels(a, (nw, nh))
    top, left = (nh - image_size) // 2, (nw - image_size) // 2
    return a[top:top + image_size, left:left + image_size]


def random_crop(a: np.ndarray, image_size: int, rng: np.random.Generator, path: str) -> np.ndarray:
    """Uniform random ``image_size`` square crop; every offset 0..H-size (inclusive) is possible."""
    h, w = a.shape[:2]
    if h < image_size or w < image_size:
        raise ValueError(f"image {path!r} is {h}x{w}, smaller than the crop size {image_size}; "
                         "expected both sides >= image_size (or crop=False to resize)")
    top, left = rng.integers(0, h - image_size + 1), rng.integers(0, w - image_size + 1)
    return a[top:top + image_size, left:left + image_size]


class ImageDataset(torch.utils.data.Dataset):
    """Images as batches: ``dataset[list_of_indices] -> (x, cond)``.

    x: float32 tensor (N, C, image_size, image_size) in [-1, 1]; cond["y"]: int64 (N,) when
    labels are given. Random crops use ``np.random.default_rng([seed, epoch, index])``.
    ``image_size=None`` keeps each image at its stored size (evaluation of unresized sets).
    """

    def __init__(self, files: list[str], norm: dict, image_size: int | None, num_channels: int,
                 labels: np.ndarray | None = None, crop: bool = False, seed: int = 0):
        self.files, self.norm, self.labels = files, norm, labels
        self.image_size, self.num_channels, self.crop = image_size, num_channels, crop
        self.seed, self.epoch = seed, 0

    def __len__(self) -> int:
        return len(self.files)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def load(self, index: int) -> np.ndarray:
        """One image as (C, H, W) float32 in model units."""
        path = self.files[index]
        a = normalize(read_image(path, self.num_channels), self.norm)
        if self.crop:
            a = random_crop(a, self.image_size, np.random.default_rng([self.seed, self.epoch, index]), path)
        elif self.image_size is not None:
            a = resize_center_crop(a, self.image_size)
        return np.ascontiguousarray(np.moveaxis(a, -1, 0))

    def __getitem__(self, indices: list[int]) -> tuple[torch.Tensor, dict]:
        x = torch.from_numpy(np.stack([self.load(i) for i in indices]))
        cond = {} if self.labels is None else {"y": torch.from_numpy(self.labels[list(indices)])}
        return x, cond
