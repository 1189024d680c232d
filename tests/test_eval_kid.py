"""KID: the cubic kernel, the unbiased MMD^2 against a direct double sum, unbiasedness and its standard error."""
import numpy as np
import pytest

from utils.evaluation.kid import kid_from_features, mmd2_unbiased, polynomial_kernel


def test_kernel_value_by_hand():
    # x . y = 3 - 2 = 1, / D = 0.5, + 1 = 1.5, cubed = 3.375
    assert polynomial_kernel(np.array([[1.0, 2.0]]), np.array([[3.0, -1.0]]))[0, 0] == pytest.approx(3.375)


def test_mmd2_matches_a_direct_double_sum():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 3)), rng.normal(1.0, 1.0, size=(5, 3))

    def k(a, b):
        return (sum(a * b) / 3 + 1) ** 3
    xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    xy = sum(k(a, b) for a in x for b in y) / 35
    assert mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_point_masses_give_the_exact_discrepancy():
    a, b = np.array([1.0, 0.0]), np.array([0.0, 2.0])
    report = kid_from_features(np.tile(a, (20, 1)), np.tile(b, (30, 1)), num_subsets=4)
    # k(a, a) = 1.5^3, k(b, b) = 3^3, k(a, b) = 1
    assert report["kid"] == pytest.approx(1.5 ** 3 + 27 - 2, rel=1e-12)
    assert report["se"] == pytest.approx(0.0, abs=1e-9)


def test_unbiased_at_small_counts_and_standard_error_is_calibrated():
    rng = np.random.default_rng(1)
    kids, ses = [], []
    for r in range(200):
        report = kid_from_features(rng.normal(size=(40, 4)), rng.normal(size=(40, 4)), num_subsets=4, seed=r)
        kids.append(report["kid"])
        ses.append(report["se"])
    kids = np.array(kids)
    assert abs(kids.mean()) < 3 * kids.std() / np.sqrt(len(kids))  # true value 0: no bias
    assert kids.min() < 0  # reported unclipped
    assert kids.std() <= np.mean(ses) < 3 * kids.std()  # conservative, not uselessly so
    shifted = kid_from_features(rng.normal(size=(40, 4)), rng.normal(1.0, 1.0, size=(40, 4)), num_subsets=4)
    assert shifted["ci_low"] > 0


def test_too_few_points_for_the_subsets_raises():
    with pytest.raises(ValueError, match="num_subsets=10"):
        kid_from_features(np.zeros((15, 2)), np.zeros((30, 2)), num_subsets=10)
