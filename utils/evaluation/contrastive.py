"""Self-supervised training of the domain feature extractor on unlabelled images (SimCLR).

SimCLR (Chen et al. 2020): two random views of every image go through the :class:`DomainCNN`
and its linear head (the projection); the NT-Xent loss (their eq. 1) pulls the two views of an
image together and pushes the other images of the batch away. The views change only what must
not matter for radar fields: a random square crop (no resizing, so no change of the spatial
scale), one of the 8 symmetries of the square (90-degree rotations and a flip); never the
values themselves (no intensity, contrast or noise augmentation). The features used by the
metrics are the pooled representation before the head (:meth:`DomainCNN.features`), as in SimCLR.

Entry: ``python example_fine_tuning.py --out_folder ... --unlabelled_data ...`` (see there).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from improved_diffusion.file_io import atomic_write_text
from utils.evaluation.features import DomainCNN
from utils.evaluation.fine_tuning import BEST_NAME, save_classifier


def random_views(x: torch.Tensor, crop: int, generator: torch.Generator) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, crop, crop): per image a random crop, then rot90^k (k in 0..3) and
    a random horizontal flip; pixel values are only moved, never changed."""
    b, _, h, w = x.shape
    if not 1 <= crop <= min(h, w):
        raise ValueError(f"crop={crop!r} px: expected 1 .. {min(h, w)} for {h}x{w} images")
    tops = torch.randint(0, h - crop + 1, (b,), generator=generator).tolist()
    lefts = torch.randint(0, w - crop + 1, (b,), generator=generator).tolist()
    turns = torch.randint(0, 4, (b,), generator=generator).tolist()
    flips = torch.randint(0, 2, (b,), generator=generator).tolist()
    views = []
    for img, top, left, k, flip in zip(x, tops, lefts, turns, flips):
        view = torch.rot90(img[:, top:top + crop, left:left + crop], k, dims=(1, 2))
        views.append(view.flip(-1) if flip else view)
    return torch.stack(views)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent loss (Chen et al. 2020, eq. 1) of two (B, P) projections of the same B images:
    mean over the 2B views of -log softmax of the cosine similarity to the positive / temperature."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(len(z), dtype=torch.bool, device=z.device), float("-inf"))
    b = len(z1)
    positives = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
    return F.cross_entropy(sim, positives)


def _epoch_loss(model: DomainCNN, images: torch.Tensor, order: torch.Tensor, crop: int, batch_size: int,
                temperature: float, generator: torch.Generator, optimizer: torch.optim.Optimizer | None) -> float:
    """Mean NT-Xent over the batches of ``images[order]``; one optimisation step per batch when ``optimizer``."""
    total, count = 0.0, 0
    for start in range(0, len(order), batch_size):
        batch = images[order[start:start + batch_size]]
        if len(batch) < 2:
            continue
        with torch.set_grad_enabled(optimizer is not None):
            loss = nt_xent(model(random_views(batch, crop, generator)), model(random_views(batch, crop, generator)),
                           temperature)
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        total += loss.item() * len(batch)
        count += len(batch)
    return total / count


def train_contrastive(images: np.ndarray, out_folder: str | Path, *, val_images: np.ndarray | None = None,
                      meta: dict, width: int = 8, projection_dim: int = 64, crop_fraction: float = 0.75,
                      temperature: float = 0.5, num_epochs: int = 20, batch_size: int = 64, lr: float = 1e-3,
                      seed: int = 0, device: str = "cpu") -> dict:
    """Train a :class:`DomainCNN` with SimCLR on NHWC float images (model units) and save it.

    ``width`` 8 gives 64 features: few enough for FID and its interval to behave with a few hundred
    samples (the interval needs N of about 8 D or more, see :func:`utils.evaluation.fid.fid_from_features`).
    Adam, ``num_epochs`` passes over ``images``; the crop side is ``round(crop_fraction * min(H, W))``
    px. With ``val_images`` the checkpoint with the lowest validation NT-Xent (fixed views) is kept,
    otherwise the last. Writes ``{out_folder}/classifier_best.pt`` (loadable by
    :func:`utils.evaluation.features.load_extractor`, head = projection) and ``history.json``.
    Returns ``{"best_path", "best_epoch", "best_loss", "history"}``.
    """
    if images.ndim != 4 or len(images) < 2:
        raise ValueError(f"unlabelled images: shape {images.shape}, expected NHWC with at least 2 images")
    if not 0 < crop_fraction <= 1 or temperature <= 0:
        raise ValueError(f"crop_fraction={crop_fraction!r}, temperature={temperature!r}: expected a fraction "
                         "in (0, 1] and a positive temperature")
    out = Path(out_folder)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    train_x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).permute(0, 3, 1, 2).to(device)
    val_x = None if val_images is None else torch.from_numpy(
        np.ascontiguousarray(val_images, dtype=np.float32)).permute(0, 3, 1, 2).to(device)
    crop = max(1, round(crop_fraction * min(images.shape[1:3])))
    model = DomainCNN(images.shape[-1], projection_dim, width).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    training = (f"simclr(width={width}, projection_dim={projection_dim}, crop={crop}px, "
                f"temperature={temperature}, epochs={num_epochs}, seed={seed})")
    best = {"best_path": str(out / BEST_NAME), "best_epoch": -1, "best_loss": float("inf"), "history": []}
    for epoch in tqdm(range(num_epochs), desc="contrastive", leave=False):
        model.train()
        row = {"epoch": epoch, "train_loss": _epoch_loss(model, train_x, torch.randperm(len(train_x), generator=gen),
                                                         crop, batch_size, temperature, gen, optimizer)}
        if val_x is not None:
            model.eval()
            row["val_loss"] = _epoch_loss(model, val_x, torch.arange(len(val_x)), crop, batch_size, temperature,
                                          torch.Generator().manual_seed(seed), None)
        best["history"].append(row)
        loss = row.get("val_loss", row["train_loss"])
        if val_x is None or loss < best["best_loss"]:
            best.update(best_epoch=epoch, best_loss=loss)
            save_classifier(out / BEST_NAME, model, {**meta, "num_classes": projection_dim, "class_names": [],
                                                     "training": training, "epoch": epoch, "loss": loss})
    atomic_write_text(out / "history.json", json.dumps(best["history"], indent=1))
    return best
