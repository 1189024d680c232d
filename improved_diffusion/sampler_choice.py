"""The choice of sampler: from user options to a `Sampler` (name, provenance, trajectory dtype, batch function),
and the one seeded batch loop.

Scripts (sample.py, sample_DPM.py), the sampler comparison, the benchmarks and the tensorboard sample
grid all pick their sampler here, so one option spelling means the same sampler everywhere, and all of them
draw their batches with `seeded_batches`, so a seed means the same x_T everywhere.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from .denoiser import Denoiser
from .file_io import derive_seed
from .noise_law import GAUSSIAN_CHAIN, require_gaussian, standard_noise
from .noise_schedule import DiscreteSchedule, grid_from_indices
from .respace import space_timesteps
from .samplers import (
    check_solver_options,
    dpm_solver_sample,
    resolve_lambda_range,
    sample_ancestral,
    sample_ddim,
    solver_grid,
)
from .script_util import check_respacing

SampleBatch = Callable[[Denoiser, torch.Tensor, torch.Generator], torch.Tensor]
# keywords of `dpm_solver_sample` that `check_solver_options` validates
_CHECKED = ("algorithm_type", "method_type", "order", "skip_type", "denoise_to_zero", "lambda_min", "lambda_max",
            "atol", "rtol")

SAMPLER_NAMES = ("ancestral", "ddim", "dpm-solver")
OLD_NAMES = {"dpm": "dpm-solver"}  # the sampler comparison's configurations used to spell DPM-Solver "dpm"


@dataclass(frozen=True, eq=False)
class Sampler:
    """A chosen sampler. `name`: one of SAMPLER_NAMES; `info`: its options as the provenance JSON records them
    ({"sampler": name, ...}); `trajectory_dtype`: the dtype x_T is drawn in and the trajectory kept in, whatever
    the network's precision; `sample_batch(denoiser, x_T, generator)` -> x_0 (x_T's shape and dtype)."""
    name: str
    info: dict
    trajectory_dtype: torch.dtype
    sample_batch: SampleBatch
    adapt: Callable[[float], Sampler] | None = None  # the sampler for data of a given model-unit std
    check_schedule: Callable[[DiscreteSchedule], object] | None = None  # ValueError for a grid `schedule` refuses
    gaussian_only: bool = False  # draws Gaussian noise along the way: refuses Student-t models (noise_law.py)

    def __call__(self, denoiser: Denoiser, x_T: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return self.sample_batch(denoiser, x_T, generator)

    def check(self, schedule: DiscreteSchedule, student_t_nu: float | None = None) -> None:
        """ValueError when this sampler's options cannot make a grid on the model's `schedule`, or it cannot
        sample a model of Student-t noise `student_t_nu` (checked before anything is written)."""
        if self.gaussian_only:
            require_gaussian(student_t_nu, GAUSSIAN_CHAIN)
        if self.check_schedule is not None:
            self.check_schedule(schedule)

    def for_model(self, args_dic: dict) -> Sampler:
        """This sampler for the model of `args_dic`: "auto" settings that depend on the data follow the
        model-unit std its training recorded (`data_normalization.report.std_model`); unchanged without one."""
        std = ((args_dic.get("data_normalization") or {}).get("report") or {}).get("std_model")
        return self if self.adapt is None or std is None else self.adapt(float(std))


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
                  timestep_respacing: str | None = None, progress: bool = False) -> Sampler:
    """DDIM (noise scale `eta`) or the ancestral sampler (the denoiser's variance) over the chain indices of
    `sampling_grid`; x_T (N, C, H, W) -> x_0, x_T's dtype (a float32 trajectory)."""
    gaussian_only = not use_ddim or bool(eta)

    def sample_batch(denoiser: Denoiser, x_T: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        grid = sampling_grid(denoiser.schedule.num_timesteps, sampling_steps, timestep_respacing)
        if gaussian_only:
            require_gaussian(denoiser.student_t_nu, GAUSSIAN_CHAIN)
        if use_ddim:
            return sample_ddim(denoiser, x_T, grid, denoiser.schedule, eta, generator, progress)
        return sample_ancestral(denoiser, x_T, grid, denoiser.schedule, denoiser.variance, generator, progress)
    name = "ddim" if use_ddim else "ancestral"
    info = {"sampler": name, "eta": eta if use_ddim else None, "sampling_steps": sampling_steps,
            "timestep_respacing": timestep_respacing}
    return Sampler(name, info, torch.float32, sample_batch, gaussian_only=gaussian_only)


def ode_sampler(sample_steps: int, progress: bool = False, data_std: float | None = None, **solver) -> Sampler:
    """DPM-Solver(++) on the probability-flow ODE: `dpm_solver_sample(denoiser, x_T, sample_steps, **solver)`
    (the generator is unused), in a float64 trajectory. The options are checked here (ValueError), before any
    checkpoint is loaded; `info` records the lambda range the grid resolves to, an "auto" range shifted for
    data of model-unit std `data_std` (`noise_schedule.lambda_range`); `Sampler.for_model` sets it."""
    check_solver_options(steps=sample_steps, **{k: solver[k] for k in _CHECKED if k in solver})
    given = dict(solver)
    if solver.get("method_type", "multistep") != "adaptive":
        solver.update(zip(("lambda_min", "lambda_max"), resolve_lambda_range(
            sample_steps, solver.get("lambda_min", "auto"), solver.get("lambda_max", "auto"),
            solver.get("denoise_to_zero", True), data_std)))

    def sample_batch(denoiser: Denoiser, x_T: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return dpm_solver_sample(denoiser, x_T, sample_steps, progress=progress, **solver)
    info = {"sampler": "dpm-solver", "sample_steps": sample_steps, **solver,
            **({} if data_std is None else {"data_std": data_std})}
    grid_options = {k: solver[k] for k in ("method_type", "order", "skip_type", "lambda_min", "lambda_max",
                                           "denoise_to_zero") if k in solver}
    adaptive = solver.get("method_type") == "adaptive"
    return Sampler("dpm-solver", info, torch.float64, sample_batch,
                   adapt=lambda std: ode_sampler(sample_steps, progress, std, **given),
                   check_schedule=None if adaptive else lambda schedule: solver_grid(schedule, sample_steps,
                                                                                      **grid_options))


def choose_sampler(name: str, steps: int, progress: bool = False, **options) -> Sampler:
    """The sampler called `name` (SAMPLER_NAMES, or an OLD_NAMES spelling) with `steps` network evaluations:
    "ancestral" / "ddim" (option: eta) on the trailing grid, "dpm-solver" with `dpm_solver_sample`'s options."""
    name = OLD_NAMES.get(name, name)
    if name in ("ancestral", "ddim"):
        return chain_sampler(name == "ddim", options.get("eta", 0.0), sampling_steps=steps, progress=progress)
    if name == "dpm-solver":
        return ode_sampler(steps, progress, **options)
    raise ValueError(f"sampler: got {name!r}; expected one of {SAMPLER_NAMES}")


class SampledBatch(NamedTuple):
    """Batch `index` of a run: samples lo..hi-1, `x` (hi - lo, C, H, W) in the sampler's trajectory dtype,
    `seconds` the wall time of the sampler call (CUDA synchronised)."""
    index: int
    lo: int
    hi: int
    x: torch.Tensor
    seconds: float


def seeded_batches(sampler: Sampler, denoiser_for: Callable[[int, int], Denoiser], image_shape: tuple[int, int, int],
                   num_samples: int, batch_size: int, seed: int, device: torch.device,
                   indices: Iterable[int] | None = None, progress: bool = False) -> Iterator[SampledBatch]:
    """Sample the batches `indices` (default: all) of `num_samples` samples in batches of `batch_size`. Batch b
    draws x_T (image_shape = (C, H, W), the sampler's trajectory dtype, the denoiser's noise law) and the
    sampler's noise from one generator seeded with `derive_seed(seed, b)`, so a batch is the same whatever other
    batches run (resume, ranks);
    `denoiser_for(lo, hi)` gives the denoiser of samples lo..hi-1 (their labels, low-res input)."""
    device = torch.device(device)
    indices = range(-(-num_samples // batch_size)) if indices is None else list(indices)
    for b in tqdm(indices, desc="batches", disable=not progress):
        lo, hi = b * batch_size, min((b + 1) * batch_size, num_samples)
        generator = torch.Generator(device).manual_seed(derive_seed(seed, b, bits=32))
        denoiser = denoiser_for(lo, hi)
        x_T = standard_noise((hi - lo, *image_shape), generator, device, sampler.trajectory_dtype,
                             denoiser.student_t_nu)
        start = time.perf_counter()
        with torch.inference_mode():
            x = sampler(denoiser, x_T, generator)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        yield SampledBatch(b, lo, hi, x, time.perf_counter() - start)
