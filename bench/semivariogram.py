"""Speed of the FFT semivariogram against the direct pairwise estimator on 128 x 128 fields.

    python bench/semivariogram.py --num_fields 1000 --num_pairwise 3

The FFT estimator runs on all ``num_fields`` fields. The direct O(P^2) estimator (all pixel
pairs) is timed on the first ``num_pairwise`` fields only and its time extrapolated linearly to
``num_fields`` (its cost is the same for every field of a given size); the two are compared on
that subset (max relative difference per lag, target < 1 %). Prints the times and the ratio.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.evaluation.semivariogram import empirical_semivariogram, pairwise_semivariogram  # noqa: E402


def smooth_fields(num_fields: int, size: int, seed: int) -> np.ndarray:
    """Correlated test fields: white noise filtered with a Gaussian kernel (sigma 4 px) via FFT."""
    rng = np.random.default_rng(seed)
    freq = np.fft.fftfreq(size)
    kernel = np.exp(-2 * (np.pi * 4) ** 2 * (freq[:, None] ** 2 + freq[None, :] ** 2))
    noise = rng.normal(size=(num_fields, size, size))
    return np.fft.ifft2(np.fft.fft2(noise) * kernel).real


def main(num_fields: int = 1000, size: int = 128, num_pairwise: int = 3, max_lag: float | None = None,
         nan_fraction: float = 0.0, seed: int = 0) -> dict:
    """Time both estimators and print the figures; ``nan_fraction`` masks random pixels."""
    if not 1 <= num_pairwise <= num_fields:
        raise ValueError(f"num_pairwise={num_pairwise!r}: expected 1..num_fields={num_fields}")
    fields = smooth_fields(num_fields, size, seed)
    if nan_fraction > 0:
        fields[np.random.default_rng(seed + 1).random(fields.shape) < nan_fraction] = np.nan
    start = time.perf_counter()
    fft = empirical_semivariogram(fields, max_lag=max_lag, progress=False)
    t_fft = time.perf_counter() - start
    start = time.perf_counter()
    direct = pairwise_semivariogram(fields[:num_pairwise], max_lag=max_lag)
    t_pair = (time.perf_counter() - start) * num_fields / num_pairwise
    rel = np.abs(fft.per_field[:num_pairwise] - direct.per_field) / np.abs(direct.per_field)
    result = {"num_fields": num_fields, "size": size, "fft_seconds": t_fft,
              "pairwise_seconds_extrapolated": t_pair, "pairwise_fields_timed": num_pairwise,
              "speedup": t_pair / t_fft, "max_relative_difference": float(np.nanmax(rel))}
    print(f"FFT semivariogram, {num_fields} fields of {size}x{size} (nan_fraction={nan_fraction}): {t_fft:.2f} s")
    print(f"direct pairwise: timed on {num_pairwise} field(s), extrapolated to {num_fields}: {t_pair:.0f} s")
    print(f"speed-up: {result['speedup']:.0f}x (target >= 100x); "
          f"max relative difference on the timed fields: {result['max_relative_difference']:.2e} (target < 1e-2)")
    return result


if __name__ == "__main__":
    from utils.cli import run_cli

    run_cli(main)
