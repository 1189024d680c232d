"""model_likelihood: a tiny T=6 checkpoint (full chain) and the original code's checkpoint (compat-a)."""
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

import model_likelihood
from improved_diffusion.checkpoint import write_metadata
from improved_diffusion.script_util import PRESETS, create_model_and_diffusion
from model_likelihood import calc_model_loss, to_8bit_grid

CKPT = str(Path(__file__).parent / "fixtures" / "compat-a" / "model_epoch=3_iter=120.pt")


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """An untrained class-conditional learned-sigma model, T=6, written like a training run."""
    folder = tmp_path_factory.mktemp("run")
    args = {**PRESETS["demo"], "diffusion_steps": 6, "learn_sigma": True, "class_cond": True, "num_class": 3,
            "attention_resolutions": ""}
    torch.manual_seed(0)
    model, _ = create_model_and_diffusion(args)
    torch.save(model.state_dict(), folder / "model_epoch=0_iter=1.pt")
    write_metadata(folder, args)
    return str(folder / "model_epoch=0_iter=1.pt")


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8), mode="L").save(folder / f"{i % 3}_{i}.png")
    return folder


def test_bits_per_dim_finite_and_independent_of_batch_size(image_folder, tiny_ckpt):
    a = calc_model_loss(tiny_ckpt, str(image_folder), batch_size=5, progress=False)
    b = calc_model_loss(tiny_ckpt, str(image_folder), batch_size=2, progress=False)
    assert a["diffusion_steps"] == a["trained_diffusion_steps"] == 6
    assert a["quantity"] == "bits/dim of 8-bit data" and a["n_examples"] == 5
    assert np.isfinite(a["per_example_bpd"]).all() and a["bpd_mean"] > 0
    assert len(a["per_example_bpd"]) == 5 and np.mean(a["per_example_bpd"]) == pytest.approx(a["bpd_mean"], rel=1e-12)
    np.testing.assert_allclose(a["per_example_bpd"], b["per_example_bpd"], rtol=1e-6)
    c = calc_model_loss(tiny_ckpt, str(image_folder), batch_size=5, seed=1, progress=False)
    assert c["per_example_bpd"] != a["per_example_bpd"]


def test_original_checkpoint_subset_is_labelled_partial(image_folder):
    part = calc_model_loss(CKPT, str(image_folder), num_samples=2, subset_timesteps=2, progress=False)
    assert part["trained_diffusion_steps"] == 100
    assert "bpd_mean" not in part and part["subset_timesteps"] == 2
    assert np.isfinite(part["partial_bpd_k_lowest_noise_terms"])


def test_rediscretisation_warns(image_folder, tiny_ckpt):
    with pytest.warns(UserWarning, match="re-discretised"):
        r = calc_model_loss(tiny_ckpt, str(image_folder), diffusion_steps=3, progress=False)
    assert r["diffusion_steps"] == 3 and r["trained_diffusion_steps"] == 6


def test_float_data_are_quantised_and_labelled(tmp_path, tiny_ckpt):
    x = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32)
    np.savez(tmp_path / "f.npz", x, np.array([0, 2]))
    with pytest.warns(UserWarning, match="quantised"):
        r = calc_model_loss(tiny_ckpt, str(tmp_path / "f.npz"), progress=False)
    assert "quantised to 256 levels" in r["quantity"]
    assert np.abs(to_8bit_grid(x) - x).max() <= 1 / 127.5 / 2 + 1e-6
    assert "bpd_roc_auc_label1_vs_0" not in r  # labels 0 and 2: not a binary labelling


def test_binary_labels_give_the_roc_auc_of_per_field_bits_per_dim(tmp_path, tiny_ckpt):
    x = np.random.default_rng(2).uniform(-1, 1, (4, 32, 32, 1)).astype(np.float32)
    x[2:] *= 0.1  # label-1 fields of another law than the label-0 ones
    np.savez(tmp_path / "f.npz", x, np.array([0, 0, 1, 1]))
    with pytest.warns(UserWarning, match="quantised"):
        r = calc_model_loss(tiny_ckpt, str(tmp_path / "f.npz"), progress=False)
    bpd, auc = np.array(r["per_example_bpd"]), r["bpd_roc_auc_label1_vs_0"]
    pairs = bpd[2:, None] - bpd[None, :2]  # the AUC's definition: P(S1 > S0) + P(S1 = S0) / 2
    assert auc["auc"] == pytest.approx(((pairs > 0).sum() + 0.5 * (pairs == 0).sum()) / 4)
    assert r["per_example_label"] == [0, 0, 1, 1] and auc["low"] <= auc["auc"] <= auc["high"]


def test_bad_inputs(tmp_path, image_folder, tiny_ckpt):
    np.savez(tmp_path / "small.npz", np.zeros((2, 16, 16, 1), np.float32), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="the model expects"):
        calc_model_loss(tiny_ckpt, str(tmp_path / "small.npz"), progress=False)
    np.savez(tmp_path / "nolabel.npz", np.zeros((2, 32, 32, 1), np.float32))
    with pytest.raises(ValueError, match="no labels"):
        calc_model_loss(tiny_ckpt, str(tmp_path / "nolabel.npz"), progress=False)
    with pytest.raises(ValueError, match="subset_timesteps=500"):
        calc_model_loss(tiny_ckpt, str(image_folder), subset_timesteps=500, progress=False)
    with pytest.raises(ValueError, match="outside the checkpoint folder"):
        calc_model_loss(tiny_ckpt, str(image_folder), out_json=str(Path(tiny_ckpt).parent / "m.json"))


def test_data_type_that_disagrees_with_the_dataset_is_an_error(image_folder, tiny_ckpt):
    with pytest.raises(ValueError, match="data_type='hdf5'.*holds image data"):
        calc_model_loss(tiny_ckpt, str(image_folder), data_type="hdf5", progress=False)


def test_progress_runs_over_timesteps_and_summary_names_the_output(image_folder, tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "bpd.json"
    report = calc_model_loss(tiny_ckpt, str(image_folder), batch_size=5, out_json=str(out), progress=True)
    err = capsys.readouterr().err  # tqdm writes to stderr: a bar over batches and one over timesteps
    assert "batches" in err and "bits/dim" in err
    line = model_likelihood.summary_line(report)
    assert f"{report['bpd_mean']:.4f}" in line and str(out) in line and f"{report['n_examples']} examples" in line


def test_hdf5_key_data_comes_from_metadata_and_the_line_gives_the_8bit_reference(tmp_path, repo_root):
    args = {**PRESETS["demo"], "diffusion_steps": 4, "attention_resolutions": "",
            "hdf5_keys": {"list_keys_hdf5_original": None, "key_data": "unwrap", "key_other": None, "key_class": None}}
    torch.manual_seed(0)
    model, _ = create_model_and_diffusion({k: v for k, v in args.items() if k != "hdf5_keys"})
    torch.save(model.state_dict(), tmp_path / "model_epoch=0_iter=1.pt")
    write_metadata(tmp_path, args)
    data = tmp_path / "data"
    data.mkdir()
    with h5py.File(data / "part0.hdf5", "w") as f:
        f["unwrap"] = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32)).astype(np.float32)
    done = subprocess.run([sys.executable, "model_likelihood.py", "--model_path", str(tmp_path / "model_epoch=0_iter=1.pt"),
                           "--url_dataset", str(data), "--subset_timesteps", "2", "--no-progress"],
                          cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip().splitlines()[-1]
    assert "PARTIAL SUM of the 2 lowest-noise terms" in line and "= 8 bits/dim" in line


def test_holes_are_left_out_of_the_bits_per_dim(tmp_path, tiny_ckpt):
    # the untrained UNet's output layer is zero-initialised, so its prediction does not depend on the input and
    # every term of the bound is a per-pixel quantity: the bits/dim over a hole's complement, weighted by its
    # pixel count, plus that over the hole itself give the bits/dim of the whole field (same noise)
    x = to_8bit_grid(np.random.default_rng(3).uniform(-1, 1, (2, 32, 32, 1))).astype(np.float32)
    x[:, 8:16, 8:24] = 0.0  # the value holes are filled with, so the network's input is the same in all runs
    hole = np.zeros_like(x, dtype=bool)
    hole[:, 8:16, 8:24] = True

    def folder(name, values):  # an HDF5 folder (the masked layout of the tiler: NaN where unknown)
        (tmp_path / name).mkdir()
        with h5py.File(tmp_path / name / "part0.hdf5", "w") as f:
            f["unwrap"], f["label"] = values[..., 0], np.array([0, 1])
        return str(tmp_path / name)
    kw = dict(key_data="unwrap", key_class="label", progress=False)
    whole = calc_model_loss(tiny_ckpt, folder("whole", x), **kw)
    with pytest.raises(ValueError, match="2 of 2 images hold NaN; pass nan_policy='fill'"):
        calc_model_loss(tiny_ckpt, folder("holed", np.where(hole, np.nan, x)), **kw)
    holed = calc_model_loss(tiny_ckpt, str(tmp_path / "holed"), nan_policy="fill", **kw)
    inside = calc_model_loss(tiny_ckpt, folder("only_hole", np.where(hole, x, np.nan)), nan_policy="fill", **kw)
    n_hole = 8 * 16
    combined = (np.array(holed["per_example_bpd"]) * (1024 - n_hole) + np.array(inside["per_example_bpd"]) * n_hole)
    np.testing.assert_allclose(combined / 1024, whole["per_example_bpd"], rtol=1e-5)
    assert holed["masked_pixels"]["nan_fraction"] == pytest.approx(n_hole / 1024)
    assert "(valid pixels only: 12.5 % masked)" in model_likelihood.summary_line(holed)
    assert whole["masked_pixels"]["n_with_nan"] == 0 and holed["per_example_bpd"] != whole["per_example_bpd"]
    empty = np.where(hole, x, np.nan)
    empty[1] = np.nan
    with pytest.raises(ValueError, match="image 1 .* has no valid pixel"):
        calc_model_loss(tiny_ckpt, folder("empty", empty), nan_policy="fill", **kw)


def test_the_masked_bound_of_a_network_that_sees_its_input_splits_over_pixels():
    # a network with random output weights (its prediction depends on x_t): with complementary masks on the
    # same field and the same noise, the pixel-weighted masked bounds add up to the unmasked bound, term by term
    args = {**PRESETS["demo"], "diffusion_steps": 4, "learn_sigma": True, "attention_resolutions": ""}
    torch.manual_seed(0)
    model, diffusion = create_model_and_diffusion(args)
    for p in model.out.parameters():
        torch.nn.init.normal_(p, std=0.05)
    model.eval()
    x = torch.from_numpy(to_8bit_grid(np.random.default_rng(4).uniform(-1, 1, (2, 1, 32, 32))).astype(np.float32))
    mask = torch.zeros_like(x)
    mask[:, :, 4:20, 2:30] = 1.0
    runs = [diffusion.calc_bpd_loop(model, x, generator=[torch.Generator().manual_seed(i) for i in range(2)], mask=m)
            for m in (None, mask, 1 - mask)]
    share = mask.mean(dim=(1, 2, 3)).double()
    for key in ("total_bpd", "prior_bpd"):
        whole, inside, outside = (r[key].double() for r in runs)
        torch.testing.assert_close(share * inside + (1 - share) * outside, whole, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(runs[1]["total_bpd"], runs[2]["total_bpd"])
