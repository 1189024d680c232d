"""The original ``utils/utils_FID.py`` function names, on this project's FID (``utils/evaluation/fid.py``).

For sets on disk prefer ``python utils_FID.py`` (a report with sample counts and a bootstrap
interval); these names keep scripts written for the original working. Differences
(docs/migrating.md): spatial feature maps are averaged, not summed; the real-feature cache holds
the features with their count and is refused, not silently reused, when that count differs.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch

from improved_diffusion.file_io import atomic_write
from utils.evaluation.fid import feature_statistics, frechet_distance

get_frechet_distance = frechet_distance  # (mu1, sigma1, mu2, sigma2) -> float; no eps needed


@torch.no_grad()
def loader_features(dataloader, num_channels: int, model: torch.nn.Module, num_samples: int) -> np.ndarray:
    """(num_samples, D) float64 features of the first batches of ``dataloader``.

    Batches are NCHW tensors in model units, or ``(x, cond)`` pairs as the training loaders yield;
    ``model`` maps them to (N, D) or (N, D, h, w) features (the latter averaged over h, w)."""
    model.eval()
    parts, count = [], 0
    for batch in dataloader:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if x.ndim != 4 or x.shape[1] != num_channels:
            raise ValueError(f"loader batch of shape {tuple(x.shape)}; expected (N, {num_channels}, H, W)")
        feats = model(x.float())
        feats = feats.mean(dim=tuple(range(2, feats.ndim))) if feats.ndim > 2 else feats
        parts.append(feats.double().cpu().numpy())
        count += len(x)
        if count >= num_samples:
            break
    if count < num_samples:
        raise ValueError(f"num_samples={num_samples}: the loader gave only {count} examples")
    return np.concatenate(parts)[:num_samples]


def cached_features(path: str | Path | None, dataloader, num_channels: int, model: torch.nn.Module,
                    num_samples: int) -> np.ndarray:
    """``loader_features``, read from / written to the HDF5 file ``path`` (dataset ``features``) when given."""
    if path is not None and Path(path).is_file():
        with h5py.File(path, "r") as f:
            if "features" not in f or len(f["features"]) != num_samples:
                raise ValueError(f"{path}: holds no 'features' for num_samples={num_samples} (an original-code "
                                 "cache or another count); delete it or pass another path")
            return f["features"][()]
    feats = loader_features(dataloader, num_channels, model, num_samples)
    if path is not None:
        def write(tmp):
            with h5py.File(tmp, "w") as f:
                f["features"] = feats
        atomic_write(path, write)
    return feats


def get_mu_sigma(dataloader, num_channels: int, model: torch.nn.Module, num_samples: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of the features of the first ``num_samples`` examples."""
    return feature_statistics(loader_features(dataloader, num_channels, model, num_samples))


def get_fid(loader_real, loader_gen, num_channels: int, model: torch.nn.Module,
            url_save_real_feature_fid: str | None = None, num_samples: int = 1000) -> float:
    """FID between two loaders' first ``num_samples`` examples (real features cached in the HDF5 file)."""
    real = cached_features(url_save_real_feature_fid, loader_real, num_channels, model, num_samples)
    gen = loader_features(loader_gen, num_channels, model, num_samples)
    return frechet_distance(*feature_statistics(real), *feature_statistics(gen))
