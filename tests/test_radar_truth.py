"""Analytic statistics of the synthetic InSAR fields (utils/radar/insar_truth.py)."""
import math

import numpy as np
import pytest

from utils.radar.insar_truth import covariance, semivariogram


def test_semivariogram_closed_forms():
    h = np.array([0.0, 3.0, 1e6])
    # exponential: sigma^2 (1 - exp(-h / L)) + nugget for h > 0, 0 at h = 0, sill sigma^2 + nugget
    np.testing.assert_allclose(semivariogram(h, "exponential", 2.0, 3.0, nugget=0.1),
                               [0.0, 4.0 * (1 - math.exp(-1)) + 0.1, 4.1])
    s = math.sqrt(3.0)
    np.testing.assert_allclose(semivariogram(h[:2], "matern32", 1.0, 3.0), [0.0, 1 - (1 + s) * math.exp(-s)])
    assert covariance(np.zeros(1), "matern32", 1.5, 2.0)[0] == pytest.approx(2.25)
    with pytest.raises(ValueError, match="covariance_model='gauss'"):
        semivariogram(h, "gauss", 1.0, 1.0)
