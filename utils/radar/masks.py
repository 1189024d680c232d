"""Spatially correlated decorrelation masks: the excursion set of a smooth Gaussian field.

A unit-variance stationary Gaussian field g with the Gaussian covariance exp(-r^2 / (2 L^2))
(sampled exactly on the periodic n x n grid, ``utils.radar.spectral``) is masked where
g > z with z = Phi^-1(1 - coverage), so every pixel is masked with probability ``coverage`` exactly
and masked pixels form blobs of size ~L.
"""
from __future__ import annotations

import numpy as np
import scipy.stats

from utils.radar.spectral import spectral_fields, wavenumber_grid


def gaussian_kernel_variances(n: int, length_px: float) -> np.ndarray:
    """Spectral variances (n, n) float64, sum 1, of the Gaussian covariance with length ``length_px`` (px).

    Its spectrum is proportional to exp(-2 pi^2 L^2 |k|^2) (k in cycles/px).
    """
    s = np.exp(-2.0 * np.pi ** 2 * length_px ** 2 * wavenumber_grid(n) ** 2)
    return s / s.sum()


def correlated_masks(rng: np.random.Generator, count: int, n: int, coverage: float, length_px: float) -> np.ndarray:
    """Boolean masks (count, n, n), True = decorrelated (to be set to NaN); P(True) = coverage per pixel."""
    if not 0.0 <= coverage <= 1.0 or length_px <= 0:
        raise ValueError(f"coverage={coverage}, length_px={length_px}; expected coverage in [0, 1], length_px > 0")
    g = spectral_fields(rng, count, np.sqrt(gaussian_kernel_variances(n, length_px)), n)
    return g > scipy.stats.norm.ppf(1.0 - coverage)
