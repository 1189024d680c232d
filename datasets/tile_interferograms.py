"""Cut whole interferograms (or any rasters) into training patches in the HDF5 layout the loaders read.

Inputs: GeoTIFF (``.tif``/``.tiff``, read with tifffile), ``.npy`` or HDF5 (``.h5``/``.hdf5``, dataset
``hdf5_key``) files, or folders of them. A 2-D array is one scene; a 3-D ``(n, rows, cols)`` array holds n
scenes (e.g. a stack of unwrapped interferograms). Non-finite values and ``nodata`` are masked pixels.

Every scene is cut into ``patch_size`` windows at ``stride``; windows with more than ``max_nan_fraction``
masked pixels are dropped; masked pixels stay NaN. Whole scenes are assigned to train / val / test, so
overlapping patches of one scene never straddle splits.

Output: ``{out_dir}/{train,val,test}/{split}_{k:03d}.hdf5`` with keys ``data_key`` (float32 (n, P, P),
NaN = masked), ``mask`` (uint8 (n, P, P), 1 = valid), ``scene`` (int64 (n,), index into the scene list of
``tiles.json``) and ``window`` (int64 (n, 4): row0, col0, rows, cols of the patch in its scene, pixels);
``{out_dir}/tiles.json``: the options, every scene (source file, index in its stack, shape, split, patch
counts) and ``loader_kwargs`` for ``create_dataloader`` (``nan_policy='fill'``, robust normalisation).

Run ``python datasets/tile_interferograms.py --help``.
"""
from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from datasets.png_folders import prepare_folders  # noqa: E402
from improved_diffusion.file_io import atomic_write, atomic_write_text, check_free  # noqa: E402
from utils.cli import run_cli  # noqa: E402

SPLITS = ("train", "val", "test")
TIFF, NPY, HDF5 = (".tif", ".tiff"), (".npy",), (".h5", ".hdf5")


def list_sources(inputs: list[str]) -> list[Path]:
    """Raster files named in ``inputs`` (files, or folders whose supported files are taken in sorted order)."""
    files = []
    for name in inputs:
        p = Path(name)
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix.lower() in TIFF + NPY + HDF5)
        elif p.is_file() and p.suffix.lower() in TIFF + NPY + HDF5:
            files.append(p)
        else:
            raise ValueError(f"inputs: {name!r} is neither a folder nor a file ending in {TIFF + NPY + HDF5}")
    if not files:
        raise ValueError(f"inputs={inputs}: no raster found; expected GeoTIFF, .npy or HDF5 files")
    return files


def raster_shape(path: Path, hdf5_key: str) -> tuple[int, ...]:
    """Shape (rows, cols) or (n, rows, cols) of one raster file, read from its header where the format allows."""
    suffix = path.suffix.lower()
    if suffix in HDF5:
        with h5py.File(path, "r") as f:
            if hdf5_key not in f:
                raise ValueError(f"HDF5 file {str(path)!r} has no dataset hdf5_key={hdf5_key!r}; "
                                 f"its keys are {sorted(f.keys())}")
            shape = f[hdf5_key].shape
    elif suffix in NPY:
        shape = np.load(path, mmap_mode="r").shape
    else:
        with tifffile.TiffFile(path) as tif:
            shape = tif.series[0].shape
    if len(shape) not in (2, 3):
        raise ValueError(f"raster {str(path)!r} has shape {shape}; expected (rows, cols) or (n, rows, cols)")
    return tuple(shape)


def read_scene(path: Path, index: int | None, hdf5_key: str, nodata: float | None) -> np.ndarray:
    """Scene (rows, cols) float32 with NaN at masked pixels (non-finite or equal to ``nodata``)."""
    suffix = path.suffix.lower()
    if suffix in HDF5:
        with h5py.File(path, "r") as f:
            a = f[hdf5_key][()] if index is None else f[hdf5_key][index]
    elif suffix in NPY:
        a = np.load(path, mmap_mode="r")
        a = a if index is None else a[index]
    else:
        a = tifffile.imread(path)
        a = a if index is None else a[index]
    a = np.array(a, dtype=np.float32)
    a[~np.isfinite(a)] = np.nan
    if nodata is not None:
        a[a == nodata] = np.nan
    return a


def windows(rows: int, cols: int, patch_size: int, stride: int) -> np.ndarray:
    """Window origins (K, 2) int64 (row0, col0), row-major, of every full patch of a rows x cols scene."""
    r, c = np.arange(0, rows - patch_size + 1, stride), np.arange(0, cols - patch_size + 1, stride)
    return np.stack(np.meshgrid(r, c, indexing="ij"), axis=-1).reshape(-1, 2).astype(np.int64)


def assign_splits(num_scenes: int, frac_val: float, frac_test: float, seed: int) -> list[str]:
    """Split of each scene: a seeded permutation, round(frac_test * S) test and round(frac_val * S) val scenes."""
    order = np.random.default_rng(seed).permutation(num_scenes)
    n_test, n_val = round(frac_test * num_scenes), round(frac_val * num_scenes)
    split = ["train"] * num_scenes
    for rank, s in enumerate(order):
        split[s] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return split


class _SplitWriter:
    """Buffers patches of one split and writes them as ``{split}_{k:03d}.hdf5`` files of ``per_file`` patches."""

    def __init__(self, folder: Path, split: str, data_key: str, per_file: int, scenes_attr: str):
        self.folder, self.split, self.data_key = folder, split, data_key
        self.per_file, self.attr = per_file, scenes_attr
        self.patches, self.scene, self.window, self.files, self.count = [], [], [], [], 0

    def add(self, patch: np.ndarray, scene: int, window: tuple[int, int, int, int]) -> None:
        self.patches.append(patch)
        self.scene.append(scene)
        self.window.append(window)
        if len(self.patches) == self.per_file:
            self.flush()

    def _write(self, path: str, data: np.ndarray) -> None:
        with h5py.File(path, "w") as f:
            f[self.data_key] = data
            f["mask"] = np.isfinite(data).astype(np.uint8)
            f["scene"] = np.array(self.scene, dtype=np.int64)
            f["window"] = np.array(self.window, dtype=np.int64)
            f.attrs["scenes_json"] = self.attr

    def flush(self) -> None:
        if not self.patches:
            return
        name = f"{self.split}_{len(self.files):03d}.hdf5"
        data = np.stack(self.patches)
        atomic_write(self.folder / name, lambda tmp: self._write(tmp, data))
        self.files.append(name)
        self.count += len(data)
        self.patches, self.scene, self.window = [], [], []


def _scenes(files: list[Path], hdf5_key: str) -> Iterator[tuple[Path, int | None, tuple[int, int]]]:
    """(file, index in its stack or None for a 2-D raster, (rows, cols)) of every scene."""
    for path in files:
        shape = raster_shape(path, hdf5_key)
        if len(shape) == 2:
            yield path, None, shape
        else:
            for i in range(shape[0]):
                yield path, i, shape[1:]


def main(
        inputs: list[str] | None = None,  # raster files or folders of them (GeoTIFF, .npy, HDF5)
        out_dir: str = "data/tiles",  # output folder (train/, val/, test/, tiles.json)
        patch_size: int = 128,  # side of the square patches in pixels
        stride: int | None = None,  # step between patch origins in pixels; None = patch_size (no overlap)
        max_nan_fraction: float = 0.1,  # drop patches with a larger fraction of masked (NaN / nodata) pixels
        nodata: float | None = None,  # stored value that marks a masked pixel (besides NaN / Inf), e.g. 0
        hdf5_key: str = "unwrap",  # dataset read from HDF5 inputs, (rows, cols) or (n, rows, cols)
        data_key: str = "unwrap",  # key of the patches in the output HDF5 files
        frac_val: float = 0.1,  # fraction of the scenes (not patches) assigned to val
        frac_test: float = 0.1,  # fraction of the scenes (not patches) assigned to test
        split_seed: int = 0,  # seed of the random assignment of scenes to splits
        fields_per_file: int = 1000,  # patches per output HDF5 file
        overwrite: bool = False,  # replace an existing output of this script in out_dir
) -> dict:
    """Tile the rasters into patches, split by scene, and write the HDF5 folders and ``tiles.json``.

    Returns the ``tiles.json`` dict.
    """
    stride = patch_size if stride is None else stride
    for name, value in (("patch_size", patch_size), ("stride", stride), ("fields_per_file", fields_per_file)):
        if value < 1:
            raise ValueError(f"{name}={value}; expected >= 1")
    if not 0.0 <= max_nan_fraction <= 1.0:
        raise ValueError(f"max_nan_fraction={max_nan_fraction}; expected in [0, 1]")
    if not (0.0 <= frac_val and 0.0 <= frac_test and frac_val + frac_test <= 1.0):
        raise ValueError(f"frac_val={frac_val}, frac_test={frac_test}; expected fractions >= 0 with sum <= 1")
    if data_key in ("mask", "scene", "window"):
        raise ValueError(f"data_key={data_key!r} collides with an output key; expected another name")
    files = list_sources(list(inputs or []))
    scenes = list(_scenes(files, hdf5_key))
    out = Path(out_dir)
    check_free([out / "tiles.json"], overwrite, key="out_dir")
    prepare_folders([out / s for s in SPLITS], overwrite)
    (out / "tiles.json").unlink(missing_ok=True)
    splits = assign_splits(len(scenes), frac_val, frac_test, split_seed)
    listing = [{"source": str(path), "index": index, "shape": list(shape), "split": split}
               for (path, index, shape), split in zip(scenes, splits)]
    attr = json.dumps([{k: s[k] for k in ("source", "index")} for s in listing])
    writers = {s: _SplitWriter(out / s, s, data_key, fields_per_file, attr) for s in SPLITS}
    limit = max_nan_fraction * patch_size * patch_size
    for k, ((path, index, shape), entry) in enumerate(zip(scenes, listing)):
        a = read_scene(path, index, hdf5_key, nodata)
        origins = windows(*shape, patch_size, stride)
        kept = 0
        for r0, c0 in origins:
            patch = a[r0:r0 + patch_size, c0:c0 + patch_size]
            if np.isnan(patch).sum() <= limit:
                writers[entry["split"]].add(patch, k, (int(r0), int(c0), patch_size, patch_size))
                kept += 1
        entry.update({"windows": len(origins), "patches": kept})
    for w in writers.values():
        w.flush()
    empty = [s for s in SPLITS if writers[s].count == 0]
    for s in empty:
        shutil.rmtree(out / s)
    tiles = {
        "generator": "datasets/tile_interferograms.py",
        "params": {"inputs": [str(f) for f in files], "patch_size": patch_size, "stride": stride,
                   "max_nan_fraction": max_nan_fraction, "nodata": nodata, "hdf5_key": hdf5_key,
                   "data_key": data_key, "frac_val": frac_val, "frac_test": frac_test, "split_seed": split_seed},
        "scenes": listing,
        "splits": {s: {"folder": s, "num_patches": writers[s].count, "files": writers[s].files}
                   for s in SPLITS if s not in empty},
        "keys": {data_key: "float32 (n, P, P), NaN = masked", "mask": "uint8 (n, P, P), 1 = valid",
                 "scene": "int64 (n,), index into scenes", "window": "int64 (n, 4): row0, col0, rows, cols (px)"},
        "loader_kwargs": {"type_dataset": "hdf5", "image_size": patch_size, "num_channels": 1,
                          "list_keys_hdf5_original": [data_key, "mask", "scene", "window"], "key_data": data_key,
                          "nan_policy": "fill", "normalization": "robust"},
    }
    atomic_write_text(out / "tiles.json", json.dumps(tiles, indent=1))
    return tiles


if __name__ == "__main__":
    run_cli(main)
