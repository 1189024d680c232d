"""HDF5-folder datasets in the original layout (docs/original.md#hdf5-layout).

A folder of ``*.hdf5`` / ``*.h5`` files; every top-level key of every file must be one of
``list_keys_hdf5_original``; ``key_data`` holds ``(n, H, W)`` or ``(n, C, H, W)`` arrays of any
float/int dtype (read as float32); ``key_other`` (optional) any array whose first axis counts
the n examples; ``key_class`` (optional) int labels ``(n,)`` in 0..K-1.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm import tqdm

from improved_diffusion.data_normalization import (
    NORMALIZATIONS,
    make_normalization,
    normalize,
    range_report,
    robust_normalization,
    warn_outside,
)
from improved_diffusion.file_io import DATA_EXTENSIONS, other_kind_hint

HDF5_EXTENSIONS = DATA_EXTENSIONS["hdf5"]
NAN_POLICIES = ("error", "fill")


@dataclass(frozen=True)
class Hdf5Inventory:
    """What a folder holds: sorted files, examples per file, channels C and labels (or None)."""
    files: list[str]
    counts: list[int]
    channels: int
    labels: np.ndarray | None


def list_hdf5_files(folder: str | os.PathLike) -> list[str]:
    """Sorted HDF5 files directly inside ``folder``."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"data_dir={str(folder)!r} is not a folder")
    files = sorted(str(p) for p in root.iterdir() if p.suffix.lower() in HDF5_EXTENSIONS)
    if not files:
        raise ValueError(f"data_dir={str(folder)!r} holds no HDF5 file; expected names ending in {HDF5_EXTENSIONS}"
                         + other_kind_hint(folder, "hdf5"))
    return files


def _check_file(path: str, f: h5py.File, keys: tuple[str, ...] | None, key_data: str, key_other: str | None,
                key_class: str | None, image_size: int) -> tuple[int, int]:
    """Validate one open file (top-level keys only when ``keys`` is given); returns (examples, channels)."""
    extra = [] if keys is None else sorted(set(f.keys()) - set(keys))
    if extra:
        raise ValueError(f"HDF5 file {path!r} holds keys {extra} that are not in "
                         f"list_keys_hdf5_original={list(keys)}")
    for role, key in (("key_data", key_data), ("key_other", key_other), ("key_class", key_class)):
        if key is not None and key not in f:
            raise ValueError(f"HDF5 file {path!r} has no key {role}={key!r}; its keys are {sorted(f.keys())}")
    data = f[key_data]
    if data.ndim not in (3, 4) or data.shape[-2:] != (image_size, image_size):
        raise ValueError(f"HDF5 file {path!r}, key {key_data!r} has shape {data.shape}; expected "
                         f"(n, {image_size}, {image_size}) or (n, C, {image_size}, {image_size})")
    if not (np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer)):
        raise ValueError(f"HDF5 file {path!r}, key {key_data!r} has dtype {data.dtype}; expected a float or int type")
    n = f[key_other].shape[0] if key_other is not None else data.shape[0]
    if n != data.shape[0]:
        raise ValueError(f"HDF5 file {path!r}: key_other={key_other!r} counts {n} examples but key "
                         f"{key_data!r} holds {data.shape[0]}; expected equal first dimensions")
    if key_class is not None and f[key_class].shape != (n,):
        raise ValueError(f"HDF5 file {path!r}, key {key_class!r} has shape {f[key_class].shape}; expected ({n},)")
    return n, 1 if data.ndim == 3 else data.shape[1]


def open_hdf5(path: str) -> h5py.File:
    """h5py.File(path, "r"); a corrupt, truncated or non-HDF5 file raises a ValueError naming it."""
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"HDF5 file {path!r} cannot be opened ({' '.join(str(err).split())}); expected a complete "
                         "HDF5 file") from None


def inspect_hdf5_folder(folder: str | os.PathLike, image_size: int,
                        list_keys_hdf5_original: tuple[str, ...] | None, key_data: str, key_other: str | None = None,
                        key_class: str | None = None) -> Hdf5Inventory:
    """Check every file of ``folder`` (keys, shapes, dtypes) and read counts and labels (cheap).

    ``list_keys_hdf5_original=None`` (evaluation) skips the check that every top-level key is listed."""
    keys = None if list_keys_hdf5_original is None else tuple(list_keys_hdf5_original)
    for role, key in (("key_data", key_data), ("key_other", key_other), ("key_class", key_class)):
        if keys is not None and key is not None and key not in keys:
            raise ValueError(f"{role}={key!r} is not in list_keys_hdf5_original={list(keys)}")
    files, counts, channels, labels = list_hdf5_files(folder), [], set(), []
    for path in files:
        with open_hdf5(path) as f:
            n, c = _check_file(path, f, keys, key_data, key_other, key_class, image_size)
            if key_class is not None:
                lab = f[key_class][()]
                if not np.issubdtype(lab.dtype, np.integer) or (n and lab.min() < 0):
                    raise ValueError(f"HDF5 file {path!r}, key {key_class!r}: labels must be integers >= 0; "
                                     f"got dtype {lab.dtype}, min {lab.min() if n else None}")
                labels.append(lab.astype(np.int64))
        counts.append(n)
        channels.add(c)
    if len(channels) != 1:
        raise ValueError(f"HDF5 files of {str(folder)!r} disagree on channels {sorted(channels)}; expected one count")
    if sum(counts) == 0:
        raise ValueError(f"HDF5 files of {str(folder)!r} hold no example")
    return Hdf5Inventory(files, counts, channels.pop(), np.concatenate(labels) if labels else None)


def _nan_error(path: str, key: str, local_indices: np.ndarray, bad: np.ndarray) -> ValueError:
    first = int(local_indices[np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1))[0]])
    return ValueError(f"HDF5 file {path!r}, key {key!r}, example {first} holds NaN/Inf values; "
                      "expected finite data (or nan_policy='fill' to fill them and train with a validity mask)")


def hdf5_minmax(inv: Hdf5Inventory, key_data: str, nan_policy: str, chunk: int = 4096) -> tuple[float, float]:
    """Dataset-wide finite (min, max) of ``key_data``, read in chunks."""
    low, high = np.inf, -np.inf
    for path, n in tqdm(list(zip(inv.files, inv.counts)), desc="hdf5 min/max", disable=len(inv.files) < 10):
        with h5py.File(path, "r") as f:
            for start in range(0, n, chunk):
                a = f[key_data][start:start + chunk].astype(np.float32)
                finite = np.isfinite(a)
                if nan_policy == "error" and not finite.all():
                    raise _nan_error(path, key_data, np.arange(start, start + len(a)), ~finite)
                if finite.any():
                    low, high = min(low, float(a[finite].min())), max(high, float(a[finite].max()))
    if not low < high:
        raise ValueError(f"key {key_data!r} of {os.path.dirname(inv.files[0])!r} has no finite value range "
                         f"(min={low}, max={high}); expected varying values for normalization='minmax'")
    return low, high


def hdf5_value_sample(inv: Hdf5Inventory, key_data: str, max_values: int = 2 ** 22) -> np.ndarray:
    """Finite values (1-D float32) of whole examples spread evenly over the folder, at most ~``max_values``
    (every example when the folder holds fewer values)."""
    total = int(sum(inv.counts))
    with h5py.File(inv.files[0], "r") as f:
        per_example = int(np.prod(f[key_data].shape[1:]))
    picks = np.unique(np.linspace(0, total - 1, max(1, min(total, max_values // per_example))).astype(np.int64))
    offsets = np.concatenate([[0], np.cumsum(inv.counts)])
    parts = []
    for i, path in enumerate(inv.files):
        local = picks[(picks >= offsets[i]) & (picks < offsets[i + 1])] - offsets[i]
        if local.size:
            lo, hi = int(local[0]), int(local[-1]) + 1
            with h5py.File(path, "r") as f:
                a = f[key_data][lo:hi][local - lo] if hi - lo <= 4 * local.size else f[key_data][local]
            a = a.astype(np.float32).ravel()
            parts.append(a[np.isfinite(a)])
    return np.concatenate(parts)


def hdf5_normalization(inv: Hdf5Inventory, key_data: str, normalization: str, norm_range: tuple | None,
                       nan_policy: str, phase_as_cos_sin: bool) -> dict:
    """``data_normalization`` for an HDF5 folder: ``none`` / ``minmax`` / ``range`` / ``robust``, or (cos, sin).

    Except for (cos, sin), the map's ``report`` is measured on ``hdf5_value_sample`` and ``warn_outside`` warns.
    """
    if phase_as_cos_sin:
        return make_normalization("cos_sin", cos_sin=True)
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization={normalization!r}; expected one of {NORMALIZATIONS}")
    if normalization == "range" and (norm_range is None or len(norm_range) != 2):
        raise ValueError(f"norm_range={norm_range!r}; expected (low, high) with normalization='range'")
    if normalization == "minmax":
        norm = make_normalization("minmax", *hdf5_minmax(inv, key_data, nan_policy))
    sample = hdf5_value_sample(inv, key_data)
    if normalization == "robust":
        norm = robust_normalization(sample)
    elif normalization != "minmax":
        norm = make_normalization(normalization, *(norm_range if normalization == "range" else (-1.0, 1.0)))
    norm["report"] = range_report(sample, norm)
    warn_outside(norm, f"HDF5 folder {os.path.dirname(inv.files[0])!r}, key {key_data!r}")
    return norm


class Hdf5Dataset(torch.utils.data.Dataset):
    """Batches from an HDF5 folder: ``dataset[list_of_global_indices] -> (x, cond)``.

    Indices are grouped per file and read in sorted order (one h5py selection per file).
    x: float32 (N, C', H, W) in model units (C' = 2C with cos/sin); cond["y"] int64 (N,) with
    labels; cond["mask"] float32 like x (1 = finite stored value) when ``nan_policy='fill'``,
    non-finite values being set to 0 in model units. File handles open lazily per process.
    """

    def __init__(self, inv: Hdf5Inventory, key_data: str, norm: dict, nan_policy: str = "error",
                 use_labels: bool = False):
        if nan_policy not in NAN_POLICIES:
            raise ValueError(f"nan_policy={nan_policy!r}; expected one of {NAN_POLICIES}")
        self.inv, self.key_data, self.norm, self.nan_policy = inv, key_data, norm, nan_policy
        self.labels = inv.labels if use_labels else None
        self.offsets = np.concatenate([[0], np.cumsum(inv.counts)])
        self._handles: dict[int, h5py.File] = {}

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handles": {}}

    def set_epoch(self, epoch: int) -> None:
        """Reading is deterministic; present so every dataset answers ``set_epoch``."""

    def _read(self, file_idx: int, local: np.ndarray) -> np.ndarray:
        """Examples ``local`` (sorted, repeats allowed) of one file as (n, C, H, W) float32."""
        if file_idx not in self._handles:
            self._handles[file_idx] = h5py.File(self.inv.files[file_idx], "r")
        ds = self._handles[file_idx][self.key_data]
        uniq, inverse = np.unique(local, return_inverse=True)
        lo, hi = int(uniq[0]), int(uniq[-1]) + 1
        a = ds[lo:hi][uniq - lo] if hi - lo <= 4 * len(uniq) else ds[uniq]
        a = a[inverse].astype(np.float32)
        return a[:, None] if a.ndim == 3 else a

    def __getitem__(self, indices: list[int]) -> tuple[torch.Tensor, dict]:
        idx = np.sort(np.asarray(indices, dtype=np.int64))
        file_of = np.searchsorted(self.offsets, idx, side="right") - 1
        parts = []
        for file_idx in np.unique(file_of):
            local = idx[file_of == file_idx] - self.offsets[file_idx]
            a = self._read(int(file_idx), local)
            finite = np.isfinite(a)
            if self.nan_policy == "error" and not finite.all():
                raise _nan_error(self.inv.files[file_idx], self.key_data, local, ~finite)
            parts.append((a, finite))
        a = np.concatenate([p[0] for p in parts])
        finite = np.concatenate([p[1] for p in parts])
        x = normalize(np.where(finite, a, 0.0), self.norm, channel_axis=1)
        cond = {}
        if self.nan_policy == "fill":
            mask = np.concatenate([finite, finite], axis=1) if self.norm["cos_sin"] else finite
            x = np.where(mask, x, 0.0).astype(np.float32)
            cond["mask"] = torch.from_numpy(mask.astype(np.float32))
        if self.labels is not None:
            cond["y"] = torch.from_numpy(self.labels[idx])
        return torch.from_numpy(np.ascontiguousarray(x)), cond
