"""Cut whole interferograms (or any rasters) into training patches in the HDF5 layout the loaders read.

Inputs: GeoTIFF (``.tif``/``.tiff``, read with tifffile), ``.npy`` or HDF5 (``.h5``/``.hdf5``, dataset
``hdf5_key``) files, or folders of them. A 2-D array is one scene; a 3-D ``(n, rows, cols)`` array holds n
scenes (e.g. a stack of unwrapped interferograms). A multi-band raster (a GeoTIFF with a sample axis,
band-first or band-last; a ``.npy`` / HDF5 array with ``band_axis``) needs ``band``: one band, or ``"each"``
(every band a scene). Non-finite values, ``nodata`` and a GeoTIFF's own GDAL_NODATA tag are masked pixels
(a ``nodata`` contradicting the tag is refused unless ``nodata_override``).

Every scene is cut into ``patch_size`` windows at ``stride``; windows with more than ``max_nan_fraction``
masked pixels are dropped; masked pixels stay NaN (or are filled: ``fill``). Every input is read and checked
before anything is written: a scene that yields no patch (smaller than a patch, all masked) or a file that
cannot be read stops the run with one line naming it. Whole scenes are assigned to train / val / test, so
overlapping patches of one scene never straddle splits.

Output: ``{out_dir}/{train,val,test}/{split}_{k:03d}.hdf5`` with keys ``data_key`` (float32 (n, P, P),
NaN = masked unless ``fill``), ``mask`` (uint8 (n, P, P), 1 = valid), ``scene`` (int64 (n,), index into the
scene list of ``tiles.json``) and ``window`` (int64 (n, 4): row0, col0, rows, cols of the patch in its scene,
pixels); ``{out_dir}/tiles.json``: the options, every scene (source file, index in its stack, band, nodata
applied, shape, split, patch counts) and ``loader_kwargs`` for ``create_dataloader`` (``nan_policy='fill'``,
robust normalisation).

Run ``python datasets/tile_interferograms.py --help``.
"""
from __future__ import annotations

import json
import math
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from datasets.png_folders import prepare_folders  # noqa: E402
from improved_diffusion.file_io import atomic_write, atomic_write_text, check_free  # noqa: E402
from utils.cli import run_cli  # noqa: E402

SPLITS = ("train", "val", "test")
TIFF, NPY, HDF5 = (".tif", ".tiff"), (".npy",), (".h5", ".hdf5")
FILLS = ("none", "zero", "mean")
BAND_AXES = ("auto", "first", "last")
GDAL_NODATA = 42113  # TIFF tag where GDAL stores a raster's nodata value (ASCII)


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


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn a library's read error (corrupt file, pickled objects, truncated data) into one line naming `path`."""
    try:
        yield
    except (OSError, EOFError, KeyError, IndexError, ValueError) as err:  # tifffile.TiffFileError is a ValueError
        raise ValueError(f"raster {str(path)!r} cannot be read ({type(err).__name__}: {err}); expected a GeoTIFF, "
                         "a .npy without pickled objects or an HDF5 file") from None


@dataclass(frozen=True)
class Raster:
    """Header of one raster file: array `shape` and `dtype`, tifffile `axes` (GeoTIFF, e.g. "YXS" = band-last)
    and the text of its GDAL_NODATA tag (GeoTIFF, None without one)."""

    path: Path
    shape: tuple[int, ...]
    dtype: np.dtype
    axes: str | None = None
    nodata_tag: str | None = None


def read_header(path: Path, hdf5_key: str) -> Raster:
    """The :class:`Raster` of one file, read from its header (the pixels are not read)."""
    suffix, keys = path.suffix.lower(), None
    if suffix in HDF5:
        with _reading(path), h5py.File(path, "r") as f:
            keys = sorted(f.keys())
            found = isinstance(f.get(hdf5_key), h5py.Dataset)
            raster = Raster(path, f[hdf5_key].shape, f[hdf5_key].dtype) if found else None
        if raster is None:
            raise ValueError(f"HDF5 file {str(path)!r} has no dataset hdf5_key={hdf5_key!r}; its keys are {keys}")
    elif suffix in NPY:
        with _reading(path):
            a = np.load(path, mmap_mode="r")
            raster = Raster(path, a.shape, a.dtype)
    else:
        with _reading(path), tifffile.TiffFile(path) as tif:
            series, tag = tif.series[0], tif.pages[0].tags.get(GDAL_NODATA)
            raster = Raster(path, tuple(series.shape), series.dtype, series.axes,
                            None if tag is None else str(tag.value).strip("\x00 "))
    if not (np.issubdtype(raster.dtype, np.integer) or np.issubdtype(raster.dtype, np.floating)):
        raise ValueError(f"raster {str(path)!r} holds {raster.dtype} values; expected integer or float pixels")
    if len(raster.shape) not in (2, 3):
        raise ValueError(f"raster {str(path)!r} has shape {raster.shape}; expected (rows, cols), (n, rows, cols), "
                         "(bands, rows, cols) or (rows, cols, bands)")
    return raster


def band_axis_of(raster: Raster, band_axis: str, patch_size: int) -> int | None:
    """Axis of the bands of a 3-D raster (0 band-first, 2 band-last), None for a 2-D raster or a stack of scenes
    (n, rows, cols). ``band_axis="auto"``: a GeoTIFF's sample axis ("S" in its axes), else a stack; a 3-D array
    whose last axis is shorter than a patch while the others are not is refused as a likely band-last raster."""
    shape = raster.shape
    if len(shape) == 2:
        return None
    if band_axis != "auto":
        return 0 if band_axis == "first" else 2
    if raster.axes is not None and "S" in raster.axes:
        return raster.axes.index("S")
    if shape[2] < patch_size <= min(shape[:2]):
        raise ValueError(f"raster {str(raster.path)!r} has shape {shape}: it looks band-last (rows, cols, bands) but "
                         "is read as a stack (n, rows, cols); pass band_axis='last' with band=<index> or band='each'")
    return None


def file_nodata(raster: Raster, nodata: float | None, nodata_override: bool) -> float | None:
    """The nodata value applied to one file: its GDAL_NODATA tag, or ``nodata`` when it has none or with
    ``nodata_override``; a ``nodata`` contradicting the tag is refused."""
    if raster.nodata_tag is None or nodata_override:
        return nodata
    try:
        tag = float(raster.nodata_tag)
    except ValueError:
        raise ValueError(f"raster {str(raster.path)!r}: its GDAL_NODATA tag {raster.nodata_tag!r} is not a number; "
                         "pass nodata=<value> with nodata_override=True") from None
    if math.isnan(tag):
        return nodata  # NaN is masked anyway
    if nodata is not None and nodata != tag:
        raise ValueError(f"nodata={nodata:g} contradicts the GDAL_NODATA tag {tag:g} of {str(raster.path)!r}; "
                         "leave nodata out to use the tag, or pass nodata_override=True to use nodata instead")
    return tag


def read_scene(path: Path, take: tuple, hdf5_key: str, nodata: float | None) -> np.ndarray:
    """Scene ``array[take]`` (rows, cols) float32 with NaN at masked pixels (non-finite or equal to ``nodata``)."""
    with _reading(path):
        if path.suffix.lower() in HDF5:
            with h5py.File(path, "r") as f:
                a = f[hdf5_key][take]
        elif path.suffix.lower() in NPY:
            a = np.load(path, mmap_mode="r")[take]
        else:
            with tifffile.TiffFile(path) as tif:
                a = tif.series[0].asarray()[take]
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


def fill_masked(patches: np.ndarray, fill: str) -> np.ndarray:
    """(n, P, P) float32 patches with their NaN (masked) pixels kept (``fill="none"``), set to 0 (``"zero"``) or to
    the mean of the patch's valid pixels (``"mean"``; 0 for a patch without any)."""
    if fill == "none":
        return patches
    valid = np.isfinite(patches)
    value = np.zeros((len(patches), 1, 1), np.float32)
    if fill == "mean":
        count = valid.sum(axis=(1, 2), keepdims=True)
        value = np.where(count > 0, np.where(valid, patches, 0).sum(axis=(1, 2), keepdims=True) / np.maximum(count, 1),
                         0).astype(np.float32)
    return np.where(valid, patches, value).astype(np.float32)


class _SplitWriter:
    """Buffers patches of one split and writes them as ``{split}_{k:03d}.hdf5`` files of ``per_file`` patches."""

    def __init__(self, folder: Path, split: str, data_key: str, per_file: int, scenes_attr: str, fill: str):
        self.folder, self.split, self.data_key = folder, split, data_key
        self.per_file, self.attr, self.fill = per_file, scenes_attr, fill
        self.patches, self.scene, self.window, self.files, self.count = [], [], [], [], 0

    def add(self, patch: np.ndarray, scene: int, window: tuple[int, int, int, int]) -> None:
        self.patches.append(patch)
        self.scene.append(scene)
        self.window.append(window)
        if len(self.patches) == self.per_file:
            self.flush()

    def _write(self, path: str, data: np.ndarray) -> None:
        with h5py.File(path, "w") as f:
            f[self.data_key] = fill_masked(data, self.fill)
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


class Scene(NamedTuple):
    """One scene: its file, position in a stack (or band with ``band='each'``), band tiled of a multi-band
    raster, (rows, cols), the index ``take`` of the scene in the file's array and the nodata value applied."""

    path: Path
    index: int | None
    band: int | None
    shape: tuple[int, int]
    take: tuple
    nodata: float | None


def _raster_scenes(raster: Raster, axis: int | None, band: int | str | None, nodata: float | None) -> list[Scene]:
    """The scenes of one raster whose band axis is ``axis`` (see :func:`band_axis_of`)."""
    shape, name = raster.shape, str(raster.path)
    if len(shape) == 2:
        return [Scene(raster.path, None, None, shape, (), nodata)]
    if axis is None:
        return [Scene(raster.path, i, None, shape[1:], (i,), nodata) for i in range(shape[0])]
    bands, rows_cols = shape[axis], tuple(n for k, n in enumerate(shape) if k != axis)
    layout = "band-first (bands, rows, cols)" if axis == 0 else "band-last (rows, cols, bands)"
    if band is None or (band != "each" and band >= bands):
        raise ValueError(f"raster {name!r} has {bands} bands, {layout}, shape {shape}; pass band=<0..{bands - 1}> to "
                         f"tile one band or band='each' to tile every band as a scene of its own (got band={band!r})")

    def take(b):
        return (b,) if axis == 0 else (slice(None), slice(None), b)
    if band == "each":
        return [Scene(raster.path, b, None, rows_cols, take(b), nodata) for b in range(bands)]
    return [Scene(raster.path, None, band, rows_cols, take(band), nodata)]


def list_scenes(files: list[Path], *, hdf5_key: str, band: int | str | None, band_axis: str, patch_size: int,
                nodata: float | None, nodata_override: bool) -> list[Scene]:
    """Every scene of the files, from their headers; ValueError naming the file for any it cannot serve."""
    if band is not None and band != "each" and (isinstance(band, bool) or not isinstance(band, int) or band < 0):
        raise ValueError(f"band={band!r}; expected None, an integer >= 0 or 'each'")
    if band_axis not in BAND_AXES:
        raise ValueError(f"band_axis={band_axis!r}; expected one of {BAND_AXES}")
    scenes, multi_band = [], False
    for path in files:
        raster = read_header(path, hdf5_key)
        axis = band_axis_of(raster, band_axis, patch_size)
        multi_band |= axis is not None
        scenes += _raster_scenes(raster, axis, band, file_nodata(raster, nodata, nodata_override))
    if band is not None and not multi_band:
        raise ValueError(f"band={band!r}: no input raster has bands; leave band out (or set band_axis for "
                         ".npy / HDF5 arrays)")
    return scenes


def kept_windows(scene: Scene, *, hdf5_key: str, patch_size: int, stride: int, max_nan_fraction: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(window origins (K, 2), bool (K,) kept) of one scene; ValueError naming it when it yields no patch."""
    label = f"scene {str(scene.path)!r}" + (f" (index {scene.index})" if scene.index is not None else "")
    rows, cols = scene.shape
    if rows < patch_size or cols < patch_size:
        raise ValueError(f"{label} is {rows} x {cols} px, smaller than patch_size={patch_size}; expected "
                         "a smaller patch_size (or leave the file out)")
    a = read_scene(scene.path, scene.take, hdf5_key, scene.nodata)
    if np.isnan(a).all():
        raise ValueError(f"{label} has no valid pixel (all NaN / Inf / nodata={scene.nodata}); leave the file out "
                         "or check nodata")
    origins = windows(rows, cols, patch_size, stride)
    limit = max_nan_fraction * patch_size * patch_size
    kept = np.array([np.isnan(a[r0:r0 + patch_size, c0:c0 + patch_size]).sum() <= limit for r0, c0 in origins])
    if not kept.any():
        raise ValueError(f"{label}: none of its {len(origins)} windows has at most max_nan_fraction="
                         f"{max_nan_fraction} masked pixels; raise max_nan_fraction, lower patch_size or leave the "
                         "file out")
    return origins, kept


def main(
        inputs: list[str] | None = None,  # raster files or folders of them (GeoTIFF, .npy, HDF5)
        out_dir: str = "data/tiles",  # output folder (train/, val/, test/, tiles.json)
        patch_size: int = 128,  # side of the square patches in pixels
        stride: int | None = None,  # step between patch origins in pixels; None = patch_size (no overlap)
        max_nan_fraction: float = 0.1,  # drop patches with a larger fraction of masked (NaN / nodata) pixels
        nodata: float | None = None,  # stored value that marks a masked pixel (besides NaN / Inf), e.g. 0
        nodata_override: bool = False,  # use nodata instead of a GeoTIFF's own GDAL_NODATA tag (else must agree)
        band: int | str | None = None,  # multi-band rasters: the band to tile (0-based) or "each" (every band a scene)
        band_axis: str = "auto",  # 3-D arrays: "auto" (GeoTIFF: tags; .npy/HDF5: (n, rows, cols)), "first", "last"
        fill: str = "none",  # masked pixels of the written patches: "none" (NaN), "zero" or "mean" (of the patch)
        hdf5_key: str = "unwrap",  # dataset read from HDF5 inputs, (rows, cols) or (n, rows, cols)
        data_key: str = "unwrap",  # key of the patches in the output HDF5 files
        frac_val: float = 0.1,  # fraction of the scenes (not patches) assigned to val
        frac_test: float = 0.1,  # fraction of the scenes (not patches) assigned to test
        split_seed: int = 0,  # seed of the random assignment of scenes to splits
        fields_per_file: int = 1000,  # patches per output HDF5 file
        overwrite: bool = False,  # replace an existing output of this script in out_dir
) -> dict:
    """Tile the rasters into patches, split by scene, and write the HDF5 folders and ``tiles.json``.

    Every input is read and checked (each scene must yield a patch) before the first folder is created.
    Returns the ``tiles.json`` dict.
    """
    stride = patch_size if stride is None else stride
    _check_options(patch_size, stride, fields_per_file, max_nan_fraction, frac_val, frac_test, data_key, fill)
    files = list_sources(list(inputs or []))
    scenes = list_scenes(files, hdf5_key=hdf5_key, band=band, band_axis=band_axis, patch_size=patch_size,
                         nodata=nodata, nodata_override=nodata_override)
    found = [kept_windows(s, hdf5_key=hdf5_key, patch_size=patch_size, stride=stride,
                          max_nan_fraction=max_nan_fraction) for s in scenes]
    out = Path(out_dir)
    check_free([out / "tiles.json"], overwrite, key="out_dir")
    prepare_folders([out / s for s in SPLITS], overwrite)
    (out / "tiles.json").unlink(missing_ok=True)
    splits = assign_splits(len(scenes), frac_val, frac_test, split_seed)
    listing = [{"source": str(s.path), "index": s.index, "band": s.band, "nodata": s.nodata, "shape": list(s.shape),
                "split": split, "windows": len(origins), "patches": int(kept.sum())}
               for s, split, (origins, kept) in zip(scenes, splits, found)]
    attr = json.dumps([{k: s[k] for k in ("source", "index")} for s in listing])
    writers = {s: _SplitWriter(out / s, s, data_key, fields_per_file, attr, fill) for s in SPLITS}
    for k, (scene, entry, (origins, kept)) in enumerate(zip(scenes, listing, found)):
        a = read_scene(scene.path, scene.take, hdf5_key, scene.nodata)
        for r0, c0 in origins[kept]:
            writers[entry["split"]].add(a[r0:r0 + patch_size, c0:c0 + patch_size], k,
                                        (int(r0), int(c0), patch_size, patch_size))
    for w in writers.values():
        w.flush()
    empty = [s for s in SPLITS if writers[s].count == 0]
    for s in empty:
        shutil.rmtree(out / s)
    tiles = {
        "generator": "datasets/tile_interferograms.py",
        "params": {"inputs": [str(f) for f in files], "patch_size": patch_size, "stride": stride,
                   "max_nan_fraction": max_nan_fraction, "nodata": nodata, "nodata_override": nodata_override,
                   "band": band, "band_axis": band_axis, "fill": fill, "hdf5_key": hdf5_key,
                   "data_key": data_key, "frac_val": frac_val, "frac_test": frac_test, "split_seed": split_seed},
        "scenes": listing,
        "splits": {s: {"folder": s, "num_patches": writers[s].count, "files": writers[s].files}
                   for s in SPLITS if s not in empty},
        "keys": {data_key: "float32 (n, P, P), masked pixels " + {"none": "NaN", "zero": "0",
                                                                  "mean": "the patch mean"}[fill],
                 "mask": "uint8 (n, P, P), 1 = valid",
                 "scene": "int64 (n,), index into scenes", "window": "int64 (n, 4): row0, col0, rows, cols (px)"},
        "loader_kwargs": {"type_dataset": "hdf5", "image_size": patch_size, "num_channels": 1,
                          "list_keys_hdf5_original": [data_key, "mask", "scene", "window"], "key_data": data_key,
                          "nan_policy": "fill", "normalization": "robust"},
    }
    atomic_write_text(out / "tiles.json", json.dumps(tiles, indent=1))
    print("\n".join(summary_lines(tiles, out)))
    return tiles


def summary_lines(tiles: dict, out: Path) -> list[str]:
    """What the tiler wrote, per split, and the train.py flags that read it."""
    lines = [f"[tiles] {len(tiles['scenes'])} scene(s) -> {tiles['params']['patch_size']} px patches in {out}"]
    for split, entry in tiles["splits"].items():
        scenes = sum(s["split"] == split for s in tiles["scenes"])
        lines.append(f"  {split:5s} {entry['num_patches']:6d} patches from {scenes} scene(s)")
    kw = {("num_input_channels" if k == "num_channels" else k): v for k, v in tiles["loader_kwargs"].items()}
    folders = {"data_train_dir": out / "train", **({"data_val_dir": out / "val"} if "val" in tiles["splits"] else {})}
    flags = " ".join(f"--{k} {','.join(v) if isinstance(v, list) else v}" for k, v in {**folders, **kw}.items())
    lines.append(f"  train on them with: python train.py {flags} --url_folder_experiment <run folder>")
    return lines


def _check_options(patch_size: int, stride: int, fields_per_file: int, max_nan_fraction: float, frac_val: float,
                   frac_test: float, data_key: str, fill: str) -> None:
    """ValueError naming the first option out of its range."""
    for name, value in (("patch_size", patch_size), ("stride", stride), ("fields_per_file", fields_per_file)):
        if value < 1:
            raise ValueError(f"{name}={value}; expected >= 1")
    if not 0.0 <= max_nan_fraction <= 1.0:
        raise ValueError(f"max_nan_fraction={max_nan_fraction}; expected in [0, 1]")
    if not (0.0 <= frac_val and 0.0 <= frac_test and frac_val + frac_test <= 1.0):
        raise ValueError(f"frac_val={frac_val}, frac_test={frac_test}; expected fractions >= 0 with sum <= 1")
    if data_key in ("mask", "scene", "window"):
        raise ValueError(f"data_key={data_key!r} collides with an output key; expected another name")
    if fill not in FILLS:
        raise ValueError(f"fill={fill!r}; expected one of {FILLS}")


if __name__ == "__main__":
    run_cli(main)
