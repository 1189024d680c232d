"""MNIST as PNG folders ``{label}_{i:05d}.png`` from local IDX archive files.

Reads ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte`` (optionally ``.gz``) found anywhere under ``source_dir`` (the raw
archives, or a torchvision ``MNIST/raw`` folder). Downloads (through torchvision) only with
``download=True``. Writes ``{data_folder}/mnist_train/``, ``mnist_val/`` (a seeded random
``pct_val`` of the test set) and ``mnist_test/`` (the rest); images stay 28x28.
"""
from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from datasets.png_folders import locate_source, prepare_folders, val_split, write_labelled_pngs  # noqa: E402
from utils.cli import run_cli  # noqa: E402

FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
         "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzip) as a uint8 array: magic 0x0000 08 ndim, big-endian int32 dims, data."""
    with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
        raw = f.read()
    if raw[:3] != b"\x00\x00\x08":
        raise ValueError(f"file {str(path)!r} is not an unsigned-byte IDX file (header {raw[:4]!r})")
    ndim = raw[3]
    dims = np.frombuffer(raw[4:4 + 4 * ndim], dtype=">i4")
    return np.frombuffer(raw[4 + 4 * ndim:], dtype=np.uint8).reshape(dims)


def find_archives(source_dir: Path) -> dict[str, Path] | None:
    """Paths of the four IDX files under source_dir (plain preferred over .gz), or None if any is missing."""
    found = {}
    for key, name in FILES.items():
        hits = sorted(source_dir.rglob(name)) + sorted(source_dir.rglob(name + ".gz"))
        if not hits:
            return None
        found[key] = hits[0]
    return found


def _fetch(source: Path) -> None:
    from torchvision.datasets import MNIST
    for train in (True, False):
        MNIST(root=str(source), train=train, download=True)


def main(
        data_folder: str = "data/",  # where mnist_train/, mnist_val/ and mnist_test/ are written
        source_dir: str | None = None,  # folder searched recursively for the IDX files (None: data_folder)
        download: bool = False,  # download the archives with torchvision into source_dir when they are missing
        pct_val: float = 0.1,  # fraction of the test set moved to the validation folder (seeded random choice)
        seed: int = 0,  # seed of the validation split
        overwrite: bool = False,  # replace existing output folders
) -> None:
    """Write MNIST PNG folders (train / val / test) from local IDX files."""
    found = locate_source(Path(source_dir if source_dir is not None else data_folder), find_archives, download,
                          _fetch, f"some of the MNIST files {list(FILES.values())} (plain or .gz)")
    out = Path(data_folder)
    folders = [out / "mnist_train", out / "mnist_val", out / "mnist_test"]
    is_val = val_split(len(read_idx(found["test_labels"])), pct_val, seed)
    prepare_folders(folders, overwrite)
    train_x, train_y = read_idx(found["train_images"]), read_idx(found["train_labels"])
    test_x, test_y = read_idx(found["test_images"]), read_idx(found["test_labels"])
    write_labelled_pngs(train_x, [str(v) for v in train_y], folders[0], "mnist train")
    write_labelled_pngs(test_x[is_val], [str(v) for v in test_y[is_val]], folders[1], "mnist val")
    write_labelled_pngs(test_x[~is_val], [str(v) for v in test_y[~is_val]], folders[2], "mnist test")


if __name__ == "__main__":
    run_cli(main)
