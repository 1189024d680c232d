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
