"""The denoiser adapter on compat-a (the original code's outputs) and on tiny models of every kind."""
import numpy as np
import pytest
import torch

from improved_diffusion.checkpoint import load_model
from improved_diffusion.denoiser import Denoiser
from improved_diffusion.noise_schedule import CLEAN, grid_from_indices
from improved_diffusion.respace import space_timesteps
from improved_diffusion.samplers import dpm_solver_sample, sample_ancestral, sample_ddim
from improved_diffusion.script_util import create_model_and_diffusion

from .conftest import FIXTURES

COMPAT = FIXTURES / "compat-a"


@pytest.fixture(scope="module")
def compat():
    model, diffusion, _ = load_model(COMPAT / "model_epoch=3_iter=120.pt", verbose=False)
    return model, diffusion, dict(np.load(COMPAT / "expected.npz"))


def test_x0_and_ddim_step_match_original(compat):
    """Per sample, x0 and one DDIM step t -> t-1 equal the original code's (tolerances of the fixture README)."""
    model, diffusion, e = compat
    for i, t in enumerate(e["t"]):
        x = torch.from_numpy(e["x"][i:i + 1])
        den = Denoiser(model, diffusion, y=torch.from_numpy(e["y"][i:i + 1]))
        with torch.no_grad():
            x0 = den(x, torch.tensor(float(t), dtype=torch.float64))
            step = sample_ddim(den, x, torch.tensor([float(t), t - 1.0 if t > 0 else CLEAN], dtype=torch.float64),
                               den.schedule)
        np.testing.assert_allclose(x0.numpy(), e["pmv_pred_xstart"][i:i + 1], rtol=2e-3, atol=1e-4)
        np.testing.assert_allclose(step.numpy(), e["ddim_sample"][i:i + 1], rtol=2e-3, atol=1e-4)


def test_ancestral_equals_core_p_sample_loop_on_respaced_chain(compat):
    model, _, _ = compat
    _, spaced, _ = load_model(COMPAT / "model_epoch=3_iter=120.pt", timestep_respacing="4,3", verbose=False)
    _, full, _ = load_model(COMPAT / "model_epoch=3_iter=120.pt", verbose=False)
    y = torch.tensor([3, 7])
    noise = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        expected = spaced.p_sample_loop(model, noise.shape, noise=noise.clone(), model_kwargs={"y": y},
                                        generator=torch.Generator().manual_seed(5))
        den = Denoiser(model, full, y=y)
        ours = sample_ancestral(den, noise.clone(), grid_from_indices(space_timesteps(100, "4,3")), den.schedule,
                                den.variance, generator=torch.Generator().manual_seed(5))
    assert den.nfe == 7
    torch.testing.assert_close(ours, expected, rtol=1e-3, atol=1e-3)


class TimeSpy(torch.nn.Module):
    """Records the times a network receives; predicts zero noise."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.times = []

    def forward(self, x, t):
        self.times.append(t.clone())
        return torch.zeros_like(x) * self.w


@pytest.mark.parametrize("rescale", [True, False])
def test_model_time_fractional(rescale):
    _, diffusion = create_model_and_diffusion({"image_size": 32, "num_model_channels": 32, "num_res_blocks": 1,
                                               "diffusion_steps": 50, "rescale_timesteps": rescale})
    spy = TimeSpy()
    den = Denoiser(spy, diffusion, clip_denoised=False)
    den(torch.zeros(2, 1, 4, 4), torch.tensor(10.25, dtype=torch.float64))
    den(torch.zeros(2, 1, 4, 4), torch.tensor(49.0, dtype=torch.float64))
    if rescale:  # t * 1000 / T, interpolated
        assert torch.allclose(spy.times[0], torch.full((2,), 205.0)) and torch.allclose(spy.times[1], torch.full((2,), 980.0))
    else:  # nearest integer index
        assert spy.times[0].dtype == torch.int64 and spy.times[0].tolist() == [10, 10] and spy.times[1].tolist() == [49, 49]


TINY = {"image_size": 32, "num_input_channels": 1, "num_model_channels": 32, "num_res_blocks": 1,
        "attention_resolutions": "8", "diffusion_steps": 40, "noise_schedule": "linear"}
KINDS = {
    "cond-learned-eps": dict(class_cond=True, num_class=3, learn_sigma=True, output_type="epsilon"),
    "uncond-fixed-eps": dict(class_cond=False, learn_sigma=False, output_type="epsilon"),
    "uncond-small-xstart": dict(class_cond=False, learn_sigma=False, sigma_small=True, output_type="x_start"),
    "cond-fixed-integer-time": dict(class_cond=True, num_class=3, learn_sigma=False, rescale_timesteps=False),
    "uncond-learned-xprev": dict(class_cond=False, learn_sigma=True, output_type="x_previous"),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_sampler_runs_on_every_model_kind(kind):
    model, diffusion = create_model_and_diffusion({**TINY, **KINDS[kind]})
    model.eval()
    y = torch.tensor([0, 2]) if KINDS[kind]["class_cond"] else None
    x_T = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    den = Denoiser(model, diffusion, y=y)
    grid = grid_from_indices(space_timesteps(40, "trailing4"))
    outputs = {}
    with torch.inference_mode():
        outputs["ancestral"] = sample_ancestral(den, x_T, grid, den.schedule, den.variance, torch.Generator().manual_seed(2))
        outputs["ddim"] = sample_ddim(den, x_T, grid, den.schedule)
        for method, algorithm in (("multistep", "dpmsolver++"), ("singlestep", "dpmsolver"),
                                  ("singlestep_fixed", "dpmsolver++")):
            den.nfe = 0
            outputs[method, algorithm] = dpm_solver_sample(den, x_T.double(), 7, algorithm, method, order=3)
            assert den.nfe == 7
        outputs["adaptive"] = dpm_solver_sample(den, x_T.double(), 7, method_type="adaptive", order=2,
                                                atol=1.0, rtol=1.0)
    for name, out in outputs.items():
        assert out.shape == x_T.shape and torch.isfinite(out).all(), name
        assert out.abs().max() <= 1 + 1e-6, name  # the last step returns the clipped x0


def test_batch_mismatch_is_an_error():
    model, diffusion = create_model_and_diffusion({**TINY, **KINDS["cond-learned-eps"]})
    den = Denoiser(model, diffusion, y=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="batch size"):
        den(torch.zeros(2, 1, 32, 32), torch.tensor(3.0, dtype=torch.float64))
