"""FFT semivariogram: equals direct estimators, matches an analytic variogram, I/O and errors."""
import numpy as np
import pytest

from utils.evaluation.semivariogram import (
    empirical_semivariogram,
    pairwise_semivariogram,
    read_semivariogram_csv,
    write_semivariogram_csv,
)


def _naive_gamma(field, max_bin):
    """Double loop over all unordered pairs of valid pixels, bins of width 1 centred on integers."""
    pts = [(i, j, field[i, j]) for i in range(field.shape[0]) for j in range(field.shape[1])
           if np.isfinite(field[i, j])]
    sums, counts = np.zeros(max_bin + 1), np.zeros(max_bin + 1)
    for a in range(len(pts)):
        for b in range(a + 1, len(pts)):
            d = np.hypot(pts[a][0] - pts[b][0], pts[a][1] - pts[b][1])
            k = int(np.floor(d + 0.5))
            if 1 <= k <= max_bin:
                sums[k] += (pts[a][2] - pts[b][2]) ** 2
                counts[k] += 1
    return sums[1:] / (2 * counts[1:])


def test_fft_equals_naive_double_loop_with_nan_mask():
    rng = np.random.default_rng(0)
    field = rng.normal(size=(6, 5)) * 3 + 100.0
    field[1, 2] = field[4, 0] = np.nan
    result = empirical_semivariogram(field[None], max_lag=3, progress=False)
    np.testing.assert_allclose(result.gamma, _naive_gamma(field, 3), rtol=1e-10)


@pytest.mark.parametrize("direction", [None, 0.0, 45.0, 90.0, 135.0])
def test_fft_equals_pairwise_estimator(direction):
    rng = np.random.default_rng(1)
    fields = rng.normal(size=(3, 14, 11)).cumsum(axis=1)
    fields[0, 3, 4] = np.nan
    fields[2, 6:8, :] = np.nan
    fft = empirical_semivariogram(fields, max_lag=6, direction=direction, tolerance=20, batch_size=2, progress=False)
    direct = pairwise_semivariogram(fields, max_lag=6, direction=direction, tolerance=20, block=17)
    np.testing.assert_allclose(fft.per_field, direct.per_field, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(fft.pair_count, direct.pair_count)
    np.testing.assert_allclose(fft.mean_distance, direct.mean_distance, rtol=1e-12)


def _exponential_fields(n, side, sill, scale, seed):
    """Exact samples of a zero-mean Gaussian field with covariance sill * exp(-r / scale) (Cholesky)."""
    yy, xx = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    pts = np.column_stack([yy.ravel(), xx.ravel()])
    r = np.linalg.norm(pts[:, None, :] - pts[None, :, :], axis=-1)
    chol = np.linalg.cholesky(sill * np.exp(-r / scale) + 1e-10 * np.eye(len(pts)))
    z = np.random.default_rng(seed).normal(size=(n, len(pts)))
    return (z @ chol.T).reshape(n, side, side)


def test_matches_analytic_exponential_variogram_within_sampling_error():
    side, sill, scale = 16, 2.0, 3.0
    fields = _exponential_fields(300, side, sill, scale, seed=2)
    gamma_true = lambda r: sill * (1 - np.exp(-r / scale))  # noqa: E731

    along_rows = empirical_semivariogram(fields, max_lag=8, direction=0.0, tolerance=1.0, progress=False)
    err = np.abs(along_rows.gamma - gamma_true(np.arange(1, 9)))
    assert np.all(err < 4 * along_rows.gamma_se), (err, along_rows.gamma_se)

    omni = empirical_semivariogram(fields, max_lag=8, progress=False)
    # expected value of the pooled estimator: pair-count-weighted mean of gamma over the bin's lag vectors
    expected_sum, weight = np.zeros(9), np.zeros(9)
    for dy in range(-side + 1, side):
        for dx in range(-side + 1, side):
            k = int(np.floor(np.hypot(dy, dx) + 0.5))
            if 1 <= k <= 8:
                pairs = (side - abs(dy)) * (side - abs(dx))
                expected_sum[k] += pairs * gamma_true(np.hypot(dy, dx))
                weight[k] += pairs
    expected = expected_sum[1:] / weight[1:]
    assert np.all(np.abs(omni.gamma - expected) < 4 * omni.gamma_se)
    np.testing.assert_array_equal(omni.pair_count, 300 * weight[1:])


def test_standard_error_is_std_over_fields_over_sqrt_n():
    fields = np.random.default_rng(3).normal(size=(7, 10, 10))
    result = empirical_semivariogram(fields, max_lag=4, progress=False)
    np.testing.assert_allclose(result.gamma_se, result.per_field.std(axis=0, ddof=1) / np.sqrt(7))
    assert np.all(result.n_fields == 7)


def test_rescale_option_and_unit_preservation():
    fields = np.random.default_rng(4).normal(size=(4, 12, 12))
    base = empirical_semivariogram(fields, progress=False)
    scaled = empirical_semivariogram(10 * fields + 5, progress=False)
    np.testing.assert_allclose(scaled.gamma, 100 * base.gamma, rtol=1e-10)
    rescaled = empirical_semivariogram(10 * fields + 5, rescale=True, progress=False)
    np.testing.assert_allclose(rescaled.per_field, empirical_semivariogram(fields, rescale=True,
                                                                           progress=False).per_field, rtol=1e-9)


def test_csv_round_trip(tmp_path):
    result = empirical_semivariogram(np.random.default_rng(5).normal(size=(3, 8, 8)), progress=False)
    path = write_semivariogram_csv(result, tmp_path / "sv.csv")
    table = read_semivariogram_csv(path)
    np.testing.assert_allclose(table["gamma"], result.gamma, rtol=1e-9)
    np.testing.assert_allclose(table["lags"], [1, 2, 3, 4])
    with pytest.raises(FileExistsError):
        write_semivariogram_csv(result, path)


def test_bad_inputs():
    with pytest.raises(ValueError, match="expected \\(N, H, W\\)"):
        empirical_semivariogram(np.zeros((2, 8, 8, 1)))
    with pytest.raises(ValueError, match="max_lag=50"):
        empirical_semivariogram(np.zeros((2, 8, 8)), max_lag=50)


def test_matches_ground_truth_of_synthetic_insar(tmp_path):
    """Fields of datasets/insar_synthetic.py (no deformation) read back from its HDF5 folder:
    semivariogram along both axes equals the analytic one of ground_truth.json within 4 SE."""
    from datasets import insar_synthetic
    from utils.evaluation.array_io import load_image_set

    truth = insar_synthetic.main(out_dir=str(tmp_path), n_train=400, n_val=0, n_test=0, image_size=32,
                                 deformation_fraction=0.0, fields_per_file=150, seed=1)
    fields = load_image_set(tmp_path / "train", key_data="unwrap").images[..., 0]
    assert fields.shape == (400, 32, 32)
    sv_truth = truth["semivariogram"]
    expected = np.interp(np.arange(1, 13), sv_truth["lags_px"], sv_truth["gamma_atmosphere_plus_noise"])
    for direction in (0.0, 90.0):
        result = empirical_semivariogram(fields, max_lag=12, direction=direction, tolerance=1.0, progress=False)
        np.testing.assert_array_equal(result.mean_distance, np.arange(1, 13))
        assert np.all(np.abs(result.gamma - expected) < 4 * result.gamma_se), (direction, result.gamma, expected)
