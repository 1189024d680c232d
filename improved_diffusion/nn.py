"""Small layers and tensor helpers shared by the UNet, the diffusion and the training loop."""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn as nn


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 and cast back to the input dtype (stable under bf16/fp16)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def normalization(channels: int) -> nn.Module:
    """The normalisation layer of every block: GroupNorm with 32 groups."""
    return GroupNorm32(32, channels)


def conv_nd(dims: int, *args, **kwargs) -> nn.Module:
    """A 1-D, 2-D or 3-D convolution."""
    layers = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
    if dims not in layers:
        raise ValueError(f"dims must be 1, 2 or 3, got {dims}")
    return layers[dims](*args, **kwargs)


def linear(*args, **kwargs) -> nn.Linear:
    return nn.Linear(*args, **kwargs)


def zero_module(module: nn.Module) -> nn.Module:
    """Zero the parameters of `module` in place and return it (used for residual output convs)."""
    for p in module.parameters():
        p.detach().zero_()
    return module


def mean_flat(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over all non-batch dimensions: (N, ...) -> (N,).

    With a validity `mask` (same shape, 1 = valid) the mean runs over valid elements only.
    """
    dims = list(range(1, x.ndim))
    if mask is None:
        return x.mean(dim=dims)
    return (x * mask).sum(dim=dims) / mask.sum(dim=dims).clamp(min=1.0)


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (N,) times, (N, dim) float32: cosines first, then sines.

    Frequencies are exp(-ln(max_period) * i / half) for i < half = dim // 2 (Vaswani et al.
    2017, sec. 3.5, as used by Ho et al. 2020); an odd `dim` gets one zero column.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    )
    args = timesteps[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


@torch.no_grad()
def update_ema(target_params: Iterable[torch.Tensor], source_params: Iterable[torch.Tensor], rate: float) -> None:
    """target <- rate * target + (1 - rate) * source, in place."""
    targets, sources = list(target_params), list(source_params)
    torch._foreach_mul_(targets, rate)
    torch._foreach_add_(targets, sources, alpha=1.0 - rate)


def ema_decay(rate: float, step: int, warmup: bool) -> float:
    """The EMA decay used at the update after `step` optimizer steps (0-based count of earlier updates).

    Without warm-up it is `rate` (the original). With warm-up it is min(rate, (1 + step) / (10 + step)), the
    num_updates ramp of TensorFlow's `tf.train.ExponentialMovingAverage`: the averaging window (1 / (1 - decay))
    is about step / 9 + 1 steps, so a short run's EMA follows the trained weights instead of the random
    initialisation, and a long run reaches `rate` (0.9999 after about 90 000 steps).
    """
    if not warmup:
        return rate
    return min(rate, (1.0 + step) / (10.0 + step))
