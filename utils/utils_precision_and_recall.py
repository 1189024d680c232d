"""The original ``utils/utils_precision_and_recall.py`` function names, on ``utils/evaluation/precision_recall.py``.

Improved precision / recall (Kynkäänniemi et al. 2019): precision = fraction of generated points
inside some real k-NN ball, recall = the reverse. For sets on disk prefer ``python utils_FID.py``.
"""
from __future__ import annotations

import numpy as np
import torch

from utils.evaluation.precision_recall import inside_manifold, knn_radii
from utils.utils_FID import cached_features, loader_features


def knn_precision_recall_features(ref_features: np.ndarray, eval_features: np.ndarray,
                                  nhood_sizes: list[int] = (3,), row_batch_size: int = 10000) -> dict:
    """{"precision": (K,), "recall": (K,)} float64 arrays, one entry per k of ``nhood_sizes``,
    between (N, D) real ``ref_features`` and (M, D) generated ``eval_features``."""
    precision, recall = [], []
    for k in nhood_sizes:
        real_radii = knn_radii(ref_features, k, row_batch_size)
        gen_radii = knn_radii(eval_features, k, row_batch_size)
        precision.append(inside_manifold(ref_features, real_radii, eval_features, row_batch_size).mean())
        recall.append(inside_manifold(eval_features, gen_radii, ref_features, row_batch_size).mean())
    return {"precision": np.array(precision, dtype=np.float64), "recall": np.array(recall, dtype=np.float64)}


def compute_precision_and_recall(loader_real, loader_gen, num_channels: int, model: torch.nn.Module,
                                 url_save_real_feature: str | None = None, nhood_sizes: list[int] = (3,),
                                 num_samples: int = 1000) -> tuple[float, float]:
    """(precision, recall) for the first k of ``nhood_sizes`` between two loaders' first ``num_samples``
    examples; the real features are cached in the HDF5 file ``url_save_real_feature`` when given."""
    real = cached_features(url_save_real_feature, loader_real, num_channels, model, num_samples)
    gen = loader_features(loader_gen, num_channels, model, num_samples)
    result = knn_precision_recall_features(real, gen, nhood_sizes[:1])
    return float(result["precision"][0]), float(result["recall"][0])
