"""Atmospheric turbulence with a broken power-law spectrum, sampled exactly on a periodic n x n grid.

Hanssen (2001, Radar Interferometry, sec. 4.7) finds the 2-D power spectrum of the atmospheric
delay close to a power law P(k) ~ k^beta with beta = -5/3 at long wavelengths (a thin turbulent
layer), -8/3 at intermediate ones (3-D Kolmogorov turbulence) and -2/3 at the shortest. Here:
P(k) = (k / k_b)^beta_long for k < k_b and (k / k_b)^beta_short for k >= k_b, k_b = 1 / break_px,
continuous at k_b, no mean (k = 0) mode, scaled so that the pixel variance is sigma^2. The grid is
the torus itself (periodic fields), so spectrum, covariance and semivariogram hold exactly
(``utils.radar.spectral``).
"""
from __future__ import annotations

import numpy as np

from utils.radar.spectral import axis_semivariogram, expected_radial_psd, log_log_slope, wavenumber_grid


def power_law_variances(n: int, sigma_rad: float, slopes: tuple[float, float], break_px: float) -> np.ndarray:
    """Spectral variances s_k (n, n) float64 in rad^2 (FFT order), sum = sigma_rad^2, s_0 = 0.

    slopes: (beta_long, beta_short), the exponents of P(k) for wavelengths above / below ``break_px``.
    """
    if n < 2 or break_px <= 0 or sigma_rad < 0:
        raise ValueError(f"n={n}, break_px={break_px}, sigma_rad={sigma_rad}; expected n >= 2, break_px > 0, "
                         "sigma_rad >= 0")
    k = wavenumber_grid(n)
    kb = 1.0 / break_px
    ratio = np.where(k > 0, k, kb) / kb
    p = np.where(k < kb, ratio ** slopes[0], ratio ** slopes[1])
    p[0, 0] = 0.0
    return sigma_rad ** 2 * p / p.sum()


def turbulence_truth(n: int, sigma_rad: float, slopes: tuple[float, float], break_px: float) -> dict:
    """Exact statistics of the turbulence fields (JSON-ready): axis semivariogram at lags 0..n-1 px (rad^2),
    radially averaged expected PSD (rad^2 per mode, bins of ``utils.evaluation.spectrum``) and the log-log
    slopes of that expected PSD over the long- and short-wavelength bands."""
    s = power_law_variances(n, sigma_rad, slopes, break_px)
    freq, psd = expected_radial_psd(s)
    kb = 1.0 / break_px
    bands = {"long": (float(freq[0]), kb), "short": (kb, float(freq[-1]))}
    fitted = {name: log_log_slope(freq, psd, band) if ((freq >= band[0]) & (freq <= band[1])).sum() >= 2 else None
              for name, band in bands.items()}
    return {"sigma_rad": sigma_rad, "slopes": list(slopes), "break_px": break_px,
            "spectrum_definition": "P(f) = |DFT(phi - mean)|^2 / (n^2), mean over |f| in [(k - 1/2), (k + 1/2)) / n",
            "gamma": axis_semivariogram(s).tolist(), "frequency_cycles_per_px": freq.tolist(),
            "expected_psd": psd.tolist(), "slope_bands_cycles_per_px": {k: list(v) for k, v in bands.items()},
            "expected_psd_slopes": fitted}
