"""Writing samples: the original `.npz` layout, resumable shards, a PNG grid, HDF5 and provenance.

`.npz` (docs/original.md#sample-npz): `samples_{N}x{H}x{W}x{C}.npz` with `arr_0` NHWC (float32 in model units, or
uint8) and, for class-conditional models, `arr_1` int64 labels. Large runs write one shard per batch
into `{out}/.shards_{stem}/` (atomically) and then stream the shards into the final `.npz`, so memory
stays bounded by one batch and an interrupted run resumes at the first missing shard.
"""
from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from improved_diffusion.data_normalization import from_uint8, to_uint8
from improved_diffusion.file_io import atomic_write


def npz_name(num_samples: int, image_size: int, channels: int) -> str:
    """`samples_{N}x{H}x{W}x{C}.npz` as the original."""
    return f"samples_{num_samples}x{image_size}x{image_size}x{channels}.npz"


def check_sample_values(images: np.ndarray, path: str | Path, key: str) -> None:
    """ValueError naming `key` and `path` unless `images` (arr_0) is uint8 (0..255, `to_0_255`) or a float array
    with finite values only: other integer dtypes would be taken as model units, NaN / Inf as masked pixels."""
    if images.dtype == np.uint8:
        return
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"{key}: {path} has arr_0 of dtype {images.dtype}; expected float32 in model units or "
                         "uint8 (0..255, as to_0_255 writes them); convert other integers explicitly")
    bad = int(np.size(images) - np.count_nonzero(np.isfinite(images)))
    if bad:
        raise ValueError(f"{key}: {path} has {bad} non-finite values (NaN/Inf) in arr_0; expected finite samples")


def read_samples_npz(path: str | Path, key: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(arr_0, arr_1 as int64 or None) of a samples `.npz`; a missing, unreadable or pickled file, one without
    arr_0, or an arr_0 refused by `check_sample_values` raises a one-line error naming the option `key`."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{key}: no file at {path}")
    try:
        with np.load(path) as data:
            if "arr_0" not in data:
                raise ValueError(f"{key}: {path} has no array arr_0 (found {sorted(data.files)}); expected the "
                                 "images as arr_0 (NHWC), as sample.py writes them")
            images, labels = data["arr_0"], data["arr_1"].astype(np.int64) if "arr_1" in data else None
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{key}: {path} is not a readable .npz ({err}); expected np.savez output with arr_0 "
                         "NHWC") from None
    except ValueError as err:
        if str(err).startswith(f"{key}:"):
            raise
        raise ValueError(f"{key}: {path} cannot be read without pickle ({err}); expected plain arrays") from None
    check_sample_values(images, path, key)
    return images, labels


def _differences(tag: Path, config: dict) -> str:
    """Which keys of `config` differ from the run recorded in the shard folder's `tag` file."""
    try:
        recorded = json.loads(tag.read_text())
    except (ValueError, OSError):
        return f"{tag} is unreadable"
    keys = sorted(k for k in set(recorded) | set(config) if recorded.get(k) != config.get(k))
    if "checkpoint_sha256" in keys:
        return "they were made from other weights: checkpoint_sha256 differs"
    return "differing keys: " + ", ".join(keys)


class ShardStore:
    """One `.npz` shard per batch in `folder`, tagged with the run's `config` (a JSON-able dict):
    a folder written under another configuration is refused (or cleared with `overwrite`)."""

    def __init__(self, folder: Path, config: dict, overwrite: bool = False) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        tag = self.folder / "config.json"
        text = json.dumps(config, sort_keys=True, indent=1)
        if tag.exists() and tag.read_text() != text:
            if not overwrite:
                raise ValueError(f"{self.folder} holds shards of a different run ({_differences(tag, config)}); "
                                 "pass overwrite=True to discard them or choose another url_save_path")
            self.clear()
        atomic_write(tag, lambda tmp: Path(tmp).write_text(text))

    def path(self, index: int) -> Path:
        return self.folder / f"shard_{index:06d}.npz"

    def done(self, index: int) -> bool:
        return self.path(index).exists()

    def write(self, index: int, images: np.ndarray, labels: np.ndarray | None) -> None:
        arrays = [images] + ([labels] if labels is not None else [])

        def save(tmp):
            with open(tmp, "wb") as f:
                np.savez(f, *arrays)
        atomic_write(self.path(index), save)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        with np.load(self.path(index)) as data:
            return data["arr_0"], (data["arr_1"] if "arr_1" in data else None)

    def clear(self) -> None:
        for path in self.folder.glob("*"):
            path.unlink()

    def remove(self) -> None:
        self.clear()
        self.folder.rmdir()


def _write_npy_stream(zf: zipfile.ZipFile, name: str, shape: tuple, dtype: np.dtype, chunks: Iterable[np.ndarray]):
    with zf.open(name, "w", force_zip64=True) as f:
        np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                "fortran_order": False, "shape": shape})
        for chunk in chunks:
            f.write(np.ascontiguousarray(chunk, dtype=dtype).tobytes())


def merge_shards(store: ShardStore, num_shards: int, num_samples: int, out_path: Path) -> None:
    """Stream the first `num_samples` samples of shards 0..num_shards-1 into `out_path` (`np.savez`
    layout: arr_0 images, arr_1 labels when the shards have them), one shard in memory at a time."""
    first_images, first_labels = store.read(0)
    shape = (num_samples,) + first_images.shape[1:]

    def take(kind: int):
        left = num_samples
        for index in range(num_shards):
            part = store.read(index)[kind][:left]
            left -= len(part)
            yield part

    def save(tmp):
        with zipfile.ZipFile(tmp, "w", allowZip64=True) as zf:
            _write_npy_stream(zf, "arr_0.npy", shape, first_images.dtype, take(0))
            if first_labels is not None:
                _write_npy_stream(zf, "arr_1.npy", (num_samples,), np.int64, take(1))
    atomic_write(out_path, save)


GRID_SAMPLES = 64  # samples shown in a run's PNG figure


def _mosaic(images: np.ndarray, fill) -> np.ndarray:
    """NHWC images on a near-square grid, row-major, 2 px borders of `fill`: (rows (H+2) + 2, cols (W+2) + 2, C)."""
    n, h, w, c = images.shape
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    canvas = np.full((rows * (h + 2) + 2, cols * (w + 2) + 2, c), fill, dtype=images.dtype)
    for i, image in enumerate(images):
        r, k = divmod(i, cols)
        canvas[2 + r * (h + 2):2 + r * (h + 2) + h, 2 + k * (w + 2):2 + k * (w + 2) + w] = image
    return canvas


def save_png_grid(images: np.ndarray, path: Path, max_images: int = GRID_SAMPLES) -> None:
    """A pixel-exact grid of the first `max_images` NHWC samples (float in [-1, 1] or uint8), row-major in
    sample order (labels are in the `.npz`); 1 channel -> grey, 3 -> RGB, other -> channel 0."""
    from PIL import Image

    images = images[:max_images]
    if images.dtype != np.uint8:
        images = to_uint8(images)
    if images.shape[-1] not in (1, 3):
        images = images[..., :1]
    canvas = _mosaic(images, 255)
    atomic_write(path, lambda tmp: Image.fromarray(canvas[..., 0] if canvas.shape[-1] == 1 else canvas)
                 .save(tmp, format="PNG"))


def first_samples(store: ShardStore, num_batches: int, count: int = GRID_SAMPLES) -> np.ndarray:
    """The first `count` samples of a run (NHWC, as stored), read shard by shard (memory: one batch)."""
    parts, have = [], 0
    for b in range(num_batches):
        if have >= count:
            break
        parts.append(store.read(b)[0][:count - have])
        have += len(parts[-1])
    return np.concatenate(parts)


def save_sample_figure(images: np.ndarray, path: Path, data_normalization: dict | None, total: int,
                       key_data: str | None = None) -> None:
    """The PNG of a sampling run: the NHWC samples given (the run's first ones, `total` in the run) on one grey
    scale with a colorbar in the data's units (`data_normalization` known: physical units, see
    `value_unit`, `key_data` the HDF5 dataset name; else model units). RGB samples: the pixel-exact grid of
    `save_png_grid`."""
    from improved_diffusion.data_normalization import denormalize, value_unit
    from utils.evaluation.plots import plt

    if images.shape[-1] == 3 and (data_normalization is None or not data_normalization.get("cos_sin")):
        save_png_grid(images, path, len(images))
        return
    values = from_uint8(images) if images.dtype == np.uint8 else images.astype(np.float32)
    if data_normalization is not None:
        values = denormalize(values, data_normalization)
    canvas = _mosaic(values[..., :1], np.nan)[..., 0]
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    shown = ax.imshow(canvas, cmap="gray", interpolation="nearest")
    ax.axis("off")
    ax.set_title(f"first {len(values)} of {total} samples (row-major; channel 0)", fontsize=9)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04).set_label(value_unit(data_normalization, key_data=key_data))
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def save_hdf5(npz_path: Path, hdf5_path: Path, data_normalization: dict | None, *, class_names: list | None = None,
              key_data: str | None = None, attrs: dict | None = None) -> str:
    """Write the samples of `npz_path` as HDF5 dataset `data` (float32, (N, H, W) for one channel, else
    (N, C, H, W): the layout of the original `save_samples_to_hdf5` / semivariogram tools), in physical
    units when `data_normalization` is known. Root attributes: `units` ("physical" or "model"), `unit` (its
    name, e.g. "rad", "linear power": `value_unit`), `created_utc` (ISO date), `class_names` when given and
    `attrs` (e.g. the training data's own HDF5 attributes: dates, georeference). Returns `units`."""
    import h5py

    from improved_diffusion.data_normalization import denormalize, value_unit

    with np.load(npz_path) as data:
        images = data["arr_0"]
        labels = data["arr_1"] if "arr_1" in data else None
    x = from_uint8(images) if images.dtype == np.uint8 else images.astype(np.float32)
    unit = "model"
    if data_normalization:
        x, unit = denormalize(x, data_normalization, channel_axis=-1), "physical"
    x = np.moveaxis(x, -1, 1)
    if x.shape[1] == 1:
        x = x[:, 0]

    def write(tmp):
        with h5py.File(tmp, "w") as f:
            f.create_dataset("data", data=x)
            if labels is not None:
                f.create_dataset("labels", data=labels)
            f.attrs.update(attrs or {})
            f.attrs["units"] = unit
            f.attrs["unit"] = value_unit(data_normalization, unit == "physical", key_data)
            f.attrs["created_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            if class_names:
                f.attrs["class_names"] = [str(c) for c in class_names]
    atomic_write(hdf5_path, write)
    return unit


def write_provenance(path: Path, info: dict) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(info, indent=1, default=str)))
