"""datasets/strength_labels.py: strength classes from the training fields' std, written as a loader-readable label."""
import json

import h5py
import numpy as np
import pytest

from datasets import strength_labels
from improved_diffusion.hdf5_datasets import inspect_hdf5_folder

SIZE = 8


def checkerboard(std: float, missing: bool = False) -> np.ndarray:
    """A +-std checkerboard: standard deviation exactly `std`; `missing` blanks one + and one - pixel (NaN), which
    keeps it exact."""
    field = std * np.where(np.add.outer(np.arange(SIZE), np.arange(SIZE)) % 2 == 0, 1.0, -1.0)
    if missing:
        field[0, :2] = np.nan
    return field.astype(np.float32)


def write(path, stds, missing=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f["unwrap"] = np.stack([checkerboard(s, missing) for s in stds])


def test_classes_follow_the_training_quantiles(tmp_path):
    # train stds 1..10: the 0.5 and 0.8 quantiles are 5.5 and 8.2 (linear interpolation)
    write(tmp_path / "train" / "train_000.h5", [1, 2, 3, 4, 5])
    write(tmp_path / "train" / "train_001.h5", [6, 7, 8, 9, 10], missing=True)
    write(tmp_path / "test" / "test_000.h5", [5.4, 5.6, 8.1, 8.3, 100], missing=True)
    summary = strength_labels.main(data_dir=str(tmp_path), quantiles=[0.5, 0.8])
    assert summary["thresholds"] == pytest.approx([5.5, 8.2])
    assert summary["counts"] == {"test": [1, 2, 2], "train": [5, 3, 2]}
    with h5py.File(tmp_path / "test" / "test_000.h5") as f:
        assert f["strength"][()].tolist() == [0, 1, 1, 2, 2]
    assert json.loads((tmp_path / strength_labels.SUMMARY_NAME).read_text()) == summary
    # the loaders read the label as a class key
    inv = inspect_hdf5_folder(tmp_path / "train", SIZE, ("unwrap", "strength"), "unwrap", key_class="strength")
    assert np.bincount(inv.labels).tolist() == [5, 3, 2]


def test_existing_label_is_kept_without_overwrite(tmp_path):
    write(tmp_path / "train" / "a.h5", [1, 2, 3, 4])
    strength_labels.main(data_dir=str(tmp_path), quantiles=[0.5])
    with h5py.File(tmp_path / "train" / "a.h5", "a") as f:
        f["strength"][0] = 7  # a mark that a second run must not erase
    with pytest.raises(FileExistsError, match="overwrite=True"):
        strength_labels.main(data_dir=str(tmp_path), quantiles=[0.25])
    with h5py.File(tmp_path / "train" / "a.h5") as f:
        assert f["strength"][()].tolist() == [7, 0, 1, 1]
    strength_labels.main(data_dir=str(tmp_path), quantiles=[0.25], overwrite=True)
    with h5py.File(tmp_path / "train" / "a.h5") as f:
        assert f["strength"][()].tolist() == [0, 1, 1, 1]


@pytest.mark.parametrize("kwargs, message", [({"quantiles": [0.9, 0.5]}, "increasing"),
                                             ({"quantiles": [1.0]}, "strictly between"),
                                             ({"key_data": "wrap"}, "no key key_data='wrap'")])
def test_bad_options_write_nothing(tmp_path, kwargs, message):
    write(tmp_path / "train" / "a.h5", [1, 2, 3, 4])
    with pytest.raises(ValueError, match=message):
        strength_labels.main(data_dir=str(tmp_path), **kwargs)
    with h5py.File(tmp_path / "train" / "a.h5") as f:
        assert list(f.keys()) == ["unwrap"]
    assert not (tmp_path / strength_labels.SUMMARY_NAME).exists()
