"""train.main on real folders: every mode and loss, resume of an original-code folder (EMA from its own
file), bad inputs (clear error, nothing written), command line."""
import json
import os
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

import train
from improved_diffusion.checkpoint import load_model, load_state_dict
from improved_diffusion.script_util import ORIGINAL_DEFAULTS
from tests.conftest import FIXTURES, REPO_ROOT
from tests.test_train_loop import folder_hashes

TINY = dict(image_size=32, num_input_channels=1, num_model_channels=32, num_res_blocks=1, attention_resolutions="8",
            diffusion_steps=10, noise_schedule="cosine", batch_size=2, num_epochs=1, ema_rate="0.9",
            grid_interval=0, log_interval=1)


def image_folder(path, n=2, size=32, classes="ab", channels=1):
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    shape = (size, size) if channels == 1 else (size, size, channels)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path / f"{classes[i % len(classes)]}_{i}.png")
    return str(path)


def hdf5_folder(path, n=2, size=32):
    path.mkdir(parents=True, exist_ok=True)
    with h5py.File(path / "part0.hdf5", "w") as f:
        f["unwrap"] = np.random.default_rng(0).uniform(-1, 1, (n, size, size)).astype(np.float32)
    return str(path)


MODES = {
    "image_uncond_kl": dict(loss_name="kl"),
    "image_class_cond_rescaled_kl_learn_sigma": dict(class_cond=True, num_class=2, loss_name="rescaled_kl",
                                                     learn_sigma=True, output_type="x_start"),
    "hdf5_rescaled_mse_learn_sigma": dict(type_dataset="hdf5", loss_name="rescaled_mse", learn_sigma=True,
                                          schedule_sampler="loss-second-moment"),
    "lowres_mse_validation": dict(image_size_hr=64, output_type="x_previous", compute_val=True, subset_timesteps=2),
    "superres_rescaled_mse_learn_sigma": dict(image_size_lr=16, loss_name="rescaled_mse", learn_sigma=True,
                                              class_cond=True, num_class=2),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_each_mode_trains_and_writes_a_loadable_checkpoint(tmp_path, mode):
    kw = {**TINY, **MODES[mode]}
    size = kw.get("image_size_hr") or 32
    hdf5 = kw.get("type_dataset") == "hdf5"
    data = hdf5_folder(tmp_path / "data") if hdf5 else image_folder(tmp_path / "data", size=size)
    out = tmp_path / "run"
    result = train.main(data_train_dir=data, data_val_dir=data, url_folder_experiment=str(out), **kw)
    suffix = re.fullmatch(r"model_epoch=0_iter=1(_vb=[\d.]+_mse=[\d.]+)?\.pt", result["checkpoint"].name).group(1) or ""
    assert bool(suffix) == bool(kw.get("compute_val"))  # validation names the set after its bits/dim and mse
    assert {f"ema_rate=0.9_0{suffix}.pt", f"opt0{suffix}.pt", "metadata.json"} <= set(os.listdir(out))
    assert len(list(out.glob("*.json"))) == 1
    assert [p.name for p in out.glob("model_*.pt")] == [result["checkpoint"].name]  # no save for an epoch not run
    meta = json.loads((out / "metadata.json").read_text())
    assert list(meta)[:len(ORIGINAL_DEFAULTS)] == list(ORIGINAL_DEFAULTS)  # the original 37 keys, in order
    assert meta["image_size_lr"] == kw.get("image_size_lr") and meta["image_size_hr"] == kw.get("image_size_hr")
    assert meta["seed"] == 0 and "data_normalization" in meta
    assert (meta["class_names"] == ["a", "b"]) == bool(kw.get("class_cond"))
    torch.manual_seed(0)
    model, _, _ = load_model(result["checkpoint"])  # rebuilt from metadata.json alone
    trained = load_state_dict(result["checkpoint"])
    assert all(torch.isfinite(v).all() for v in trained.values())
    # A training step changed the zero-initialised output convolution.
    assert trained["out.2.weight"].abs().sum() > 0


def test_overwrite_replaces_an_earlier_run_only(tmp_path):
    data = image_folder(tmp_path / "data")
    out = tmp_path / "run"
    train.main(data_train_dir=data, url_folder_experiment=str(out), **TINY)
    (out / "notes.txt").write_text("mine")
    train.main(data_train_dir=data, url_folder_experiment=str(out), overwrite=True, **{**TINY, "ema_rate": "0.8"})
    names = set(os.listdir(out))
    assert "ema_rate=0.9_0.pt" not in names and "ema_rate=0.8_0.pt" in names and "notes.txt" in names
    assert len([n for n in names if n.startswith("events.out")]) == 1


def original_layout_folder(tmp_path):
    """The compat-a fixture as the original code leaves a folder: metadata.json, model, EMA, optimizer."""
    folder = tmp_path / "original"
    folder.mkdir()
    shutil.copy(FIXTURES / "compat-a" / "metadata.json", folder)
    shutil.copy(FIXTURES / "compat-a" / "model_epoch=3_iter=120.pt", folder)
    model = load_state_dict(folder / "model_epoch=3_iter=120.pt")
    ema = {k: v + 0.01 * torch.randn_like(v) for k, v in model.items()}  # an EMA that differs from the model
    torch.save(ema, folder / "ema_rate=0.9999_3.pt")
    params = [torch.nn.Parameter(v.clone()) for v in model.values()]
    opt = torch.optim.AdamW(params, lr=1e-4)
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    opt.step()
    torch.save(opt.state_dict(), folder / "opt3.pt")
    return folder, ema


def test_resume_original_folder_continues_from_its_ema_file(tmp_path, capsys):
    folder, ema3 = original_layout_folder(tmp_path)
    data = image_folder(tmp_path / "data", n=10, classes="0123456789")  # batch 8 (metadata): 2 steps
    result = train.main(data_train_dir=data, num_epochs=5, save_interval=1, grid_interval=0,
                        resume_checkpoint=str(folder / "model_epoch=3_iter=120.pt"))
    assert "original code" in capsys.readouterr().out
    assert result["checkpoint"] == folder / "model_epoch=4_iter=122.pt" and result["step_total"] == 122
    m1 = load_state_dict(folder / "model_epoch=4_step=1.pt")
    m2 = load_state_dict(folder / "model_epoch=4_iter=122.pt")
    ema4 = load_state_dict(folder / "ema_rate=0.9999_4.pt")
    r = 0.9999
    for key in ema4:  # EMA after two steps from the EMA file (not from the model weights)
        expected = r * (r * ema3[key] + (1 - r) * m1[key]) + (1 - r) * m2[key]
        torch.testing.assert_close(ema4[key], expected, rtol=0, atol=1e-6)
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["num_epochs"] == 5 and meta["num_model_channels"] == 32 and len(list(folder.glob("*.json"))) == 1


def _bad_case(tmp_path, case):
    data = image_folder(tmp_path / "data")
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    base = dict(TINY, data_train_dir=data, url_folder_experiment=str(out), overwrite=True)
    if case == "missing data folder":
        return dict(base, data_train_dir=str(tmp_path / "nope")), FileNotFoundError, "data_train_dir"
    if case == "image_size":
        return dict(base, image_size=48), ValueError, "image_size"
    if case == "channels":
        return dict(base, num_model_channels=48), ValueError, "num_model_channels"
    if case == "microbatch":
        return dict(base, microbatch=4), ValueError, "microbatch"
    if case == "use_fp16 on cpu":
        return dict(base, use_fp16=True, device="cpu"), ValueError, "amp='bf16'"
    if case == "non-empty folder":
        return dict(base, overwrite=False), FileExistsError, "overwrite=True"
    folder, _ = original_layout_folder(tmp_path)
    data = image_folder(tmp_path / "digits", n=10, classes="0123456789")
    if case == "resume name":
        bad = folder / "checkpoint.pt"
        shutil.copy(folder / "model_epoch=3_iter=120.pt", bad)
        return dict(base, resume_checkpoint=str(bad)), ValueError, "model_epoch=E_iter=I"
    if case == "resume metadata":
        return (dict(data_train_dir=data, num_epochs=6, num_model_channels=64, grid_interval=0,
                     resume_checkpoint=str(folder / "model_epoch=3_iter=120.pt")), ValueError, "num_model_channels=64")
    assert case == "resume num_epochs"
    return (dict(data_train_dir=data, num_epochs=4, resume_checkpoint=str(folder / "model_epoch=3_iter=120.pt")),
            ValueError, "num_epochs")


BAD_CASES = ["missing data folder", "image_size", "channels", "microbatch", "use_fp16 on cpu",
             "non-empty folder", "resume name", "resume metadata", "resume num_epochs"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_raises_clearly_and_writes_nothing(tmp_path, case):
    kwargs, error, words = _bad_case(tmp_path, case)
    before = {d: folder_hashes(tmp_path / d) for d in ("run", "original") if (tmp_path / d).exists()}
    with pytest.raises(error, match=re.escape(words)):
        train.main(**kwargs)
    assert {d: folder_hashes(tmp_path / d) for d in before} == before


def _cli(*args, timeout=120):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, str(REPO_ROOT / "train.py"), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO_ROOT)


def test_cli_help_and_bad_flag_exit_code(tmp_path):
    helped = _cli("--help")
    assert helped.returncode == 0
    text = " ".join(helped.stdout.split())
    assert "--num_epochs NUM_EPOCHS total epochs of the run, also when resuming (default: 1000)" in text
    assert "--class_cond, --no-class_cond" in text and "--image_size_lr" in text and "--overwrite" in text
    failed = _cli("--data_train_dir", image_folder(tmp_path / "d"), "--batch_size", "2", "--microbatch", "4",
                  "--url_folder_experiment", str(tmp_path / "run"))
    assert failed.returncode != 0 and "microbatch" in failed.stderr and not (tmp_path / "run").exists()


def test_cli_training_run(tmp_path):
    data = image_folder(tmp_path / "data")
    out = tmp_path / "run"
    done = _cli("--data_train_dir", data, "--url_folder_experiment", str(out), "--num_epochs", "1",
                "--image_size", "32", "--num_input_channels", "1", "--num_model_channels", "32",
                "--num_res_blocks", "1", "--attention_resolutions", "8", "--diffusion_steps", "10",
                "--noise_schedule", "cosine", "--batch_size", "2", "--ema_rate", "0.9,0.99", "--class_cond",
                "--num_class", "2", "--grid_interval", "0")
    assert done.returncode == 0, done.stderr[-2000:]
    names = set(os.listdir(out))
    assert {"model_epoch=0_iter=1.pt", "ema_rate=0.9_0.pt", "ema_rate=0.99_0.pt", "opt0.pt"} <= names
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["class_cond"] is True and meta["ema_rate"] == "0.9,0.99"


def test_validation_line_gives_the_8bit_reference_and_names_partial_sums(tmp_path, capsys):
    data = image_folder(tmp_path / "data")
    train.main(data_train_dir=data, data_val_dir=data, url_folder_experiment=str(tmp_path / "run"),
               **{**TINY, "compute_val": True, "subset_timesteps": 2})
    line = next(x for x in capsys.readouterr().out.splitlines() if "val bits/dim" in x)
    assert "partial sum: 2 lowest-noise terms" in line and "uniform over 256 levels: 8" in line
