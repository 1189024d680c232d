"""Student-t forward process (t-EDM, Pandey et al. 2025; `improved_diffusion/noise_law.py`): known answers for
the noise law and for the deterministic samplers driven by the exact posterior mean under it, the option's
round trip through metadata.json with a bit-identical resume, and the refusals where Gaussian posteriors are
assumed."""
import json

import numpy as np
import pytest
import torch
from scipy import stats

import train
from improved_diffusion.checkpoint import load_state_dict
from improved_diffusion.denoiser import Denoiser
from improved_diffusion.noise_law import standard_noise
from improved_diffusion.noise_schedule import DiscreteSchedule
from improved_diffusion.sampler_choice import chain_sampler, seeded_batches
from improved_diffusion.samplers import dpm_solver_sample, sample_ddim
from improved_diffusion.script_util import create_gaussian_diffusion
from model_likelihood import calc_model_loss
from sample import main_sample
from sample_DPM import sample_from_ODE
from tests.test_train_loss_weighting import CONFIG, first_epoch_copy
from tests.test_train_script import image_folder

NU = 5.0


def test_gaussian_law_is_torch_randn_bit_for_bit():
    a = standard_noise((3, 1, 4, 4), torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, torch.randn((3, 1, 4, 4), generator=torch.Generator().manual_seed(7)),
                               rtol=0, atol=0)


def test_pixel_marginal_is_student_t_and_examples_share_one_chi2_scale():
    eps = standard_noise((2000, 1, 64, 64), torch.Generator().manual_seed(0), student_t_nu=NU).double()
    # one pixel per example: independent draws of the univariate t_nu
    assert stats.kstest(eps[:, 0, 0, 0].numpy(), stats.t(NU).cdf).pvalue > 1e-3
    # per-example mean square over 4096 pixels ~ nu / kappa, kappa ~ chi2_nu: inverse-gamma(nu/2, scale nu/2)
    mean_square = (eps ** 2).mean((1, 2, 3)).numpy()
    law = stats.invgamma(NU / 2, scale=NU / 2)
    assert stats.kstest(mean_square, law.cdf).pvalue > 1e-3
    gaussian = (standard_noise((2000, 1, 64, 64), torch.Generator().manual_seed(0)).double() ** 2).mean((1, 2, 3))
    assert stats.kstest(gaussian.numpy(), law.cdf).pvalue < 1e-6  # the check tells the two laws apart
    # the chi2 draws follow the generator
    again = standard_noise((2000, 1, 64, 64), torch.Generator().manual_seed(0), student_t_nu=NU).double()
    assert torch.equal(eps, again)


def test_q_sample_uses_the_chain_noise_law():
    diffusion = create_gaussian_diffusion(steps=10, noise_schedule="cosine", student_t_nu=NU)
    t = torch.full((4000,), 9)
    x_t = diffusion.q_sample(torch.zeros(4000, 1, 1, 1), t)  # x_0 = 0: x_t = sigma_T eps
    sigma = float(np.sqrt(1 - diffusion.alphas_cumprod[9]))
    assert stats.kstest(x_t.flatten().numpy() / sigma, stats.t(NU).cdf).pvalue > 1e-3


class TwoPointPosterior:
    """Exact E[x_0 | x_t] of data at c1 (weight p1) or c2 under x_t = alpha x_0 + sigma eps, eps ~ multivariate
    t_nu of dimension d: weights p_k (1 + |x_t - alpha c_k|^2 / (nu sigma^2))^(-(nu + d) / 2) (or the Gaussian
    density when nu is None)."""

    def __init__(self, schedule: DiscreteSchedule, c1: torch.Tensor, c2: torch.Tensor, p1: float, nu: float | None):
        self.schedule, self.c, self.p1, self.nu = schedule, torch.stack([c1, c2]).double(), p1, nu

    def __call__(self, x: torch.Tensor, t) -> torch.Tensor:
        alpha, sigma = self.schedule.alpha(t), self.schedule.sigma(t)
        x = x.double()
        d = x[0].numel()
        r2 = torch.stack([((x - alpha * c) ** 2).flatten(1).sum(1) for c in self.c], 1) / sigma ** 2
        log_w = -0.5 * r2 if self.nu is None else -(self.nu + d) / 2 * torch.log1p(r2 / self.nu)
        log_w = log_w + torch.log(torch.tensor([self.p1, 1 - self.p1], dtype=torch.float64))
        w = torch.softmax(log_w, 1)
        return (w[:, 0].view(-1, 1, 1, 1) * self.c[0] + w[:, 1].view(-1, 1, 1, 1) * self.c[1]).to(x.dtype)


@pytest.mark.parametrize("solver", ["dpm-solver", "ddim"])
def test_deterministic_samplers_reproduce_a_two_point_law_under_student_t_noise(solver):
    diffusion = create_gaussian_diffusion(steps=1000, noise_schedule="cosine", student_t_nu=NU)
    schedule = DiscreteSchedule(diffusion.alphas_cumprod)
    c1, c2, p1, n = torch.full((1, 2, 2), 0.6), torch.full((1, 2, 2), -0.2), 0.3, 4000
    x_T = standard_noise((n, 1, 2, 2), torch.Generator().manual_seed(1), dtype=torch.float64, student_t_nu=NU)
    oracle = TwoPointPosterior(schedule, c1, c2, p1, NU)
    if solver == "dpm-solver":
        x = dpm_solver_sample(oracle, x_T, 30)
    else:
        grid = torch.linspace(999, 0, 100, dtype=torch.float64).round()
        x = sample_ddim(oracle, x_T, torch.cat([grid, torch.tensor([-1.0], dtype=torch.float64)]), schedule)
    nearest_c1 = (x - c1).flatten(1).norm(dim=1) < (x - c2).flatten(1).norm(dim=1)
    assert float(torch.minimum((x - c1).flatten(1).norm(dim=1), (x - c2).flatten(1).norm(dim=1)).max()) < 0.05
    se = np.sqrt(p1 * (1 - p1) / n)
    assert abs(nearest_c1.double().mean().item() - p1) < 4 * se
    # the flow's end points are checked here; that the samplers draw x_T from the t law is checked below

def test_sampler_draws_x_T_from_the_model_noise_law_and_refuses_the_ancestral_chain():
    diffusion = create_gaussian_diffusion(steps=10, noise_schedule="cosine", output_type="x_start", student_t_nu=NU)
    model = torch.nn.Conv2d(1, 1, 1)
    identity = chain_sampler(True, sampling_steps=2)
    identity = type(identity)("ddim", identity.info, torch.float64, lambda den, x_T, gen: x_T)
    batch = next(seeded_batches(identity, lambda lo, hi: Denoiser(model, diffusion), (1, 32, 32), 1000, 1000, 0,
                                torch.device("cpu")))
    mean_square = (batch.x ** 2).mean((1, 2, 3)).numpy()
    assert stats.kstest(mean_square, stats.invgamma(NU / 2, scale=NU / 2).cdf).pvalue > 1e-4
    for sampler in (chain_sampler(False, sampling_steps=2), chain_sampler(True, eta=1.0, sampling_steps=2)):
        with pytest.raises(ValueError, match="assumes Gaussian noise.*student_t_nu=5.0"):
            sampler(Denoiser(model, diffusion), batch.x[:2].float(), None)
    with pytest.raises(ValueError, match="bits/dim bound assumes Gaussian noise"):
        diffusion.calc_bpd_loop(lambda x, t: x, torch.zeros(2, 1, 4, 4))


def test_student_t_nu_is_recorded_resumes_bit_identically_and_acts(tmp_path):
    data = image_folder(tmp_path / "data", n=8, size=32)
    config = {**CONFIG, "output_type": "x_start"}
    straight = tmp_path / "straight"
    train.main(data_train_dir=data, url_folder_experiment=str(straight), **config, student_t_nu=NU)
    assert json.loads((straight / "metadata.json").read_text())["student_t_nu"] == NU
    resumed = first_epoch_copy(straight, tmp_path / "resumed")
    train.main(data_train_dir=data, resume_checkpoint=str(resumed / "model_epoch=0_iter=2.pt"), **config)
    plain = tmp_path / "plain"  # Gaussian noise ends elsewhere: the option acts
    train.main(data_train_dir=data, url_folder_experiment=str(plain), **config)
    assert json.loads((plain / "metadata.json").read_text())["student_t_nu"] is None
    name = "model_epoch=1_iter=4.pt"
    a, b, c = (load_state_dict(folder / name) for folder in (straight, resumed, plain))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    # the trained model samples with the deterministic sampler; the Gaussian-only paths refuse it in one line
    out = tmp_path / "samples"
    npz = sample_from_ODE(model_path=str(straight / "ema_rate=0.9_1.pt"), sample_steps=4, num_samples=3,
                          batch_size=3, url_save_path=str(out), plot=False, device="cpu")
    assert np.isfinite(np.load(npz)["arr_0"]).all()
    with pytest.raises(ValueError, match="bits/dim bound assumes Gaussian noise"):
        calc_model_loss(str(straight / "ema_rate=0.9_1.pt"), data, batch_size=4, progress=False)
    with pytest.raises(ValueError, match="ancestral sampler.*assumes Gaussian noise"):
        main_sample(model_path=str(straight / "ema_rate=0.9_1.pt"), num_samples=2, batch_size=2,
                    url_save_path=str(tmp_path / "ancestral"), plot=False, sampling_steps=2)
    assert not (tmp_path / "ancestral").exists()


@pytest.mark.parametrize("options, message", [
    (dict(student_t_nu=2.0), "student_t_nu.*> 2"),
    (dict(student_t_nu=float("inf")), "student_t_nu.*finite"),
    (dict(student_t_nu=NU, learn_sigma=True), "student_t_nu.*None with learn_sigma"),
    (dict(student_t_nu=NU, compute_val=True), "compute_val.*bits/dim"),
])
def test_bad_student_t_options_are_refused_before_training(tmp_path, options, message):
    data = image_folder(tmp_path / "data", n=4, size=32)
    with pytest.raises(ValueError, match=message):
        train.main(data_train_dir=data, data_val_dir=data, url_folder_experiment=str(tmp_path / "run"), **CONFIG,
                   **options)
    assert not (tmp_path / "run").exists()
