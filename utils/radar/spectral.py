"""Stationary Gaussian fields on a periodic grid from their spectral variances, and the exact truth.

A field on an m x m torus is ``phi(p) = sum_k a_k xi_k exp(-2 pi i k.p / m)`` (real or imaginary
part), with spectral variances ``s_k = a_k^2`` (rad^2 per Fourier mode, symmetric ``s_k = s_-k``).
Then exactly: covariance ``C(h) = sum_k s_k cos(2 pi k.h / m)``, variance ``C(0) = sum_k s_k``,
semivariogram ``gamma(h) = C(0) - C(h)`` and periodogram ``E|DFT(phi)_k|^2 / m^2 = m^2 s_k``
(Dietrich & Newsam 1997 for the sampling; the identities follow from E[xi_k conj(xi_l)] = 2 delta_kl).
"""
from __future__ import annotations

import numpy as np
import scipy.fft


def spectral_fields(rng: np.random.Generator, count: int, amplitude: np.ndarray, n: int) -> np.ndarray:
    """``count`` independent fields (count, n, n) float32, the n x n corner of the m x m torus.

    amplitude: (m, m) ``sqrt(s_k)``. y = FFT2(amplitude * xi), xi complex standard normal: Re y and
    Im y are independent real fields with covariance ``C`` on the torus (module docstring).
    """
    pairs = (count + 1) // 2
    xi = rng.standard_normal((pairs, *amplitude.shape, 2), dtype=np.float32).view(np.complex64)[..., 0]
    y = scipy.fft.fft2(xi * amplitude.astype(np.float32), axes=(-2, -1), workers=-1)[:, :n, :n]
    return np.concatenate([y.real, y.imag])[:count].astype(np.float32)


def wavenumber_grid(m: int) -> np.ndarray:
    """|k| (m, m) float64 in cycles per pixel of the m x m DFT modes (FFT order)."""
    f = scipy.fft.fftfreq(m)
    return np.hypot(f[:, None], f[None, :])


def covariance_map(variances: np.ndarray) -> np.ndarray:
    """C(h) (m, m) float64 in rad^2 for lag vectors h = (rows, cols) in FFT order (lag -h at index m - h)."""
    return scipy.fft.fft2(np.asarray(variances, dtype=np.float64)).real


def axis_semivariogram(variances: np.ndarray) -> np.ndarray:
    """gamma(h) (m,) float64 in rad^2 for h = 0..m-1 px, the mean of the row and column lags (h, 0), (0, h)."""
    c = covariance_map(variances)
    return c[0, 0] - 0.5 * (c[:, 0] + c[0, :])


def radial_bins(m: int) -> np.ndarray:
    """Radial bin (m, m) int64 of each DFT mode: round(|k| m), the convention of ``utils.evaluation.spectrum``."""
    return np.floor(wavenumber_grid(m) * m + 0.5).astype(np.int64)


def expected_radial_psd(variances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frequency (K,), E[P] (K,)) with P = |DFT(phi)|^2 / m^2 averaged over radial bins 1..K = m // 2.

    Frequencies in cycles per pixel (bin centres k / m); E[P] in rad^2 per mode, exact (module docstring).
    """
    s = np.asarray(variances, dtype=np.float64)
    m = s.shape[0]
    k, num_bins = radial_bins(m).ravel(), m // 2
    keep = (k >= 1) & (k <= num_bins)
    power = np.bincount(k[keep] - 1, weights=(m * m * s).ravel()[keep], minlength=num_bins)
    return np.arange(1, num_bins + 1) / m, power / np.bincount(k[keep] - 1, minlength=num_bins)


def log_log_slope(frequency: np.ndarray, power: np.ndarray, band: tuple[float, float]) -> float:
    """Least-squares slope of log(power) against log(frequency) over frequencies within ``band`` (cycles/px)."""
    sel = (frequency >= band[0]) & (frequency <= band[1])
    if sel.sum() < 2:
        raise ValueError(f"band={band} holds {int(sel.sum())} frequencies; expected at least 2")
    return float(np.polyfit(np.log(frequency[sel]), np.log(power[sel]), 1)[0])


def axis_semivariogram_fields(fields: np.ndarray, max_lag: int) -> np.ndarray:
    """Per-field semivariogram (N, max_lag) float64 at lags 1..max_lag px along rows and columns.

    gamma_i(h) = 0.5 * mean of (phi(p + h) - phi(p))^2 over the pairs of field i along both axes, NaN
    (masked) pixels left out; NaN where a field has no valid pair at that lag.
    """
    fields = np.asarray(fields, dtype=np.float64)
    if fields.ndim != 3 or not 1 <= max_lag < min(fields.shape[1:]):
        raise ValueError(f"fields shape {fields.shape}, max_lag={max_lag}; expected (N, H, W) and 1 <= max_lag < "
                         "min(H, W)")
    finite = np.isfinite(fields)
    complete = bool(finite.all())
    values = fields if complete else np.where(finite, fields, 0.0)
    out = np.empty((len(fields), max_lag))
    for h in range(1, max_lag + 1):
        d_cols, d_rows = values[:, :, h:] - values[:, :, :-h], values[:, h:] - values[:, :-h]
        if complete:
            squares = np.einsum("ijk,ijk->i", d_cols, d_cols) + np.einsum("ijk,ijk->i", d_rows, d_rows)
            out[:, h - 1] = 0.5 * squares / (d_cols[0].size + d_rows[0].size)
            continue
        v_cols, v_rows = finite[:, :, h:] & finite[:, :, :-h], finite[:, h:] & finite[:, :-h]
        squares = np.einsum("ijk,ijk->i", d_cols * v_cols, d_cols) + np.einsum("ijk,ijk->i", d_rows * v_rows, d_rows)
        pairs = v_cols.sum(axis=(1, 2)) + v_rows.sum(axis=(1, 2))
        out[:, h - 1] = np.where(pairs > 0, 0.5 * squares / np.maximum(pairs, 1), np.nan)
    return out
