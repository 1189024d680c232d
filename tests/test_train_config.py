"""train.py --preset and --config through the command line (issue #27): a relaunch from a run's metadata.json
reproduces its keys but those the call changes, a preset gives its values, the call wins over both, and bad
input is one line with nothing written."""
import json

import pytest

import train
from tests.test_train_loop import folder_hashes
from tests.test_train_script import TINY, hdf5_folder, image_folder
from utils.cli import run_cli

FIXED_CPU = dict(amp="none", device="cpu")


def _argv(**kwargs) -> list[str]:
    argv = []
    for key, value in kwargs.items():
        if isinstance(value, bool):
            argv.append(f"--{key}" if value else f"--no-{key}")
        else:
            argv += [f"--{key}", str(value)]
    return argv


def _meta(folder) -> dict:
    return json.loads((folder / "metadata.json").read_text())


def test_config_relaunch_reproduces_the_run_but_the_keys_of_the_call(tmp_path):
    data = hdf5_folder(tmp_path / "data")
    first, second = tmp_path / "first", tmp_path / "second"
    run_cli(train.main, _argv(**TINY, **FIXED_CPU, type_dataset="hdf5", key_other="unwrap", normalization="minmax",
                              data_train_dir=data, url_folder_experiment=first, lr=2e-4, seed=5))
    run_cli(train.main, _argv(config=first / "metadata.json", url_folder_experiment=second, lr=3e-4, seed=7))
    old, new = _meta(first), _meta(second)
    changed = {key for key in old.keys() | new.keys() if old.get(key) != new.get(key)}
    assert changed == {"url_folder_experiment", "lr", "seed"}
    assert (new["lr"], new["seed"], new["url_folder_experiment"]) == (3e-4, 7, str(second))
    assert new["hdf5_keys"]["key_other"] == "unwrap" and new["normalization"] == "minmax"
    assert "config" not in new and "preset" not in new and "resumes" not in new
    assert (second / "model_epoch=0_iter=1.pt").is_file()


def test_config_accepts_the_run_folder_and_leaves_out_bookkeeping(tmp_path):
    data = image_folder(tmp_path / "data", classes="ab")
    first, second = tmp_path / "first", tmp_path / "second"
    run_cli(train.main, _argv(**TINY, **FIXED_CPU, class_cond=True, num_class=2, data_train_dir=data,
                              url_folder_experiment=first))
    meta = _meta(first)
    # bookkeeping of the earlier run, which a relaunch must neither copy nor trust
    meta.update(resumes=[{"checkpoint": "x.pt"}], class_names=["zz", "yy"], code_version="old")
    meta["crop"] = "false"  # a value of the wrong type, replaced by the call: never read
    (first / "metadata.json").write_text(json.dumps(meta))
    run_cli(train.main, _argv(config=first, url_folder_experiment=second, num_epochs=2, crop=False))
    new = _meta(second)
    assert new["class_names"] == ["a", "b"] and "resumes" not in new and new["code_version"] != "old"
    assert new["crop"] is False
    assert new["num_epochs"] == 2 and new["class_cond"] is True and new["ema_rate"] == TINY["ema_rate"]


def test_preset_demo_gives_its_values_and_the_call_wins(tmp_path):
    data = hdf5_folder(tmp_path / "data")
    out = tmp_path / "demo"
    run_cli(train.main, _argv(**FIXED_CPU, preset="demo", grid_interval=0, data_train_dir=data, url_folder_experiment=out,
                              num_epochs=1, batch_size=2, diffusion_steps=10, log_interval=1))
    meta = _meta(out)
    # the demo model of main_job.py (script_util.PRESETS["demo"]), written out here
    assert (meta["image_size"], meta["num_input_channels"], meta["num_model_channels"], meta["num_res_blocks"]) == (
        32, 1, 32, 1)
    assert (meta["attention_resolutions"], meta["noise_schedule"], meta["output_type"]) == ("8", "cosine", "velocity")
    assert (meta["lr"], meta["ema_rate"], meta["type_dataset"]) == (5e-4, "0.99", "hdf5")
    assert (meta["batch_size"], meta["diffusion_steps"]) == (2, 10)  # given in the call: not the preset's 32, 1000
    assert "preset" not in meta


def _hand_written_run(tmp_path, **changes) -> tuple:
    data = image_folder(tmp_path / "data")
    run = tmp_path / "run"
    run.mkdir()
    (run / "metadata.json").write_text(json.dumps({**TINY, "data_train_dir": data, **changes}))
    return run, data


@pytest.mark.parametrize("case", ["unknown preset", "missing file", "not JSON", "strict type", "loose type",
                                  "string bool", "with resume", "both", "same folder"])
def test_bad_preset_or_config_is_one_line_and_writes_nothing(tmp_path, capsys, case):
    bad = {"strict type": {"class_cond": "false"}, "loose type": {"num_epochs": "5"}, "string bool": {"crop": "false"}}
    run, data = _hand_written_run(tmp_path, **bad.get(case, {}))
    out = tmp_path / "out"
    base = dict(FIXED_CPU, url_folder_experiment=out)
    meta = run / "metadata.json"
    argv, words = {
        "unknown preset": (dict(base, preset="nope", data_train_dir=data), ["preset", "'nope'", "'demo'", "mnist_32"]),
        "missing file": (dict(base, config=tmp_path / "absent.json"), ["config", "absent.json"]),
        "not JSON": (dict(base, config=tmp_path / "data" / "a_0.png"), ["a_0.png", "not"]),
        "strict type": (dict(base, config=meta), [str(meta), "class_cond", "boolean"]),
        "loose type": (dict(base, config=meta), [str(meta), "num_epochs", "'5'"]),
        "string bool": (dict(base, config=meta), [str(meta), "crop", "'false'", "bool"]),
        "with resume": (dict(base, config=meta, resume_checkpoint=run / "model_epoch=0_iter=1.pt"),
                        ["config", "resume"]),
        "both": (dict(base, config=meta, preset="demo"), ["preset", "config", "at most one"]),
        "same folder": (dict(FIXED_CPU, config=meta, url_folder_experiment=run, overwrite=True),
                        ["url_folder_experiment", "another folder"]),
    }[case]
    before = folder_hashes(run)
    with pytest.raises(SystemExit) as exited:
        run_cli(train.main, _argv(**argv))
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert all(word in err for word in words), err
    assert not out.exists() and folder_hashes(run) == before
