"""Improved precision and recall (Kynkäänniemi et al. 2019, eqs. 1-3).

Each set's manifold is the union of balls centred on its points with radius the distance to
the point's k-th nearest neighbour in the same set. Precision = fraction of generated points
inside the real manifold; recall = fraction of real points inside the generated manifold.
"""
from __future__ import annotations

import numpy as np
import torch


def distance_blocks(a: np.ndarray, b: np.ndarray, batch_size: int):
    """Yield (start, rows x len(b) Euclidean distance block) in float64, ``batch_size`` rows at a time."""
    b_t = torch.from_numpy(np.asarray(b, dtype=np.float64))
    for start in range(0, len(a), batch_size):
        a_t = torch.from_numpy(np.asarray(a[start:start + batch_size], dtype=np.float64))
        yield start, torch.cdist(a_t, b_t).numpy()


def knn_radii(features: np.ndarray, k: int = 3, batch_size: int = 1024) -> np.ndarray:
    """(N,) distance of every point to its k-th nearest other point of the same set."""
    if k < 1 or k >= len(features):
        raise ValueError(f"k={k!r}: expected 1 <= k < number of points ({len(features)})")
    radii = np.empty(len(features))
    for start, block in distance_blocks(features, features, batch_size):
        # column k: index 0 of the sorted row is the point itself (distance 0)
        radii[start:start + len(block)] = np.partition(block, k, axis=1)[:, k]
    return radii


def inside_manifold(reference: np.ndarray, radii: np.ndarray, query: np.ndarray,
                    batch_size: int = 1024) -> np.ndarray:
    """(M,) bool: whether each query point lies within some reference ball (distance <= radius)."""
    inside = np.empty(len(query), dtype=bool)
    for start, block in distance_blocks(query, reference, batch_size):
        inside[start:start + len(block)] = (block <= radii[None, :]).any(axis=1)
    return inside


def _bootstrap_mean_interval(indicators: np.ndarray, num_bootstrap: int, confidence: float,
                             rng: np.random.Generator) -> tuple[float, float] | tuple[None, None]:
    if num_bootstrap <= 0:
        return None, None
    means = rng.binomial(len(indicators), indicators.mean(), size=num_bootstrap) / len(indicators)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def precision_recall(real: np.ndarray, generated: np.ndarray, *, k: int = 3, batch_size: int = 1024,
                     num_bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Improved precision and recall between (N, D) real and (M, D) generated features.

    The interval is a bootstrap over the evaluated points with both manifolds held fixed
    (resampling the points that define a manifold would put duplicates at distance 0);
    it reflects the sampling error of the fractions, not of the manifold estimates.
    Returns ``{"precision", "recall", "precision_ci", "recall_ci", "k", "confidence",
    "n_real", "n_generated"}``.
    """
    if real.ndim != 2 or generated.ndim != 2 or real.shape[1] != generated.shape[1]:
        raise ValueError(f"feature shapes real={real.shape} generated={generated.shape}: expected (N, D) with equal D")
    if min(len(real), len(generated)) <= k:
        raise ValueError(f"k={k!r}: both sets need more than k points, got {len(real)} real and "
                         f"{len(generated)} generated")
    in_real = inside_manifold(real, knn_radii(real, k, batch_size), generated, batch_size)
    in_gen = inside_manifold(generated, knn_radii(generated, k, batch_size), real, batch_size)
    rng = np.random.default_rng(seed)
    return {"precision": float(in_real.mean()), "recall": float(in_gen.mean()),
            "precision_ci": _bootstrap_mean_interval(in_real, num_bootstrap, confidence, rng),
            "recall_ci": _bootstrap_mean_interval(in_gen, num_bootstrap, confidence, rng),
            "k": k, "confidence": confidence, "n_real": len(real), "n_generated": len(generated)}
