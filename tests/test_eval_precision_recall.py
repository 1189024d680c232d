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


def test_identical_sets_and_disjoint_supports():
    cloud = np.random.default_rng(0).normal(size=(200, 8))
    same = precision_recall(cloud, cloud.copy(), k=3)
    assert same["precision"] == 1.0 and same["recall"] == 1.0
    # a second cloud of the same law: most points inside the other's k-NN balls, not all
    other = precision_recall(cloud, np.random.default_rng(1).normal(size=(200, 8)), k=3)
    assert 0.5 < other["precision"] < 1 and 0.5 < other["recall"] < 1
    # supports 100 standard deviations apart: no point inside the other's manifold
    far = precision_recall(cloud, cloud + 100.0, k=3)
    assert far["precision"] == 0.0 and far["recall"] == 0.0
