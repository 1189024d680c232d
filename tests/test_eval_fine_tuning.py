"""Classifier training: the domain CNN learns separable classes, best checkpoint by val accuracy,
train/eval modes, random-init checkpoints for unlabelled data, option validation."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import example_fine_tuning
from utils.evaluation.features import DomainCNN, load_extractor
from utils.evaluation.fine_tuning import evaluate, set_trainable


def _write_stripes(folder, n_per_class, seed):
    """Class h: horizontal stripes, class v: vertical stripes, random phase and noise (16 px)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(n_per_class):
        for name, axis in (("h", 0), ("v", 1)):
            stripes = (np.arange(16) + rng.integers(0, 4)) % 4 < 2
            img = np.repeat(stripes[:, None] if axis == 0 else stripes[None, :], 16, axis=1 - axis)
            noisy = np.clip(img * 200 + 20 + rng.normal(0, 10, size=(16, 16)), 0, 255).astype(np.uint8)
            Image.fromarray(noisy, mode="L").save(folder / f"{name}_{i:03d}.png")


def test_domain_cnn_trains_and_checkpoint_is_an_extractor(tmp_path):
    _write_stripes(tmp_path / "train", 24, seed=0)
    _write_stripes(tmp_path / "val", 8, seed=1)
    out = tmp_path / "run"
    result = example_fine_tuning.main(str(out), str(tmp_path / "train"), str(tmp_path / "val"), image_size=16,
                                      width=8, batch_size=8, num_epochs=4, lr=3e-3)
    history = json.loads((out / "history.json").read_text())
    best = max(history, key=lambda r: r["val_accuracy"])
    assert result["best_val_accuracy"] == best["val_accuracy"] >= 0.9
    saved = torch.load(out / "classifier_best.pt", weights_only=True)
    assert saved["epoch"] == best["epoch"] and saved["class_names"] == ["h", "v"]
    ext = load_extractor("domain_cnn", out / "classifier_best.pt")
    assert ext.extract(np.zeros((3, 16, 16, 1), np.float32), progress=False).shape == (3, 64)
    assert (out / "tensorboard").is_dir()
    with pytest.raises(FileExistsError, match="overwrite"):
        example_fine_tuning.main(str(out), str(tmp_path / "train"), str(tmp_path / "val"))


def test_random_init_checkpoint_for_unlabelled_data(tmp_path):
    result = example_fine_tuning.main(str(tmp_path), random_init=True, num_channels=1, width=8, seed=3)
    ext = load_extractor("domain_cnn", result["best_path"])
    assert ext.dim == 64
    assert torch.load(result["best_path"], weights_only=True)["training"] == "random_init(seed=3)"


def test_evaluate_restores_train_mode_and_freezing():
    model = DomainCNN(1, 2, 4)
    loader = [(torch.zeros(2, 1, 8, 8), torch.tensor([0, 1]))]
    model.train()
    evaluate(model, "domain_cnn", loader, "cpu", 299)
    assert model.training
    trainable = set_trainable(model, "domain_cnn", train_all_layers=False)
    assert {id(p) for p in trainable} == {id(p) for p in model.head.parameters()}


def test_bad_options(tmp_path):
    with pytest.raises(ValueError, match="weights_path=None"):
        example_fine_tuning.main(str(tmp_path), "a", "b", arch="vgg16")
    with pytest.raises(ValueError, match="arch='resnet'"):
        example_fine_tuning.main(str(tmp_path), "a", "b", arch="resnet")
    with pytest.raises(ValueError, match="data_train_dir"):
        example_fine_tuning.main(str(tmp_path / "x"), str(tmp_path / "empty"), str(tmp_path / "empty"))


def test_default_out_folder_and_summary(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = example_fine_tuning.main(random_init=True, width=8)
    assert Path(result["best_path"]).resolve() == (tmp_path / "models_data" / "feature_cnn" / "classifier_best.pt")
    assert result["best_path"] in example_fine_tuning.summary_line(result)
