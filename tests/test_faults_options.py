"""Options that were taken silently or refused too late (issue 26, item 3): each is refused with status 2 and
one line naming the key, before any file is written, and the corrected call then runs without --overwrite."""
import json

import pytest
import torch

import train
from improved_diffusion.checkpoint import write_metadata
from improved_diffusion.script_util import create_model_and_diffusion, validate_args
from sample import main_sample
from sample_DPM import sample_from_ODE
from tests.test_faults_sampling import CKPT, ckpt, cli, edit_metadata, sample_args  # noqa: F401 (ckpt: a fixture)
from tests.test_faults_training import RUN, _argv, _copy_sets, _rejected, data, straight  # noqa: F401 (fixtures)
from utils.cli import run_cli

QUICK = ["--use_ddim", "--sampling_steps", "1"]


@pytest.fixture
def unconditional(tmp_path):
    """A tiny unconditional 32 px model (T = 10) with its metadata.json."""
    folder = tmp_path / "uncond"
    folder.mkdir()
    args = {"image_size": 32, "num_input_channels": 1, "num_model_channels": 32, "num_res_blocks": 1,
            "attention_resolutions": "8", "diffusion_steps": 10, "class_cond": False, "noise_schedule": "cosine"}
    model, _ = create_model_and_diffusion(args)
    torch.save(model.state_dict(), folder / CKPT)
    write_metadata(folder, args)
    return folder


@pytest.mark.parametrize("spec", ["7", "16,7", "64", "8,x"])
def test_attention_resolution_that_is_no_feature_map_is_refused(spec):
    with pytest.raises(ValueError, match=r"attention_resolutions: got .*feature-map sizes among \[32, 16, 8, 4\]"):
        validate_args({"image_size": 32, "attention_resolutions": spec})


def test_attention_resolutions_7_is_refused_by_train_before_any_write(tmp_path, capsys, data):  # noqa: F811
    out = tmp_path / "run"
    options = {**RUN, "attention_resolutions": "7", "num_epochs": 1}
    _rejected(capsys, _argv(data_train_dir=data, url_folder_experiment=out, **options), ["attention_resolutions",
                                                                                          "'7'"])
    assert not out.exists()
    run_cli(train.main, _argv(data_train_dir=data, url_folder_experiment=out, **{**options,
                                                                              "attention_resolutions": "8"}))
    assert json.loads((out / "metadata.json").read_text())["attention_resolutions"] == "8"


def test_sample_class_for_an_unconditional_model_is_refused(unconditional, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = cli(main_sample, sample_args(unconditional, out, "--sample_class", "2", *QUICK), capsys)
    assert code == 2 and "sample_class" in err and "unconditional" in err and CKPT in err
    assert not out.exists()
    run_cli(main_sample, [str(a) for a in sample_args(unconditional, out, *QUICK)])
    assert (out / "samples_1x32x32x1.npz").is_file()


@pytest.mark.parametrize("value, expected", [("2.5", "got 2.5"), ("10", "got 10"), ("1,x", "got '1,x'; 'x' is neither")])
def test_a_sample_class_that_is_no_class_index_names_the_key(ckpt, tmp_path, capsys, value, expected):  # noqa: F811
    code, err = cli(main_sample, sample_args(ckpt, tmp_path / "out", "--sample_class", value, *QUICK), capsys)
    assert code == 2 and f"sample_class: {expected}" in err
    assert not (tmp_path / "out").exists()


def test_resumes_that_is_no_list_names_the_key_when_sampling(ckpt, tmp_path, capsys):  # noqa: F811
    edit_metadata(ckpt, resumes=5)
    code, err = cli(main_sample, sample_args(ckpt, tmp_path / "out", *QUICK), capsys)
    assert code == 2 and "resumes: got 5 (int)" in err and "metadata.json" in err
    assert not (tmp_path / "out").exists()


def test_resumes_that_is_no_list_names_the_key_on_resume(capsys, straight, tmp_path):  # noqa: F811
    folder = tmp_path / "run"
    _copy_sets(straight, folder, ["epoch=1_iter=4.pt", "_1.pt", "opt1.pt"])
    meta = json.loads((folder / "metadata.json").read_text())
    (folder / "metadata.json").write_text(json.dumps({**meta, "resumes": 5}))
    _rejected(capsys, _argv(resume_checkpoint=folder / "model_epoch=1_iter=4.pt", num_epochs=3),
              ["resumes: got 5 (int)", "metadata.json"], folder)


def test_lambda_min_above_lambda_max_is_refused_before_the_shard_folder(ckpt, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "out"
    dpm = ["--model_path", ckpt / CKPT, "--url_save_path", out, "--device", "cpu", "--no-progress", "--num_samples",
           "1", "--batch_size", "1", "--sample_steps", "3", "--sample_class", "1"]
    code, err = cli(sample_from_ODE, dpm + ["--lambda_min", "100"], capsys)
    assert code == 2 and "lambda_min: got 100" in err and "lambda_max=2.5" in err
    assert not out.exists()
    # 30 calls: the auto lambda_max is None (spacing to index 0), so only the model's schedule can refuse it
    code, err = cli(sample_from_ODE, dpm[:-4] + ["--sample_steps", "30", "--sample_class", "1", "--lambda_min", "100"],
                    capsys)
    assert code == 2 and "lambda_min=100: expected a half-log-SNR below" in err and "chain index 0" in err
    assert not out.exists()
    run_cli(sample_from_ODE, [str(a) for a in dpm])
    assert (out / "samples_1x32x32x1.npz").is_file()
