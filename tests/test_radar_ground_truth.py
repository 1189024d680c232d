"""ground_truth.json: the generator writes its schema version, the one reader checks the schema and names the file
and key of a bad one, and the curve the data follow is the mixture of the written components."""
import json
import subprocess
import sys

import numpy as np
import pytest

from datasets import insar_synthetic
from tests.conftest import REPO_ROOT
from utils.radar.ground_truth import (
    GROUND_TRUTH_NAME,
    SCHEMA_VERSION,
    expected_semivariogram,
    read_ground_truth,
    screen_only,
)

N = 16


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A tiny generator output with deformation (Monte-Carlo mixture) and class labels."""
    out = tmp_path_factory.mktemp("truth") / "data"
    insar_synthetic.main(out_dir=str(out), n_train=8, n_val=0, n_test=8, image_size=N, deformation_fraction=0.4,
                         truth_monte_carlo_fields=50, write_labels=True)
    return out


def _write(folder, truth) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / GROUND_TRUTH_NAME
    path.write_text(json.dumps(truth) if not isinstance(truth, str) else truth)
    return str(path)


def test_the_generator_writes_version_1_and_the_reader_returns_the_file(data):
    on_disk = json.loads((data / GROUND_TRUTH_NAME).read_text())
    assert on_disk["schema_version"] == SCHEMA_VERSION == 1
    assert read_ground_truth(data / GROUND_TRUTH_NAME) == on_disk


def test_a_file_of_the_current_generator_without_version_reads_as_version_1(data, tmp_path):
    truth = json.loads((data / GROUND_TRUTH_NAME).read_text())
    del truth["schema_version"]
    read = read_ground_truth(_write(tmp_path, truth))
    assert read["schema_version"] == 1 and {k: v for k, v in read.items() if k != "schema_version"} == truth


def _drop(dotted):
    def change(truth):
        *parents, last = dotted.split(".")
        node = truth
        for part in parents:
            node = node[part]
        del node[last]
    return change


@pytest.mark.parametrize("change, message", [
    (_drop("semivariogram.gamma_total"), "key 'semivariogram.gamma_total' is missing"),
    (_drop("components"), "key 'components.masks.expected_masked_fraction' is missing"),
    (_drop("semivariogram.gamma_mixture_se"), "only one of 'gamma_mixture' and 'gamma_mixture_se'"),
    (lambda t: t["params"].update(image_size="16"), "key 'params.image_size' is str '16'; expected int"),
    (lambda t: t["params"].update(atmo_sigma_rad=True), "key 'params.atmo_sigma_rad' is bool True; expected int or "
                                                        "float"),
    (lambda t: t["loader_kwargs"].update(key_class=3), "key 'loader_kwargs.key_class' is int 3; expected str or null"),
    (lambda t: t.update(schema_version=2), "schema_version 2 is not supported; expected 1 .. 1"),
])
def test_a_bad_file_gives_one_line_naming_the_file_and_the_key(data, tmp_path, change, message):
    truth = json.loads((data / GROUND_TRUTH_NAME).read_text())
    change(truth)
    path = _write(tmp_path, truth)
    with pytest.raises(ValueError) as err:
        read_ground_truth(path)
    assert str(err.value).startswith(path) and message in str(err.value) and "\n" not in str(err.value)


def test_missing_or_non_json_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"no ground truth file at {tmp_path / 'none.json'}"):
        read_ground_truth(tmp_path / "none.json")
    with pytest.raises(ValueError, match="not a UTF-8 JSON file"):
        read_ground_truth(_write(tmp_path / "a", "{'single': quotes}"))
    with pytest.raises(ValueError, match="holds a JSON list; expected an object"):
        read_ground_truth(_write(tmp_path / "b", "[1, 2]"))


def test_expected_semivariogram_is_the_background_plus_the_deformation_share(data):
    truth = read_ground_truth(data / GROUND_TRUTH_NAME)
    p = truth["params"]["deformation_fraction"]
    mc = truth["components"]["deformation"]["monte_carlo"]
    lags, gamma, se = expected_semivariogram(truth)
    np.testing.assert_array_equal(lags, np.arange(N))
    # gamma_mixture(h) = gamma_background(h) + p E[gamma_deformation(h)], SE = p SE_MC (the deformation term only)
    np.testing.assert_allclose(gamma, np.array(truth["semivariogram"]["gamma_total"]) + p * np.array(mc["gamma_mean"]),
                               rtol=1e-12)
    np.testing.assert_allclose(se, p * np.array(mc["gamma_se"]), rtol=1e-12)
    assert not screen_only(truth)


def test_without_deformation_the_curve_is_the_exact_total_with_zero_error(tmp_path):
    truth = insar_synthetic.main(out_dir=str(tmp_path), n_train=2, n_val=0, n_test=0, image_size=N,
                                 deformation_fraction=0.0, truth_monte_carlo_fields=0)
    _, gamma, se = expected_semivariogram(truth)
    p = truth["params"]
    sigma, length, noise = p["atmo_sigma_rad"], p["atmo_length_px"], p["noise_sigma_rad"]
    h = np.arange(N)
    # exponential covariance: gamma(h) = sigma^2 (1 - exp(-h / L)) + noise^2 for h > 0
    np.testing.assert_allclose(gamma[1:], sigma ** 2 * (1 - np.exp(-h[1:] / length)) + noise ** 2, rtol=1e-12)
    assert np.all(se == 0) and screen_only(truth)


def test_report_cli_names_a_bad_truth_file_before_writing_anything(data, tmp_path):
    truth = json.loads((data / GROUND_TRUTH_NAME).read_text())
    del truth["semivariogram"]["lags_px"]
    bad = _write(tmp_path / "bad", truth)
    np.savez(tmp_path / "samples.npz", np.zeros((4, N, N, 1), np.float32))
    (tmp_path / "metadata.json").write_text(json.dumps({"data_normalization": {
        "kind": "none", "low": -1.0, "high": 1.0, "db": False, "cos_sin": False}}))
    out = tmp_path / "results"
    args = ["--real", str(data / "test"), "--samples", str(tmp_path / "samples.npz"), "--results_dir", str(out),
            "--metrics", "scorecard", "--key_data", "unwrap", "--metadata_json", str(tmp_path / "metadata.json"),
            "--truth_json", bad]
    run = subprocess.run([sys.executable, "-m", "utils.report", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines() == [f"error: truth_json: {bad}: key 'semivariogram.lags_px' is missing; expected the "
                                               "layout datasets/insar_synthetic.py writes (regenerate the data)"]
    assert not out.exists()
