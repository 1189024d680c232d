"""Label every field of an HDF5 data folder with its strength class, for stratified (class-conditional) training.

Heavy-tailed InSAR sets hold a few fields far stronger than the rest (large deformation, strong atmosphere). A
model trained on the pooled data sees them rarely and draws too few of them (`bench/RESULTS.md`, "Strength
classes"). Splitting the fields by their standard deviation into classes and training a class-conditional model
on that label gives the model an explicit switch for the rare strong fields; sampling the classes at their
training proportions (`sample_class="proportional"`) then draws from the data's own marginal
p(x) = sum_k p(k) p(x | k), because the class is a function of the field itself.

Class k of a field with standard deviation s (finite pixels of `key_data`, stored units) is the number of
thresholds below s; the thresholds are the `quantiles` of s over the `train_split` folder, so the classes hold
about q_1, q_2 - q_1, ..., 1 - q_last of the training fields. Every split folder under `data_dir` (sub-folders
holding HDF5 files) gets the label as a new int64 key `key_label` (n,); `strength_labels.json` in `data_dir`
records the thresholds, the counts, each class's median std over the training fields and `class_scale`, those
medians over the weakest class's in the model units of the training's `normalization` (train.py's `class_scale`:
each class reaches the network at the bulk's amplitude; improved_diffusion/class_scale.py). Then:

    python train.py ... --class_cond --num_class 3 --key_class strength \\
        --list_keys_hdf5_original unwrap,wrap,strength [--class_scale 1,1.7,5.9]
    python sample_DPM.py --model_path ... --sampled_class proportional
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from improved_diffusion.data_normalization import NORMALIZATIONS, normalize, robust_normalization  # noqa: E402
from improved_diffusion.file_io import atomic_write_text  # noqa: E402
from improved_diffusion.hdf5_datasets import HDF5_EXTENSIONS, list_hdf5_files  # noqa: E402
from utils.cli import run_cli  # noqa: E402

SUMMARY_NAME = "strength_labels.json"


def read_fields(path: str, key_data: str) -> np.ndarray:
    """float64 (n, D): the fields of one HDF5 file, flattened (all channels); NaN where not finite. ValueError
    for a missing key or a field without any finite value."""
    with h5py.File(path, "r") as f:
        if key_data not in f:
            raise ValueError(f"HDF5 file {path!r} has no key key_data={key_data!r}; its keys are {sorted(f.keys())}")
        values = np.asarray(f[key_data], dtype=np.float64)
    flat = values.reshape(len(values), -1)
    empty = ~np.isfinite(flat).any(axis=1)
    if empty.any():
        raise ValueError(f"HDF5 file {path!r}, key {key_data!r}: field {int(np.argmax(empty))} has no finite value; "
                         "expected at least one per field")
    return np.where(np.isfinite(flat), flat, np.nan)


def field_std(path: str, key_data: str) -> np.ndarray:
    """float64 (n,): standard deviation of the finite values of each field (all channels) of one HDF5 file."""
    return np.nanstd(read_fields(path, key_data), axis=1)


def class_scale(fields: np.ndarray, labels: np.ndarray, num_class: int, normalization: str) -> list[float]:
    """Median per-field std of each class over the weakest class's, in the model units of `normalization`
    (fields float64 (n, D) stored units, NaN ignored; labels (n,)). The affine normalisations ('none',
    'minmax', 'range') keep std ratios, so stored units serve; 'robust' compresses the tails (asinh) and is
    applied first, with the statistics of these fields (as training computes them from its folder)."""
    if normalization == "robust":
        fields = normalize(fields, robust_normalization(fields)).astype(np.float64)
    std = np.nanstd(fields, axis=1)
    medians = [float(np.median(std[labels == k])) for k in range(num_class)]
    return [m / medians[0] for m in medians]


def strength_class(std: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """int64 like std: the number of thresholds strictly below each std (0 = weakest class)."""
    return np.searchsorted(np.asarray(thresholds), std, side="left").astype(np.int64)


def split_folders(data_dir: Path) -> list[Path]:
    """Sub-folders of data_dir holding HDF5 files, sorted."""
    return sorted(p for p in data_dir.iterdir() if p.is_dir()
                  and any(q.suffix.lower() in HDF5_EXTENSIONS for q in p.iterdir()))


def main(data_dir: str = "data/insar_mixture",  # folder whose split sub-folders (train/, val/, test/) hold HDF5 files
         key_data: str = "unwrap",  # HDF5 key of the fields (stored units)
         key_label: str = "strength",  # new HDF5 key written with the class of each field
         quantiles: list[float] = (0.9, 0.98),  # quantiles of the training fields' std that separate the classes
         train_split: str = "train",  # the sub-folder whose fields set the thresholds
         normalization: str = "robust",  # training's normalization, the units of the class_scale it reports
         overwrite: bool = False) -> dict:  # replace key_label where the files already hold it
    """Write the strength class of every field as `key_label`; return (and write) the summary."""
    root = Path(data_dir)
    q = np.asarray([float(v) for v in quantiles])
    if len(q) == 0 or not np.all((q > 0) & (q < 1)) or np.any(np.diff(q) <= 0):
        raise ValueError(f"quantiles={list(quantiles)}; expected increasing values strictly between 0 and 1")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization={normalization!r}; expected one of {NORMALIZATIONS}")
    train = root / train_split
    train_files = list_hdf5_files(train)
    splits = split_folders(root)
    files = {split.name: list_hdf5_files(split) for split in splits}
    for path in (p for group in files.values() for p in group):
        with h5py.File(path, "r") as f:
            if key_label in f and not overwrite:
                raise FileExistsError(f"HDF5 file {path!r} already holds key {key_label!r}; pass overwrite=True "
                                      "to replace it")
    train_fields = np.concatenate([read_fields(p, key_data) for p in train_files])
    train_std = np.nanstd(train_fields, axis=1)
    thresholds = np.quantile(train_std, q)
    if np.any(np.diff(thresholds) <= 0):
        raise ValueError(f"the training fields' std quantiles {list(q)} give thresholds {thresholds.tolist()}, not "
                         "increasing (many identical fields); choose fewer or wider-spaced quantiles")
    counts = {}
    for name, group in files.items():
        total = np.zeros(len(q) + 1, dtype=np.int64)
        for path in group:
            labels = strength_class(field_std(path, key_data), thresholds)
            with h5py.File(path, "a") as f:
                if key_label in f:
                    del f[key_label]
                f[key_label] = labels
            total += np.bincount(labels, minlength=len(q) + 1)
        counts[name] = total.tolist()
    train_class = strength_class(train_std, thresholds)
    summary = {"key_data": key_data, "key_label": key_label, "quantiles": q.tolist(), "train_split": train_split,
               "thresholds": thresholds.tolist(), "num_class": len(q) + 1, "counts": counts,
               "class_median_std": [float(np.median(train_std[train_class == k])) for k in range(len(q) + 1)],
               "normalization": normalization,
               # train.py's class_scale: each class reaches the network at the weakest class's median std
               "class_scale": class_scale(train_fields, train_class, len(q) + 1, normalization)}
    atomic_write_text(root / SUMMARY_NAME, json.dumps(summary, indent=1))
    print(f"[strength] thresholds of field std ({key_data}, stored units): "
          + ", ".join(f"{t:.4g}" for t in thresholds))
    for name, total in counts.items():
        print(f"[strength] {name}: fields per class {total}")
    print(f"[strength] wrote key {key_label!r} in {sum(len(g) for g in files.values())} files; train with "
          f"--class_cond --num_class {len(q) + 1} --key_class {key_label} (add it to list_keys_hdf5_original) "
          f"[--class_scale {','.join(f'{v:.4g}' for v in summary['class_scale'])}], sample with "
          "sample_class='proportional'")
    return summary


if __name__ == "__main__":
    run_cli(main)
