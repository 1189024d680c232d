"""Bad inputs and faults of training (issue 14, training half): every rejected call exits with status 2 and
one line naming the key or file, and leaves every folder as it was; resume from the checkpoint alone is
bit-identical to a straight run (also after kill -9 during saves); timelines are never destroyed."""
import json
import os
import random
import shutil
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

import train
from improved_diffusion import gaussian_diffusion
from improved_diffusion.checkpoint import load_model, load_state_dict
from improved_diffusion.train_state import leftover_files, list_sets
from tests.conftest import REPO_ROOT
from tests.test_train_loop import folder_hashes
from tests.test_train_script import hdf5_folder, image_folder, original_layout_folder
from utils.cli import run_cli

# 4 images, batch 2: 2 steps per epoch; a set every step and at each epoch end (6 sets in 2 epochs).
RUN = dict(image_size=32, num_input_channels=1, num_model_channels=32, num_res_blocks=1, attention_resolutions="8",
           diffusion_steps=10, noise_schedule="cosine", batch_size=2, ema_rate="0.9", grid_interval=0, log_interval=1,
           lr=5e-4, warmup_steps=2, grad_clip=1.0, save_interval=1, seed=1, dropout=0.1, keep_checkpoints=None)
FINAL = ("model_epoch=1_iter=4.pt", "ema_rate=0.9_1.pt")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return image_folder(tmp_path_factory.mktemp("faults") / "data", n=4)


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    """A straight 2-epoch run with non-default lr, warm-up, grad_clip and save_interval (read-only here)."""
    folder = tmp_path_factory.mktemp("straight") / "run"
    train.main(data_train_dir=data, url_folder_experiment=str(folder), num_epochs=2, **RUN)
    return folder


def _argv(**kwargs) -> list[str]:
    argv = []
    for key, value in kwargs.items():
        if isinstance(value, bool):
            argv.append(f"--{key}" if value else f"--no-{key}")
        else:
            argv.append(f"--{key}={value}")
    return argv


def _tree(*folders) -> dict:
    return {str(f): folder_hashes(f) if f.is_dir() else None for f in folders}


def _rejected(capsys, argv: list[str], words: list[str], *watched) -> str:
    """Run the CLI on `argv`: exit status 2, one line on stderr naming `words`, `watched` folders unchanged."""
    before = _tree(*watched)
    with pytest.raises(SystemExit) as exc:
        run_cli(train.main, argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2
    lines = err.splitlines()  # a progress bar may have been open: the error is the last line, on its own
    assert lines[-1].startswith("error:") and sum("error" in line for line in lines) == 1, err
    assert "Traceback" not in err
    err = lines[-1]
    for word in words:
        assert word in err, (word, err)
    assert _tree(*watched) == before
    return err


def _same_final(a, b) -> None:
    for name in FINAL:
        sa, sb = load_state_dict(a / name), load_state_dict(b / name)
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), name


def _copy_sets(src, dst, sets) -> None:
    dst.mkdir(parents=True)
    for path in src.iterdir():
        if path.name == "metadata.json" or any(path.name.endswith(s) for s in sets):
            shutil.copy(path, dst)


# ------------------------------------------------------------------ bad option values (new run)
FLOAT_CASES = [("lr", "inf"), ("lr", "1e39"), ("lr", "nan"), ("lr", "0"), ("lr", "-1e-4"), ("weight_decay", "-0.1"),
               ("weight_decay", "nan"), ("grad_clip", "inf"), ("grad_clip", "0"), ("fp16_scale_growth", "nan")]


@pytest.mark.parametrize("key, value", FLOAT_CASES)
def test_float_option_out_of_range_is_rejected_before_any_write(tmp_path, capsys, data, key, value):
    out = tmp_path / "run"
    argv = _argv(data_train_dir=data, url_folder_experiment=out, **{**RUN, key: value})
    _rejected(capsys, argv, [f"{key}: got", "finite number"], tmp_path)
    assert not out.exists()


@pytest.mark.parametrize("bounds", ["1,nan", "2,1", "5"])
def test_norm_range_must_be_two_finite_increasing_numbers(tmp_path, capsys, data, bounds):
    argv = _argv(type_dataset="hdf5", data_train_dir=data, url_folder_experiment=tmp_path / "run",
                 normalization="range", norm_range=bounds, **RUN)
    _rejected(capsys, argv, ["norm_range: got", "finite numbers low < high"], tmp_path)
    assert not (tmp_path / "run").exists()


def test_non_empty_folder_needs_overwrite(tmp_path, capsys, data):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    _rejected(capsys, _argv(data_train_dir=data, url_folder_experiment=out, **RUN),
              ["url_folder_experiment", "--overwrite"], out)


# ------------------------------------------------------------------ bad resumes (the straight run stays as it was)
def test_resume_with_bad_lr_writes_nothing(capsys, straight):
    _rejected(capsys, _argv(resume_checkpoint=straight / "model_epoch=1_iter=4.pt", num_epochs=3, lr="1e39"),
              ["lr: got 1e+39"], straight)
    assert "resumes" not in json.loads((straight / "metadata.json").read_text())


def test_resume_from_an_older_set_names_the_later_sets(capsys, straight):
    err = _rejected(capsys, _argv(resume_checkpoint=straight / "model_epoch=0_iter=2.pt"),
                    ["not the newest", "model_epoch=1_step=1.pt", "url_folder_experiment=", "--overwrite"],
                    straight)
    assert "model_epoch=0_step=2.pt" not in err.split("later sets:")[1]  # older sets are not "later"


@pytest.mark.parametrize("key, value", [("num_model_channels", 64), ("noise_schedule", "linear"),
                                        ("learn_sigma", True), ("image_size", 64)])
def test_resume_cannot_change_model_or_diffusion_keys(capsys, straight, key, value):
    _rejected(capsys, _argv(resume_checkpoint=straight / "model_epoch=1_iter=4.pt", num_epochs=3, **{key: value}),
              [f"--{key}" if value is True else f"{key}={value!r}", "metadata.json"], straight)  # CLI spelling


def test_resume_num_epochs_not_above_done(capsys, straight):
    _rejected(capsys, _argv(resume_checkpoint=straight / "model_epoch=1_iter=4.pt"), ["num_epochs: got 2"], straight)


def test_resume_missing_or_misnamed_checkpoint(capsys, straight, tmp_path):
    _rejected(capsys, _argv(resume_checkpoint=straight / "model_epoch=7_iter=9.pt"),
              ["resume_checkpoint", "model_epoch=7_iter=9.pt"], straight)
    _rejected(capsys, _argv(resume_checkpoint=straight / "ema_rate=0.9_1.pt"),
              ["resume_checkpoint", "ema_rate=0.9_1.pt", "model_epoch=E_iter=I"], straight)


def test_branch_into_a_non_empty_folder_is_refused(capsys, straight, tmp_path):
    target = tmp_path / "branch"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    _rejected(capsys, _argv(resume_checkpoint=straight / "model_epoch=0_iter=2.pt", url_folder_experiment=target),
              ["url_folder_experiment", str(target)], straight, target)


@pytest.mark.parametrize("case", ["not json", "wrong type", "no metadata", "data moved"])
def test_resume_with_broken_metadata_names_the_file_or_key(capsys, straight, tmp_path, case):
    folder = tmp_path / "run"
    _copy_sets(straight, folder, ["epoch=1_iter=4.pt", "_1.pt", "opt1.pt"])
    meta_path = folder / "metadata.json"
    meta = json.loads(meta_path.read_text())
    words = {"not json": ["metadata.json", "not valid JSON"], "wrong type": ["lr: got 'fast'", "metadata.json"],
             "no metadata": ["metadata", str(folder)], "data moved": ["data_train_dir", "nowhere"]}[case]
    if case == "not json":
        meta_path.write_text("{'lr': 1")
    elif case == "no metadata":
        meta_path.unlink()
    else:
        meta.update(lr="fast") if case == "wrong type" else meta.update(data_train_dir=str(tmp_path / "nowhere"))
        meta_path.write_text(json.dumps(meta))
    _rejected(capsys, _argv(resume_checkpoint=folder / "model_epoch=1_iter=4.pt", num_epochs=3), words, folder)


# ------------------------------------------------------------------ data faults found only mid-training
def test_crop_larger_than_an_image_leaves_no_trace_and_the_corrected_rerun_needs_no_overwrite(tmp_path, capsys):
    data = image_folder(tmp_path / "data", n=4)
    image_folder(tmp_path / "small", n=1, size=20)
    shutil.copy(tmp_path / "small" / "a_0.png", tmp_path / "data" / "a_9.png")
    out = tmp_path / "run"
    argv = _argv(data_train_dir=data, url_folder_experiment=out, num_epochs=1, crop=True, **{**RUN, "save_interval": None})
    _rejected(capsys, argv, ["a_9.png", "smaller than the crop size"])
    assert not out.exists()
    os.remove(tmp_path / "data" / "a_9.png")
    run_cli(train.main, argv)
    assert (out / "model_epoch=0_iter=2.pt").is_file()


def test_nan_in_hdf5_leaves_no_trace(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    values = np.random.default_rng(0).uniform(-1, 1, (4, 32, 32)).astype(np.float32)
    values[3, 5, 5] = np.nan
    with h5py.File(tmp_path / "data" / "part0.hdf5", "w") as f:
        f["unwrap"] = values
    out = tmp_path / "run"
    _rejected(capsys, _argv(type_dataset="hdf5", data_train_dir=tmp_path / "data", url_folder_experiment=out,
                            num_epochs=1, **{**RUN, "save_interval": None}), ["part0.hdf5", "'unwrap'", "NaN"])
    assert not out.exists()


# ------------------------------------------------------------------ NaN stop
class _NanGradient(torch.autograd.Function):
    """Identity forward, NaN backward: the loss stays finite while the update makes the weights NaN."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


def _poison_step(monkeypatch, step: int, value_nan: bool) -> None:
    real, calls = gaussian_diffusion.GaussianDiffusion.training_losses, [0]

    def losses(self, *args, **kwargs):
        terms = real(self, *args, **kwargs)
        calls[0] += 1
        if calls[0] == step:
            terms["loss"] = terms["loss"] * float("nan") if value_nan else _NanGradient.apply(terms["loss"])
        return terms
    monkeypatch.setattr(gaussian_diffusion.GaussianDiffusion, "training_losses", losses)


def test_nan_weights_stop_names_a_finite_checkpoint(tmp_path, capsys, monkeypatch, data):
    out = tmp_path / "run"
    _poison_step(monkeypatch, step=3, value_nan=False)  # step 3: finite loss, NaN update
    err = _rejected(capsys, _argv(data_train_dir=data, url_folder_experiment=out, num_epochs=2, **RUN),
                    ["NaN or inf", "model_epoch=0_iter=2.pt"])
    assert not (out / "model_epoch=1_step=1.pt").exists()  # the NaN weights were never saved
    monkeypatch.undo()
    model, diffusion, _ = load_model(out / "model_epoch=0_iter=2.pt")
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    loss = diffusion.training_losses(model, x, torch.tensor([0, 9]))["loss"]
    assert torch.isfinite(loss).all() and "Traceback" not in err


def test_nan_loss_before_the_first_set_leaves_no_trace(tmp_path, capsys, monkeypatch, data):
    out = tmp_path / "run"
    _poison_step(monkeypatch, step=1, value_nan=True)
    _rejected(capsys, _argv(data_train_dir=data, url_folder_experiment=out, num_epochs=1, **RUN),
              ["NaN or inf", "none written yet"])
    assert not out.exists()


# ------------------------------------------------------------------ resume from the checkpoint alone, timelines
def test_readme_resume_command_equals_the_straight_run(tmp_path, capsys, data, straight):
    folder = tmp_path / "F"
    train.main(data_train_dir=data, url_folder_experiment=str(folder), num_epochs=1, **RUN)
    run_cli(train.main, ["--resume_checkpoint", str(folder / "model_epoch=0_iter=2.pt"), "--num_epochs", "2"])
    assert "num_epochs: 1 -> 2" in capsys.readouterr().out
    _same_final(straight, folder)
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["data_train_dir"] == data and meta["lr"] == 5e-4 and meta["num_epochs"] == 2
    assert meta["resumes"] == [{"checkpoint": str(folder / "model_epoch=0_iter=2.pt"), "step_total": 2,
                                "overrides": {"num_epochs": {"from": 1, "to": 2}},
                                "code_version": meta["code_version"]}]
    assert sorted(p.name for p in folder.glob("*.json")) == ["metadata.json"]


def test_resume_of_an_original_folder_keeps_its_metadata_keys(tmp_path):
    folder, _ = original_layout_folder(tmp_path)
    original = json.loads((folder / "metadata.json").read_text())
    data = image_folder(tmp_path / "digits", n=10, classes="0123456789")  # batch 8 (metadata): 2 steps
    train.main(resume_checkpoint=str(folder / "model_epoch=3_iter=120.pt"), data_train_dir=data, num_epochs=5,
               grid_interval=0)  # one more epoch (the original metadata says 10)
    meta = json.loads((folder / "metadata.json").read_text())
    changed = {"data_train_dir": data, "num_epochs": 5}
    assert {k: meta[k] for k in original} == {**original, **{k: v for k, v in changed.items() if k in original}}
    assert meta["resumes"][0]["overrides"]["num_epochs"] == {"from": original["num_epochs"], "to": 5}
    assert meta["resumes"][0]["overrides"]["data_train_dir"]["from"] == original["data_train_dir"]


def test_branch_keeps_the_source_and_pruning_keeps_the_set_resumed_from(tmp_path, straight):
    before = folder_hashes(straight)
    branch = tmp_path / "branch"
    train.main(resume_checkpoint=str(straight / "model_epoch=0_iter=2.pt"), url_folder_experiment=str(branch),
               keep_checkpoints=1)
    assert folder_hashes(straight) == before
    _same_final(straight, branch)
    assert [s.model() for s in list_sets(branch)] == ["model_epoch=0_iter=2.pt", "model_epoch=1_iter=4.pt"]
    meta = json.loads((branch / "metadata.json").read_text())
    assert meta["resumes"][0]["overrides"]["url_folder_experiment"]["to"] == str(branch)


def test_overwrite_deletes_the_abandoned_later_sets_first(tmp_path, capsys, straight):
    folder = tmp_path / "run"
    shutil.copytree(straight, folder)
    train.main(resume_checkpoint=str(folder / "model_epoch=0_iter=2.pt"), overwrite=True, keep_checkpoints=2)
    assert "deleted 3 later set(s)" in capsys.readouterr().out
    _same_final(straight, folder)
    assert [s.model() for s in list_sets(folder)] == ["model_epoch=0_iter=2.pt", "model_epoch=1_step=2.pt",
                                                      "model_epoch=1_iter=4.pt"]


# ------------------------------------------------------------------ kill -9 during saves
# One fresh process (imports paid once, no torch thread pool started yet) forks a training child per kill
# point; the child dies by SIGKILL inside its kill_at-th torch.save, with nothing or half of that file in its
# temporary file. The next child resumes from the newest complete set, given alone. Prints one JSON line.
KILLER = r"""
import json, os, signal, sys
import torch
import train
from improved_diffusion.train_state import list_sets
kwargs, points = json.loads(sys.argv[1]), json.loads(sys.argv[2])
folder, real_save, report = kwargs["url_folder_experiment"], torch.save, []
for kill_at, partial in points:
    pid = os.fork()
    if pid == 0:
        calls = [0]

        def save(obj, f, *args, **kw):
            calls[0] += 1
            if calls[0] == kill_at:
                if partial:
                    real_save(obj, f, *args, **kw)
                    os.truncate(f, os.path.getsize(f) // 2)
                os.kill(os.getpid(), signal.SIGKILL)
            real_save(obj, f, *args, **kw)
        torch.save = save
        train.main(**kwargs)
        os._exit(0)
    status = os.waitpid(pid, 0)[1]
    if not os.WIFSIGNALED(status):
        report.append({"finished": os.waitstatus_to_exitcode(status)})
        break
    newest = list_sets(folder)[-1]
    for name in (newest.model(), newest.ema(0.9), newest.opt(), newest.state()):
        torch.load(os.path.join(folder, name), map_location="cpu", weights_only=True)  # the newest set loads
    report.append({"killed": os.WTERMSIG(status), "newest": newest.model(), "leftovers": sorted(
        n for n in os.listdir(folder) if n.endswith(".tmp"))})
    kwargs = {"resume_checkpoint": os.path.join(folder, newest.model())}  # the checkpoint alone
print(json.dumps(report))
"""


def test_kill_9_during_saves_then_resume_is_bit_identical(tmp_path, data, straight):
    rng = random.Random(14)  # 4 files per set; the first kill comes after the first set is complete
    points = [(rng.randint(5, 16), rng.random() < 0.5)] + [(rng.randint(1, 6), rng.random() < 0.5) for _ in range(2)]
    folder = tmp_path / "killed"
    kwargs = dict(RUN, data_train_dir=data, url_folder_experiment=str(folder), num_epochs=2, keep_checkpoints=2)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", KILLER, json.dumps(kwargs), json.dumps(points)], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    kills = [r for r in report if "killed" in r]
    assert len(kills) >= 2 and all(r["killed"] == signal.SIGKILL for r in kills), report
    assert any(r["leftovers"] for r in kills), report  # a half-written temporary file was left at least once
    if "finished" not in report[-1]:
        load_model(folder / kills[-1]["newest"], verbose=False)
        train.main(resume_checkpoint=str(folder / kills[-1]["newest"]))
    _same_final(straight, folder)
    assert leftover_files(folder) == [] and not list(folder.glob(".*.tmp"))
    meta = json.loads((folder / "metadata.json").read_text())
    assert len(meta["resumes"]) == len(report) - ("finished" in report[-1]) and \
        all(r["overrides"] == {} for r in meta["resumes"])


def test_preset_demo_on_an_image_folder_names_the_type_dataset_flag(capsys, data, tmp_path):
    # the demo preset trains the built-in HDF5 data: on a folder of images the error says which flag to add
    out = tmp_path / "run"
    _rejected(capsys, ["--preset", "demo", "--data_train_dir", data, "--url_folder_experiment", str(out)],
              ["holds no HDF5 file", "it holds 4 image file(s): pass --type_dataset image"], out)


def test_an_hdf5_folder_without_type_dataset_names_the_flag(capsys, tmp_path):
    folder = hdf5_folder(tmp_path / "h5")
    out = tmp_path / "run"
    _rejected(capsys, ["--data_train_dir", folder, "--url_folder_experiment", str(out)],
              ["holds no image files", "pass --type_dataset hdf5"], out)
