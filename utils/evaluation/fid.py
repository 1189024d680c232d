"""Fréchet Inception Distance on feature vectors (Heusel et al. 2017, eq. 6).

FID = ||mu_r - mu_g||^2 + tr(S_r) + tr(S_g) - 2 tr((S_r S_g)^{1/2}), statistics in float64.
"""
from __future__ import annotations

import warnings

import numpy as np


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of (N, D) features, both float64."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features: shape {features.shape}, expected (N, D)")
    n, d = features.shape
    if n < 2:
        raise ValueError(f"features: {n} sample(s); a covariance needs at least 2 (and more than D={d} "
                         "to be full rank)")
    if n <= d:
        warnings.warn(f"{n} samples for {d}-dimensional features: the covariance is rank deficient, "
                      "FID is biased and noisy; use more samples or a smaller feature layer", stacklevel=2)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a positive semi-definite matrix (negative eigenvalues -> 0)."""
    vals, vecs = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    tr((S1 S2)^{1/2}) is computed as the sum of square roots of the eigenvalues of the
    symmetric PSD matrix S1^{1/2} S2 S1^{1/2} (same spectrum as S1 S2), which stays real and
    stable for singular covariances, unlike a general matrix square root.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"statistics shapes differ: mu {mu1.shape} vs {mu2.shape}, "
                         f"sigma {sigma1.shape} vs {sigma2.shape}")
    root1 = _sqrt_psd(sigma1)
    middle = root1 @ sigma2 @ root1
    eig = np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.sqrt(eig).sum())


def fid_from_features(real: np.ndarray, generated: np.ndarray, *, num_bootstrap: int = 20,
                      confidence: float = 0.95, seed: int = 0) -> dict:
    """FID between two (N, D) feature sets, with a percentile bootstrap interval.

    The bootstrap resamples both sets with replacement ``num_bootstrap`` times; it shows the
    sampling variability of the estimate (duplicated rows bias each replicate slightly
    upwards). Returns ``{"fid", "ci_low", "ci_high", "confidence", "num_bootstrap",
    "n_real", "n_generated", "feature_dim"}``.
    """
    if real.ndim != 2 or generated.ndim != 2 or real.shape[1] != generated.shape[1]:
        raise ValueError(f"feature shapes real={real.shape} generated={generated.shape}: expected (N, D) with equal D")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r}: expected a value in (0, 1)")
    stats_real, stats_gen = feature_statistics(real), feature_statistics(generated)
    fid = frechet_distance(*stats_real, *stats_gen)
    report = {"fid": fid, "ci_low": None, "ci_high": None, "confidence": confidence,
              "num_bootstrap": num_bootstrap, "n_real": len(real), "n_generated": len(generated),
              "feature_dim": real.shape[1]}
    if num_bootstrap > 0:
        rng = np.random.default_rng(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = [frechet_distance(*feature_statistics(real[rng.integers(0, len(real), len(real))]),
                                       *feature_statistics(generated[rng.integers(0, len(generated), len(generated))]))
                      for _ in range(num_bootstrap)]
        alpha = (1 - confidence) / 2
        report["ci_low"], report["ci_high"] = (float(v) for v in np.quantile(values, [alpha, 1 - alpha]))
    return report
