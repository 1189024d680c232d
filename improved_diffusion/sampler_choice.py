"""The choice of sampler: from user options to a `sample_batch(denoiser, x_T, generator)` function.

Scripts (sample.py, sample_DPM.py), the sampler comparison, the benchmarks and the tensorboard sample
grid all pick their sampler here, so one option spelling means the same sampler everywhere.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from .denoiser import Denoiser
from .noise_schedule import grid_from_indices
from .respace import space_timesteps
from .samplers import check_solver_options, dpm_solver_sample, sample_ancestral, sample_ddim
from .script_util import check_respacing

SampleBatch = Callable[[Denoiser, torch.Tensor, torch.Generator], torch.Tensor]
# keywords of `dpm_solver_sample` that `check_solver_options` validates
_CHECKED = ("algorithm_type", "method_type", "order", "skip_type", "denoise_to_zero", "lambda_min", "lambda_max",
            "atol", "rtol")


def sampling_grid(num_timesteps: int, sampling_steps: int | None, timestep_respacing: str | None) -> torch.Tensor:
    """Decreasing float64 chain indices ending with the step to clean data (-1): the full chain by default,
    the trailing grid of `sampling_steps` steps, or an explicit respacing spec ("ddimN", "trailingN", "a,b,c")."""
    if sampling_steps is not None and (isinstance(sampling_steps, bool) or not isinstance(sampling_steps, int)
                                       or not 1 <= sampling_steps <= num_timesteps):
        raise ValueError(f"sampling_steps: got {sampling_steps!r}; expected an integer in [1, {num_timesteps}] "
                         "(network evaluations) or None (every step of the chain)")
    if timestep_respacing is not None and not isinstance(timestep_respacing, str):
        raise ValueError(f"timestep_respacing: got {timestep_respacing!r}; expected a string 'ddimN', 'trailingN' "
                         "or 'a,b,c' (section counts), or None")
    if timestep_respacing:
        indices = check_respacing(num_timesteps, timestep_respacing)
        if sampling_steps is not None and sampling_steps != len(indices):
            raise ValueError(f"sampling_steps={sampling_steps} disagrees with timestep_respacing="
                             f"{timestep_respacing!r} ({len(indices)} steps); give one of them")
    elif sampling_steps is not None:
        indices = space_timesteps(num_timesteps, f"trailing{sampling_steps}")
    else:
        indices = range(num_timesteps)
    return grid_from_indices(indices)


def chain_sampler(use_ddim: bool, eta: float = 0.0, sampling_steps: int | None = None,
                  timestep_respacing: str | None = None, progress: bool = False) -> SampleBatch:
    """sample_batch(denoiser, x_T, generator) running DDIM (noise scale `eta`) or the ancestral sampler
    (the denoiser's variance) over the chain indices of `sampling_grid`; x_T (N, C, H, W) -> x_0, x_T's dtype."""
    def sample_batch(denoiser: Denoiser, x_T: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        grid = sampling_grid(denoiser.schedule.num_timesteps, sampling_steps, timestep_respacing)
        if use_ddim:
            return sample_ddim(denoiser, x_T, grid, denoiser.schedule, eta, generator, progress)
        return sample_ancestral(denoiser, x_T, grid, denoiser.schedule, denoiser.variance, generator, progress)
    return sample_batch


def ode_sampler(sample_steps: int, progress: bool = False, **solver) -> SampleBatch:
    """sample_batch(denoiser, x_T, generator) solving the probability-flow ODE with
    `dpm_solver_sample(denoiser, x_T, sample_steps, **solver)` (the generator is unused). The options are
    checked here (ValueError), before any checkpoint is loaded."""
    check_solver_options(steps=sample_steps, **{k: solver[k] for k in _CHECKED if k in solver})
    def sample_batch(denoiser: Denoiser, x_T: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return dpm_solver_sample(denoiser, x_T, sample_steps, progress=progress, **solver)
    return sample_batch
