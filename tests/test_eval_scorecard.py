"""The scorecard against truth: each statistic on a case with a known answer, generator samples passing
within noise at about the nominal rate, a scaled copy failing, masks, labels and the report section."""
import json

import h5py
import numpy as np
import pytest
import scipy.stats

from datasets import insar_synthetic
from improved_diffusion.data_normalization import make_normalization
from utils.evaluation.report import evaluate_samples
from utils.evaluation.scorecard import (
    PLOTS,
    _excess_kurtosis,
    _quantiles,
    _sorted_values,
    _w1_row,
    background_threshold,
    format_table,
    plane_residual_max,
    scorecard,
)

N = 16
SETS, PER_SET = 4, 200


def _read(folder):
    with h5py.File(sorted(folder.glob("*.hdf5"))[0], "r") as f:
        return f["unwrap"][:].astype(np.float64), f["label"][:]


@pytest.fixture(scope="module")
def mixture(tmp_path_factory):
    """Generator fields: SETS independent sample sets (train) and one labelled real set (test), with truth."""
    out = tmp_path_factory.mktemp("scorecard") / "data"
    truth = insar_synthetic.main(out_dir=str(out), n_train=SETS * PER_SET, n_val=0, n_test=PER_SET, image_size=N,
                                 atmo_sigma_rad=0.5, atmo_length_px=4.0, turbulence_sigma_rad=1.0,
                                 ramp_sigma_rad=0.5, deformation_fraction=0.3, mogi_volume_m3=(2e4, 1e5),
                                 write_labels=True, truth_monte_carlo_fields=4000, fields_per_file=2000)
    samples, _ = _read(out / "train")
    real, labels = _read(out / "test")
    return out, truth, samples.reshape(SETS, PER_SET, N, N), real, labels


def test_plane_residual_of_a_plane_plus_checkerboard_is_the_checkerboard_amplitude():
    rows, cols = np.meshgrid(np.arange(N), np.arange(N), indexing="ij")
    plane = 3.0 + 0.7 * rows - 1.1 * cols
    checker = 0.25 * (-1.0) ** (rows + cols)  # orthogonal to 1, rows and cols on an even grid
    fields = np.stack([plane, plane + checker, np.where(rows < 4, np.nan, plane)])
    np.testing.assert_allclose(plane_residual_max(fields), [0.0, 0.25, 0.0], atol=1e-9)


def test_background_threshold_of_white_noise_is_the_max_quantile_of_independent_normals():
    sigma = 0.3
    truth = {"params": {"image_size": N, "covariance_model": "exponential", "atmo_sigma_rad": 0.0,
                        "atmo_length_px": 1.0, "noise_sigma_rad": sigma}}
    got = background_threshold(truth, num_fields=4000)["threshold_rad"]
    # P(max of N^2 independent |X| <= t) = (2 Phi(t / sigma) - 1)^(N^2) = 0.99 (the plane removes 3 of 256 dof)
    expected = sigma * scipy.stats.norm.ppf((1 + 0.99 ** (1 / N ** 2)) / 2)
    assert got == pytest.approx(expected, rel=0.04)


def test_moments_quantiles_and_w1_match_reference_implementations():
    rng = np.random.default_rng(1)
    a, b = rng.standard_t(5, (30, 8, 8)), 1.2 * rng.standard_t(5, (20, 8, 8))
    flat = a.ravel()
    sums = np.array([flat.size, flat.sum(), (flat ** 2).sum(), (flat ** 3).sum(), (flat ** 4).sum()])
    assert _excess_kurtosis(sums) == pytest.approx(scipy.stats.kurtosis(flat), rel=1e-9)
    values, _ = _sorted_values(a)
    np.testing.assert_array_equal(_quantiles(values, np.ones(values.size)),
                                  np.quantile(flat, (0.01, 0.05, 0.5, 0.95, 0.99), method="inverted_cdf"))
    w1 = _w1_row(a, b, "rad", 20, rng)
    assert w1["value"] == pytest.approx(scipy.stats.wasserstein_distance(a.ravel(), b.ravel()), rel=1e-9)


def test_generator_samples_pass_at_about_the_nominal_rate_and_a_scaled_copy_fails(mixture):
    _, truth, samples, real, labels = mixture
    flags, truth_flags = [], []
    for k in range(SETS):
        card = scorecard(samples[k], real, truth=truth, real_labels=labels, seed=k)
        flags += [row["within_noise"] for row in card["rows"]] + [card["w1"]["within_noise"]]
        truth_flags += [card["rows"][0]["samples_within_noise_of_truth"]]
    truth_flags.append(card["rows"][0]["real_within_noise_of_truth"])
    # 4 x 17 flags at 95 % each: 3.4 failures expected, P(more than 10) < 1e-3 for independent flags; the
    # truth semivariogram: 5 curves at 95 %, P(two or more fail) = 2 %
    assert np.mean(flags) >= 0.85, np.mean(flags)
    assert sum(truth_flags) >= len(truth_flags) - 1, truth_flags
    scaled = scorecard(2.0 * samples[0], real, truth=truth, real_labels=labels)
    assert scaled["summary"]["within_noise_of_real"] <= 0.4 * scaled["summary"]["checked_against_real"]
    assert not scaled["rows"][0]["samples_within_noise_of_truth"]
    table = format_table(scaled)
    assert "semivariogram mean" in table and "NO" in table and "within noise:" in table


def test_detection_matches_the_labels_on_real_data(mixture):
    _, truth, samples, real, labels = mixture
    det = scorecard(samples[0], real, truth=truth, real_labels=labels)["detection"]["real_vs_labels"]
    assert det["num_deformation"] == int(labels.sum()) and det["num_background"] == int((labels == 0).sum())
    assert det["false_positive_rate_within_noise"]
    assert det["true_positive_rate"] > det["false_positive_rate"] + 3 * det["true_positive_rate_se"]


def test_masked_fields_keep_finite_statistics_and_report_the_masked_fraction(mixture):
    _, truth, samples, real, _ = mixture
    rng = np.random.default_rng(2)
    masked = np.where(rng.random(real.shape) < 0.1, np.nan, real)
    card = scorecard(samples[0], masked, truth=truth)
    assert card["masks"]["real_masked_fraction"] == pytest.approx(np.isnan(masked).mean())
    assert card["masks"]["samples_masked_fraction"] == 0.0
    for row in card["rows"]:
        assert np.all(np.isfinite(row["real"])) and np.all(np.isfinite(row["real_se"])), row["statistic"]


def test_report_section_writes_plots_and_metrics_and_needs_metadata(mixture, tmp_path):
    data, _, samples, _, _ = mixture
    npz = tmp_path / "samples.npz"
    np.savez(npz, samples[1][..., None].astype(np.float32))
    meta = tmp_path / "metadata.json"
    meta.write_text(json.dumps({"data_normalization": make_normalization("none")}))
    kwargs = dict(real=str(data / "test"), samples=str(npz), metrics="scorecard", key_data="unwrap",
                  truth_json=str(data / "ground_truth.json"))
    with pytest.raises(ValueError, match="'scorecard' needs metadata_json"):
        evaluate_samples(results_dir=str(tmp_path / "none"), **kwargs)
    report = evaluate_samples(results_dir=str(tmp_path / "out"), metadata_json=str(meta), **kwargs)
    for name in PLOTS:
        assert (tmp_path / "out" / name).is_file(), name
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())["scorecard"]
    assert saved["summary"] == report["scorecard"]["summary"] and saved["detection"]["real_vs_labels"]
