"""The shared sampling options, the one seeded batch loop, the sampler vocabulary and the trajectory precision."""
import inspect

import numpy as np
import pytest
import torch

import sample
import sample_DPM
from improved_diffusion import acceleration
from improved_diffusion.denoiser import Denoiser
from improved_diffusion.sampler_choice import (
    SAMPLER_NAMES,
    chain_sampler,
    choose_sampler,
    ode_sampler,
    seeded_batches,
)
from improved_diffusion.script_util import PRESETS, create_model_and_diffusion
from utils.sampling.options import SamplingOptions

SHARED = ("amp", "channels_last", "compile", "seed", "device", "batch_size", "overwrite", "progress")


def defaults(func) -> dict:
    return {k: p.default for k, p in inspect.signature(func).parameters.items() if k in SHARED}


def test_both_scripts_share_the_options_and_their_defaults():
    assert defaults(sample.main_sample) == defaults(sample_DPM.sample_from_ODE) == {
        "amp": "auto", "channels_last": "auto", "compile": False, "seed": 0, "device": "auto", "batch_size": 16,
        "overwrite": False, "progress": True}
    assert defaults(SamplingOptions.resolve) == defaults(sample.main_sample)


def test_options_are_resolved_once_and_checked(monkeypatch):
    monkeypatch.setattr(acceleration, "_cpu_flags", lambda: frozenset({"avx2"}))  # no native bf16
    options = SamplingOptions.resolve(device="cpu")
    assert (options.amp, options.device, options.channels_last) == ("none", torch.device("cpu"), True)
    assert SamplingOptions.resolve(device="cpu", amp="none").channels_last is False  # the original numerics
    monkeypatch.setattr(acceleration, "_cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert SamplingOptions.resolve(device="cpu").amp == "bf16"
    for bad, message in ((dict(batch_size=0), "batch_size: got 0"), (dict(batch_size=True), "batch_size"),
                         (dict(seed=-1), "seed: got -1"), (dict(amp="fp8"), "amp: got 'fp8'"),
                         (dict(channels_last="maybe"), "channels_last")):
        with pytest.raises(ValueError, match=message):
            SamplingOptions.resolve(device="cpu", **bad)
    with pytest.raises(AttributeError):
        options.amp = "bf16"  # frozen


def test_one_vocabulary_and_the_trajectory_dtype():
    samplers = [chain_sampler(False), chain_sampler(True, 0.5), ode_sampler(5)]
    assert [s.name for s in samplers] == list(SAMPLER_NAMES)
    assert [s.info["sampler"] for s in samplers] == list(SAMPLER_NAMES)
    assert [s.trajectory_dtype for s in samplers] == [torch.float32, torch.float32, torch.float64]
    assert choose_sampler("dpm", 5, order=2).name == "dpm-solver"  # the comparison's older spelling
    assert choose_sampler("ddim", 5, eta=0.3).info == {"sampler": "ddim", "eta": 0.3, "sampling_steps": 5,
                                                        "timestep_respacing": None}
    with pytest.raises(ValueError, match="sampler: got 'euler'"):
        choose_sampler("euler", 5)


def tiny_x_start_model():
    """A random 32 px model predicting x0 directly (the demo preset's output), its output layer made non-zero."""
    args = {**PRESETS["demo"], "image_size": 32, "diffusion_steps": 20}
    model, diffusion = create_model_and_diffusion(args)
    torch.manual_seed(1)
    torch.nn.init.normal_(model.out[-1].weight, std=0.05)
    return model.eval(), diffusion


def test_batches_depend_on_seed_and_index_only():
    model, diffusion = tiny_x_start_model()
    sampler = chain_sampler(False, sampling_steps=1)

    def run(indices, seed=0):
        return {b.index: b.x for b in seeded_batches(sampler, lambda lo, hi: Denoiser(model, diffusion), (1, 32, 32),
                                                     5, 2, seed, "cpu", indices)}
    everything, last_only = run(None), run([2])
    assert sorted(everything) == [0, 1, 2] and everything[2].shape == (1, 1, 32, 32)
    torch.testing.assert_close(last_only[2], everything[2], rtol=0, atol=0)
    assert not torch.equal(run([2], seed=1)[2], everything[2])


@pytest.mark.filterwarnings("ignore:amp='bf16' on a CPU without native bfloat16")
@pytest.mark.parametrize("sampler", [chain_sampler(False, sampling_steps=2), chain_sampler(True, sampling_steps=2),
                                     ode_sampler(3)], ids=SAMPLER_NAMES)
def test_bf16_network_keeps_a_full_precision_trajectory(sampler):
    """Issue #27: under bf16 autocast the samples are not bf16 numbers (an x_start model's last step returns the
    network output itself), and they stay close to the float32 run."""
    model, diffusion = tiny_x_start_model()
    x = {}
    for amp in ("none", "bf16"):
        batch = next(seeded_batches(sampler, lambda lo, hi, amp=amp: Denoiser(model, diffusion, clip_denoised=False, amp=amp),
                                    (1, 32, 32), 1, 1, 0, "cpu"))
        assert batch.x.dtype == sampler.trajectory_dtype
        x[amp] = batch.x.float()
    representable = (x["bf16"] == x["bf16"].to(torch.bfloat16).float()).float().mean().item()
    assert representable < 0.1, f"{representable:.0%} of the bf16-run samples are bfloat16 numbers"
    relative = (x["bf16"] - x["none"]).norm() / x["none"].norm()
    assert 0 < relative < 0.05
    assert np.unique(x["bf16"].numpy()).size > 0.9 * x["bf16"].numel()
