"""Radially averaged power spectral density of 2-D fields.

For a field z (H, W) with its mean removed, P(f) = |DFT(z)(f)|^2 / (H W), so that the mean of
P over all frequencies equals the field variance (Parseval). Frequencies in cycles per pixel;
the radial bin k holds |f| in [(k - 1/2), (k + 1/2)) / max(H, W), k = 1 .. max(H, W) // 2.
Masked (NaN) pixels are set to the field mean before the transform, which damps the
spectrum by the valid fraction; use unmasked fields where exact levels matter.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft


@dataclass
class RadialSpectrum:
    """Per-frequency-bin statistics over fields, arrays of shape (K,)."""

    frequency: np.ndarray  # bin centres, cycles / px
    psd: np.ndarray        # mean over fields of the radially averaged PSD (value units^2)
    psd_se: np.ndarray     # standard error of that mean: std(ddof=1) / sqrt(N)
    n_fields: int
    per_field: np.ndarray  # (N, K) radially averaged PSD of each field


def radial_psd(fields: np.ndarray, *, rescale: bool = False, batch_size: int = 64) -> RadialSpectrum:
    """Radially averaged PSD of (N, H, W) fields (NaN = masked), mean and standard error.

    ``rescale``: min-max scale each field to [-1, 1] first (off by default to keep units).
    """
    fields = np.asarray(fields, dtype=np.float64)
    if fields.ndim != 3 or len(fields) == 0:
        raise ValueError(f"fields: shape {fields.shape}, expected (N, H, W) with N >= 1")
    n, h, w = fields.shape
    side = max(h, w)
    fy, fx = np.meshgrid(scipy.fft.fftfreq(h), scipy.fft.fftfreq(w), indexing="ij")
    k = np.floor(np.hypot(fy, fx) * side + 0.5).astype(np.int64).ravel()
    num_bins = side // 2
    keep = (k >= 1) & (k <= num_bins)
    per_bin = np.bincount(k[keep] - 1, minlength=num_bins)
    psd = np.empty((n, num_bins))
    for start in range(0, n, batch_size):
        z = fields[start:start + batch_size]
        if rescale:
            lo = np.nanmin(z, axis=(1, 2), keepdims=True)
            hi = np.nanmax(z, axis=(1, 2), keepdims=True)
            z = 2 * (z - lo) / np.where(hi > lo, hi - lo, 1.0) - 1
        mean = np.nanmean(z, axis=(1, 2), keepdims=True)
        z = np.where(np.isfinite(z), z - mean, 0.0)
        power = (np.abs(scipy.fft.fft2(z, workers=-1)) ** 2 / (h * w)).reshape(len(z), -1)
        for j, row in enumerate(power):
            psd[start + j] = np.bincount(k[keep] - 1, weights=row[keep], minlength=num_bins) / per_bin
    se = psd.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.full(num_bins, np.nan)
    return RadialSpectrum(np.arange(1, num_bins + 1) / side, psd.mean(axis=0), se, n, psd)
