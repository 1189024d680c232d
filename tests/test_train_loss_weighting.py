"""Min-SNR-gamma loss weighting (Hang et al. 2023) and v-prediction (Salimans & Ho 2022): known answers on a
hand-made three-step chain, the weighted loss, the sampler side (Denoiser) and an exact resume that takes both
options from metadata.json."""
import json
import shutil

import numpy as np
import pytest
import torch

import train
from improved_diffusion.checkpoint import load_state_dict
from improved_diffusion.denoiser import Denoiser
from improved_diffusion.gaussian_diffusion import GaussianDiffusion, LossType, ModelMeanType, ModelVarType
from improved_diffusion.script_util import create_gaussian_diffusion
from tests.test_train_script import image_folder

BETAS = np.array([0.1, 0.5, 0.9])  # alpha_bar = 0.9, 0.45, 0.045; SNR = 9, 9/11, 0.045/0.955


def _chain(mean_type: ModelMeanType, gamma: float | None = 5.0, var_type=ModelVarType.FIXED_LARGE):
    return GaussianDiffusion(betas=BETAS, model_mean_type=mean_type, model_var_type=var_type,
                             loss_type=LossType.MSE, min_snr_gamma=gamma)


@pytest.mark.parametrize("mean_type, expected", [
    (ModelMeanType.START_X, [5.0, 9 / 11, 0.045 / 0.955]),  # min(SNR, 5)
    (ModelMeanType.EPSILON, [5 / 9, 1.0, 1.0]),  # min(SNR, 5) / SNR
    (ModelMeanType.VELOCITY, [0.5, 0.45, 0.045]),  # min(SNR, 5) / (SNR + 1) = alpha_bar below gamma
])
def test_min_snr_weight_known_answers(mean_type, expected):
    t = torch.arange(3)
    np.testing.assert_allclose(_chain(mean_type).min_snr_weight(t).numpy(), expected, rtol=1e-6)
    assert torch.equal(_chain(mean_type, gamma=None).min_snr_weight(t), torch.ones(3))


def test_weighted_loss_is_weight_times_mse_and_the_variance_term_is_unweighted():
    x0, noise, t = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4), torch.arange(3)
    half = lambda x, time: 0.5 * x  # noqa: E731
    plain = _chain(ModelMeanType.START_X, gamma=None).training_losses(half, x0, t, noise=noise)
    assert torch.equal(plain["loss"], plain["mse"])
    weighted = _chain(ModelMeanType.START_X).training_losses(half, x0, t, noise=noise)
    torch.testing.assert_close(weighted["loss"], torch.tensor([5.0, 9 / 11, 0.045 / 0.955]) * plain["mse"])
    torch.testing.assert_close(weighted["mse"], plain["mse"])  # logged unweighted
    learned = _chain(ModelMeanType.START_X, var_type=ModelVarType.LEARNED_RANGE)
    two = lambda x, time: torch.cat([0.5 * x, torch.zeros_like(x)], 1)  # noqa: E731
    hybrid = learned.training_losses(two, x0, t, noise=noise)
    torch.testing.assert_close(hybrid["loss"], learned.min_snr_weight(t) * hybrid["mse"] + hybrid["vb"])


def test_x_previous_has_no_min_snr_weight():
    with pytest.raises(ValueError, match="min_snr_gamma.*not 'x_previous'"):
        _chain(ModelMeanType.PREVIOUS_X)
    with pytest.raises(ValueError, match="min_snr_gamma: got -1"):
        _chain(ModelMeanType.EPSILON, gamma=-1.0)


def test_velocity_target_and_its_inverse():
    chain = _chain(ModelMeanType.VELOCITY, gamma=None)
    x0, eps, t = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4), torch.arange(3)
    alpha = torch.tensor([0.9, 0.45, 0.045]).sqrt().view(3, 1, 1, 1)
    sigma = (1 - alpha ** 2).sqrt()
    v = chain.velocity(x0, t, eps)
    torch.testing.assert_close(v, alpha * eps - sigma * x0)  # v = alpha eps - sigma x0
    x_t = chain.q_sample(x0, t, noise=eps)
    torch.testing.assert_close(alpha * x_t - sigma * v, x0)  # x0 = alpha x_t - sigma v
    loss = chain.training_losses(lambda x, time: torch.zeros_like(x), x0, t, noise=eps)
    torch.testing.assert_close(loss["mse"], (v ** 2).mean((1, 2, 3)))
    out = chain.p_mean_variance(lambda x, time: v, x_t, t, clip_denoised=False)
    torch.testing.assert_close(out["pred_xstart"], x0)


class VelocityOracle(torch.nn.Module):
    """The exact v(x_t, t) of data that are a point mass at c: alpha eps - sigma c, eps = (x_t - alpha c) / sigma."""

    def __init__(self, alphas_cumprod: np.ndarray, c: float):
        super().__init__()
        self.abar, self.c = torch.from_numpy(alphas_cumprod).float(), c
        self.unused = torch.nn.Parameter(torch.zeros(()))  # the Denoiser reads the dtype from a parameter

    def forward(self, x, time):
        index = torch.round(time * len(self.abar) / 1000).long()  # rescaled time back to the index
        alpha = self.abar[index].sqrt().view(-1, 1, 1, 1)
        sigma = (1 - self.abar[index]).sqrt().view(-1, 1, 1, 1)
        return alpha * (x - alpha * self.c) / sigma - sigma * self.c


def test_denoiser_turns_the_exact_velocity_into_x0():
    diffusion = create_gaussian_diffusion(steps=50, noise_schedule="cosine", output_type="velocity",
                                          rescale_timesteps=True)
    den = Denoiser(VelocityOracle(diffusion.alphas_cumprod, 0.3), diffusion, clip_denoised=False)
    for t in (0, 10, 25, 49):
        x = torch.randn(2, 1, 4, 4)
        with torch.no_grad():
            x0 = den(x, torch.tensor(float(t), dtype=torch.float64))
        torch.testing.assert_close(x0, torch.full_like(x, 0.3), rtol=1e-4, atol=1e-4)


CONFIG = dict(image_size=32, num_input_channels=1, num_model_channels=32, num_res_blocks=1, attention_resolutions="8",
              diffusion_steps=4, noise_schedule="cosine", batch_size=4, num_epochs=2, ema_rate="0.9", grid_interval=0,
              seed=3, keep_checkpoints=None, amp="none")


def first_epoch_copy(run, folder):
    """`folder` holding the first epoch's checkpoint set of the CONFIG run `run` and its metadata.json."""
    folder.mkdir()
    for name in ("model_epoch=0_iter=2.pt", "ema_rate=0.9_0.pt", "opt0.pt", "train_state_epoch=0_iter=2.pt",
                 "metadata.json"):
        shutil.copy(run / name, folder)
    return folder


def test_options_are_recorded_and_a_resume_without_them_is_bit_identical(tmp_path):
    data = image_folder(tmp_path / "data", n=8, size=32)
    options = dict(min_snr_gamma=2.0, output_type="velocity")
    straight = tmp_path / "straight"
    train.main(data_train_dir=data, url_folder_experiment=str(straight), **CONFIG, **options)
    meta = json.loads((straight / "metadata.json").read_text())
    assert meta["min_snr_gamma"] == 2.0 and meta["output_type"] == "velocity"
    resumed = first_epoch_copy(straight, tmp_path / "resumed")
    train.main(data_train_dir=data, resume_checkpoint=str(resumed / "model_epoch=0_iter=2.pt"), **CONFIG)
    assert json.loads((resumed / "metadata.json").read_text())["resumes"][0]["overrides"] == {}
    plain = tmp_path / "plain"  # the same run without the weighting ends elsewhere: the option acts
    train.main(data_train_dir=data, url_folder_experiment=str(plain), **CONFIG, output_type="velocity")
    name = "model_epoch=1_iter=4.pt"
    a, b, c = (load_state_dict(folder / name) for folder in (straight, resumed, plain))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
