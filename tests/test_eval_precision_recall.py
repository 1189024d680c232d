"""Improved precision/recall on constructed point clouds with known answers."""
import numpy as np
import pytest

from utils.evaluation.precision_recall import knn_radii, precision_recall


def _line(xs):
    return np.column_stack([np.asarray(xs, dtype=float), np.zeros(len(xs))])


def test_knn_radius_on_a_regular_line():
    radii = knn_radii(_line(range(10)), k=3, batch_size=4)
    # interior point 5: neighbours at distance 1, 1, 2 -> 3rd nearest at 2; end point 0: 1, 2, 3 -> 3
    assert radii[5] == 2 and radii[0] == 3


def test_half_of_generated_points_off_manifold():
    real = _line(range(100))
    gen = np.vstack([real, _line(np.arange(100) + 1000.0)])
    report = precision_recall(real, gen, k=3, batch_size=33)
    assert report["precision"] == pytest.approx(0.5)
    assert report["recall"] == pytest.approx(1.0)
    assert report["n_real"] == 100 and report["n_generated"] == 200


def test_generated_set_covers_left_part_only():
    real = _line(range(100))
    gen = _line(range(50))
    report = precision_recall(real, gen, k=3)
    # generated radii: 3 at the ends (point 49 -> neighbours 48, 47, 46), so real points 0..52 are covered
    assert report["precision"] == 1.0
    assert report["recall"] == pytest.approx(53 / 100)
    low, high = report["recall_ci"]
    assert low <= 0.53 <= high


def test_k_too_large_raises():
    with pytest.raises(ValueError, match="k=5"):
        precision_recall(_line(range(5)), _line(range(10)), k=5)
