"""The one table of training keywords (run_config.TABLE): train.main's signature agrees with it, no other module
lists training keywords, the typed groups cover it, errors carry their key; resume from an incomplete
metadata.json recovers a value from the checkpoint set or refuses with one line (issue #26 item 1)."""
import ast
import dataclasses
import inspect
import json
import pickle
from pathlib import Path

import pytest
import torch

import train
from improved_diffusion import run_config
from improved_diffusion.run_config import (
    DATA,
    DIFFUSION,
    LOOP,
    MODEL,
    TABLE,
    ConfigError,
    DataConfig,
    DiffusionConfig,
    LoopConfig,
    ModelConfig,
    group_keys,
)
from improved_diffusion.train_setup import keyword_defaults, validate_call
from improved_diffusion.train_state import load_train_state
from tests.conftest import REPO_ROOT
from tests.test_train_loop import folder_hashes
from tests.test_train_script import TINY, hdf5_folder, image_folder
from utils.cli import build_parser, run_cli

OLD_TABLES = ("ORIGINAL_DEFAULTS", "INT_KEYS", "BOOL_KEYS", "FLOAT_KEYS", "STR_KEYS", "FIXED_ON_RESUME", "NOT_STORED",
              "BOOKKEEPING", "ORIGINAL_BEHAVIOUR", "HDF5_KEYS")


def test_train_main_signature_agrees_with_the_table():
    params = inspect.signature(train.main).parameters
    assert set(params) == set(TABLE)
    for name, param in params.items():
        assert param.default.value == TABLE[name].default, name
    helps = {action.dest: action.help for action in build_parser(train.main)._actions if action.dest in TABLE}
    for name, row in TABLE.items():
        assert helps[name].startswith(row.help), name


def _python_files():
    return [p for p in REPO_ROOT.rglob("*.py") if ".venv" not in p.parts and "tests" not in p.parts]


def test_the_table_is_the_only_place_listing_training_keywords():
    for path in _python_files():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and path.name != "run_config.py":
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = {t.id for t in targets if isinstance(t, ast.Name)}
                assert not names & set(OLD_TABLES), f"{path}: defines {names & set(OLD_TABLES)}"
            if isinstance(node, (ast.Set, ast.List, ast.Tuple)) and path.name != "run_config.py":
                listed = [e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in TABLE]
                assert len(listed) <= 5, f"{path}:{node.lineno} lists training keywords {listed}"


def test_groups_cover_the_table():
    fields = {cls: {f.name for f in dataclasses.fields(cls)} for cls in (ModelConfig, DiffusionConfig, DataConfig,
                                                                         LoopConfig)}
    assert fields[ModelConfig] - {"super_res"} == set(group_keys(MODEL))
    assert fields[DiffusionConfig] == set(group_keys(DIFFUSION)) | {"learn_sigma"}
    assert set(group_keys(DATA)) <= fields[DataConfig]
    # ema_rate is resolved to ema_rates, use_fp16 into amp
    assert set(group_keys(LOOP)) - {"ema_rate", "use_fp16"} <= fields[LoopConfig] - {"ema_rates"}
    assert dataclasses.fields(LoopConfig)[0].name == "num_epochs"
    with pytest.raises(dataclasses.FrozenInstanceError):
        LoopConfig(num_epochs=1, lr=1e-4).lr = 1.0


@pytest.mark.parametrize("key, value", [("lr", 2.0), ("class_cond", "false"), ("ema_rate", "1.5"),
                                        ("amp", "fp8"), ("image_size_lr", 64)])
def test_errors_carry_their_key(key, value):
    values = keyword_defaults(train.main)
    values.update({"image_size": 32, "num_model_channels": 32, "device": "cpu", key: value})
    with pytest.raises(ConfigError) as err:
        validate_call(values)
    assert err.value.key == key and isinstance(err.value, ValueError)
    copy = pickle.loads(pickle.dumps(err.value))  # as a worker process hands it back
    assert (copy.key, str(copy)) == (key, str(err.value))


def _first_run(tmp_path, **extra):
    data = extra.pop("data", None) or image_folder(tmp_path / "data", n=4)
    folder = tmp_path / "run"
    train.main(data_train_dir=data, url_folder_experiment=str(folder), **{**TINY, "amp": "none", **extra})
    return data, folder, folder / "model_epoch=0_iter=2.pt"


def _drop(folder: Path, *keys: str) -> None:
    meta = json.loads((folder / "metadata.json").read_text())
    for key in keys:
        meta.pop(key)
    (folder / "metadata.json").write_text(json.dumps(meta))


def test_resume_takes_missing_run_and_diffusion_keys_from_the_checkpoint_set(tmp_path, capsys):
    data, folder, checkpoint = _first_run(tmp_path, lr=5e-4, diffusion_steps=50)
    _drop(folder, "lr", "diffusion_steps", "num_model_channels")
    assert run_cli(train.main, ["--resume_checkpoint", str(checkpoint), "--num_epochs", "2"])["epochs"] == 2
    out = capsys.readouterr().out
    assert "[train] resume: lr: 0.0005 (recorded in train_state_epoch=0_iter=2.pt" in out
    assert "[train] resume: diffusion_steps: 50 (recorded in" in out
    meta = json.loads((folder / "metadata.json").read_text())
    assert (meta["lr"], meta["diffusion_steps"], meta["num_model_channels"]) == (5e-4, 50, 32)
    state = load_train_state(folder / "train_state_epoch=1_iter=4.pt")
    assert state.metadata["lr"] == 5e-4 and state.metadata["diffusion_steps"] == 50


def test_resume_reads_architecture_off_the_weights_without_a_record(tmp_path, capsys):
    data, folder, checkpoint = _first_run(tmp_path)
    state_path = folder / "train_state_epoch=0_iter=2.pt"
    state = torch.load(state_path, weights_only=True)
    torch.save({**state, "metadata": {}}, state_path)  # a set written before train states recorded metadata
    _drop(folder, "num_model_channels")
    train.main(resume_checkpoint=str(checkpoint), num_epochs=2)
    assert "num_model_channels: 32 (read off the weights of model_epoch=0_iter=2.pt" in capsys.readouterr().out
    assert json.loads((folder / "metadata.json").read_text())["num_model_channels"] == 32


def test_resume_refuses_a_missing_key_without_a_record_then_the_given_value_works(tmp_path, capsys):
    data, folder, checkpoint = _first_run(tmp_path, lr=5e-4, diffusion_steps=50)
    state_path = folder / "train_state_epoch=0_iter=2.pt"
    state = torch.load(state_path, weights_only=True)
    torch.save({**state, "metadata": {}}, state_path)
    _drop(folder, "lr", "diffusion_steps")
    before = folder_hashes(folder)
    capsys.readouterr()
    argv = ["--resume_checkpoint", str(checkpoint), "--num_epochs", "2"]
    for key in ("lr", "diffusion_steps"):
        with pytest.raises(SystemExit) as exit_:
            run_cli(train.main, argv)
        assert exit_.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {key}: missing from {folder / 'metadata.json'}")
        assert folder_hashes(folder) == before  # nothing written
        argv += [f"--{key}", {"lr": "5e-4", "diffusion_steps": "50"}[key]]
    run_cli(train.main, argv)
    assert "lr: 0.0005 (given in the call" in capsys.readouterr().out
    meta = json.loads((folder / "metadata.json").read_text())
    assert (meta["lr"], meta["diffusion_steps"]) == (5e-4, 50)


def test_resume_keeps_the_robust_normalisation_of_the_run(tmp_path, capsys):
    data = hdf5_folder(tmp_path / "h5", n=4)
    data, folder, checkpoint = _first_run(tmp_path, data=data, type_dataset="hdf5", normalization="robust",
                                          class_cond=False)
    recorded = json.loads((folder / "metadata.json").read_text())["data_normalization"]
    _drop(folder, "normalization", "data_normalization")
    train.main(resume_checkpoint=str(checkpoint), num_epochs=2)
    assert "normalization: 'robust' (recorded in" in capsys.readouterr().out
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["normalization"] == "robust" and meta["data_normalization"] == recorded


def test_run_config_imports_nothing_of_the_project():
    tree = ast.parse(Path(run_config.__file__).read_text())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert all(m in ("__future__", "dataclasses", "typing") for m in imported), imported
