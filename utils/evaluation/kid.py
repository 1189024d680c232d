"""Kernel Inception Distance (Binkowski et al. 2018, sec. 3 and appendix D).

KID is the unbiased estimate of the squared maximum mean discrepancy (Gretton et al. 2012,
eq. 3) with the cubic polynomial kernel k(x, y) = (x . y / D + 1)^3 on D-dimensional features.
Unlike FID its expectation does not depend on the sample counts: two sets from one
distribution score 0 on average (single values may be negative and are reported unclipped).
"""
from __future__ import annotations

import numpy as np


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(N, D), (M, D) -> (N, M) float64 kernel matrix (x . y / D + 1)^3."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between (N, D) and (M, D) samples (N, M >= 2): the within-set kernel means
    over distinct pairs minus twice the between-set mean (Gretton et al. 2012, eq. 3)."""
    n, m = len(x), len(y)
    k_xx, k_yy = polynomial_kernel(x, x), polynomial_kernel(y, y)
    within_x = (k_xx.sum() - np.trace(k_xx)) / (n * (n - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within_x + within_y - 2 * polynomial_kernel(x, y).mean())


def kid_from_features(real: np.ndarray, generated: np.ndarray, *, num_subsets: int = 10, seed: int = 0) -> dict:
    """KID between (N, D) real and (M, D) generated features, with a standard error.

    ``kid`` is the unbiased MMD^2 over all points. ``se`` comes from ``num_subsets`` disjoint
    random blocks of each set (block i of the real set against block i of the generated set):
    std(block values) / sqrt(num_subsets) is the standard error of the block mean, an unbiased
    estimate of the same quantity built from independent pieces; the all-points value averages
    the block mean over all partitions, so its true standard error is at most this (the
    reported ``se`` is conservative). ``ci_low``/``ci_high``: kid -+ 1.96 se.
    Returns ``{"kid", "se", "ci_low", "ci_high", "num_subsets", "subset_size", "n_real", "n_generated"}``.
    """
    if real.ndim != 2 or generated.ndim != 2 or real.shape[1] != generated.shape[1]:
        raise ValueError(f"feature shapes real={real.shape} generated={generated.shape}: expected (N, D) with equal D")
    if num_subsets < 2 or min(len(real), len(generated)) < 2 * num_subsets:
        raise ValueError(f"num_subsets={num_subsets!r}: need at least 2 subsets of at least 2 points from each "
                         f"set, got {len(real)} real and {len(generated)} generated points")
    real, generated = np.asarray(real, dtype=np.float64), np.asarray(generated, dtype=np.float64)
    rng = np.random.default_rng(seed)
    blocks = zip(np.array_split(rng.permutation(len(real)), num_subsets),
                 np.array_split(rng.permutation(len(generated)), num_subsets))
    values = np.array([mmd2_unbiased(real[i], generated[j]) for i, j in blocks])
    kid, se = mmd2_unbiased(real, generated), float(values.std(ddof=1) / np.sqrt(num_subsets))
    return {"kid": kid, "se": se, "ci_low": kid - 1.96 * se, "ci_high": kid + 1.96 * se,
            "num_subsets": num_subsets, "subset_size": min(len(real), len(generated)) // num_subsets,
            "n_real": len(real), "n_generated": len(generated)}
