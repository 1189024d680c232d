"""Empirical semivariograms of 2-D fields, computed with FFTs, NaN masks allowed.

For a field z with validity mask m (NaN pixels invalid), lag vector h:
    N(h)     = sum_x m(x) m(x+h)                              (pair count)
    S(h)     = sum_x m(x) m(x+h) (z(x+h) - z(x))^2
    gamma(h) = S(h) / (2 N(h))                                (Matheron's estimator)
With z set to 0 where invalid, S(h) = C(m, z^2)(h) + C(z^2, m)(h) - 2 C(z, z)(h), where
C(a, b)(h) = sum_x a(x) b(x+h) is a cross-correlation, computed by zero-padded FFTs
(Marcotte 1996, Comput. Geosci. 22(10)). A lag bin pools its lag vectors,
gamma_bin = sum S / (2 sum N), which equals the direct pairwise estimator over all pixel
pairs whose separation falls in the bin (:func:`pairwise_semivariogram`, the O(P^2) reference).

Bins: bin k (k = 1 .. max_lag / lag_step) holds separations |h| in [(k - 1/2), (k + 1/2)) * lag_step.
Directions: angle of h in degrees from the column axis (0 = along a row, 90 = along a column),
modulo 180, kept when within ``tolerance`` degrees of ``direction``. Lags are in pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.fft
import scipy.sparse
from tqdm import tqdm

from improved_diffusion.file_io import atomic_write, check_free

# what empirical_semivariogram's `gamma` is, for legends and reports
ESTIMATOR = "Matheron, all directions, mean over fields"


@dataclass
class Semivariogram:
    """Per-lag statistics over fields: all arrays have one entry per lag bin (L,)."""

    lags: np.ndarray            # bin centres, px
    mean_distance: np.ndarray   # pair-weighted mean separation in the bin, px
    gamma: np.ndarray           # mean over fields of each field's semivariance (value units^2)
    gamma_se: np.ndarray        # standard error of that mean: std(ddof=1) / sqrt(n_fields)
    n_fields: np.ndarray        # fields with at least one pair in the bin
    pair_count: np.ndarray      # ordered pixel pairs in the bin, summed over fields
    per_field: np.ndarray       # (N, L) semivariance of each field (NaN: no pair)


def bin_index(dy: np.ndarray, dx: np.ndarray, max_lag: float, lag_step: float = 1.0,
              direction: float | None = None, tolerance: float = 22.5) -> np.ndarray:
    """Lag-bin index (0-based, -1 = not used) of separation vectors (dy rows, dx columns)."""
    dist = np.hypot(dy, dx)
    k = np.floor(dist / lag_step + 0.5).astype(np.int64)
    keep = (k >= 1) & (k <= int(max_lag // lag_step))
    if direction is not None:
        angle = np.degrees(np.arctan2(dy, dx))
        keep &= np.abs((angle - direction + 90.0) % 180.0 - 90.0) <= tolerance
    return np.where(keep, k - 1, -1)


def _validate(fields: np.ndarray, max_lag, lag_step, tolerance) -> tuple[np.ndarray, float]:
    fields = np.asarray(fields, dtype=np.float64)
    if fields.ndim != 3:
        raise ValueError(f"fields: shape {fields.shape}, expected (N, H, W) (select a channel of NHWC data)")
    if len(fields) == 0:
        raise ValueError("fields: empty set, expected at least one field")
    _, h, w = fields.shape
    max_lag = float(min(h, w) // 2) if max_lag is None else float(max_lag)
    if not lag_step <= max_lag <= np.hypot(h - 1, w - 1):
        raise ValueError(f"max_lag={max_lag!r}: expected between lag_step={lag_step} and the field diagonal")
    if not 0 < tolerance <= 90:
        raise ValueError(f"tolerance={tolerance!r}: expected degrees in (0, 90]")
    return fields, max_lag


def _prepare(fields: np.ndarray, rescale: bool) -> tuple[np.ndarray, np.ndarray]:
    """Centre each field on its valid-pixel mean (gamma is shift invariant; this avoids
    cancellation in the FFT sums), optionally min-max scale it to [-1, 1]; NaN -> 0 + mask."""
    mask = np.isfinite(fields)
    z = np.where(mask, fields, np.nan)
    if rescale:
        lo = np.nanmin(z, axis=(1, 2), keepdims=True)
        hi = np.nanmax(z, axis=(1, 2), keepdims=True)
        z = 2 * (z - lo) / np.where(hi > lo, hi - lo, 1.0) - 1
    count = np.maximum(mask.sum(axis=(1, 2), keepdims=True), 1)
    mean = np.where(mask, z, 0.0).sum(axis=(1, 2), keepdims=True) / count
    return np.where(mask, z - mean, 0.0), mask.astype(np.float64)


def _summarise(sums: np.ndarray, counts: np.ndarray, dist_sums: np.ndarray, lag_step: float) -> Semivariogram:
    with np.errstate(invalid="ignore", divide="ignore"):
        per_field = np.where(counts > 0, sums / (2 * np.maximum(counts, 1)), np.nan)
        n = np.isfinite(per_field).sum(axis=0)
        gamma = np.where(n > 0, np.nansum(per_field, axis=0) / np.maximum(n, 1), np.nan)
        dev = np.where(np.isfinite(per_field), per_field - gamma, 0.0)
        se = np.where(n > 1, np.sqrt((dev ** 2).sum(axis=0) / np.maximum(n - 1, 1) / np.maximum(n, 1)), np.nan)
        total = counts.sum(axis=0)
        mean_distance = np.where(total > 0, dist_sums / np.maximum(total, 1), np.nan)
    lags = lag_step * np.arange(1, sums.shape[1] + 1)
    return Semivariogram(lags, mean_distance, gamma, se, n, total, per_field)


def empirical_semivariogram(fields: np.ndarray, *, max_lag: float | None = None, lag_step: float = 1.0,
                            direction: float | None = None, tolerance: float = 22.5,
                            rescale: bool = False, batch_size: int = 32, progress: bool = True) -> Semivariogram:
    """FFT semivariogram of (N, H, W) fields (NaN = masked), per field and pooled.

    ``max_lag``: largest bin centre in px (default min(H, W) // 2). ``direction`` /
    ``tolerance``: degrees (omnidirectional when ``direction`` is None). ``rescale``:
    min-max scale each field to [-1, 1] first (the original always did; off keeps units).
    """
    fields, max_lag = _validate(fields, max_lag, lag_step, tolerance)
    n, h, w = fields.shape
    shape = (scipy.fft.next_fast_len(2 * h - 1, real=True), scipy.fft.next_fast_len(2 * w - 1, real=True))
    dy, dx = np.meshgrid(np.arange(-(h - 1), h), np.arange(-(w - 1), w), indexing="ij")
    bins = bin_index(dy, dx, max_lag, lag_step, direction, tolerance).ravel()
    used = bins >= 0
    flat = ((dy % shape[0]) * shape[1] + dx % shape[1]).ravel()[used]
    num_bins = int(max_lag // lag_step)
    onehot = scipy.sparse.csr_matrix((np.ones(used.sum()), (np.arange(used.sum()), bins[used])),
                                     shape=(used.sum(), num_bins))
    dist_onehot = scipy.sparse.csr_matrix((np.hypot(dy, dx).ravel()[used], (np.arange(used.sum()), bins[used])),
                                          shape=(used.sum(), num_bins))
    sums, counts, dist_sums = np.empty((n, num_bins)), np.empty((n, num_bins)), np.zeros(num_bins)
    full_mask = None  # FFT of an all-valid mask and its pair counts, shared by unmasked fields
    for start in tqdm(range(0, n, batch_size), desc="semivariogram", disable=not progress, leave=False):
        z, m = _prepare(fields[start:start + batch_size], rescale)
        b = len(z)
        fz, fz2 = scipy.fft.rfft2(z, s=shape, workers=-1), scipy.fft.rfft2(z * z, s=shape, workers=-1)
        if m.all():
            if full_mask is None:
                fm1 = scipy.fft.rfft2(m[:1], s=shape, workers=-1)
                full_mask = fm1, scipy.fft.irfft2(np.conj(fm1) * fm1, s=shape, workers=-1)
            fm, pairs = full_mask[0], np.broadcast_to(full_mask[1], (b,) + shape)
        else:
            fm = scipy.fft.rfft2(m, s=shape, workers=-1)
            pairs = scipy.fft.irfft2(np.conj(fm) * fm, s=shape, workers=-1)
        s = scipy.fft.irfft2(np.conj(fm) * fz2 + np.conj(fz2) * fm - 2 * np.conj(fz) * fz, s=shape, workers=-1)
        pair_sel = np.rint(pairs.reshape(b, -1)[:, flat])
        sums[start:start + b] = onehot.T.dot(s.reshape(b, -1)[:, flat].T).T
        counts[start:start + b] = onehot.T.dot(pair_sel.T).T
        dist_sums += dist_onehot.T.dot(pair_sel.sum(axis=0))
    return _summarise(sums, counts, dist_sums, lag_step)


def pairwise_semivariogram(fields: np.ndarray, *, max_lag: float | None = None, lag_step: float = 1.0,
                           direction: float | None = None, tolerance: float = 22.5,
                           rescale: bool = False, block: int = 2048) -> Semivariogram:
    """Direct O(P^2) estimator over all ordered pairs of valid pixels (reference for the FFT one)."""
    fields, max_lag = _validate(fields, max_lag, lag_step, tolerance)
    num_bins = int(max_lag // lag_step)
    sums, counts = np.zeros((len(fields), num_bins)), np.zeros((len(fields), num_bins))
    dist_sums = np.zeros(num_bins)
    for i, field in enumerate(fields):
        z, m = _prepare(field[None], rescale)
        rows, cols = np.nonzero(m[0])
        values = z[0, rows, cols]
        for start in range(0, len(values), block):
            dy = rows[None, :] - rows[start:start + block, None]
            dx = cols[None, :] - cols[start:start + block, None]
            k = bin_index(dy, dx, max_lag, lag_step, direction, tolerance)
            sel = k >= 0
            sq = (values[None, :] - values[start:start + block, None]) ** 2
            sums[i] += np.bincount(k[sel], weights=sq[sel], minlength=num_bins)
            counts[i] += np.bincount(k[sel], minlength=num_bins)
            dist_sums += np.bincount(k[sel], weights=np.hypot(dy, dx)[sel], minlength=num_bins)
    return _summarise(sums, counts, dist_sums, lag_step)


CSV_COLUMNS = ("lags", "mean_distance", "gamma", "gamma_se", "n_fields", "pair_count")


def write_semivariogram_csv(result: Semivariogram, path: str | Path, overwrite: bool = False) -> Path:
    """Write the pooled per-lag columns ``CSV_COLUMNS`` (lags in px) to a CSV file."""
    path = Path(path)
    check_free([path], overwrite, key="path")
    table = np.column_stack([getattr(result, c) for c in CSV_COLUMNS])
    atomic_write(path, lambda tmp: np.savetxt(tmp, table, delimiter=",", header=",".join(CSV_COLUMNS), comments="",
                                              fmt="%.10g"))
    return path


def read_semivariogram_csv(path: str | Path) -> dict[str, np.ndarray]:
    """Columns of a CSV written by :func:`write_semivariogram_csv`, by name."""
    table = np.atleast_2d(np.loadtxt(path, delimiter=",", skiprows=1))
    return {c: table[:, i] for i, c in enumerate(CSV_COLUMNS)}
