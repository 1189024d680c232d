"""The original ``utils/utils_semivariogram.py`` function names, on ``utils/evaluation/semivariogram.py``.

Differences (docs/migrating.md): an exact FFT semivariogram (no pyinterpolate / pandas), fields keep
their units unless ``rescale=True``, the error column is a standard error (``gamma_se``), and the CSV
columns are ``lags, mean_distance, gamma, gamma_se, n_fields, pair_count``.
"""
from __future__ import annotations

from pathlib import Path

from utils.changed_defaults import notice_changed_default
from utils.evaluation.array_io import load_image_set
from utils.evaluation.semivariogram import Semivariogram, empirical_semivariogram, read_semivariogram_csv
from utils.evaluation.semivariogram import write_semivariogram_csv as _write_csv

read_semivariogram = read_semivariogram_csv  # (url_csv) -> {column: (L,) array}


def comp_semivariogram(url_hdf5_folder: str, key_data: str | None = None, N: int = 32, num_samples: int = 10000,
                       shuffle: bool = True, step_dist: float | None = None, max_dist: float | None = None,
                       url_save_csv: str | Path | None = None, rescale: bool = False, seed: int = 0,
                       overwrite: bool = False) -> Semivariogram:
    """Omnidirectional semivariogram of (N, N) fields ``key_data`` of an HDF5 folder (lags in px).

    ``num_samples``: at most that many fields, a random subset (``seed``) when ``shuffle`` else the first
    ones; ``step_dist`` / ``max_dist``: lag bin width / largest lag in px (defaults 1 and N // 2)."""
    if not rescale:
        notice_changed_default("semivariogram.rescale")
    data = load_image_set(url_hdf5_folder, key_data=key_data, image_size=N,
                          num_samples=num_samples if shuffle else None, seed=seed)
    fields = data.images[:num_samples, :, :, 0]
    result = empirical_semivariogram(fields, max_lag=max_dist, lag_step=step_dist or 1.0, rescale=rescale,
                                     progress=False)
    if url_save_csv is not None:
        _write_csv(result, url_save_csv, overwrite=overwrite)
    return result
