"""Device choice and (optional) torch.distributed set-up; on one device it all disappears."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def resolve_device(device: str | torch.device | None = None) -> torch.device:
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


def process_device(device: str | torch.device | None = None) -> torch.device:
    """The device this process runs on: `resolve_device(device)`, and under `torchrun` (WORLD_SIZE > 1) a CUDA
    device is this process's local rank (`cuda:LOCAL_RANK`). Changes nothing (no process group, no set_device)."""
    device = resolve_device(device)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def setup_dist(device: str | torch.device | None = None) -> torch.device:
    """Join the process group when launched by `torchrun` (WORLD_SIZE > 1) and return this process's device.

    The backend is NCCL on CUDA and gloo on CPU; MASTER_ADDR / MASTER_PORT / RANK come from torchrun.
    On a single process nothing is initialised and this is `resolve_device(device)`.
    """
    device = process_device(device)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not is_distributed():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def cleanup_dist() -> None:
    """Leave the process group (no-op when not distributed)."""
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of `tensor` over processes (in place; returned for chaining)."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_interleaved(tensor: torch.Tensor) -> torch.Tensor:
    """Gather (n, ...) from every process into (n * world, ...) in global batch order.

    Rank r holds items r, r + world, r + 2 world, ... of the global batch (the order of a
    distributed sampler), so item k of rank r goes to position k * world + r.
    """
    if not is_distributed():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.stack(parts, dim=1).flatten(0, 1)
