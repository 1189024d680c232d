"""Speed options shared by training and sampling: mixed precision (`amp`), the channels_last memory
format and torch.compile with an eager fallback.

`amp` modes: 'none' (float32), 'bf16' (bfloat16 autocast, CPU or CUDA), 'fp16' (float16 autocast,
CUDA only; training adds loss scaling) and 'auto' = 'bf16' where the hardware computes bfloat16
natively (CUDA devices that support it; CPUs with AVX512-BF16 or AMX, or Arm's BF16 extension),
else 'none'. On a CPU without native bf16, PyTorch emulates it and a bf16 model runs ~10-20x *slower*
than float32 (measured: demo training step 0.96 s fp32 vs 18 s bf16 on an AVX2-only EPYC).
GroupNorm and the losses stay float32 under every mode (`nn.GroupNorm32`, `losses`).
"""
from __future__ import annotations

import functools
import platform
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch

AMP_MODES = ("none", "auto", "bf16", "fp16")
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_CPU_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # x86 flags; "bf16" is the aarch64 feature name


@functools.cache
def _cpu_flags() -> frozenset:
    """Feature flags of this CPU from /proc/cpuinfo (empty where that file does not exist)."""
    cpuinfo = Path("/proc/cpuinfo")
    if platform.system() != "Linux" or not cpuinfo.is_file():
        return frozenset()
    flags = set()
    for line in cpuinfo.read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return frozenset(flags)


def native_bf16(device: torch.device | str) -> bool:
    """Whether `device` computes bfloat16 matmuls and convolutions in hardware."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(_cpu_flags() & _CPU_BF16_FLAGS)
    return False


def resolve_amp(amp: str, device: torch.device | str, use_fp16: bool = False) -> str:
    """The autocast mode to run with: 'none', 'bf16' or 'fp16'. `use_fp16=True` is the original
    switch and means 'fp16' (CUDA only). ValueError for unknown or impossible modes; a warning
    when bf16 is asked for on a CPU that only emulates it."""
    device = torch.device(device)
    if amp not in AMP_MODES:
        raise ValueError(f"amp: got {amp!r}, expected one of {AMP_MODES}")
    if use_fp16:
        if device.type != "cuda":
            raise ValueError("use_fp16: got True on a CPU device; fp16 training needs CUDA, use amp='bf16' "
                             "(bfloat16 autocast) or amp='auto' on CPU")
        if amp not in ("none", "fp16"):
            raise ValueError(f"use_fp16=True and amp={amp!r} disagree; give one of them")
        return "fp16"
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("amp: got 'fp16' on a CPU device; fp16 needs CUDA, use amp='bf16' or 'auto' on CPU")
    if amp == "auto":
        return "bf16" if native_bf16(device) else "none"
    if amp == "bf16" and device.type == "cpu" and not native_bf16(device):
        # Shown once a process (the default warnings filter).
        warnings.warn("amp='bf16' on a CPU without native bfloat16 (no AVX512-BF16 / AMX): PyTorch emulates it and "
                      "runs ~10-20x slower than float32 here; use amp='auto' or 'none'", stacklevel=2)
    return amp


def autocast(device: torch.device | str, amp: str):
    """Autocast context of a resolved `amp` mode (a no-op for 'none')."""
    dtype = AMP_DTYPES[amp]
    return nullcontext() if dtype is None else torch.autocast(torch.device(device).type, dtype=dtype)


def memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.preserve_format


def compile_model(model: torch.nn.Module, label: str) -> torch.nn.Module:
    """torch.compile(model); where compilation is unavailable or fails (no C++ compiler, unsupported
    platform) the model runs eagerly, with one message saying so."""
    try:
        import torch._dynamo
        torch._dynamo.config.suppress_errors = True  # a graph that fails to compile runs eagerly
        return torch.compile(model)
    except Exception as err:  # noqa: BLE001 - any failure means: run eagerly
        print(f"[{label}] compile=True ignored, running eagerly: {type(err).__name__}: {err}")
        return model
