"""load_model: original names, older Zenodo names and short JSONs, upstream state_dicts, clear errors."""
import json
import shutil

import pytest
import torch

from improved_diffusion import checkpoint as ckpt
from improved_diffusion.checkpoint import (
    args_from_improved_diffusion,
    ema_checkpoint_name,
    load_model,
    model_checkpoint_name,
    opt_checkpoint_name,
    parse_checkpoint_name,
)
from improved_diffusion.file_io import atomic_torch_save
from improved_diffusion.script_util import PRESETS, create_model_and_diffusion
from improved_diffusion.unet import UNetModel

TINY = {**PRESETS["demo"], "image_size": 32, "num_model_channels": 32, "num_res_blocks": 1,
        "attention_resolutions": "16", "class_cond": True, "num_class": 3, "learn_sigma": True,
        "diffusion_steps": 50, "noise_schedule": "cosine", "use_scale_shift_norm": False}


def perturbed_state(model):
    gen = torch.Generator().manual_seed(1)
    return {k: v + 0.05 * torch.randn(v.shape, generator=gen) for k, v in model.state_dict().items()}


def save_run(folder, args, name, json_name="metadata.json"):
    model, _ = create_model_and_diffusion(args)
    state = perturbed_state(model)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / name)
    (folder / json_name).write_text(json.dumps(args))
    model.load_state_dict(state)
    return model.eval()


def outputs(model, **kwargs):
    x = torch.randn(2, model.in_channels if not hasattr(model, "label_emb") else 1, 32, 32,
                    generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model(x, torch.tensor([3.0, 700.0]), **kwargs)


@pytest.mark.parametrize("name, fields", [
    ("model_epoch=3_iter=120.pt", dict(kind="model", epoch=3, iteration=120)),
    ("model_epoch=7_iter=900_vb=0.9521_mse=0.0013.pt", dict(kind="model", epoch=7, iteration=900, vb=0.9521, mse=0.0013)),
    ("model_epoch=2_step=50.pt", dict(kind="model", epoch=2, step=50)),
    ("ema_rate=0.9999_3.pt", dict(kind="ema", epoch=3, rate="0.9999")),
    ("ema_0.9999_23_vb=0.9521_mse=0.0013.pt", dict(kind="ema", epoch=23, rate="0.9999", vb=0.9521)),
    ("opt12.pt", dict(kind="opt", epoch=12)),
])
def test_checkpoint_names_parse(name, fields):
    parsed = parse_checkpoint_name(f"/some/dir/{name}")
    for key, value in fields.items():
        assert getattr(parsed, key) == value, key


def test_written_names_are_the_original_ones_and_parse_back():
    assert model_checkpoint_name(3, 120) == "model_epoch=3_iter=120.pt"
    assert model_checkpoint_name(0, 10, vb=1.5, mse=0.01) == "model_epoch=0_iter=10_vb=1.5_mse=0.01.pt"
    assert model_checkpoint_name(1, step=40) == "model_epoch=1_step=40.pt"
    assert ema_checkpoint_name("0.9999", 3) == "ema_rate=0.9999_3.pt"
    assert ema_checkpoint_name(0.99, 2, step=5) == "ema_rate=0.99_2_step=5.pt"
    assert opt_checkpoint_name(3) == "opt3.pt"
    assert parse_checkpoint_name(ema_checkpoint_name(0.9, 4, vb=2.0, mse=0.5)).vb == 2.0


def test_unparseable_name_lists_the_accepted_patterns():
    with pytest.raises(ValueError, match=r"model_epoch=E_iter=I"):
        parse_checkpoint_name("weights_final.pt")


def test_original_layout_folder_loads_unchanged(tmp_path):
    folder = tmp_path / "run"
    reference = save_run(folder, TINY, "ema_rate=0.9999_4.pt")
    model, diffusion, args = load_model(folder / "ema_rate=0.9999_4.pt")
    y = torch.tensor([0, 2])
    torch.testing.assert_close(outputs(model, y=y), outputs(reference, y=y))
    assert diffusion.num_timesteps == 50 and args["filled_metadata_keys"] == [
        k for k in sorted(ckpt.ORIGINAL_DEFAULTS) if k not in TINY]


def test_older_zenodo_names_and_short_json_are_completed_from_the_weights(tmp_path, capsys):
    folder = tmp_path / "mnist_32_cond_sigma_100"
    reference = save_run(folder, TINY, "ema_0.9999_23_vb=0.9521_mse=0.0013.pt")
    short = {k: TINY[k] for k in ("image_size", "diffusion_steps", "noise_schedule", "attention_resolutions",
                                  "use_scale_shift_norm")}
    (folder / "metadata.json").unlink()
    (folder / "model_args.json").write_text(json.dumps(short))
    model, _, args = load_model(folder / "ema_0.9999_23_vb=0.9521_mse=0.0013.pt")
    printed = capsys.readouterr().out
    for key in ("learn_sigma", "num_class", "num_model_channels", "num_res_blocks"):
        assert key in printed and key in args["filled_metadata_keys"]
    assert (args["learn_sigma"], args["class_cond"], args["num_class"], args["num_model_channels"]) == (True, True, 3, 32)
    y = torch.tensor([1, 1])
    torch.testing.assert_close(outputs(model, y=y), outputs(reference, y=y))


def test_missing_or_ambiguous_metadata_is_a_clear_error(tmp_path):
    folder = tmp_path / "run"
    save_run(folder, TINY, "model_epoch=0_iter=1.pt")
    (folder / "metadata.json").unlink()
    with pytest.raises(FileNotFoundError, match="no metadata JSON"):
        load_model(folder / "model_epoch=0_iter=1.pt")
    (folder / "a.json").write_text("{}")
    (folder / "b.json").write_text("{}")
    with pytest.raises(ValueError, match="several JSON files"):
        load_model(folder / "model_epoch=0_iter=1.pt")


def test_mismatched_metadata_names_the_likely_cause(tmp_path):
    folder = tmp_path / "run"
    save_run(folder, TINY, "model_epoch=0_iter=1.pt")
    (folder / "metadata.json").write_text(json.dumps({**TINY, "learn_sigma": False}))
    with pytest.raises(ValueError, match="learn_sigma"):
        load_model(folder / "model_epoch=0_iter=1.pt")
    (folder / "metadata.json").write_text(json.dumps({**TINY, "class_cond": False}))
    with pytest.raises(ValueError, match="class_cond"):
        load_model(folder / "model_epoch=0_iter=1.pt")


def test_improved_diffusion_state_dict_loads_with_translated_flags(tmp_path):
    flags = dict(image_size=32, num_channels=64, num_res_blocks=2, learn_sigma=True, class_cond=False,
                 attention_resolutions="16,8", diffusion_steps=4000, noise_schedule="cosine", use_kl=False,
                 rescale_learned_sigmas=True, rescale_timesteps=True, use_scale_shift_norm=True, num_heads=4,
                 dropout=0.3)
    # Built directly with upstream's constructor arguments: 3 channels in, 6 out.
    upstream = UNetModel(3, 64, 6, 2, attention_resolutions=(2, 4), dropout=0.3, channel_mult=(1, 2, 2, 2),
                         num_heads=4, use_scale_shift_norm=True)
    state = perturbed_state(upstream)
    upstream.load_state_dict(state)
    torch.save(state, tmp_path / "ema_0.9999_200000.pt")
    args = args_from_improved_diffusion(flags)
    model, diffusion, _ = load_model(tmp_path / "ema_0.9999_200000.pt", args_dic=args)
    upstream.eval()
    torch.testing.assert_close(outputs(model), outputs(upstream))
    assert args["loss_name"] == "rescaled_mse" and diffusion.num_timesteps == 4000


def test_not_a_state_dict_is_rejected(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "metadata.json").write_text(json.dumps(TINY))
    torch.save({"step": 3}, folder / "model_epoch=0_iter=1.pt")
    with pytest.raises(ValueError, match="not a UNet state_dict"):
        load_model(folder / "model_epoch=0_iter=1.pt")


def test_atomic_save_keeps_the_previous_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "model_epoch=0_iter=1.pt"
    atomic_torch_save({"a": torch.ones(3)}, target)
    before = target.read_bytes()

    def broken_save(obj, path):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_torch_save({"a": torch.zeros(3)}, target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_fixture_checkpoint_copy_loads_from_another_folder(tmp_path, repo_root):
    source = repo_root / "tests" / "fixtures" / "compat-a"
    for name in ("metadata.json", "model_epoch=3_iter=120.pt"):
        shutil.copy(source / name, tmp_path / name)
    model, diffusion, args = load_model(tmp_path / "model_epoch=3_iter=120.pt")
    assert args["filled_metadata_keys"] == [] and diffusion.num_timesteps == 100
    assert not model.training
