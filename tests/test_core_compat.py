"""The original code's outputs for fixed inputs (tests/fixtures/compat-*) are reproduced by load_model."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from improved_diffusion.checkpoint import load_model
from improved_diffusion.respace import SpacedDiffusion, space_timesteps
from improved_diffusion.script_util import create_gaussian_diffusion

FIXTURES = sorted(p for p in (Path(__file__).parent / "fixtures").glob("compat-*") if (p / "expected.npz").exists())
STRICT = dict(rtol=1e-4, atol=1e-5)
# Entries dominated by float32 rounding inside the original formulas (fixture README).
LOOSE = {"loss": dict(rtol=1e-2, atol=1e-4), "vb": dict(rtol=1e-2, atol=1e-4), "vb_terms_bpd": dict(rtol=1e-2, atol=1e-4),
         "pmv_pred_xstart": dict(rtol=2e-3, atol=1e-4), "pmv_mean": dict(rtol=2e-3, atol=1e-4),
         "ddim_sample": dict(rtol=2e-3, atol=1e-4)}
SCHEDULE_KEYS = ["betas", "alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
                 "posterior_mean_coef1", "posterior_mean_coef2"]


@pytest.fixture(scope="module", params=FIXTURES, ids=[p.name for p in FIXTURES])
def fixture(request):
    folder = request.param
    expected = dict(np.load(folder / "expected.npz"))
    checkpoint = next(folder.glob("model_*.pt"))
    model, diffusion, args = load_model(checkpoint)
    x = torch.from_numpy(expected["x"])
    t = torch.from_numpy(expected["t"])
    kwargs = {}
    if "y" in expected:
        kwargs["y"] = torch.from_numpy(expected["y"])
    if "low_res" in expected:
        kwargs["low_res"] = torch.from_numpy(expected["low_res"])
    return dict(expected=expected, model=model, diffusion=diffusion, args=args, x=x, t=t, kwargs=kwargs,
                noise=torch.from_numpy(expected["noise"]))


def check(f, key, value):
    if key not in f["expected"]:
        pytest.skip(f"{key} not in this fixture")
    value = value.detach().numpy() if torch.is_tensor(value) else np.asarray(value)
    np.testing.assert_allclose(value, f["expected"][key], **LOOSE.get(key, STRICT), err_msg=key)


def test_metadata_is_the_fixture_json(fixture):
    original = json.loads(str(fixture["expected"]["args_json"]))
    assert {k: fixture["args"][k] for k in original} == original


def test_model_time_and_output(fixture):
    f = fixture
    model_t = f["diffusion"].model_time(f["t"])
    check(f, "model_t", model_t)
    assert model_t.dtype == torch.from_numpy(f["expected"]["model_t"]).dtype
    with torch.no_grad():
        check(f, "model_out", f["model"](f["x"], model_t, **f["kwargs"]))


@pytest.mark.parametrize("key", SCHEDULE_KEYS)
def test_schedule_arrays(fixture, key):
    np.testing.assert_allclose(getattr(fixture["diffusion"], key), fixture["expected"][key], rtol=1e-12, atol=0)


def test_forward_and_reverse_process(fixture):
    f = fixture
    d, m = f["diffusion"], f["model"]
    check(f, "q_sample", d.q_sample(f["x"], f["t"], noise=f["noise"]))
    with torch.no_grad():
        out = d.p_mean_variance(m, f["x"], f["t"], clip_denoised=True, model_kwargs=f["kwargs"])
        for key in ("mean", "variance", "log_variance", "pred_xstart"):
            check(f, f"pmv_{key}", out[key])
        ddim = d.ddim_sample(m, f["x"], f["t"], clip_denoised=True, model_kwargs=f["kwargs"], eta=0.0)
        check(f, "ddim_sample", ddim["sample"])


def test_training_losses_and_bpd(fixture):
    f = fixture
    d, m = f["diffusion"], f["model"]
    with torch.no_grad():
        losses = d.training_losses(m, f["x"], f["t"], model_kwargs=f["kwargs"], noise=f["noise"])
        for key in ("loss", "mse", "vb"):
            if key in f["expected"]:
                check(f, key, losses[key])
        x_t = torch.from_numpy(f["expected"]["q_sample"])
        bpd = d._vb_terms_bpd(m, f["x"].clamp(-1, 1), x_t, f["t"], clip_denoised=False, model_kwargs=f["kwargs"])
        check(f, "vb_terms_bpd", bpd["output"])


@pytest.mark.parametrize("spec", ["ddim10", "10_5_5"])
def test_respaced_maps_and_betas(fixture, spec):
    f = fixture
    key = f"respaced_{spec}"
    a = f["args"]
    T = a["diffusion_steps"]
    spaced = create_gaussian_diffusion(steps=T, learn_sigma=a["learn_sigma"], sigma_small=a["sigma_small"],
                                       noise_schedule=a["noise_schedule"], loss_name=a["loss_name"],
                                       output_type=a["output_type"], rescale_timesteps=a["rescale_timesteps"],
                                       timestep_respacing=spec.replace("_", ","))
    assert isinstance(spaced, SpacedDiffusion)
    np.testing.assert_array_equal(spaced.timestep_map, f["expected"][f"{key}_timestep_map"])
    np.testing.assert_allclose(spaced.betas, f["expected"][f"{key}_betas"], rtol=1e-12, atol=0)
    assert sorted(space_timesteps(T, spec.replace("_", ","))) == list(f["expected"][f"{key}_timestep_map"])
