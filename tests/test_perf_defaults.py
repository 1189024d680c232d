"""Fast by default: the memory-format rule, the recorded speed choices and their reuse on resume."""
import re

import pytest

import train
from improved_diffusion import acceleration
from improved_diffusion.acceleration import resolve_channels_last
from improved_diffusion.checkpoint import read_metadata, write_metadata
from utils.cli import build_parser

from .test_train_script import TINY, image_folder


@pytest.fixture
def avx2_x86(monkeypatch):
    monkeypatch.setattr(acceleration, "_cpu_flags", lambda: frozenset({"avx2", "fma", "sse2"}))
    monkeypatch.setattr(acceleration.platform, "machine", lambda: "x86_64")


@pytest.mark.parametrize("flags, machine, expected", [({"avx2"}, "x86_64", True), ({"avx512f"}, "AMD64", True),
                                                      ({"sse2", "sse4_2"}, "x86_64", False),
                                                      ({"asimd", "bf16"}, "aarch64", False), (set(), "x86_64", False)])
def test_auto_memory_format_follows_the_cpu(monkeypatch, flags, machine, expected):
    monkeypatch.setattr(acceleration, "_cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr(acceleration.platform, "machine", lambda: machine)
    assert resolve_channels_last("auto", "cpu", "auto", "none") is expected


def test_explicit_memory_formats_and_amp_none_keep_their_meaning(avx2_x86):
    assert resolve_channels_last("auto", "cpu", "none", "none") is False  # the original float32 NCHW numerics
    for value, expected in ((True, True), ("true", True), ("False", False), (False, False)):
        assert resolve_channels_last(value, "cpu", "none", "none") is expected
    with pytest.raises(ValueError, match=r"channels_last: got 'nhwc', expected True, False or 'auto'"):
        resolve_channels_last("nhwc", "cpu", "auto", "none")
    assert acceleration.enable_fast_matmul("cpu", "bf16") is False  # TF32 is a CUDA matter only


def test_resume_takes_the_recorded_choices_not_this_hardware(tmp_path, avx2_x86, monkeypatch):
    data, run = image_folder(tmp_path / "data"), tmp_path / "run"
    train.main(data_train_dir=data, url_folder_experiment=str(run), **TINY)
    meta = read_metadata(run / "metadata.json")
    assert (meta["amp"], meta["channels_last"]) == ("none", True)  # the resolved 'auto' on an AVX2 CPU
    monkeypatch.setattr(acceleration, "_cpu_flags", lambda: frozenset())  # here 'auto' would mean NCHW
    assert resolve_channels_last("auto", "cpu", "auto", "none") is False
    first = sorted(run.glob("model_epoch=*.pt"))[-1]
    train.main(data_train_dir=data, resume_checkpoint=str(first), **{**TINY, "num_epochs": 2})
    assert read_metadata(run / "metadata.json")["channels_last"] is True


def test_metadata_without_recorded_choices_resumes_as_the_original(tmp_path, avx2_x86):
    data, run = image_folder(tmp_path / "data"), tmp_path / "run"
    train.main(data_train_dir=data, url_folder_experiment=str(run), **TINY)
    meta = read_metadata(run / "metadata.json")
    for key in ("amp", "channels_last"):  # a run written before the choices were recorded
        del meta[key]
    write_metadata(run, meta)
    first = sorted(run.glob("model_epoch=*.pt"))[-1]
    train.main(data_train_dir=data, resume_checkpoint=str(first), **{**TINY, "num_epochs": 2})
    meta = read_metadata(run / "metadata.json")
    assert (meta["amp"], meta["channels_last"]) == ("none", False)  # the original float32 NCHW numerics


def test_help_says_which_checkpoints_are_kept():
    text = build_parser(train.main).format_help()
    assert "--keep_checkpoints" in text and re.search(r"best\s+by\s+val", text)
