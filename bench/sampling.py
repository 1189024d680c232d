"""Sampling throughput: samples/s of DDIM-50 and DPM-Solver++(3M)-20 at batch 16, fp32 and bf16 autocast.

Uses a randomly initialised model of a named preset (default "demo"): throughput does not depend
on the weights. Prints one line per (sampler, precision), the bf16/fp32 speed ratio, and a JSON line.
Absolute numbers vary on shared machines; compare the ratios measured in one process.

    python bench/sampling.py
    python bench/sampling.py --preset mnist_32 --repeats 1 --device cuda
"""
from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from improved_diffusion.acceleration import native_bf16  # noqa: E402
from improved_diffusion.denoiser import Denoiser  # noqa: E402
from improved_diffusion.dist_util import resolve_device  # noqa: E402
from improved_diffusion.sampler_choice import chain_sampler, ode_sampler  # noqa: E402
from improved_diffusion.script_util import PRESETS, create_model_and_diffusion  # noqa: E402
from utils.cli import run_cli  # noqa: E402

SAMPLERS = {"DDIM-50": lambda: chain_sampler(True, sampling_steps=50),
            "DPM-Solver++(3M)-20": lambda: ode_sampler(20)}


def main(
    preset: str = "demo",  # model configuration (improved_diffusion.script_util.PRESETS)
    batch_size: int = 16,  # samples per batch
    repeats: int = 2,  # timed runs per measurement (the minimum is reported)
    precisions: list = ("fp32", "bf16"),  # fp32 and/or bf16 (autocast)
    device: str = "auto",  # "auto", "cpu", "cuda", ...
) -> dict:
    """Return {sampler: {precision: samples per second}} and print it."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    if not set(precisions) <= {"fp32", "bf16"}:
        raise ValueError(f"precisions must be fp32 and/or bf16, got {precisions!r}")
    device = resolve_device(device)
    if "bf16" in precisions and not native_bf16(device):
        precisions = [p for p in precisions if p != "bf16"]
        print(f"{device} has no native bfloat16: bf16 skipped (emulated bf16 runs ~10-20x slower than fp32)")
    torch.manual_seed(0)
    args = {**PRESETS[preset]}
    model, diffusion = create_model_and_diffusion(args)
    model.to(device).eval()
    size, channels = args["image_size"], args.get("num_input_channels", 3)
    y = torch.zeros(batch_size, dtype=torch.int64, device=device) if args.get("class_cond") else None
    results = {}
    for name, factory in SAMPLERS.items():
        results[name] = {}
        for precision in precisions:
            autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
                        else contextlib.nullcontext())
            sample_batch, times = factory(), []
            x_T = torch.randn(batch_size, channels, size, size, device=device, dtype=sample_batch.trajectory_dtype)
            with torch.inference_mode(), autocast:
                Denoiser(model, diffusion, y=y)(x_T, torch.tensor(0.0, dtype=torch.float64))  # warm-up
                for _ in range(repeats):
                    start = time.perf_counter()
                    sample_batch(Denoiser(model, diffusion, y=y), x_T, None)
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    times.append(time.perf_counter() - start)
            results[name][precision] = batch_size / min(times)
            print(f"{name:22s} {precision}: {results[name][precision]:8.2f} samples/s")
        if len(results[name]) == 2:
            print(f"{name:22s} bf16 / fp32 speed: {results[name]['bf16'] / results[name]['fp32']:.2f}")
    print(json.dumps({"preset": preset, "batch_size": batch_size, "device": str(device),
                      "threads": torch.get_num_threads(), "samples_per_second": results}))
    return results


if __name__ == "__main__":
    run_cli(main)
