"""A user's masked InSAR set through the feature metrics: NaN policy, units refusal, the degenerate baseline."""
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

import example_fine_tuning
import utils_FID
from utils.evaluation.comparable import apply_nan_policy
from utils.evaluation.feature_scores import pixel_gaussian
from utils.evaluation.features import DomainCNN
from utils.evaluation.fine_tuning import save_classifier

N_REAL, N_HOLED = 40, 12  # images in the real HDF5 set, of which the first N_HOLED hold a 4x4 NaN block


@pytest.fixture
def masked(tmp_path):
    rng = np.random.default_rng(0)
    real = tmp_path / "real"
    real.mkdir()
    phase = rng.normal(0, 2, (N_REAL, 16, 16)).astype(np.float32)
    phase[:N_HOLED, 4:8, 4:8] = np.nan
    with h5py.File(real / "part0.hdf5", "w") as f:
        f["unwrap"] = phase
    run = tmp_path / "models_data" / "run"
    run.mkdir(parents=True)
    norm = {"kind": "range", "low": -8.0, "high": 8.0, "db": False, "cos_sin": False}
    (run / "metadata.json").write_text(json.dumps({"data_normalization": norm}))
    samples = tmp_path / "results" / "samples_30x16x16x1.npz"
    samples.parent.mkdir()
    np.savez(samples, rng.normal(0, 0.25, (30, 16, 16, 1)).astype(np.float32))
    samples.with_suffix(".json").write_text(json.dumps({"model_path": str(run / "model_epoch=1_iter=2.pt")}))
    ext = save_classifier(tmp_path / "classifier_best.pt", DomainCNN(1, 2, 4).eval(), {"arch": "domain_cnn"})
    return {"real": str(real), "samples": samples, "ext": str(ext), "run": run, "tmp": tmp_path}


def _fid_cli(repo_root, masked, *flags):
    args = [sys.executable, "utils_FID.py", "--real", masked["real"], "--generated", str(masked["samples"]),
            "--extractor_path", masked["ext"], "--key_data", "unwrap", "--num_bootstrap", "3", *flags]
    return subprocess.run(args, cwd=repo_root, capture_output=True, text=True, timeout=300)


def test_fill_gives_generated_samples_the_real_holes_and_zero_in_them():
    real = np.ones((3, 8, 8, 1), np.float32)
    real[:, 2:4, 2:4] = np.nan  # every real image: the same 2x2 hole
    generated = np.full((5, 8, 8, 1), 0.5, np.float32)
    real_out, gen_out, record = apply_nan_policy(real, generated, "fill")
    assert (gen_out[:, 2:4, 2:4] == 0).all() and (gen_out.sum() == 0.5 * 5 * (64 - 4))
    assert (real_out[:, 2:4, 2:4] == 0).all() and real_out.sum() == 3 * 60
    assert record["real"]["n_with_nan"] == 3 and record["real"]["nan_fraction"] == pytest.approx(4 / 64)
    assert record["generated"]["n_with_nan"] == 0 and record["generated"]["n_kept"] == 5
    kept, _, dropped = apply_nan_policy(np.concatenate([real, np.ones((2, 8, 8, 1), np.float32)]), None, "drop")
    assert len(kept) == 2 and dropped["real"]["n_kept"] == 2
    with pytest.raises(ValueError, match="every image holds NaN"):
        apply_nan_policy(real, None, "drop")
    with pytest.raises(ValueError, match="nan_policy='fill'"):
        apply_nan_policy(real, None, "error")


@pytest.mark.filterwarnings("ignore:.*rank deficient")
def test_masked_hdf5_through_fid_kid_pr_with_metadata_from_the_provenance(masked, repo_root):
    refused = _fid_cli(repo_root, masked)
    assert refused.returncode == 2 and f"{N_HOLED} of {N_REAL} images hold NaN" in refused.stderr
    assert "Traceback" not in refused.stderr
    out = masked["tmp"] / "fid_fill.json"
    done = _fid_cli(repo_root, masked, "--nan_policy", "fill", "--out_json", str(out))
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["metadata_from"] == "sample provenance"
    assert report["metadata_json"] == str(masked["run"] / "metadata.json")
    pixels = report["masked_pixels"]
    assert pixels["nan_policy"] == "fill" and pixels["real"]["n_with_nan"] == N_HOLED
    assert pixels["real"]["nan_fraction"] == pytest.approx(N_HOLED * 16 / (N_REAL * 256))
    assert pixels["real"]["n_kept"] == N_REAL and report["fid"]["n_real"] == N_REAL
    assert np.isfinite(report["fid"]["fid"]) and np.isfinite(report["kid"]["kid"])
    assert "degenerate baseline" in done.stdout
    dropped = utils_FID.main(masked["real"], str(masked["samples"]), extractor_path=masked["ext"], key_data="unwrap",
                             nan_policy="drop", num_bootstrap=0, metrics="fid,precision_recall")
    assert dropped["masked_pixels"]["real"]["n_kept"] == N_REAL - N_HOLED
    assert dropped["fid"]["n_real"] == N_REAL - N_HOLED


def test_stored_units_against_model_units_is_refused(masked, repo_root):
    masked["samples"].with_suffix(".json").unlink()  # no provenance: the metadata cannot be found
    done = _fid_cli(repo_root, masked, "--nan_policy", "fill")
    assert done.returncode == 2 and "stored units" in done.stderr and "metadata_json" in done.stderr
    assert "Traceback" not in done.stderr
    given = utils_FID.main(masked["real"], str(masked["samples"]), extractor_path=masked["ext"], key_data="unwrap",
                           nan_policy="fill", num_bootstrap=0, metrics="fid",
                           metadata_json=str(masked["run"] / "metadata.json"))
    assert given["metadata_from"] == "given"


@pytest.mark.filterwarnings("ignore:.*rank deficient")
def test_degenerate_baseline_row_and_warning(masked):
    rng = np.random.default_rng(3)
    noise = masked["tmp"] / "noise.npz"  # the baseline's own law as "samples": not better than the baseline
    real = np.nan_to_num(rng.normal(0, 0.25, (40, 16, 16, 1)).astype(np.float32))
    np.savez(noise, pixel_gaussian(real, 30, seed=7))
    np.savez(masked["tmp"] / "real.npz", real)
    with pytest.warns(UserWarning, match="not clearly above Gaussian noise"):
        report = utils_FID.main(str(masked["tmp"] / "real.npz"), str(noise), extractor_path=masked["ext"],
                                num_bootstrap=0, metrics="precision_recall")
    base = report["degenerate_baseline"]
    assert base["n"] == 30 and 0 <= base["precision"] <= 1 and 0 <= base["recall"] <= 1
    assert "degenerate baseline" in report["summary"]


def test_pixel_gaussian_has_the_real_per_pixel_mean_and_std():
    rng = np.random.default_rng(0)
    mean = np.linspace(-1, 1, 16).reshape(4, 4, 1)
    real = (mean + 0.1 * rng.standard_normal((400, 4, 4, 1))).astype(np.float32)
    real[0, 0, 0, 0] = np.nan
    noise = pixel_gaussian(real, 4000, seed=1)
    assert noise.shape == (4000, 4, 4, 1) and noise.dtype == np.float32
    # 4000 draws: standard errors 0.0016 (mean) and 0.0011 (std) around the real set's own per-pixel values
    assert np.allclose(noise.mean(axis=0), np.nanmean(real, axis=0), atol=0.007)
    assert np.allclose(noise.std(axis=0), np.nanstd(real, axis=0), atol=0.005)


def test_contrastive_extractor_trains_on_masked_hdf5(masked, tmp_path):
    metadata = str(masked["run"] / "metadata.json")
    with pytest.raises(ValueError, match="hold NaN"):
        example_fine_tuning.main(str(tmp_path / "refused"), unlabelled_data=masked["real"], key_data="unwrap",
                                 metadata_json=metadata, num_epochs=1)
    assert not (tmp_path / "refused").exists()
    for policy, kept in (("fill", N_REAL), ("drop", N_REAL - N_HOLED)):
        out = tmp_path / policy
        example_fine_tuning.main(str(out), unlabelled_data=masked["real"], key_data="unwrap", metadata_json=metadata,
                                 nan_policy=policy, num_epochs=1, width=2, batch_size=16)
        saved = torch.load(out / "classifier_best.pt", weights_only=True)
        assert saved["nan_policy"] == policy and saved["masked_pixels"]["n_kept"] == kept
        assert saved["masked_pixels"]["n_with_nan"] == N_HOLED


@pytest.mark.filterwarnings("ignore:.*rank deficient")
def test_report_command_fills_masked_sets_and_refuses_mixed_units(masked, repo_root):
    def report(out, *flags):
        return subprocess.run([sys.executable, "-m", "utils.report", "--real", masked["real"], "--samples",
                               str(masked["samples"]), "--results_dir", str(masked["tmp"] / out), "--key_data",
                               "unwrap", "--extractor_path", masked["ext"], "--metrics", "fid,precision_recall",
                               "--num_bootstrap", "0", *flags], cwd=repo_root, capture_output=True, text=True,
                              timeout=300)
    done = report("filled", "--nan_policy", "fill")
    assert done.returncode == 0, done.stderr
    saved = json.loads((masked["tmp"] / "filled" / "metrics.json").read_text())
    assert saved["metadata_from"] == "sample provenance" and saved["masked_pixels"]["real"]["n_with_nan"] == N_HOLED
    assert "degenerate_baseline" in saved
    masked["samples"].with_suffix(".json").unlink()
    refused = report("mixed", "--nan_policy", "fill")
    assert refused.returncode == 2 and "stored units" in refused.stderr
    assert not (masked["tmp"] / "mixed" / "metrics.json").exists()
