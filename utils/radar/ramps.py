"""Orbital ramps: a random plane per field, ``phi(r, c) = g_r (r - r0) + g_c (c - c0)`` (radians).

The gradients g_r, g_c are independent N(0, (sigma / n)^2) in rad/px, i.e. sigma is the standard
deviation of the phase change across the field width n; (r0, c0) is the field centre. The plane's
increment over a lag vector h is g.h, so its semivariogram is gamma(h) = 0.5 (sigma / n)^2 |h|^2.
"""
from __future__ import annotations

import numpy as np


def ramp_fields(rng: np.random.Generator, count: int, n: int, sigma_rad: float) -> tuple[np.ndarray, np.ndarray]:
    """(fields (count, n, n) float32 in radians, gradients (count, 2) float64 (g_r, g_c) in rad/px)."""
    gradients = rng.normal(0.0, sigma_rad / n, size=(count, 2))
    centred = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    fields = gradients[:, 0, None, None] * centred[None, :, None] + gradients[:, 1, None, None] * centred[None, None, :]
    return fields.astype(np.float32), gradients


def ramp_semivariogram(lags_px: np.ndarray, n: int, sigma_rad: float) -> np.ndarray:
    """gamma(h) = 0.5 (sigma / n)^2 h^2 in rad^2 at the lag distances ``lags_px`` (any shape)."""
    return 0.5 * (sigma_rad / n) ** 2 * np.asarray(lags_px, dtype=np.float64) ** 2
