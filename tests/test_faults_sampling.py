"""Bad inputs and faults of sampling and of the messages every CLI prints (issue 14, sampling half).

Each case asserts the exit code, that the one-line message names the key or file, and that nothing was
written, overwritten or lost. Cases go through `run_cli` in-process, as the scripts do.
"""
import errno
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from tqdm import tqdm

import train
import utils.sampling.run as sampling_run
from improved_diffusion.dataloaders import create_dataloader
from improved_diffusion.sampler_choice import Sampler, sampling_grid
from improved_diffusion.script_util import validate_args
from sample import main_sample
from sample_DPM import sample_from_ODE
from tests.test_sampling_scripts import superres_dir  # noqa: F401 (a fixture: 64 px super-res, T = 20)
from tests.test_train_loop import folder_hashes
from utils.cli import TRACEBACK_ENV, run_cli
from utils.sampling.options import SamplingOptions

from .conftest import FIXTURES

CKPT = "model_epoch=3_iter=120.pt"
FAST = ["--device", "cpu", "--no-progress", "--batch_size", "1"]


class Opaque:
    """A custom class: its pickle needs code, which weights_only=True refuses."""


@pytest.fixture
def ckpt(tmp_path):
    """A fresh copy of the compat-a checkpoint folder (32 px, 1 channel, 10 classes, T = 100)."""
    folder = tmp_path / "ckpt"
    folder.mkdir()
    for name in (CKPT, "metadata.json"):
        shutil.copy(FIXTURES / "compat-a" / name, folder / name)
    return folder


def cli(func, argv, capsys):
    """(exit code, the stderr text) of run_cli(func, argv); the message must be one line without traceback."""
    with pytest.raises(SystemExit) as exit_info:
        run_cli(func, [str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.count("\n") == 0 and err.startswith("error: "), err
    return exit_info.value.code, err


def sample_args(ckpt, out, *extra, num_samples=1):
    return ["--model_path", ckpt / CKPT, "--url_save_path", out, *FAST, "--num_samples", num_samples, *extra]


def edit_metadata(folder, **changes):
    meta = json.loads((folder / "metadata.json").read_text())
    for key, value in changes.items():
        if value is KeyError:
            meta.pop(key)
        else:
            meta[key] = value
    (folder / "metadata.json").write_text(json.dumps(meta))


# --- checkpoint files -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_damaged_checkpoint_is_one_line_naming_the_file(ckpt, tmp_path, capsys, damage):
    data = (ckpt / CKPT).read_bytes()
    (ckpt / CKPT).write_bytes({"truncated": data[:len(data) // 2], "garbage": b"not a torch file" * 99,
                               "empty": b""}[damage])
    code, err = cli(main_sample, sample_args(ckpt, tmp_path / "out"), capsys)
    assert code == 2 and CKPT in err and "torch" in err
    assert not (tmp_path / "out").exists()


def test_pickle_with_code_is_refused_by_safe_loading(ckpt, tmp_path, capsys):
    torch.save({"time_embed.0.weight": torch.zeros(2), "payload": Opaque()}, ckpt / CKPT)
    code, err = cli(main_sample, sample_args(ckpt, tmp_path / "out"), capsys)
    assert code == 2 and CKPT in err and "weights_only" in err
    assert not (tmp_path / "out").exists()


def test_nan_weights_are_refused_naming_the_tensor(ckpt, tmp_path, capsys):
    state = torch.load(ckpt / CKPT, weights_only=True)
    state["out.2.bias"] = torch.full_like(state["out.2.bias"], float("nan"))
    torch.save(state, ckpt / CKPT)
    code, err = cli(sample_from_ODE, sample_args(ckpt, tmp_path / "out", "--sample_steps", "1"), capsys)
    assert code == 2 and CKPT in err and "out.2.bias" in err and "non-finite" in err
    assert not (tmp_path / "out").exists()


# --- metadata ---------------------------------------------------------------------------------------------------

def test_non_utf8_metadata_names_the_file(ckpt, tmp_path, capsys):
    (ckpt / "metadata.json").write_bytes(b'{"image_size": 32, "note": "\xff\xfe"}')
    code, err = cli(main_sample, sample_args(ckpt, tmp_path / "out"), capsys)
    assert code == 2 and "metadata.json" in err and "UTF-8" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("key, value, words", [
    ("class_cond", "false", "boolean"),  # a non-empty string is truthy: would silently mean true
    ("num_model_channels", 32.0, "integer"),
    ("dropout", "0.1", "number"),
    ("weight_decay", None, "number"),
    ("image_size", "32", "integer"),
])
def test_metadata_value_of_the_wrong_type(ckpt, tmp_path, capsys, key, value, words):
    edit_metadata(ckpt, **{key: value})
    before = folder_hashes(ckpt)
    code, err = cli(main_sample, sample_args(ckpt, tmp_path / "out"), capsys)
    assert code == 2 and f"{key}:" in err and words in err and "metadata.json" in err
    assert not (tmp_path / "out").exists() and folder_hashes(ckpt) == before


def test_metadata_without_size_and_channels_reads_them_off_the_weights(ckpt, tmp_path):
    edit_metadata(ckpt, image_size=KeyError, num_input_channels=KeyError)
    out = main_sample(model_path=str(ckpt / CKPT), url_save_path=str(tmp_path / "out"), num_samples=1,
                      batch_size=1, sampling_steps=1, use_ddim=True, device="cpu", progress=False, plot=False)
    # compat-a is a 32 px, 1-channel model (tests/fixtures/compat-a/README.md)
    with np.load(out) as data:
        assert data["arr_0"].shape == (1, 32, 32, 1)


@pytest.mark.parametrize("key, value", [("class_cond", "false"), ("learn_sigma", 1), ("num_res_blocks", True),
                                        ("noise_schedule", 3), ("num_class", 10.0)])
def test_validate_args_checks_types(key, value):
    with pytest.raises(ValueError, match=rf"^{key}: got {value!r} \("):
        validate_args({"class_cond": True, "num_class": 10, key: value})


# --- sampler options --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["ddimX", "0", "trailing", "5,x"])
def test_bad_timestep_respacing_names_key_and_forms(ckpt, tmp_path, capsys, spec):
    code, err = cli(main_sample, sample_args(ckpt, tmp_path / "out", "--timestep_respacing", spec), capsys)
    assert code == 2 and "timestep_respacing" in err and "ddimN" in err and "trailingN" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("steps", [2.5, "0", 0, True, 101])
def test_bad_sampling_steps_names_key_and_range(steps):
    with pytest.raises(ValueError, match=r"^sampling_steps: got .*expected an integer in \[1, 100\]"):
        sampling_grid(100, steps, None)


def test_bad_respacing_in_metadata_names_the_key():
    with pytest.raises(ValueError, match=r"^timestep_respacing='ddimX' .*expected 'ddimN', 'trailingN'"):
        validate_args({"timestep_respacing": "ddimX"})


@pytest.mark.parametrize("flags, key", [
    (["--dynamic_threshold_ratio", "1.5"], "dynamic_threshold_ratio"),
    (["--max_clip_val", "nan"], "max_clip_val"),
    (["--max_clip_val", "0"], "max_clip_val"),
    (["--lambda_min", "nan"], "lambda_min"),
    (["--method_type", "adaptive", "--rtol", "-1"], "rtol"),
])
def test_invalid_options_leave_no_folder(ckpt, tmp_path, capsys, flags, key):
    code, err = cli(sample_from_ODE, sample_args(ckpt, tmp_path / "out", *flags), capsys)
    assert code == 2 and f"{key}:" in err
    assert not (tmp_path / "out").exists()


def test_eta_nan_is_refused(ckpt, tmp_path, capsys):
    code, err = cli(main_sample, sample_args(ckpt, tmp_path / "out", "--use_ddim", "--eta", "nan"), capsys)
    assert code == 2 and "eta:" in err and not (tmp_path / "out").exists()


# --- outputs ----------------------------------------------------------------------------------------------------

def test_samples_are_never_written_into_the_checkpoint_folder(ckpt, capsys):
    before = folder_hashes(ckpt)
    code, err = cli(main_sample, sample_args(ckpt, ckpt), capsys)
    assert code == 2 and "url_save_path" in err
    assert folder_hashes(ckpt) == before


def test_existing_samples_are_not_overwritten(ckpt, tmp_path, capsys):
    argv = sample_args(ckpt, tmp_path / "out", "--use_ddim", "--sampling_steps", "1", "--no-plot")
    out = run_cli(main_sample, [str(a) for a in argv])
    before = folder_hashes(tmp_path / "out")
    code, err = cli(main_sample, argv + ["--seed", "5"], capsys)
    assert code == 2 and out.name in err and "overwrite" in err
    assert folder_hashes(tmp_path / "out") == before


def _interrupted_run(ckpt, out, monkeypatch):
    """Run two batches, then fail before merging: the shards stay for a resume."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(sampling_run.sample_io, "merge_shards", interrupted)
    with pytest.raises(KeyboardInterrupt):
        main_sample(model_path=str(ckpt / CKPT), url_save_path=str(out), num_samples=2, batch_size=1, use_ddim=True,
                    sampling_steps=1, device="cpu", progress=False, plot=False)
    monkeypatch.undo()
    shards = out / ".shards_samples_2x32x32x1"
    assert sorted(p.name for p in shards.glob("shard_*.npz")) == ["shard_000000.npz", "shard_000001.npz"]
    return shards


def test_resume_refuses_shards_made_from_other_weights(ckpt, tmp_path, capsys, monkeypatch):
    shards = _interrupted_run(ckpt, tmp_path / "out", monkeypatch)
    state = torch.load(ckpt / CKPT, weights_only=True)
    state["out.2.bias"] = state["out.2.bias"].detach() + 1.0  # other weights, same file name
    torch.save(state, ckpt / CKPT)
    before = folder_hashes(shards)
    argv = sample_args(ckpt, tmp_path / "out", "--use_ddim", "--sampling_steps", "1", "--no-plot", num_samples=2)
    code, err = cli(main_sample, argv, capsys)
    assert code == 2 and "checkpoint_sha256" in err and "other weights" in err
    assert folder_hashes(shards) == before  # nothing lost


def test_provenance_records_the_checkpoint_sha256(ckpt, tmp_path):
    import hashlib
    out = main_sample(model_path=str(ckpt / CKPT), url_save_path=str(tmp_path / "out"), num_samples=1,
                      batch_size=1, use_ddim=True, sampling_steps=1, device="cpu", progress=False, plot=False)
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["checkpoint_sha256"] == hashlib.sha256((ckpt / CKPT).read_bytes()).hexdigest()


def test_non_finite_samples_exit_non_zero_and_merge_nothing(ckpt, tmp_path, capsys):
    def nan_sampling(model_path: str = "", url_save_path: str = ""):
        nan = Sampler("ddim", {"sampler": "ddim"}, torch.float32, lambda denoiser, x, generator: x * float("nan"))
        options = SamplingOptions.resolve(batch_size=1, seed=0, device="cpu", progress=False)
        return sampling_run.run_sampling(nan, options, model_path=model_path, num_samples=1,
                                         url_save_path=url_save_path, plot=False)
    code, err = cli(nan_sampling, ["--model_path", ckpt / CKPT, "--url_save_path", tmp_path / "out"], capsys)
    assert code == 1 and "non-finite" in err and CKPT in err
    assert not list((tmp_path / "out").glob("*.npz"))


def test_full_disk_is_one_line_naming_the_file(ckpt, tmp_path, capsys, monkeypatch):
    def full(self, index, images, labels):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path(index)))
    monkeypatch.setattr(sampling_run.sample_io.ShardStore, "write", full)
    code, err = cli(main_sample, sample_args(ckpt, tmp_path / "out", "--use_ddim", "--sampling_steps", "1"), capsys)
    assert code == 1 and "No space left" in err and "shard_000000.npz" in err
    assert not list((tmp_path / "out").glob("*.npz"))


# --- super-resolution input -------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["nan", "no arr_0", "corrupt"])
def test_bad_low_res_input_names_url_lr_data(superres_dir, tmp_path, capsys, case):  # noqa: F811
    lr = tmp_path / "lr.npz"
    images = np.zeros((2, 32, 32, 1), np.float32)
    if case == "nan":
        images[1, 3, 4, 0] = np.nan
        np.savez(lr, images)
    elif case == "no arr_0":
        np.savez(lr, images=images)
    else:
        lr.write_bytes(b"PK\x03\x04 broken zip")
    code, err = cli(main_sample, sample_args(superres_dir, tmp_path / "out", "--url_lr_data", lr), capsys)
    assert code == 2 and "url_lr_data" in err and {"nan": "non-finite", "no arr_0": "arr_0",
                                                   "corrupt": "readable"}[case] in err
    assert not (tmp_path / "out").exists()


# --- messages ---------------------------------------------------------------------------------------------------

def test_traceback_on_request_via_environment(ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv(TRACEBACK_ENV, "1")
    with pytest.raises(ValueError, match="max_clip_val"):
        run_cli(main_sample, [str(a) for a in sample_args(ckpt, tmp_path / "out", "--max_clip_val", "-1")])


def test_error_line_is_not_glued_to_a_progress_bar(capsys):
    def failing(n: int = 3):
        bar = tqdm(total=n, desc="batches")
        bar.update(1)
        raise RuntimeError("boom\nsecond line")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(failing, [])
    lines = capsys.readouterr().err.splitlines()
    assert exit_info.value.code == 1
    assert lines[-1] == "error: RuntimeError: boom second line"


# --- image data (checked before training writes anything) --------------------------------------------------------

TRAIN = ["--image_size", "32", "--num_input_channels", "1", "--num_model_channels", "32", "--num_res_blocks", "1",
         "--attention_resolutions", "8", "--diffusion_steps", "10", "--noise_schedule", "cosine", "--num_epochs", "1",
         "--batch_size", "2"]


def _pngs(folder, arrays):
    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(arrays):
        Image.fromarray(a).save(folder / f"a_{i}.png")
    return folder


def test_truncated_png_stops_training_before_any_file(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = _pngs(tmp_path / "data", [rng.integers(0, 256, (32, 32), dtype=np.uint8) for _ in range(2)])
    good = (data / "a_1.png").read_bytes()
    (data / "a_1.png").write_bytes(good[:len(good) // 2])
    run = tmp_path / "run"
    code, err = cli(train.main, ["--data_train_dir", data, "--url_folder_experiment", run, *TRAIN], capsys)
    assert code == 2 and "a_1.png" in err and "cannot be read" in err
    assert not run.exists()


def test_folder_mixing_8_and_16_bit_pngs_is_refused(tmp_path):
    rng = np.random.default_rng(1)
    data = _pngs(tmp_path / "data", [rng.integers(0, 256, (32, 32), dtype=np.uint8),
                                     rng.integers(0, 65536, (32, 32), dtype=np.uint16)])
    with pytest.raises(ValueError, match=r"mixes bit depths: 16-bit \(1 files, e.g. 'a_1.png'\) and 8-bit"):
        create_dataloader(str(data), image_size=32, num_channels=1, batch_size=1)


def test_corrupt_png_names_the_file(tmp_path):
    rng = np.random.default_rng(2)
    data = _pngs(tmp_path / "data", [rng.integers(0, 256, (32, 32), dtype=np.uint8)])
    (data / "a_9.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match=r"a_9.png.*cannot be read"):
        create_dataloader(str(data), image_size=32, num_channels=1, batch_size=1)


def test_corrupt_hdf5_names_the_file(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "part0.hdf5").write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    run = tmp_path / "run"
    code, err = cli(train.main, ["--type_dataset", "hdf5", "--data_train_dir", data, "--url_folder_experiment", run,
                                 *TRAIN], capsys)
    assert code == 2 and "part0.hdf5" in err and "cannot be opened" in err
    assert not run.exists()
