"""The options `sample.py` and `sample_DPM.py` share (device, precision, memory format, compile, seed, batch
size, overwrite, progress), validated and resolved once into a `SamplingOptions` that the sampling run uses."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from improved_diffusion.acceleration import resolve_amp, resolve_channels_last
from improved_diffusion.dist_util import process_device
from utils.changed_defaults import notice_changed_default


@dataclass(frozen=True)
class SamplingOptions:
    """Resolved sampling options: `device` this process's device (torchrun: its local rank), `amp` the autocast
    mode of the network ('none', 'bf16' or 'fp16', never 'auto'), `channels_last` a bool, `seed` the run's seed
    (every batch derives its own from it), `batch_size` samples per network call (> 0)."""
    device: torch.device
    amp: str
    channels_last: bool
    compile: bool
    seed: int
    batch_size: int
    overwrite: bool
    progress: bool

    @classmethod
    def resolve(cls, *, amp: str = "auto", channels_last: bool | str = "auto", compile: bool = False, seed: int = 0,
                device: str | torch.device = "auto", batch_size: int = 16, overwrite: bool = False,
                progress: bool = True) -> SamplingOptions:
        """Check the scripts' keywords (ValueError naming the option) and resolve the 'auto' choices for this
        hardware; prints the notice of the changed `amp` default when 'auto' picks bf16."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: got {batch_size!r}; expected a positive integer")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed: got {seed!r}; expected a non-negative integer")
        device = process_device(device)
        resolved = resolve_amp(amp, device)
        if amp == "auto" and resolved != "none":
            notice_changed_default("amp.auto")
        return cls(device=device, amp=resolved,
                   channels_last=resolve_channels_last(channels_last, device, amp, resolved), compile=bool(compile),
                   seed=seed, batch_size=batch_size, overwrite=bool(overwrite), progress=bool(progress))
