"""CIFAR-10 as PNG folders ``{class}_{i:05d}.png`` from the local python-version archive.

Reads ``cifar-10-python.tar.gz`` or its extracted ``cifar-10-batches-py/`` folder (the
torchvision layout) found under ``source_dir``. The batches are pickles; they are read with an
unpickler that only accepts the numpy types they contain. Downloads (through torchvision) only
with ``download=True``. Class words as the original: plane, car, bird, cat, deer, dog, frog,
horse, ship, truck (so class indices are alphabetical). Writes ``{data_folder}/cifar_train/``,
``cifar_val/`` (a seeded random ``pct_val`` of the test set) and ``cifar_test/``.
"""
from __future__ import annotations

import io
import pickle
import sys
import tarfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from datasets.png_folders import locate_source, prepare_folders, val_split, write_labelled_pngs  # noqa: E402
from utils.cli import run_cli  # noqa: E402

CLASS_WORDS = ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
ARCHIVE, FOLDER = "cifar-10-python.tar.gz", "cifar-10-batches-py"
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype")}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise ValueError(f"CIFAR batch refers to {module}.{name}; expected only numpy array types")
        return super().find_class(module, name)


def read_batch(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch -> images (N, 32, 32, 3) uint8 and labels (N,) int64."""
    d = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    if b"data" not in d or b"labels" not in d:
        raise ValueError(f"CIFAR batch {name!r} has keys {sorted(d)}; expected b'data' and b'labels'")
    x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return x, np.asarray(d[b"labels"], dtype=np.int64)


def load_batches(source: Path) -> dict[str, bytes] | None:
    """Raw bytes of the 6 batches from the extracted folder or the archive under source, or None."""
    names = TRAIN_BATCHES + ("test_batch",)
    for folder in sorted(source.rglob(FOLDER)):
        if all((folder / n).is_file() for n in names):
            return {n: (folder / n).read_bytes() for n in names}
    for archive in sorted(source.rglob(ARCHIVE)):
        with tarfile.open(archive, "r:gz") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            if all(n in members for n in names):
                return {n: tar.extractfile(members[n]).read() for n in names}
    return None


def _fetch(source: Path) -> None:
    from torchvision.datasets import CIFAR10
    CIFAR10(root=str(source), download=True)


def main(
        data_folder: str = "data/",  # where cifar_train/, cifar_val/ and cifar_test/ are written
        source_dir: str | None = None,  # folder searched for the archive or its folder (None: data_folder)
        download: bool = False,  # download the archive with torchvision into source_dir when it is missing
        pct_val: float = 0.1,  # fraction of the test set moved to the validation folder (seeded random choice)
        seed: int = 0,  # seed of the validation split
        overwrite: bool = False,  # replace existing output folders
) -> None:
    """Write CIFAR-10 PNG folders (train / val / test) from the local archive."""
    batches = locate_source(Path(source_dir if source_dir is not None else data_folder), load_batches, download,
                            _fetch, f"{ARCHIVE} or {FOLDER}/ with the 6 batches")
    train = [read_batch(batches[n], n) for n in TRAIN_BATCHES]
    train_x, train_y = np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train])
    test_x, test_y = read_batch(batches["test_batch"], "test_batch")
    is_val = val_split(len(test_y), pct_val, seed)
    out = Path(data_folder)
    folders = [out / "cifar_train", out / "cifar_val", out / "cifar_test"]
    prepare_folders(folders, overwrite)
    for folder, x, y, desc in ((folders[0], train_x, train_y, "cifar train"),
                               (folders[1], test_x[is_val], test_y[is_val], "cifar val"),
                               (folders[2], test_x[~is_val], test_y[~is_val], "cifar test")):
        write_labelled_pngs(x, [CLASS_WORDS[v] for v in y], folder, desc)


if __name__ == "__main__":
    run_cli(main)
