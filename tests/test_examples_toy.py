"""Every example at toy scale, as printed: the training examples on tiny built-in data (their default epochs, so
the checkpoint names are the ones the hints print), the EMA checkpoint's samples as structured as the raw model's
(std >= half, semivariogram at lags 1-4 px within a factor 2), and each hint an example prints run as printed."""
import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

import example_fine_tuning
import example_sample
import example_sample_superres
import example_time_comparison_DPM
import example_train
import example_train_lowres
import example_train_superres
from datasets import insar_synthetic, sar_synthetic
from sample import main_sample
from utils.cli import run_cli
from utils.evaluation.semivariogram import empirical_semivariogram

from .conftest import FIXTURES

QUICK = dict(use_ddim=True, sampling_steps=8, num_samples=8, batch_size=8, device="cpu", progress=False)
# extra flags of a hint run at toy scale (the hint's own flags are kept as printed)
TOY_SAMPLING = ["--num_samples", "2", "--batch_size", "2", "--sampling_steps", "2", "--device", "cpu"]


def _tiny_insar(folder: str) -> None:
    insar_synthetic.main(out_dir=folder, n_train=16, n_val=4, n_test=4, deformation_fraction=0.0)


def _tiny_sar(folder: str) -> None:
    sar_synthetic.main(out_dir=folder, image_size=64, n_train_per_class=2, n_val_per_class=1, n_test_per_class=1)


def _toy(monkeypatch, module, target: str, make) -> None:
    """Shrink `target` of an example to tiny data (same model, EMA rate and default epochs)."""
    settings = module.TARGETS[target]
    builtin = example_train.BuiltinData(make, settings["builtin_data"].num_epochs, settings["builtin_data"].full_size)
    monkeypatch.setitem(module.TARGETS, target, {**settings, "batch_size": 4, "grid_interval": 0,
                                                 "builtin_data": builtin})


def _raw_and_ema(run: Path, tmp: Path, **kw) -> tuple[np.ndarray, np.ndarray]:
    """Samples (N, H, W) of the last model checkpoint and of its EMA, same seed and sampler."""
    ema = sorted(run.glob("ema_rate=*.pt"))[-1]
    epoch = ema.stem.split("_")[-1]
    raw = next(run.glob(f"model_epoch={epoch}_iter=*.pt"))
    out = []
    for name, path in (("raw", raw), ("ema", ema)):
        npz = main_sample(model_path=str(path), url_save_path=str(tmp / name), plot=False, **{**QUICK, **kw})
        out.append(np.load(npz)["arr_0"][..., 0].astype(np.float64))
    return out[0], out[1]


def _assert_structured_like_raw(raw: np.ndarray, ema: np.ndarray) -> None:
    assert ema.std() >= 0.5 * raw.std(), (ema.std(), raw.std())
    g_raw = empirical_semivariogram(raw, max_lag=4, progress=False)
    g_ema = empirical_semivariogram(ema, max_lag=4, progress=False)
    lags = (g_raw.lags >= 1) & (g_raw.lags <= 4)
    ratio = g_ema.gamma[lags] / g_raw.gamma[lags]
    assert lags.sum() == 4 and np.all((ratio >= 0.5) & (ratio <= 2)), ratio


def _run_hint(func, hint: str, extra: list[str]):
    """Run the command-line flags a hint prints (from its first '--') with `extra` toy-scale flags added."""
    flags = shlex.split(hint[hint.index("--"):].split(" (")[0])
    return run_cli(func, flags + extra)


def test_demo_example_and_the_example_sample_hint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _toy(monkeypatch, example_train, "demo", _tiny_insar)
    run_cli(example_train.main, ["--device", "cpu"])
    run = tmp_path / example_train.output_folder("demo", example_train.FOLDER_SUFFIX)
    assert (tmp_path / example_sample.DEMO_CHECKPOINT).is_file()
    _assert_structured_like_raw(*_raw_and_ema(run, tmp_path))
    with pytest.raises(FileNotFoundError, match="--model_path"):
        example_sample.main()
    npz = _run_hint(example_sample.main, example_sample.HINT, TOY_SAMPLING)
    assert npz.parent.resolve() == (tmp_path / example_sample.samples_folder(example_sample.DEMO_CHECKPOINT)).resolve()


def test_superres_pair_examples_and_the_chain_hint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _toy(monkeypatch, example_train_lowres, "sar_synthetic", _tiny_sar)
    _toy(monkeypatch, example_train_superres, "sar_synthetic", _tiny_sar)
    run_cli(example_train_lowres.main, ["--device", "cpu"])
    run_cli(example_train_superres.main, ["--device", "cpu"])
    lowres_run = tmp_path / example_train.output_folder("sar_synthetic", example_train_lowres.FOLDER_SUFFIX)
    _assert_structured_like_raw(*_raw_and_ema(lowres_run, tmp_path / "lowres", sample_class=1))
    with pytest.raises(FileNotFoundError, match="--sample_class 1"):
        example_sample_superres.main()
    chain_flags = ["--sampling_steps", "4", "--num_samples", "4", "--batch_size", "4", "--device", "cpu"]
    superres = _run_hint(example_sample_superres.main, example_sample_superres.HINT, chain_flags)
    superres_run = tmp_path / example_train.output_folder("sar_synthetic",
                                                                   example_train_superres.FOLDER_SUFFIX)
    raw, ema = _raw_and_ema(superres_run, tmp_path / "superres", num_samples=4, batch_size=4, sampling_steps=4,
                            url_lr_data=str(next((superres.parent.parent / "lowres").glob("*.npz"))))
    _assert_structured_like_raw(raw, ema)


def _tiny_mixture_and_model(tmp_path: Path) -> None:
    """Tiny fields where `make demo` writes them, and the compat-a checkpoint (32 px, 1 channel) as its model."""
    insar_synthetic.main(out_dir=str(tmp_path / "data/insar_mixture"), n_train=24, n_val=8, n_test=16,
                         truth_monte_carlo_fields=0)
    run = tmp_path / "models_data/demo_mixture"
    run.mkdir(parents=True)
    shutil.copy(FIXTURES / "compat-a" / "model_epoch=3_iter=120.pt", run / "ema_rate=0.99_6.pt")
    shutil.copy(FIXTURES / "compat-a" / "metadata.json", run / "metadata.json")


def test_time_comparison_trains_the_contrastive_extractor_and_scores(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _tiny_mixture_and_model(tmp_path)
    rows = example_time_comparison_DPM.main(step_counts=[1, 2], num_samples=8, batch_size=8)
    options = json.loads((tmp_path / "models_data/domain_cnn_insar_mixture/options.json").read_text())
    assert options["unlabelled_data"].endswith("data/insar_mixture/train") and options["key_data"] == "unwrap"
    assert len(rows) == 8 and all(r["FID"] >= 0 and "KID" in r and "FID_matched_floor" in r for r in rows)
    assert len({r["extractor_sha256"] for r in rows}) == 1
    with pytest.raises(FileNotFoundError, match="a path ending in classifier_best.pt"):
        example_time_comparison_DPM.main(extractor_path="missing.pt", overwrite=True)


def test_the_fine_tuning_hint_runs_as_printed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _tiny_mixture_and_model(tmp_path)
    with pytest.raises(ValueError, match="--unlabelled_data data/insar_mixture/train"):
        example_fine_tuning.main()
    result = _run_hint(example_fine_tuning.main, example_fine_tuning.HINT, ["--num_epochs", "1"])
    assert Path(result["best_path"]).resolve() == (tmp_path / "models_data/domain_cnn_insar_mixture"
                                                   / "classifier_best.pt").resolve()
