"""One entry point for every training/validation loader: ``create_dataloader``.

Each batch is ``(x, cond)``: x float32 (N, C, H, W) in model units; cond may hold "y" int64
(N,), "low_res" float32 (N, C, h, w) (super-res mode) and "mask" float32 (N, C, H, W)
(1 = valid pixel, NaN-fill mode). The order of an epoch and its random crops are functions
of (seed, epoch) only (``set_loader_epoch``), with or without worker processes.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from improved_diffusion.class_scale import ClassScaled, check_per_class
from improved_diffusion.data_normalization import check_normalization, denormalize
from improved_diffusion.hdf5_datasets import Hdf5Dataset, hdf5_normalization, inspect_hdf5_folder
from improved_diffusion.image_datasets import (
    ImageDataset,
    check_image_files,
    image_normalization,
    list_image_files_recursively,
    resolve_class_labels,
)
from improved_diffusion.run_config import DataConfig
from improved_diffusion.script_util import check_image_sizes

__all__ = ["EpochBatchSampler", "create_dataloader", "create_run_loaders", "denormalize", "set_loader_epoch"]


class EpochBatchSampler(torch.utils.data.Sampler):
    """Lists of dataset indices, one list per batch; the order is a function of (seed, epoch).

    Distributed: like ``DistributedSampler``, the permutation is padded to a multiple of
    ``num_replicas`` and rank r takes every num_replicas-th index starting at r.
    ``item_weights`` (shuffled loaders): each epoch draws ``num_items`` indices with replacement, item i with
    probability item_weights[i] / sum(item_weights), instead of a permutation.
    """

    def __init__(self, num_items: int, batch_size: int, shuffle: bool = True, drop_last: bool = False,
                 seed: int = 0, num_replicas: int = 1, rank: int = 0, item_weights: np.ndarray | None = None):
        self.num_items, self.batch_size, self.shuffle, self.drop_last = num_items, batch_size, shuffle, drop_last
        self.seed, self.num_replicas, self.rank, self.epoch = seed, num_replicas, rank, 0
        self.p = None if item_weights is None else np.asarray(item_weights, np.float64) / np.sum(item_weights)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _indices(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        if not self.shuffle:
            order = np.arange(self.num_items)
        elif self.p is None:
            order = rng.permutation(self.num_items)
        else:
            order = rng.choice(self.num_items, size=self.num_items, replace=True, p=self.p)
        per_rank = -(-self.num_items // self.num_replicas)
        order = np.resize(order, per_rank * self.num_replicas)
        return order[self.rank::self.num_replicas]

    def __len__(self) -> int:
        per_rank = -(-self.num_items // self.num_replicas)
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)

    def __iter__(self):
        idx = self._indices()
        for b in range(len(self)):
            yield idx[b * self.batch_size:(b + 1) * self.batch_size].tolist()


class DihedralAugmented(torch.utils.data.Dataset):
    """``dataset`` (batches ``dataset[indices] -> (x, cond)``) with each item flipped and rotated by one of the 8
    symmetries of the square, for data declared isotropic. Item ``index`` of epoch e takes
    k = ``np.random.default_rng([seed, e, index, 8]).integers(8)``: rotation by 90 * (k % 4) degrees (``torch.rot90``
    over H, W), then a flip of W when k >= 4; ``cond["mask"]`` likewise. Indices are read in sorted order (the
    order the HDF5 reader returns), so the transform of each item is a function of (seed, epoch, index) only."""

    def __init__(self, dataset: torch.utils.data.Dataset, seed: int):
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.dataset.set_epoch(epoch)

    def __getitem__(self, indices: list[int]) -> tuple[torch.Tensor, dict]:
        idx = np.sort(np.asarray(indices, dtype=np.int64))
        x, cond = self.dataset[idx.tolist()]
        ks = [int(np.random.default_rng([self.seed, self.epoch, int(i), 8]).integers(8)) for i in idx]
        turn = lambda a: torch.stack([dihedral(item, k) for item, k in zip(a, ks)])  # noqa: E731
        return turn(x), {**cond, **({"mask": turn(cond["mask"])} if "mask" in cond else {})}


def dihedral(a: torch.Tensor, k: int) -> torch.Tensor:
    """Symmetry k in 0..7 of the square applied to the last two axes of ``a``: rotation by 90 * (k % 4)
    degrees, then a flip of the last axis when k >= 4."""
    a = torch.rot90(a, k % 4, dims=(-2, -1))
    return torch.flip(a, dims=(-1,)) if k >= 4 else a


class ResolutionTransform:
    """Collate step of the low-res / super-res modes (area downscaling, in model units).

    ``size_out``: area-downscale x (and a mask, keeping pixels whose whole footprint is valid)
    to this size (low-res mode); ``size_lr``: add cond["low_res"] = x area-downscaled to it.
    """

    def __init__(self, size_out: int | None = None, size_lr: int | None = None):
        self.size_out, self.size_lr = size_out, size_lr

    def __call__(self, batch: tuple[torch.Tensor, dict]) -> tuple[torch.Tensor, dict]:
        x, cond = batch
        if self.size_out is not None:
            x = F.interpolate(x, size=self.size_out, mode="area")
            if "mask" in cond:
                cond["mask"] = (F.interpolate(cond["mask"], size=self.size_out, mode="area") > 1 - 1e-6).float()
        if self.size_lr is not None:
            cond["low_res"] = F.interpolate(x, size=self.size_lr, mode="area")
        return x, cond


def _image_dataset(data_dir, num_channels, read_size, class_cond, num_class, class_names, norm_stats,
                   crop, db, seed, normalization="none", norm_range=None, db_quantity="power"):
    if num_channels not in (1, 3):
        raise ValueError(f"num_channels={num_channels}; expected 1 or 3 for image folders")
    files = list_image_files_recursively(data_dir)
    labels = None
    if class_cond:
        class_names, labels = resolve_class_labels(files, class_names, num_class)
    depth = check_image_files(files)  # unreadable, truncated or mixed-depth files: refused before training writes
    norm = (check_normalization(norm_stats) if norm_stats is not None
            else image_normalization(files, num_channels, db, depth=depth, normalization=normalization,
                                     norm_range=norm_range, db_quantity=db_quantity))
    dataset = ImageDataset(files, norm, read_size, num_channels, labels=labels, crop=crop, seed=seed)
    info = {"class_names": class_names if class_cond else None, "data_normalization": norm}
    return dataset, {**info, **_class_counts(labels if class_cond else None, class_names)}


def _class_counts(labels: np.ndarray | None, class_names: list | None) -> dict:
    """{"class_counts": examples per class (list of int, in class order)} of a class-conditional training set
    (recorded in metadata.json, so samples can be drawn at the training proportions); {} without labels."""
    if labels is None:
        return {}
    return {"class_counts": np.bincount(np.asarray(labels, np.int64), minlength=len(class_names)).tolist()}


def _hdf5_class_names(labels: np.ndarray, num_class: int | None, class_names: list | None, folder) -> list[str]:
    top = int(labels.max()) + 1 if labels.size else 0
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        if num_class is not None and num_class != len(class_names):
            raise ValueError(f"num_class={num_class} but class_names has {len(class_names)} entries: {class_names}")
    else:
        class_names = [str(i) for i in range(num_class if num_class is not None else top)]
    if top > len(class_names):
        raise ValueError(f"HDF5 labels of {str(folder)!r} go up to {top - 1}; expected labels in "
                         f"0..{len(class_names) - 1} for num_class={len(class_names)}")
    return class_names


def _hdf5_dataset(data_dir, num_channels, read_size, class_cond, num_class, class_names, norm_stats, keys,
                  key_data, key_other, key_class, normalization, norm_range, nan_policy, phase_as_cos_sin):
    if class_cond and key_class is None:
        raise ValueError("class_cond=True with type_dataset='hdf5' needs key_class (the HDF5 key of the labels)")
    inv = inspect_hdf5_folder(data_dir, read_size, keys, key_data, key_other, key_class if class_cond else None)
    expected = inv.channels * (2 if phase_as_cos_sin else 1)
    if num_channels != expected:
        raise ValueError(f"num_channels={num_channels} but key {key_data!r} of {str(data_dir)!r} has "
                         f"{inv.channels} channel(s){' (x2 for cos/sin)' if phase_as_cos_sin else ''}; "
                         f"expected num_channels={expected}")
    if class_cond:
        class_names = _hdf5_class_names(inv.labels, num_class, class_names, data_dir)
    norm = (check_normalization(norm_stats) if norm_stats is not None else
            hdf5_normalization(inv, key_data, normalization, norm_range, nan_policy, phase_as_cos_sin))
    dataset = Hdf5Dataset(inv, key_data, norm, nan_policy=nan_policy, use_labels=class_cond)
    info = {"class_names": class_names if class_cond else None, "data_normalization": norm,
            "hdf5_keys": {"list_keys_hdf5_original": None if keys is None else list(keys), "key_data": key_data,
                          "key_other": key_other, "key_class": key_class}, "nan_policy": nan_policy}
    return dataset, {**info, **_class_counts(inv.labels if class_cond else None, class_names)}


def create_dataloader(data_dir: str, *, type_dataset: str = "image", image_size: int, num_channels: int,
                      batch_size: int, class_cond: bool = False, num_class: int | None = None,
                      class_names: list[str] | None = None, crop: bool = False, image_size_hr: int | None = None,
                      image_size_lr: int | None = None,
                      list_keys_hdf5_original: tuple[str, ...] | None = ("wrap", "unwrap"), key_data: str = "unwrap",
                      key_other: str | None = None, key_class: str | None = None, normalization: str = "none",
                      norm_range: tuple[float, float] | None = None, norm_stats: dict | None = None,
                      nan_policy: str = "error", phase_as_cos_sin: bool = False, db: bool = False,
                      db_quantity: str = "power",
                      deterministic: bool = False, drop_last: bool = False, num_workers: int = 0, seed: int = 0,
                      distributed: bool = False, device: str | torch.device = "cpu", symmetry_augment: bool = False,
                      class_scale: tuple[float, ...] | None = None, class_weights: tuple[float, ...] | None = None
                      ) -> tuple[torch.utils.data.DataLoader, dict]:
    """Loader over an image or HDF5 folder and the ``data_info`` to store in ``metadata.json``.

    image_size: size of x; ``image_size_hr`` (low-res mode): read at this size, then x is
    area-downscaled to image_size; ``image_size_lr`` (super-res mode): cond["low_res"] at this
    size. ``class_names`` / ``norm_stats`` (a ``data_normalization`` dict) from a training run
    are reused instead of recomputed. ``normalization`` / ``norm_range`` apply to image folders too
    ("robust", "range"; "none" / "minmax" keep the 8-bit or dataset-range default); ``db`` with ``db_quantity``
    ("power": 10 log10, "amplitude": 20 log10) for image folders. ``deterministic``: no shuffling. ``data_info`` holds
    ``class_names`` (list or None), ``data_normalization`` and, per mode, ``image_size_hr`` /
    ``image_size_lr`` / ``hdf5_keys`` / ``nan_policy``. ``list_keys_hdf5_original=None``: any HDF5 key is allowed.
    ``symmetry_augment``: random flips and 90-degree rotations of each item (``DihedralAugmented``).
    ``class_scale`` (class_cond): x is divided by the scale of its class, in network units (``ClassScaled``).
    ``class_weights`` (class_cond, shuffled): an item of class k is drawn with probability proportional to
    class_weights[k] (with replacement, as many draws per epoch as items; ``EpochBatchSampler``).
    """
    if type_dataset not in ("image", "hdf5"):
        raise ValueError(f"type_dataset={type_dataset!r}; expected 'image' or 'hdf5'")
    for name, value in (("image_size", image_size), ("num_channels", num_channels), ("batch_size", batch_size)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}={value!r}; expected a positive int")
    if num_workers < 0:
        raise ValueError(f"num_workers={num_workers}; expected >= 0")
    check_image_sizes(image_size, image_size_hr, image_size_lr)
    read_size = image_size_hr or image_size
    if type_dataset == "image":
        dataset, info = _image_dataset(data_dir, num_channels, read_size, class_cond, num_class, class_names,
                                       norm_stats, crop, db, seed, normalization, norm_range, db_quantity)
    else:
        dataset, info = _hdf5_dataset(data_dir, num_channels, read_size, class_cond, num_class, class_names,
                                      norm_stats, None if list_keys_hdf5_original is None else
                                      tuple(list_keys_hdf5_original), key_data, key_other, key_class,
                                      normalization, norm_range, nan_policy, phase_as_cos_sin)
    labels = dataset.labels if class_cond else None
    for name, value in (("class_scale", class_scale), ("class_weights", class_weights)):
        if value is not None:
            if not class_cond:
                raise ValueError(f"{name} needs class_cond=True (one value per class label)")
            check_per_class(value, len(info["class_names"]), name)
    if class_scale is not None:
        dataset = ClassScaled(dataset, class_scale)
    item_weights = None if class_weights is None or deterministic else np.asarray(class_weights)[labels]
    if symmetry_augment:
        dataset = DihedralAugmented(dataset, seed)
    if image_size_hr is not None:
        info["image_size_hr"] = image_size_hr
    if image_size_lr is not None:
        info["image_size_lr"] = image_size_lr
    replicas, rank = ((torch.distributed.get_world_size(), torch.distributed.get_rank()) if distributed else (1, 0))
    sampler = EpochBatchSampler(len(dataset), batch_size, shuffle=not deterministic, drop_last=drop_last,
                                seed=seed, num_replicas=replicas, rank=rank, item_weights=item_weights)
    loader = torch.utils.data.DataLoader(
        dataset, sampler=sampler, batch_size=None, num_workers=num_workers,
        collate_fn=ResolutionTransform(image_size if image_size_hr else None, image_size_lr),
        pin_memory=torch.device(device).type == "cuda", persistent_workers=False)
    return loader, info


def set_loader_epoch(loader: torch.utils.data.DataLoader, epoch: int) -> None:
    """Fix the order and per-item randomness of the next pass over ``loader`` to (seed, epoch)."""
    loader.sampler.set_epoch(epoch)
    loader.dataset.set_epoch(epoch)


def create_run_loaders(config: DataConfig, distributed: bool = False, device: str | torch.device = "cpu"
                       ) -> tuple[torch.utils.data.DataLoader, torch.utils.data.DataLoader | None, dict]:
    """(training loader, validation loader or None, data_info) of a run's data group. The validation loader
    (in file order) reuses the class names and normalisation found for the training folder."""
    loader_keys = {k: v for k, v in vars(config).items() if k not in ("data_train_dir", "data_val_dir")}
    train, info = create_dataloader(config.data_train_dir, distributed=distributed, device=device, **loader_keys)
    if config.data_val_dir is None:
        return train, None, info
    loader_keys.update(class_names=info.get("class_names"), norm_stats=info["data_normalization"],
                       symmetry_augment=False, class_weights=None)  # validation sees the data as they are
    val, _ = create_dataloader(config.data_val_dir, deterministic=True, distributed=distributed, device=device,
                               **loader_keys)
    return train, val, info
