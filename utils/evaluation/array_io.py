"""Read a real or generated image set into one NHWC float32 array (+ labels).

Three sources are accepted, detected from the path:

* an image folder (PNG / JPEG / GIF / TIFF, searched recursively): 8-bit values are mapped
  to [-1, 1] (the model units of image data); the class is the file name up to its first
  ``_`` (``5_00182.png`` -> ``"5"``), classes sorted as strings -> index 0..K-1;
* an HDF5 folder (original layout): every ``*.hdf5`` / ``*.h5`` file holds a dataset
  ``key_data`` of shape (n, H, W) or (n, C, H, W); values are returned as stored
  (physical units, NaN kept) unless ``data_normalization`` (the ``metadata.json`` entry of
  the model trained on them) or ``scale`` / ``offset`` map them to model units;
* a samples ``.npz`` (``arr_0`` NHWC float in model units or uint8, optional ``arr_1``
  int64 labels): uint8 is mapped to [-1, 1], floats are returned as stored.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from improved_diffusion.data_normalization import check_normalization, normalize

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".tif", ".tiff")
HDF5_SUFFIXES = (".hdf5", ".h5")


@dataclass
class ImageSet:
    """A loaded set: ``images`` NHWC float32, ``labels`` int64 (N,) or None."""

    images: np.ndarray
    labels: np.ndarray | None
    source: str
    class_names: list[str] = field(default_factory=list)

    @property
    def num_channels(self) -> int:
        return int(self.images.shape[3])


def list_image_files(folder: str | Path) -> list[Path]:
    """All image files under ``folder`` (recursive), sorted by path."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def class_name_from_file(path: str | Path) -> str:
    """The class of an image file: its name up to the first ``_``."""
    return Path(path).name.split("_", 1)[0]


def read_image(path: str | Path, num_channels: int, image_size: int | None = None) -> np.ndarray:
    """One image file as HWC float32 in [-1, 1].

    Grayscale files give 1 channel, colour files 3; ``num_channels`` converts explicitly
    (1 -> luminance, 3 -> RGB). ``image_size`` resizes (bicubic) to a square of that side.
    """
    if num_channels not in (1, 3):
        raise ValueError(f"num_channels={num_channels!r}: expected 1 or 3")
    with Image.open(path) as img:
        img = img.convert("L" if num_channels == 1 else "RGB")
        if image_size is not None and img.size != (image_size, image_size):
            img = img.resize((image_size, image_size), Image.BICUBIC)
        arr = np.asarray(img, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return arr / 127.5 - 1.0


def _subset_indices(n_total: int, num_samples: int | None, seed: int) -> np.ndarray:
    if num_samples is None or num_samples >= n_total:
        return np.arange(n_total)
    if num_samples < 1:
        raise ValueError(f"num_samples={num_samples!r}: expected a positive integer or None")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_total, size=num_samples, replace=False))


def _load_folder(folder: Path, num_samples, seed, num_channels, image_size) -> ImageSet:
    files = list_image_files(folder)
    if not files:
        raise ValueError(f"source={str(folder)!r}: no image files ({', '.join(IMAGE_SUFFIXES)}) found")
    if num_channels is None:
        with Image.open(files[0]) as first:
            num_channels = 3 if first.mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr") else 1
    chosen = [files[i] for i in _subset_indices(len(files), num_samples, seed)]
    arrays = [read_image(p, num_channels, image_size) for p in chosen]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"source={str(folder)!r}: images of several sizes {sorted(shapes)}; "
                         "pass image_size to resize them to one square size")
    names = sorted({class_name_from_file(p) for p in files})
    labels = np.array([names.index(class_name_from_file(p)) for p in chosen], dtype=np.int64)
    return ImageSet(np.stack(arrays), labels, str(folder), names)


def _hdf5_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in HDF5_SUFFIXES)


def _load_hdf5(folder: Path, key_data, key_class, num_samples, seed) -> ImageSet:
    files = _hdf5_files(folder)
    counts = []
    for path in files:
        with h5py.File(path, "r") as f:
            if key_data not in f:
                raise ValueError(f"key_data={key_data!r}: not in {path.name} (keys {sorted(f.keys())})")
            counts.append(f[key_data].shape[0])
    chosen = _subset_indices(int(sum(counts)), num_samples, seed)
    starts = np.cumsum([0] + counts)
    images, labels = [], []
    for i, path in enumerate(files):
        local = chosen[(chosen >= starts[i]) & (chosen < starts[i + 1])] - starts[i]
        if local.size == 0:
            continue
        with h5py.File(path, "r") as f:
            data = np.asarray(f[key_data][local], dtype=np.float32)
            if key_class is not None:
                labels.append(np.asarray(f[key_class][local], dtype=np.int64))
        if data.ndim == 3:
            data = data[:, :, :, None]
        elif data.ndim == 4:
            data = data.transpose(0, 2, 3, 1)
        else:
            raise ValueError(f"key_data={key_data!r} in {path.name}: shape {data.shape[1:]} per item, "
                             "expected (H, W) or (C, H, W)")
        images.append(data)
    shapes = {a.shape[1:] for a in images}
    if len(shapes) > 1:
        raise ValueError(f"source={str(folder)!r}: HDF5 files hold items of several shapes {sorted(shapes)}")
    return ImageSet(np.concatenate(images), np.concatenate(labels) if labels else None, str(folder))


def _load_npz(path: Path, num_samples, seed) -> ImageSet:
    with np.load(path) as npz:
        if "arr_0" not in npz:
            raise ValueError(f"source={str(path)!r}: no 'arr_0' array (keys {list(npz.keys())})")
        arr = npz["arr_0"]
        labels = npz["arr_1"].astype(np.int64) if "arr_1" in npz else None
    if arr.ndim != 4:
        raise ValueError(f"source={str(path)!r}: arr_0 has shape {arr.shape}, expected NHWC (4 dims)")
    idx = _subset_indices(arr.shape[0], num_samples, seed)
    images = arr[idx].astype(np.float32) / 127.5 - 1.0 if arr.dtype == np.uint8 else arr[idx].astype(np.float32)
    return ImageSet(images, None if labels is None else labels[idx], str(path))


def load_image_set(source: str | Path, *, num_samples: int | None = None, seed: int = 0,
                   key_data: str | None = None, key_class: str | None = None,
                   num_channels: int | None = None, image_size: int | None = None,
                   data_normalization: dict | None = None, scale: float = 1.0, offset: float = 0.0) -> ImageSet:
    """Load an image folder, an HDF5 folder or a samples ``.npz`` as NHWC float32.

    ``num_samples``: a random subset of that many items (``seed``), all when None.
    ``key_data`` / ``key_class``: HDF5 dataset names (``key_data`` required for HDF5).
    ``num_channels`` / ``image_size``: image folders only (explicit grayscale/RGB, resize).
    ``data_normalization``: HDF5 folders only, stored values -> model units as in training.
    ``scale`` / ``offset``: affine map ``x * scale + offset`` applied after that, e.g. to
    bring stored values into the model units of generated samples by hand.
    """
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"source={str(source)!r}: no such file or folder")
    if path.is_file():
        if path.suffix != ".npz":
            raise ValueError(f"source={str(source)!r}: a file must be a samples .npz")
        result = _load_npz(path, num_samples, seed)
    elif _hdf5_files(path):
        if key_data is None:
            raise ValueError(f"key_data=None: {str(source)!r} is an HDF5 folder, name the dataset to read")
        result = _load_hdf5(path, key_data, key_class, num_samples, seed)
        if data_normalization is not None:
            result.images = normalize(result.images, check_normalization(data_normalization))
    else:
        result = _load_folder(path, num_samples, seed, num_channels, image_size)
    if scale != 1.0 or offset != 0.0:
        result.images = (result.images * np.float32(scale) + np.float32(offset)).astype(np.float32)
    return result


def check_compatible(real: np.ndarray, generated: np.ndarray) -> None:
    """Raise ValueError unless two NHWC arrays share H, W and C."""
    if real.ndim != 4 or generated.ndim != 4:
        raise ValueError(f"expected NHWC arrays, got shapes real={real.shape} generated={generated.shape}")
    if real.shape[1:] != generated.shape[1:]:
        raise ValueError(f"real images are {real.shape[1:]} (H, W, C) but generated are {generated.shape[1:]}: "
                         "sizes and channels must match (resize the real set with image_size=...)")
