"""Read a real or generated set into one NHWC float32 array in model units (+ labels), as training reads it.

Folders go through the training readers (``improved_diffusion/image_datasets.py``,
``improved_diffusion/hdf5_datasets.py``) and the training ``data_normalization`` (the
``metadata.json`` entry of the model), so evaluation sees the values the model was trained on:

* an image folder (PNG / JPEG / GIF, 8/16-bit or float GeoTIFF, searched recursively): stored
  values -> model units by ``data_normalization`` (when None: the one training computes for the
  folder, 0..255 for 8-bit files, else the folder's range); ``image_size`` resizes as training
  does (short side to ``image_size``, then centre crop); the class is the file name up to its
  first ``_`` when every file has one (classes sorted as strings -> index 0..K-1);
* an HDF5 folder (original layout): dataset ``key_data`` of shape (n, H, W) or (n, C, H, W) in
  every ``*.hdf5`` / ``*.h5`` file, mapped by ``data_normalization`` (identity when None); NaN kept;
* a samples ``.npz`` (``arr_0`` NHWC float in model units or uint8, optional ``arr_1`` int64
  labels): uint8 is mapped to [-1, 1], floats are returned as stored.

What stays here is evaluation-specific: the random subset, samples ``.npz`` files and the
:class:`ImageSet` with :meth:`ImageSet.physical` (values back in the data's physical units).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from improved_diffusion.data_normalization import (
    check_normalization,
    denormalize,
    from_uint8,
    make_normalization,
)
from improved_diffusion.hdf5_datasets import HDF5_EXTENSIONS, Hdf5Dataset, inspect_hdf5_folder, list_hdf5_files
from improved_diffusion.image_datasets import (
    ImageDataset,
    file_channels,
    image_normalization,
    list_image_files_recursively,
    resolve_class_labels,
)
from utils.sampling.sample_io import read_samples_npz


@dataclass
class ImageSet:
    """A loaded set: ``images`` NHWC float32 in model units, ``labels`` int64 (N,) or None.

    ``data_normalization``: the map from physical (stored) values to these model units, when known.
    """

    images: np.ndarray
    labels: np.ndarray | None
    source: str
    class_names: list[str] = field(default_factory=list)
    data_normalization: dict | None = None

    @property
    def num_channels(self) -> int:
        return int(self.images.shape[3])

    def physical(self) -> np.ndarray:
        """``images`` in the data's physical units, NHWC float32 (cos/sin pairs -> one phase channel each)."""
        if self.data_normalization is None:
            raise ValueError(f"source={self.source!r}: its data_normalization is unknown; physical units need the "
                             "training metadata.json (metadata_json=...)")
        return denormalize(self.images, self.data_normalization)


def _subset_indices(n_total: int, num_samples: int | None, seed: int) -> np.ndarray:
    if num_samples is None or num_samples >= n_total:
        return np.arange(n_total)
    if num_samples < 1:
        raise ValueError(f"num_samples={num_samples!r}: expected a positive integer or None")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_total, size=num_samples, replace=False))


def _load_folder(folder: Path, num_samples, seed, num_channels, image_size, norm, crop: bool = False) -> ImageSet:
    files = list_image_files_recursively(folder)
    if num_channels is None:
        num_channels = file_channels(files[0])
    if num_channels not in (1, 3):
        raise ValueError(f"num_channels={num_channels!r}: expected 1 or 3 for image folders")
    norm = check_normalization(norm) if norm is not None else image_normalization(files, num_channels)
    chosen = _subset_indices(len(files), num_samples, seed)
    class_names, labels = [], None
    if all("_" in os.path.basename(f) for f in files):
        class_names, all_labels = resolve_class_labels(files)
        labels = all_labels[chosen]
    reader = ImageDataset(files, norm, image_size, num_channels, crop=crop, seed=seed)
    arrays = [np.moveaxis(reader.load(int(i)), 0, -1) for i in chosen]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"source={str(folder)!r}: images of several sizes {sorted(shapes)}; "
                         "pass image_size to resize them to one square size")
    return ImageSet(np.stack(arrays), labels, str(folder), class_names, norm)


def _hdf5_side(path: str, key_data: str) -> int:
    """Side in px of the ``key_data`` items of one HDF5 file."""
    with h5py.File(path, "r") as f:
        if key_data not in f:
            raise ValueError(f"HDF5 file {path!r} has no key key_data={key_data!r}; its keys are {sorted(f.keys())}")
        return int(f[key_data].shape[-1])


def _load_hdf5(folder: Path, key_data, key_class, key_other, keys, num_samples, seed, image_size, norm) -> ImageSet:
    size = image_size if image_size is not None else _hdf5_side(list_hdf5_files(folder)[0], key_data)
    inv = inspect_hdf5_folder(folder, size, keys, key_data, key_other, key_class)
    norm = check_normalization(norm) if norm is not None else make_normalization("none")
    dataset = Hdf5Dataset(inv, key_data, norm, nan_policy="fill", use_labels=key_class is not None)
    x, cond = dataset[_subset_indices(len(dataset), num_samples, seed).tolist()]
    images = np.where(cond["mask"].numpy() > 0, x.numpy(), np.nan).astype(np.float32)
    labels = cond["y"].numpy() if "y" in cond else None
    return ImageSet(np.ascontiguousarray(np.moveaxis(images, 1, -1)), labels, str(folder), data_normalization=norm)


def _load_npz(path: Path, num_samples, seed, norm) -> ImageSet:
    arr, labels = read_samples_npz(path, "source")
    if arr.ndim != 4:
        raise ValueError(f"source={str(path)!r}: arr_0 has shape {arr.shape}, expected NHWC (4 dims)")
    idx = _subset_indices(arr.shape[0], num_samples, seed)
    images = from_uint8(arr[idx]) if arr.dtype == np.uint8 else arr[idx].astype(np.float32)
    return ImageSet(images, None if labels is None else labels[idx], str(path),
                    data_normalization=None if norm is None else check_normalization(norm))


def load_image_set(source: str | Path, *, num_samples: int | None = None, seed: int = 0,
                   key_data: str | None = None, key_class: str | None = None, key_other: str | None = None,
                   list_keys_hdf5_original: tuple[str, ...] | None = None,
                   num_channels: int | None = None, image_size: int | None = None,
                   data_normalization: dict | None = None, scale: float = 1.0, offset: float = 0.0,
                   crop: bool = False) -> ImageSet:
    """Load an image folder, an HDF5 folder or a samples ``.npz`` as NHWC float32 in model units.

    ``num_samples``: a random subset of that many items (``seed``), all when None.
    ``key_data`` / ``key_class`` / ``key_other``: HDF5 dataset names (``key_data`` required for HDF5);
    ``list_keys_hdf5_original``: when given, every top-level HDF5 key must be one of them (as in training).
    ``num_channels``: image folders (1 grayscale / 3 RGB; default: as the first file).
    ``image_size``: image folders are resized to it as in training; HDF5 items must have that side.
    ``crop``: image folders give a random ``image_size`` square of each image instead (seeded by ``seed`` and the
    item, as training with ``crop=True``), so real SAR scenes match a model trained on crops.
    ``data_normalization``: the training ``metadata.json`` entry; folders are mapped with it, and it
    is recorded on ``.npz`` samples (already in model units) so :meth:`ImageSet.physical` works.
    ``scale`` / ``offset``: affine map ``x * scale + offset`` applied after that, to bring values
    into the samples' model units by hand (the result then has no known ``data_normalization``).
    """
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"source={str(source)!r}: no such file or folder")
    if path.is_file():
        if path.suffix != ".npz":
            raise ValueError(f"source={str(source)!r}: a file must be a samples .npz")
        result = _load_npz(path, num_samples, seed, data_normalization)
    elif any(p.suffix.lower() in HDF5_EXTENSIONS for p in path.iterdir()):
        if key_data is None:
            raise ValueError(f"key_data=None: {str(source)!r} is an HDF5 folder, name the dataset to read")
        result = _load_hdf5(path, key_data, key_class, key_other, list_keys_hdf5_original, num_samples, seed,
                            image_size, data_normalization)
    else:
        if crop and image_size is None:
            raise ValueError(f"crop=True needs image_size (the side of the crops in px) for {str(source)!r}")
        result = _load_folder(path, num_samples, seed, num_channels, image_size, data_normalization, crop)
    if scale != 1.0 or offset != 0.0:
        result.images = (result.images * np.float32(scale) + np.float32(offset)).astype(np.float32)
        result.data_normalization = None
    return result


def check_compatible(real: np.ndarray, generated: np.ndarray) -> None:
    """Raise ValueError unless two NHWC arrays share H, W and C."""
    if real.ndim != 4 or generated.ndim != 4:
        raise ValueError(f"expected NHWC arrays, got shapes real={real.shape} generated={generated.shape}")
    if real.shape[1:] != generated.shape[1:]:
        raise ValueError(f"real images are {real.shape[1:]} (H, W, C) but generated are {generated.shape[1:]}: "
                         "sizes and channels must match (resize the real set with image_size=...)")
