"""Device choice and (optional) torch.distributed set-up; on one device it all disappears."""
from __future__ import annotations

import os
from typing import Optional

import torch
import torch.distributed as dist


def resolve_device(device: Optional[str | torch.device] = None) -> torch.device:
    """`None`/"auto" -> cuda (this process's local rank) when available, else cpu; otherwise torch.device(device)."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: got {str(device)!r} but CUDA is not available here; use 'cpu' or 'auto'")
    return device


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on rank 0 (the process that writes files and logs) or when not distributed."""
    return get_rank() == 0
