"""Train the classifiers whose features the evaluation uses (VGG16, InceptionV3, DomainCNN).

Images come from a class-labelled folder (class = file name up to the first ``_``), are read
as diffusion training reads them (``improved_diffusion/image_datasets.py``: same files, classes,
``data_normalization`` and resizing) and then go through
:func:`utils.evaluation.features.prepare_input`, the same transform the feature extractor
applies, so training and extraction see identical inputs.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from improved_diffusion.data_normalization import check_normalization
from improved_diffusion.file_io import atomic_write_text
from improved_diffusion.image_datasets import (
    ImageDataset,
    image_normalization,
    list_image_files_recursively,
    resolve_class_labels,
)
from utils.evaluation.features import head_of, prepare_input

BEST_NAME = "classifier_best.pt"


class LabelledImageFiles(Dataset):
    """Image files with integer labels -> ((C, S, S) float32 in model units, int64 label).

    Files are read as training reads them (``ImageDataset``: stored values -> model units by
    ``norm``, resized as in training to ``load_size``; None: native size); ``crop`` takes an
    S x S crop, random when ``random_crop`` (training) else centred (validation).
    """

    def __init__(self, files: list[str], labels: list[int], num_channels: int, norm: dict,
                 load_size: int | None, crop: int | None, random_crop: bool):
        self.files, self.labels = files, labels
        self.reader = ImageDataset(files, norm, load_size, num_channels)
        self.crop, self.random_crop = crop, random_crop

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = torch.from_numpy(self.reader.load(i))
        if self.crop is not None:
            h, w = img.shape[1:]
            if h < self.crop or w < self.crop:
                raise ValueError(f"image_size={self.crop}: {self.files[i]} is only {h}x{w} px")
            if self.random_crop:
                top = int(torch.randint(0, h - self.crop + 1, ()))
                left = int(torch.randint(0, w - self.crop + 1, ()))
            else:
                top, left = (h - self.crop) // 2, (w - self.crop) // 2
            img = img[:, top:top + self.crop, left:left + self.crop]
        return img.contiguous(), self.labels[i]


def _list_files(name: str, folder: str | Path) -> list[str]:
    try:
        return list_image_files_recursively(folder)
    except (FileNotFoundError, ValueError) as err:
        raise ValueError(f"{name}={str(folder)!r}: {err}") from err


def labelled_datasets(train_dir: str | Path, val_dir: str | Path, num_channels: int, image_size: int,
                      crop: bool, data_normalization: dict | None = None
                      ) -> tuple[LabelledImageFiles, LabelledImageFiles, list[str]]:
    """Training / validation datasets and the sorted class names (from the training folder).

    ``data_normalization``: stored values -> model units (a training ``metadata.json`` entry);
    None: the one diffusion training computes for ``train_dir`` (0..255 for 8-bit files)."""
    train_files, val_files = _list_files("data_train_dir", train_dir), _list_files("data_val_dir", val_dir)
    class_names, train_labels = resolve_class_labels(train_files)
    try:
        _, val_labels = resolve_class_labels(val_files, class_names)
    except ValueError as err:
        raise ValueError(f"data_val_dir={str(val_dir)!r}: {err}") from err
    if len(class_names) < 2:
        raise ValueError(f"data_train_dir={str(train_dir)!r}: {len(class_names)} class found, need at least 2")
    norm = (check_normalization(data_normalization) if data_normalization is not None
            else image_normalization(train_files, num_channels))

    def make(files, labels, random_crop):
        return LabelledImageFiles(files, labels.tolist(), num_channels, norm, None if crop else image_size,
                                  image_size if crop else None, random_crop)
    return make(train_files, train_labels, True), make(val_files, val_labels, False), class_names


def set_trainable(model: nn.Module, arch: str, train_all_layers: bool) -> list[nn.Parameter]:
    """Freeze all but the final linear layer unless ``train_all_layers``; return trainable params."""
    for p in model.parameters():
        p.requires_grad_(train_all_layers)
    for p in head_of(model, arch).parameters():
        p.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


@torch.no_grad()
def evaluate(model: nn.Module, arch: str, loader: DataLoader, device: str, resize_to: int) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a loader, model in eval mode (restored afterwards)."""
    was_training = model.training
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(prepare_input(x, arch, resize_to))
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        count += len(y)
    model.train(was_training)
    return loss_sum / count, correct / count


def save_classifier(path: str | Path, model: nn.Module, meta: dict) -> Path:
    """Write ``{"state_dict", **meta}`` (tensors and JSON-like values only, loadable with
    ``torch.load(weights_only=True)``) atomically to ``path``."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, **meta}, tmp)
    tmp.replace(path)
    return path


def train_classifier(model: nn.Module, arch: str, train_set: Dataset, val_set: Dataset, out_folder: Path, *,
                     meta: dict, num_epochs: int, lr: float, batch_size: int, train_all_layers: bool,
                     resize_to: int, device: str, num_workers: int, seed: int) -> dict:
    """Adam + cross-entropy, LR halved when the validation loss plateaus (5 epochs); the
    checkpoint with the best validation accuracy is kept as ``classifier_best.pt``.
    Logs ``Loss/{train,val}`` and ``Accuracy/{train,val}`` to tensorboard under ``out_folder``.
    Returns ``{"best_path", "best_val_accuracy", "best_epoch", "history"}``."""
    gen = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=gen,
                              drop_last=len(train_set) > batch_size, num_workers=num_workers)
    val_loader = DataLoader(val_set, batch_size=batch_size, num_workers=num_workers)
    model.to(device)
    params = set_trainable(model, arch, train_all_layers)
    optimizer = torch.optim.Adam(params, lr=lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=5, min_lr=1e-9)
    best = {"best_path": str(out_folder / BEST_NAME), "best_val_accuracy": -1.0, "best_epoch": -1, "history": []}
    with SummaryWriter(str(out_folder / "tensorboard")) as writer:
        for epoch in range(num_epochs):
            model.train()
            loss_sum, correct, count = 0.0, 0, 0
            for x, y in tqdm(train_loader, desc=f"epoch {epoch}", leave=False):
                x, y = x.to(device), y.to(device)
                logits = model(prepare_input(x, arch, resize_to))
                loss = F.cross_entropy(logits, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.item() * len(y)
                correct += (logits.argmax(1) == y).sum().item()
                count += len(y)
            val_loss, val_acc = evaluate(model, arch, val_loader, device, resize_to)
            scheduler.step(val_loss)
            row = {"epoch": epoch, "train_loss": loss_sum / count, "train_accuracy": correct / count,
                   "val_loss": val_loss, "val_accuracy": val_acc, "lr": optimizer.param_groups[0]["lr"]}
            best["history"].append(row)
            for tag, key in (("Loss/train", "train_loss"), ("Loss/val", "val_loss"),
                             ("Accuracy/train", "train_accuracy"), ("Accuracy/val", "val_accuracy")):
                writer.add_scalar(tag, row[key], epoch)
            if val_acc > best["best_val_accuracy"]:
                best.update(best_val_accuracy=val_acc, best_epoch=epoch)
                save_classifier(out_folder / BEST_NAME, model, {**meta, "epoch": epoch, "val_accuracy": val_acc})
    atomic_write_text(out_folder / "history.json", json.dumps(best["history"], indent=1))
    return best

