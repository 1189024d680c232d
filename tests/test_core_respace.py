"""Respacing index lists, kept alpha-bars, and training / sampling through a SpacedDiffusion."""
import numpy as np
import pytest
import torch

from improved_diffusion.resample import LossSecondMomentResampler, create_named_schedule_sampler
from improved_diffusion.respace import space_timesteps
from improved_diffusion.script_util import PRESETS, create_gaussian_diffusion, create_model_and_diffusion


def test_ddim_spec_is_an_integer_stride_grid():
    assert space_timesteps(100, "ddim10") == set(range(0, 100, 10))
    assert space_timesteps(1000, "ddim50") == set(range(0, 1000, 20))
    with pytest.raises(ValueError, match="trailing6"):
        space_timesteps(10, "ddim6")


def test_trailing_spec_ends_at_the_noisiest_step():
    assert space_timesteps(1000, "trailing10") == {99, 199, 299, 399, 499, 599, 699, 799, 899, 999}
    assert max(space_timesteps(1000, "trailing7")) == 999 and len(space_timesteps(1000, "trailing7")) == 7


def test_section_spec_strides_each_section():
    # one section of 10 steps, 5 kept: positions 0, 2.25, 4.5, 6.75, 9 rounded half-to-even
    assert space_timesteps(10, "5") == {0, 2, 4, 7, 9}
    # two sections of 5 steps: 3 kept in [0, 5) and 1 in [5, 10)
    assert space_timesteps(10, [3, 1]) == {0, 2, 4, 5}
    with pytest.raises(ValueError, match="cannot take 6 steps"):
        space_timesteps(10, "6,1")


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("spec", ["ddim25", "trailing10", "50,10,3"])
def test_respaced_chain_keeps_the_alpha_bars_exactly(schedule, spec):
    base = create_gaussian_diffusion(steps=1000, noise_schedule=schedule)
    spaced = create_gaussian_diffusion(steps=1000, noise_schedule=schedule, timestep_respacing=spec)
    kept = np.array(sorted(space_timesteps(1000, spec)))
    np.testing.assert_array_equal(spaced.timestep_map, kept)
    np.testing.assert_allclose(spaced.alphas_cumprod, base.alphas_cumprod[kept], rtol=1e-9, atol=0)  # float64 rounding of the cumprod


class RecordingModel(torch.nn.Module):
    """Returns a fixed fraction of x as eps and records the times it receives."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.5))
        self.times = []

    def forward(self, x, t, **kwargs):
        self.times.append(t.detach().clone())
        return self.scale * x


@pytest.mark.parametrize("rescale", [True, False])
def test_network_sees_training_chain_times(rescale):
    spaced = create_gaussian_diffusion(steps=200, timestep_respacing="trailing4", rescale_timesteps=rescale)
    model = RecordingModel()
    t = torch.tensor([0, 1, 2, 3])
    spaced.training_losses(model, torch.randn(4, 1, 4, 4), t)["loss"].mean().backward()
    expected = torch.tensor([49, 99, 149, 199])
    if rescale:
        torch.testing.assert_close(model.times[0], expected.float() * 5.0)
    else:
        assert torch.equal(model.times[0], expected)
    assert model.scale.grad is not None


def test_sampling_through_a_respaced_chain_calls_the_model_once_per_kept_step():
    spaced = create_gaussian_diffusion(steps=100, timestep_respacing="ddim10", rescale_timesteps=True)
    model = RecordingModel()
    for loop in (spaced.p_sample_loop, spaced.ddim_sample_loop):
        model.times.clear()
        out = loop(model, (2, 1, 4, 4), device="cpu")
        assert out.shape == (2, 1, 4, 4) and torch.isfinite(out).all()
        assert [float(t[0]) for t in model.times] == [float(i * 10) for i in range(90, -1, -10)]


def test_respaced_training_step_of_a_unet_decreases_nothing_nan():
    model, diffusion = create_model_and_diffusion({**PRESETS["demo"], "image_size": 32,
                                                   "timestep_respacing": "trailing50"})
    sampler = create_named_schedule_sampler("uniform", diffusion)
    t, w = sampler.sample(3, "cpu", generator=torch.Generator().manual_seed(0))
    loss = (diffusion.training_losses(model, torch.rand(3, 1, 32, 32) * 2 - 1, t)["loss"] * w).mean()
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_loss_second_moment_sampler_is_seeded_and_restorable():
    sampler = LossSecondMomentResampler(5, history_per_term=2)
    for _ in range(2):
        sampler.update_with_all_losses([0, 1, 2, 3, 4], [1.0, 1.0, 1.0, 1.0, 4.0])
    assert sampler.warmed_up()
    w = sampler.weights()
    np.testing.assert_allclose(w[4] / w[0], (4 * 0.999 / 8 + 0.001 / 5) / (0.999 / 8 + 0.001 / 5))
    restored = LossSecondMomentResampler(5, history_per_term=2)
    restored.load_state_dict(sampler.state_dict())
    draws = [s.sample(64, "cpu", generator=torch.Generator().manual_seed(3))[0] for s in (sampler, restored)]
    assert torch.equal(draws[0], draws[1])
    with pytest.raises(ValueError, match="schedule_sampler"):
        create_named_schedule_sampler("importance", create_gaussian_diffusion(steps=100))
