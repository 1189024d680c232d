"""Symmetry augmentation (random flips and 90-degree rotations): the 8 transforms by hand, per-item draws that
depend on (seed, epoch, index) only, the mask transformed with the data, and an exact resume that reads the
option from metadata.json."""
import json

import h5py
import numpy as np
import torch

import train
from improved_diffusion.checkpoint import load_state_dict
from improved_diffusion.dataloaders import create_dataloader, dihedral, set_loader_epoch
from tests.test_train_loss_weighting import first_epoch_copy
from tests.test_train_script import image_folder

SQUARE = torch.tensor([[1, 2], [3, 4]])
BY_HAND = [[[1, 2], [3, 4]], [[2, 4], [1, 3]], [[4, 3], [2, 1]], [[3, 1], [4, 2]],  # rotations, counter-clockwise
           [[2, 1], [4, 3]], [[4, 2], [3, 1]], [[3, 4], [1, 2]], [[1, 3], [2, 4]]]  # then mirrored left-right


def test_the_eight_symmetries_of_the_square():
    for k, expected in enumerate(BY_HAND):
        assert dihedral(SQUARE, k).tolist() == expected, k


def _folder(path, n=64, size=4):
    path.mkdir()
    a = np.arange(n * size * size, dtype=np.float32).reshape(n, size, size)
    a[:, 0, 0] = np.nan  # one masked corner per field: the mask must turn with the data
    with h5py.File(path / "part0.hdf5", "w") as f:
        f["unwrap"] = a
    return a


def _epoch(loader, epoch):
    set_loader_epoch(loader, epoch)
    return [(x.clone(), cond["mask"].clone()) for x, cond in loader]


def test_items_are_transformed_per_seed_epoch_and_index(tmp_path):
    raw = _folder(tmp_path / "data")
    kw = dict(type_dataset="hdf5", image_size=4, num_channels=1, batch_size=8, nan_policy="fill",
              list_keys_hdf5_original=("unwrap",), symmetry_augment=True)
    loader, _ = create_dataloader(str(tmp_path / "data"), seed=1, **kw)
    first = _epoch(loader, 0)
    seen = set()
    for x, mask in first:
        for item, m in zip(x[:, 0], mask[:, 0]):
            finite = raw[int(item.flatten().nan_to_num(0).max()) // 16]  # values identify the field
            k = next(k for k in range(8) if torch.equal(dihedral(torch.from_numpy(np.nan_to_num(finite)), k), item))
            assert torch.equal(dihedral(torch.from_numpy(np.isfinite(finite).astype(np.float32)), k), m)
            seen.add(k)
    assert seen == set(range(8))  # 64 items: every transform drawn
    again, _ = create_dataloader(str(tmp_path / "data"), seed=1, num_workers=1, **kw)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, _epoch(again, 0)))  # same draws in a worker
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, _epoch(loader, 1)))


CONFIG = dict(image_size=32, num_input_channels=1, num_model_channels=32, num_res_blocks=1, attention_resolutions="8",
              diffusion_steps=4, noise_schedule="cosine", batch_size=4, num_epochs=2, ema_rate="0.9", grid_interval=0,
              seed=3, keep_checkpoints=None, amp="none")


def test_recorded_and_a_resume_without_the_keyword_is_bit_identical(tmp_path):
    data = image_folder(tmp_path / "data", n=8, size=32)
    straight = tmp_path / "straight"
    train.main(data_train_dir=data, url_folder_experiment=str(straight), symmetry_augment=True, **CONFIG)
    assert json.loads((straight / "metadata.json").read_text())["symmetry_augment"] is True
    resumed = first_epoch_copy(straight, tmp_path / "resumed")
    train.main(data_train_dir=data, resume_checkpoint=str(resumed / "model_epoch=0_iter=2.pt"), **CONFIG)
    a, b = (load_state_dict(folder / "model_epoch=1_iter=4.pt") for folder in (straight, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)
