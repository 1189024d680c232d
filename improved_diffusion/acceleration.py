"""Speed options shared by training and sampling: mixed precision (`amp`), the channels_last memory
format and torch.compile with an eager fallback.

`amp` modes: 'none' (float32), 'bf16' (bfloat16 autocast, CPU or CUDA), 'fp16' (float16 autocast,
CUDA only; training adds loss scaling) and 'auto' = 'bf16' where the hardware computes bfloat16
natively (CUDA devices that support it; CPUs with AVX512-BF16 or AMX, or Arm's BF16 extension),
else 'none'. On a CPU without native bf16, PyTorch emulates it and a bf16 model runs ~10-20x *slower*
than float32 (measured: demo training step 0.96 s fp32 vs 18 s bf16 on an AVX2-only EPYC).
GroupNorm, the UNet's output layer and the losses stay float32 under every mode (`nn.GroupNorm32`,
`unet.UNetModel.forward`, `losses`).

Memory format (`channels_last`): True, False or 'auto', resolved by `resolve_channels_last` with a fixed
rule from the hardware (no timing probe, so two processes on one machine always agree): channels_last
on x86 CPUs with AVX2 or AVX-512 (oneDNN's NHWC convolutions; bench/RESULTS.md has the figures) and on
CUDA devices with tensor cores (capability >= 7.0) under bf16 / fp16 autocast; NCHW elsewhere, and
always NCHW when `amp='none'` is asked for explicitly (the original float32 numerics).
On CUDA, bf16 runs also let the fp32 matmuls left outside autocast use TF32 (`enable_fast_matmul`).
"""
from __future__ import annotations

import functools
import os
import platform
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch

AMP_MODES = ("none", "auto", "bf16", "fp16")
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_CPU_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # x86 flags; "bf16" is the aarch64 feature name
_CPU_NHWC_FLAGS = {"avx2", "avx512f"}  # x86 vector units with oneDNN's blocked NHWC convolution kernels
MEMORY_FORMAT_WORDS = {"auto": "auto", "true": True, "false": False}
# Set to 1, this environment variable adds the AVX512-BF16 flag to this CPU's flags, so `amp='auto'` resolves as on a
# machine with native bfloat16: `make test` runs the numeric tests under it on every machine kind.
ASSUME_BF16_ENV = "PDM_RADAR_ASSUME_BF16"


def _cpu_flags() -> frozenset:
    """Feature flags of this CPU, plus 'avx512_bf16' when the environment variable ASSUME_BF16_ENV is 1."""
    forced = {"avx512_bf16"} if os.environ.get(ASSUME_BF16_ENV) == "1" else set()
    return _proc_cpu_flags() | forced


@functools.cache
def _proc_cpu_flags() -> frozenset:
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


def resolve_channels_last(channels_last: bool | str, device: torch.device | str, amp_requested: str,
                          amp: str) -> bool:
    """Whether to run channels_last. `channels_last`: True, False or 'auto' (also the strings 'true' /
    'false' of the command line); `amp_requested` is the mode asked for ('none', 'auto', ...), `amp`
    the resolved one ('none', 'bf16', 'fp16'). ValueError for any other value."""
    value = MEMORY_FORMAT_WORDS.get(channels_last.lower()) if isinstance(channels_last, str) else channels_last
    if not isinstance(value, bool) and value != "auto":
        raise ValueError(f"channels_last: got {channels_last!r}, expected True, False or 'auto'")
    if value != "auto":
        return value
    device = torch.device(device)
    if amp_requested == "none":
        return False
    if device.type == "cpu":
        return platform.machine().lower() in ("x86_64", "amd64") and bool(_cpu_flags() & _CPU_NHWC_FLAGS)
    if device.type == "cuda":
        return amp != "none" and torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 7
    return False


def enable_fast_matmul(device: torch.device | str, amp: str) -> bool:
    """On CUDA under a resolved `amp='bf16'`, let fp32 matmuls and convolutions use TF32 (process-wide
    torch.backends flags); returns whether TF32 was switched on. Nothing changes for other modes, so
    amp='none' keeps exact float32 products."""
    if torch.device(device).type != "cuda" or amp != "bf16":
        return False
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return True


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
