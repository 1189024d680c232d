"""Training metrics kept on the device between log steps, and their tensorboard output.

Per-example loss terms are summed on the device (overall and per timestep quartile) and read back
once per `log_interval` steps, so logging costs one device-to-host copy per interval.
"""
from __future__ import annotations

import copy
import time

import torch

from .class_scale import to_model_units
from .denoiser import Denoiser
from .dist_util import all_reduce_sum
from .sampler_choice import chain_sampler, seeded_batches

QUARTILES = 4
GRID_STEPS = 50  # DDIM steps of the tensorboard sample grids


class MetricAccumulator:
    """Sums of training metrics since the last `flush`.

    `add_terms(t, terms, weights)`: per-example terms (N,) at timestep indices t (N,), logged as the
    importance-weighted batch mean (`loss`, `mse`, `vb`, like the original) and as the plain mean
    per timestep quartile q = floor(4 t / T) (`loss_q0` .. `loss_q3`).
    `add_scalar(name, value)`: a 0-d tensor averaged over the interval (e.g. `grad_norm`).
    """

    def __init__(self, num_timesteps: int, device: torch.device):
        self.num_timesteps, self.device = num_timesteps, device
        self._sums: dict[str, torch.Tensor] = {}
        self._start = time.perf_counter()
        self._samples = 0

    def _slot(self, name: str, size: int) -> torch.Tensor:
        if name not in self._sums:
            self._sums[name] = torch.zeros(size, dtype=torch.float64, device=self.device)
        return self._sums[name]

    def add_terms(self, t: torch.Tensor, terms: dict, weights: torch.Tensor) -> None:
        quartile = (QUARTILES * t) // self.num_timesteps
        self._samples += t.shape[0]
        for key, values in terms.items():
            values = values.detach().double()
            # [weighted sum, count] for the batch mean, then (sum, count) per quartile
            self._slot(key, 2).add_(torch.stack([(values * weights).sum(), values.new_tensor(t.shape[0])]))
            q = self._slot(f"{key}_q", 2 * QUARTILES)
            q[:QUARTILES].index_add_(0, quartile, values)
            q[QUARTILES:].index_add_(0, quartile, torch.ones_like(values))

    def add_scalar(self, name: str, value: torch.Tensor) -> None:
        self._slot(name, 2).add_(torch.stack([value.detach().double(), value.new_ones((), dtype=torch.float64)]))

    def flush(self) -> dict[str, float]:
        """Means since the last flush (summed over processes), plus `samples_per_s`; resets the sums."""
        names = sorted(self._sums)
        if not names:
            return {}
        sizes = [self._sums[n].numel() for n in names]
        flat = all_reduce_sum(torch.cat([self._sums[n] for n in names]))
        samples = all_reduce_sum(torch.tensor([float(self._samples)], dtype=torch.float64, device=self.device))
        values = flat.tolist()
        out, offset = {}, 0
        for name, size in zip(names, sizes):
            chunk = values[offset:offset + size]
            offset += size
            if name.endswith("_q"):
                for i in range(QUARTILES):
                    if chunk[QUARTILES + i] > 0:
                        out[f"{name}{i}"] = chunk[i] / chunk[QUARTILES + i]
            elif chunk[1] > 0:
                out[name] = chunk[0] / chunk[1]
        now = time.perf_counter()
        out["samples_per_s"] = samples.item() / max(now - self._start, 1e-9)
        self._sums.clear()
        self._samples, self._start = 0, now
        return out


class Logger:
    """Tensorboard scalars and image grids, written by the main process only (a no-op elsewhere)."""

    def __init__(self, folder: str | None, enabled: bool):
        self.writer = None
        if enabled and folder is not None:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(folder)

    def scalars(self, values: dict[str, float], step: int, prefix: str = "") -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(prefix + key, value, step)

    def image_grid(self, tag: str, images: torch.Tensor, step: int) -> None:
        """images: (N, C, H, W) float in model units (about [-1, 1]); the first channel is shown
        unless C == 3."""
        if self.writer is None:
            return
        from torchvision.utils import make_grid
        if images.shape[1] != 3:
            images = images[:, :1]
        nrow = max(1, int(images.shape[0] ** 0.5))
        grid = make_grid(images.float().cpu().clamp(-1, 1), nrow=nrow, normalize=True, value_range=(-1, 1))
        self.writer.add_image(tag, grid, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@torch.no_grad()
def ema_samples(model: torch.nn.Module, ema_params: list, diffusion, shape: tuple, model_kwargs: dict,
                device: torch.device, seed: int, class_scale: tuple[float, ...] | None = None) -> torch.Tensor:
    """DDIM samples (shape, float32 model units) on the trailing grid of `GRID_STEPS` steps (the whole chain
    when it is shorter) from a copy of `model` carrying the EMA weights; model_kwargs: `y` and/or `low_res`;
    `class_scale`: the run's (network units -> model units). One batch of `seeded_batches` (batch 0 of `seed`)."""
    ema_model = copy.deepcopy(model).eval()
    for p, e in zip(ema_model.parameters(), ema_params):
        p.copy_(e)
    sampler = chain_sampler(True, sampling_steps=min(GRID_STEPS, diffusion.num_timesteps))
    batch = next(seeded_batches(sampler, lambda lo, hi: Denoiser(ema_model, diffusion, **model_kwargs), shape[1:],
                                shape[0], shape[0], seed, device))
    return to_model_units(batch.x, model_kwargs.get("y"), class_scale)
