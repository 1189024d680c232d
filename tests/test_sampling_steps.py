"""The one sampler implementation (samplers.ancestral_step / ddim_step) against the Gaussian posterior
written out independently, the original-API wrappers of GaussianDiffusion against it, and the
sampler choice of improved_diffusion.sampler_choice."""
import ast
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from improved_diffusion.denoiser import Denoiser
from improved_diffusion.gaussian_diffusion import get_named_beta_schedule
from improved_diffusion.noise_schedule import CLEAN
from improved_diffusion.sampler_choice import chain_sampler, ode_sampler, sampling_grid
from improved_diffusion.samplers import ancestral_step, ddim_step, sample_ancestral, sample_ddim
from improved_diffusion.script_util import create_gaussian_diffusion, create_model_and_diffusion

ROOT = Path(__file__).resolve().parent.parent
T = 100
C0, V_RAW = 0.25, -0.5  # constant x0 and raw variance output of `ConstantX0` (exact in float32)


class ConstantX0(torch.nn.Module):
    """Predicts x0 = C0 everywhere (and v_raw = V_RAW in a second half when `learned`)."""

    def __init__(self, learned: bool):
        super().__init__()
        self.learned, self.w = learned, torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t):
        out = torch.full_like(x, C0)
        return torch.cat([out, torch.full_like(x, V_RAW)], dim=1) if self.learned else out


def posterior_trajectory(x: np.ndarray, times: list[int], learned: bool, seed: int) -> np.ndarray:
    """Expected state at times[-1] (a noisy time: the step to clean data would return x0 = C0 whatever x)
    by Gaussian conditioning: with x_s = sqrt(ab_s) x0 + sqrt(1 - ab_s) e1 and
    x_t = sqrt(ab_t / ab_s) x_s + sqrt(1 - ab_t / ab_s) e2, x_s | x_t, x0 has mean
    mu_s + Cov(x_s, x_t) / Var(x_t) (x_t - mu_t) and variance Var(x_s) - Cov^2 / Var(x_t); with a learned
    fraction v the log-variance is v log beta + (1 - v) log(that variance) (IDDPM eq. 15)."""
    ab = np.cumprod(1 - get_named_beta_schedule("linear", T))
    generator = torch.Generator().manual_seed(seed)
    v = (V_RAW + 1) / 2
    for t, s in zip(times, times[1:]):
        ab_t, ab_s = ab[t], ab[s]
        cov = math.sqrt(ab_t / ab_s) * (1 - ab_s)
        mean = math.sqrt(ab_s) * C0 + cov / (1 - ab_t) * (x - math.sqrt(ab_t) * C0)
        var = (1 - ab_s) - cov ** 2 / (1 - ab_t)
        if learned:
            var = math.exp(v * math.log(1 - ab_t / ab_s) + (1 - v) * math.log(var))
        z = torch.randn(x.shape, generator=generator, dtype=torch.float64).numpy()
        x = mean + math.sqrt(var) * z
    return x


@pytest.mark.parametrize("learned", [False, True])
def test_ancestral_sampler_follows_the_gaussian_posterior(learned):
    diffusion = create_gaussian_diffusion(steps=T, learn_sigma=learned, sigma_small=True, output_type="x_start")
    den = Denoiser(ConstantX0(learned), diffusion, clip_denoised=False)
    x_T = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    times = [99, 60, 20, 3]
    ours = sample_ancestral(den, x_T.clone(), torch.tensor(times, dtype=torch.float64), den.schedule, den.variance,
                            torch.Generator().manual_seed(7))
    np.testing.assert_allclose(ours.numpy(), posterior_trajectory(x_T.numpy(), times, learned, 7), rtol=1e-10,
                               atol=1e-12)


def test_ddim_with_eta_one_is_the_ddpm_posterior():
    """DDIM eq. 16 with eta = 1 is the posterior q(x_s | x_t, x0) (Song et al. 2021, section 4.1)."""
    diffusion = create_gaussian_diffusion(steps=T, output_type="x_start")
    den = Denoiser(ConstantX0(False), diffusion, clip_denoised=False)
    x_T = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    times = [99, 50, 10]
    ours = sample_ddim(den, x_T.clone(), torch.tensor(times, dtype=torch.float64), den.schedule, 1.0, torch.Generator().manual_seed(3))
    np.testing.assert_allclose(ours.numpy(), posterior_trajectory(x_T.numpy(), times, False, 3), rtol=1e-10,
                               atol=1e-12)


TINY = {"image_size": 32, "num_input_channels": 1, "num_model_channels": 32, "num_res_blocks": 1,
        "attention_resolutions": "8", "diffusion_steps": 40, "noise_schedule": "linear", "class_cond": True,
        "num_class": 3, "learn_sigma": True}


@pytest.fixture(scope="module")
def tiny():
    model, diffusion = create_model_and_diffusion(TINY)
    return model.eval(), diffusion


def test_single_step_wrappers_equal_the_step_functions(tiny):
    """p_sample / ddim_sample on a batch with different t per example = the step functions per example."""
    model, diffusion = tiny
    x = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    t, y = torch.tensor([39, 0, 39]), torch.tensor([0, 1, 2])
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        got = {"ancestral": diffusion.p_sample(model, x, t, model_kwargs={"y": y},
                                               generator=torch.Generator().manual_seed(4)),
               "ddim": diffusion.ddim_sample(model, x, t, model_kwargs={"y": y}, eta=0.5,
                                             generator=torch.Generator().manual_seed(4))}
        for i in range(3):
            den = Denoiser(model, diffusion, y=y[i:i + 1])
            ti, si = (torch.tensor(v, dtype=torch.float64) for v in (float(t[i]), float(t[i]) - 1 if t[i] else CLEAN))
            steps = {"ancestral": ancestral_step(den, x[i:i + 1], ti, si, den.schedule, den.variance),
                     "ddim": ddim_step(den, x[i:i + 1], ti, si, den.schedule, 0.5)}
            for name, (mean, std, x0) in steps.items():
                expected = mean if std is None else mean + std * noise[i:i + 1]
                torch.testing.assert_close(got[name]["sample"][i:i + 1], expected, rtol=1e-5, atol=1e-5)
                torch.testing.assert_close(got[name]["pred_xstart"][i:i + 1], x0, rtol=1e-5, atol=1e-5)


def test_ddim_loop_on_a_respaced_chain_equals_sample_ddim(tiny):
    model, full = tiny
    spaced = create_gaussian_diffusion(steps=40, learn_sigma=True, timestep_respacing="trailing5",
                                       rescale_timesteps=True)
    y, noise = torch.tensor([1, 2]), torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        expected = spaced.ddim_sample_loop(model, noise.shape, noise=noise.clone(), model_kwargs={"y": y}, eta=0.5,
                                           generator=torch.Generator().manual_seed(2))
        den = Denoiser(model, full, y=y)
        ours = chain_sampler(True, 0.5, sampling_steps=5)(den, noise.clone(), torch.Generator().manual_seed(2))
    assert den.nfe == 5
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


def test_sampling_grid_and_option_checks():
    # trailing grid of 4 steps on 100: round(100 - 25 k) - 1 = 99, 74, 49, 24, then the step to clean data
    assert sampling_grid(100, 4, None).tolist() == [99.0, 74.0, 49.0, 24.0, CLEAN]
    assert sampling_grid(10, None, None).tolist() == [9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0, CLEAN]
    with pytest.raises(ValueError, match="disagrees"):
        sampling_grid(100, 5, "trailing4")
    with pytest.raises(ValueError, match="sampling_steps"):
        sampling_grid(100, 101, None)
    for bad, match in ((dict(order=4), "order"), (dict(method_type="euler"), "method_type"),
                       (dict(skip_type="karras"), "skip_type"), (dict(method_type="adaptive", order=1), "adaptive"),
                       (dict(method_type="singlestep_fixed", order=3), "divisible by 3")):
        with pytest.raises(ValueError, match=match):
            ode_sampler(9, **bad)  # raised when the sampler is chosen, before any model exists
    with pytest.raises(ValueError, match="sample_steps"):
        ode_sampler(0)


SCRIPTS = {p.stem for p in ROOT.glob("*.py")}


@pytest.mark.parametrize("package", ["improved_diffusion", "utils"])
def test_library_never_imports_a_script(package):
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            for name in names:
                assert name.split(".")[0] not in SCRIPTS, f"{path.relative_to(ROOT)} imports the script {name}"
