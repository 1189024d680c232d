"""End to end: utils_FID CLI function and the one-call report on small synthetic sets."""
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from PIL import Image

import utils_FID
from utils.evaluation.features import DomainCNN
from utils.evaluation.fine_tuning import save_classifier
from utils.evaluation.report import evaluate_samples


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    real = tmp_path / "real"
    real.mkdir()
    for i in range(40):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), mode="L").save(real / f"{i % 2}_{i:03d}.png")
    samples = tmp_path / "samples_30x16x16x1.npz"
    np.savez(samples, rng.uniform(-1, 1, (30, 16, 16, 1)).astype(np.float32), np.zeros(30, np.int64))
    ext = save_classifier(tmp_path / "classifier_best.pt", DomainCNN(1, 2, 4).eval(), {"arch": "domain_cnn"})
    return {"real": str(real), "samples": str(samples), "ext": str(ext), "tmp": tmp_path}


@pytest.mark.filterwarnings("ignore:.*rank deficient")
def test_fid_script_reports_counts_interval_and_uses_cache(data):
    cache = data["tmp"] / "cache"
    kwargs = dict(extractor_path=data["ext"], num_bootstrap=5, cache_dir=str(cache))
    first = utils_FID.main(data["real"], data["samples"], **kwargs)
    assert first["fid"]["n_real"] == 40 and first["fid"]["n_generated"] == 30
    assert first["fid"]["ci_low"] <= first["fid"]["ci_high"]
    assert 0 <= first["precision_recall"]["precision"] <= 1
    assert len(list(cache.iterdir())) == 1
    again = utils_FID.main(data["real"], data["samples"], **kwargs)
    assert again["fid"]["fid"] == first["fid"]["fid"] and len(list(cache.iterdir())) == 1
    utils_FID.main(data["real"], data["samples"], num_samples=20, **kwargs)
    assert len(list(cache.iterdir())) == 2  # another subset is another cache entry


def test_fid_script_bad_inputs(data, tmp_path):
    with pytest.raises(ValueError, match="extractor_path=None"):
        utils_FID.main(data["real"], data["samples"])
    with pytest.raises(FileNotFoundError, match="extractor_path"):
        utils_FID.main(data["real"], data["samples"], extractor_path=str(tmp_path / "none.pt"))
    np.savez(tmp_path / "rgb.npz", np.zeros((4, 16, 16, 3), np.float32))
    with pytest.raises(ValueError, match="must match"):
        utils_FID.main(data["real"], str(tmp_path / "rgb.npz"), extractor_path=data["ext"], num_channels=1)


@pytest.mark.filterwarnings("ignore:.*rank deficient")
def test_report_writes_metrics_and_plots(data):
    out = data["tmp"] / "results"
    report = evaluate_samples(data["real"], data["samples"], str(out), extractor_path=data["ext"], num_bootstrap=3)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["n_real"] == 40 and saved["n_generated"] == 30
    assert set(report) >= {"fid", "precision_recall", "semivariogram", "spectrum", "memorisation"}
    for name in ("semivariogram.png", "spectrum.png", "memorisation_pairs.png",
                 "semivariogram_real.csv", "semivariogram_generated.csv", "spectrum.csv"):
        assert (out / name).stat().st_size > 0
    # real and generated are both white noise of variance 1/3: semivariogram close to 1/3
    assert np.allclose(report["semivariogram"]["gamma_generated"], 1 / 3, rtol=0.1)
    with pytest.raises(FileExistsError):
        evaluate_samples(data["real"], data["samples"], str(out), extractor_path=data["ext"])


def test_report_refuses_checkpoint_folder(data):
    ckpt = data["tmp"] / "models_data"
    ckpt.mkdir()
    (ckpt / "metadata.json").write_text("{}")
    with pytest.raises(ValueError, match="checkpoint folder"):
        evaluate_samples(data["real"], data["samples"], str(ckpt), metrics="semivariogram")


def test_report_command_prints_a_summary_and_figures_state_units(data, repo_root):
    out = data["tmp"] / "summary"
    done = subprocess.run([sys.executable, "-m", "utils.report", "--real", data["real"], "--samples", data["samples"],
                           "--results_dir", str(out), "--metrics", "semivariogram,spectrum,memorisation"],
                          cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("[report]")]
    assert any("30 samples vs 40 real" in line for line in lines) and str(out / "metrics.json") in lines[-1]
    assert any("semivariogram" in line for line in lines) and any("memorisation" in line for line in lines)
    assert json.loads((out / "metrics.json").read_text())["field_unit"] == "model units"


def test_hdf5_real_data_without_metadata_is_refused_before_any_file(tmp_path):
    folder = tmp_path / "real"
    folder.mkdir()
    rng = np.random.default_rng(1)
    with h5py.File(folder / "part0.hdf5", "w") as f:
        f["unwrap"] = rng.normal(0, 2, (12, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "samples_12x16x16x1.npz", rng.uniform(-1, 1, (12, 16, 16, 1)).astype(np.float32))
    with pytest.raises(ValueError, match="stored units.*metadata_json"):  # rad against model units: refused (#27)
        evaluate_samples(str(folder), str(tmp_path / "samples_12x16x16x1.npz"), str(tmp_path / "out"),
                         metrics="semivariogram", key_data="unwrap")
    assert not (tmp_path / "out").exists()


@pytest.mark.filterwarnings("ignore:.*rank deficient")
def test_report_has_kid_standardised_fid_and_noise_floor(data, capsys):
    out = data["tmp"] / "results_kid"
    report = evaluate_samples(data["real"], data["samples"], str(out), metrics="fid,kid,precision_recall",
                              extractor_path=data["ext"], num_bootstrap=10, num_subsets=4)
    assert report["fid"]["standardised"] and report["fid"]["fid"] >= 0 and report["fid"]["fid_raw"] >= 0
    assert report["kid"]["n_real"] == 40 and report["kid"]["se"] > 0
    floor = report["noise_floor"]
    assert floor["n_reference"] == 20 and floor["n_compared"] == 20  # 40 real -> halves of 20; 30 samples
    assert floor["real_vs_real"]["kid"]["n_generated"] == floor["real_vs_generated"]["kid"]["n_generated"] == 20
    printed = capsys.readouterr().out
    assert "noise floor" in printed and "KID" in printed
    assert json.loads((out / "metrics.json").read_text())["summary"] == report["summary"]


def test_semivariogram_section_names_its_estimator_and_counts(data):
    out = data["tmp"] / "sv"
    report = evaluate_samples(data["real"], data["samples"], str(out), metrics="semivariogram", num_samples=25)
    section = json.loads((out / "metrics.json").read_text())["semivariogram"]
    assert section["estimator"].startswith("Matheron") and section == report["semivariogram"]
    assert (section["n_real"], section["n_generated"]) == (25, 25)


@pytest.mark.filterwarnings("ignore:.*rank deficient")
@pytest.mark.parametrize("crop", [False, True])
def test_a_larger_real_folder_is_read_as_training_read_it(tmp_path, crop):
    # 24 px scenes, a model trained at 16 px: without image_size the scores read the real folder with the
    # training metadata's image_size and crop, the same as passing them by hand
    rng = np.random.default_rng(0)
    real = tmp_path / "real"
    real.mkdir()
    for i in range(30):
        Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8), mode="L").save(real / f"a_{i:03d}.png")
    run = tmp_path / "models_data" / "run"
    run.mkdir(parents=True)
    (run / "metadata.json").write_text(json.dumps({"type_dataset": "image", "image_size": 16, "crop": crop}))
    samples = tmp_path / "results" / "samples_20x16x16x1.npz"
    samples.parent.mkdir()
    np.savez(samples, rng.uniform(-1, 1, (20, 16, 16, 1)).astype(np.float32))
    samples.with_suffix(".json").write_text(json.dumps({"model_path": str(run / "ema_rate=0.99_1.pt")}))
    ext = save_classifier(tmp_path / "classifier_best.pt", DomainCNN(1, 2, 4).eval(), {"arch": "domain_cnn"})
    kwargs = dict(extractor_path=str(ext), num_bootstrap=0, metrics="fid")
    if not crop:
        auto = utils_FID.main(str(real), str(samples), **kwargs)
        by_hand = utils_FID.main(str(real), str(samples), image_size=16, **kwargs)
        assert auto["fid"]["fid"] == by_hand["fid"]["fid"] and auto["fid"]["n_real"] == 30
    auto = evaluate_samples(str(real), str(samples), str(tmp_path / "auto"), metrics="semivariogram")
    by_hand = evaluate_samples(str(real), str(samples), str(tmp_path / "by_hand"), metrics="semivariogram",
                               image_size=16, crop=crop, metadata_json=str(run / "metadata.json"))
    assert auto["semivariogram"] == by_hand["semivariogram"]
