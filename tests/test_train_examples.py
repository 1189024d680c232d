"""The example scripts: every target gives valid train.main keywords; command-line flags reach train.main."""
import importlib

import pytest

import train
from improved_diffusion.train_setup import keyword_defaults, validate_call
from utils.cli import run_cli

SCRIPTS = ["example_train", "example_train_lowres", "example_train_superres"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_target_is_a_valid_train_call(script):
    module = importlib.import_module(script)
    defaults = keyword_defaults(train.main)
    for target, settings in module.TARGETS.items():
        settings = {k: v for k, v in settings.items() if k != "builtin_data"}
        assert set(settings) <= set(defaults), (target, set(settings) - set(defaults))
        validate_call({**defaults, **settings, "device": "cpu"})


@pytest.mark.parametrize("script", SCRIPTS)
def test_command_line_reaches_train_main(script, monkeypatch, tmp_path):
    module = importlib.import_module(script)
    seen = {}
    monkeypatch.setattr(train, "main", lambda **kw: seen.update(kw) or {"checkpoint": None, "step_total": 0, "epochs": 0})
    target = sorted(module.TARGETS)[0]
    (tmp_path / module.TARGETS[target]["data_train_dir"]).mkdir(parents=True)
    run_cli(module.main, ["--target_data", target, "--data_root", str(tmp_path), "--num_epochs", "3",
                          "--device", "cpu", "--compute_val"])
    expected = {k: v for k, v in module.TARGETS[target].items() if k != "builtin_data"}
    assert seen["num_epochs"] == 3 and seen["device"] == "cpu" and seen["compute_val"] is True
    assert seen["data_train_dir"] == str(tmp_path / expected["data_train_dir"])
    assert seen["image_size"] == expected["image_size"] and seen["url_folder_experiment"].startswith("./models_data/")
    assert {k: seen[k] for k in expected if not k.startswith("data_")} == \
        {k: v for k, v in expected.items() if not k.startswith("data_")}


def test_unknown_target_is_a_clear_error():
    import example_train
    with pytest.raises(ValueError, match="target_data: got 'svhn'"):
        example_train.main(target_data="svhn")


def test_missing_data_points_to_builtin_targets_and_builtin_data_is_generated(monkeypatch, tmp_path):
    import example_train
    seen = {}
    monkeypatch.setattr(train, "main", lambda **kw: seen.update(kw) or {"checkpoint": None, "step_total": 0, "epochs": 0})
    with pytest.raises(FileNotFoundError, match="--target_data demo"):
        example_train.main(target_data="mnist", data_root=str(tmp_path))
    example_train.main(target_data="demo", data_root=str(tmp_path), device="cpu")
    assert {"train", "val", "test", "ground_truth.json"} <= {p.name for p in (tmp_path / "insar_synthetic").iterdir()}
    assert seen["data_train_dir"] == str(tmp_path / "insar_synthetic" / "train")
