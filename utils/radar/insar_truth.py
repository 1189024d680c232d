"""Analytic models of the synthetic InSAR fields, shared by the generator and the evaluation."""
from __future__ import annotations

import math

import numpy as np

COVARIANCE_MODELS = ("exponential", "matern32")


def covariance(r: np.ndarray, model: str, sigma: float, length: float) -> np.ndarray:
    """Isotropic covariance C(r) of the atmospheric field; r and length in pixels, C in rad^2.

    exponential: sigma^2 exp(-r/L); matern32: sigma^2 (1 + sqrt(3) r/L) exp(-sqrt(3) r/L).
    """
    if model == "exponential":
        return sigma ** 2 * np.exp(-r / length)
    if model == "matern32":
        s = math.sqrt(3.0) * r / length
        return sigma ** 2 * (1.0 + s) * np.exp(-s)
    raise ValueError(f"covariance_model={model!r}; expected one of {COVARIANCE_MODELS}")


def semivariogram(h: np.ndarray, model: str, sigma: float, length: float, nugget: float = 0.0) -> np.ndarray:
    """gamma(h) = C(0) - C(h) + nugget * [h > 0] (rad^2) of the field plus white noise of variance
    ``nugget``; h (lags) and length in pixels."""
    h = np.asarray(h, dtype=np.float64)
    return covariance(np.zeros(1), model, sigma, length)[0] - covariance(h, model, sigma, length) + np.where(
        h > 0, nugget, 0.0)


def field_covariance(image_size: int, model: str, sigma: float, length: float, nugget: float = 0.0) -> np.ndarray:
    """Covariance matrix (d, d), d = image_size^2, of the pixels of an image_size x image_size field
    (row-major order) holding the screen of covariance C plus white noise of variance ``nugget``
    (rad^2): Sigma_ij = C(|p_i - p_j|) + nugget [i = j]; float64."""
    rows, cols = np.divmod(np.arange(image_size * image_size), image_size)
    r = np.hypot(rows[:, None] - rows[None, :], cols[:, None] - cols[None, :]).astype(np.float64)
    return covariance(r, model, sigma, length) + nugget * np.eye(r.shape[0])


def simple_kriging(cov: np.ndarray, mean: np.ndarray, values: np.ndarray, observed: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Exact conditional law of the missing pixels of a Gaussian field x ~ N(mean, cov) given the observed
    ones (simple kriging): for o = observed, m = missing,
        E[x_m | x_o] = mean_m + cov_mo cov_oo^-1 (x_o - mean_o),
        Cov[x_m | x_o] = cov_mm - cov_mo cov_oo^-1 cov_om.
    cov (d, d), mean (d,), values (d,) (only the observed entries are read), observed (d,) bool.
    Returns (conditional mean (n_m,), conditional covariance (n_m, n_m)) in the units of the field, float64."""
    observed = np.asarray(observed, dtype=bool)
    o, m = observed, ~observed
    if not o.any() or not m.any():
        raise ValueError(f"kriging needs observed and missing pixels, got {int(o.sum())} observed of {o.size}")
    cov_oo, cov_mo = cov[np.ix_(o, o)], cov[np.ix_(m, o)]
    chol = np.linalg.cholesky(cov_oo)
    weights_t = np.linalg.solve(chol.T, np.linalg.solve(chol, cov_mo.T))  # cov_oo^-1 cov_om
    cond_mean = mean[m] + weights_t.T @ (np.asarray(values, dtype=np.float64)[o] - mean[o])
    cond_cov = cov[np.ix_(m, m)] - cov_mo @ weights_t
    return cond_mean, cond_cov
