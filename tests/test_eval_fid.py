"""FID: identities, analytic Fréchet distances, bootstrap report, bad inputs."""
import numpy as np
import pytest

from utils.evaluation.fid import feature_statistics, fid_from_features, frechet_distance


def test_fid_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).normal(size=(500, 16))
    report = fid_from_features(x, x, num_bootstrap=0)
    assert abs(report["fid"]) < 1e-8
    assert report["n_real"] == report["n_generated"] == 500


def test_diagonal_gaussians_match_closed_form():
    # commuting covariances: d^2 = |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = 1 + 0 + 4 + (1 - 2) ** 2 + (2 - 1) ** 2 + (3 - 0.5) ** 2
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_non_commuting_2d_gaussians_match_trace_formula():
    # for 2x2 PSD M: tr(sqrt(M)) = sqrt(tr M + 2 sqrt(det M)); here M = S1 S2 (real spectrum)
    s1 = np.array([[2.0, 0.8], [0.8, 1.0]])
    s2 = np.array([[1.0, -0.3], [-0.3, 3.0]])
    m = s1 @ s2
    tr_sqrt = np.sqrt(np.trace(m) + 2 * np.sqrt(np.linalg.det(m)))
    expected = 0.5 ** 2 + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert frechet_distance(np.zeros(2), s1, np.array([0.5, 0.0]), s2) == pytest.approx(expected, rel=1e-12)


def test_singular_covariance_stays_real_and_finite():
    s = np.zeros((4, 4))
    s[0, 0] = 1.0
    d = frechet_distance(np.zeros(4), s, np.zeros(4), s)
    assert abs(d) < 1e-12


def test_sampled_gaussians_approach_analytic_value_and_interval_covers_it():
    rng = np.random.default_rng(1)
    real = rng.normal(0.0, 1.0, size=(4000, 3))
    gen = rng.normal(0.5, 2.0, size=(4000, 3))
    expected = 3 * 0.5 ** 2 + 3 * (1 - 2) ** 2
    report = fid_from_features(real, gen, num_bootstrap=50)
    assert report["fid"] == pytest.approx(expected, rel=0.05)
    assert report["ci_low"] <= report["fid"] <= report["ci_high"]
    assert report["ci_low"] < expected < report["ci_high"] + 0.2


def test_too_few_samples_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 2"):
        feature_statistics(np.ones((1, 5)))
    with pytest.warns(UserWarning, match="rank deficient"):
        feature_statistics(np.random.default_rng(0).normal(size=(4, 8)))


def test_mismatched_feature_dimensions_raise():
    with pytest.raises(ValueError, match="equal D"):
        fid_from_features(np.zeros((10, 3)), np.zeros((10, 4)))


def _gaussian_pair():
    """Two 4-d Gaussians with a full (non-commuting) covariance and their exact Fréchet distance."""
    rng = np.random.default_rng(7)
    a = rng.normal(size=(4, 4))
    sigma2 = a @ a.T / 4 + 0.2 * np.eye(4)
    mu2 = np.full(4, 0.3)
    # closed form with S1 = I: |mu2|^2 + tr(I) + tr(S2) - 2 tr(S2^{1/2}), S2^{1/2} from its eigenvalues
    exact = mu2 @ mu2 + 4 + np.trace(sigma2) - 2 * np.sqrt(np.linalg.eigvalsh(sigma2)).sum()
    return mu2, np.linalg.cholesky(sigma2), exact


def test_interval_covers_the_true_distance_at_nominal_rate():
    mu2, chol2, exact = _gaussian_pair()
    rng = np.random.default_rng(0)
    repetitions, covered, plain_percentile_covered = 300, 0, 0
    for r in range(repetitions):
        real = rng.normal(size=(200, 4))
        gen = rng.normal(size=(200, 4)) @ chol2.T + mu2
        report = fid_from_features(real, gen, num_bootstrap=100, seed=r)
        covered += report["ci_low"] <= exact <= report["ci_high"]
        # the old percentile interval of the bootstrap replicates is 2 fid - [ci_high, ci_low]
        plain_percentile_covered += 2 * report["fid"] - report["ci_high"] <= exact <= 2 * report["fid"] - report["ci_low"]
    assert abs(covered / repetitions - 0.95) <= 0.03
    assert plain_percentile_covered / repetitions < 0.9  # the bias matters at this size: the fix is needed


def test_plug_in_fid_is_clamped_and_corrected_fid_is_unbiased_near_zero():
    rng = np.random.default_rng(3)
    corrected, plug_in = [], []
    for r in range(100):
        x, y = rng.normal(size=(100, 3)), rng.normal(size=(100, 3))
        report = fid_from_features(x, y, num_bootstrap=50, seed=r)
        assert report["fid"] >= 0 and report["ci_low"] <= report["ci_high"] and report["se"] > 0
        corrected.append(report["fid_corrected"])
        plug_in.append(report["fid"])
    # true distance 0: the plug-in mean sits well above it, the corrected one much closer and may go negative
    assert np.mean(plug_in) > 3 * abs(np.mean(corrected))
    assert min(corrected) < 0
    with pytest.raises(ValueError, match="num_bootstrap=1"):
        fid_from_features(x, y, num_bootstrap=1)
