"""Seconds per optimizer step of TrainLoop against a bare step (forward + backward + AdamW) of the same
model, batch and precision: the ratio is the loop's overhead (timestep sampling, noise, EMA, device-side
metrics, logging). Data are in memory, so loading is not measured. Prints a table and one JSON line.

    python bench/train_loop.py                              # demo preset, fp32 and bf16, on CPU
    python bench/train_loop.py --preset mnist_32 --batch_size 8 --steps 5
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from improved_diffusion.dist_util import resolve_device  # noqa: E402
from improved_diffusion.script_util import PRESETS, create_model_and_diffusion  # noqa: E402
from improved_diffusion.train_setup import loop_config  # noqa: E402
from improved_diffusion.train_util import EpochData, TrainLoop  # noqa: E402
from utils.cli import run_cli  # noqa: E402


def _bare_steps(args: dict, x: torch.Tensor, cond: dict, steps: int, amp: str, device: torch.device) -> float:
    """Median seconds per step of the plain PyTorch step the loop wraps."""
    model, diffusion = create_model_and_diffusion(args)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        t = torch.randint(0, diffusion.num_timesteps, (x.shape[0],), device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            loss = diffusion.training_losses(model, x, t, model_kwargs=cond)["loss"].mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def _loop_steps(args: dict, x: torch.Tensor, cond: dict, steps: int, amp: str, device: torch.device) -> float:
    """Seconds per step of TrainLoop: (one epoch of 1 + steps batches - one epoch of 1 batch) / steps,
    so the per-run costs (set-up, checkpoint save) cancel."""
    model, diffusion = create_model_and_diffusion(args)
    elapsed = []
    with tempfile.TemporaryDirectory() as folder:
        for batches in (1, 1, 1 + steps):  # the first run warms up
            data = EpochData([(x, dict(cond))] * batches)
            config = loop_config({"num_epochs": 1, "lr": 1e-4, "ema_rate": "0.9999", "amp": amp, "grid_interval": 0,
                                  "log_interval": max(1, steps // 2), "schedule_sampler": args["schedule_sampler"]},
                                 device)
            loop = TrainLoop(model=model, diffusion=diffusion, data=data, folder=folder, config=config, device=device)
            start = time.perf_counter()
            loop.run()
            elapsed.append(time.perf_counter() - start)
    return (elapsed[2] - elapsed[1]) / steps


def main(preset: str = "demo",  # a name of script_util.PRESETS
         batch_size: int = 32,  # batch size (demo preset: 32)
         steps: int = 10,  # timed steps
         variants: str = "fp32,bf16",  # precisions: fp32, bf16
         threads: int = 1,  # torch intra-op threads on CPU
         device: str = "cpu",  # 'cpu', 'cuda', 'auto'
         ) -> dict:
    """Print seconds per step of the bare step and of TrainLoop, and their ratio."""
    if preset not in PRESETS:
        raise ValueError(f"preset: got {preset!r}, expected one of {sorted(PRESETS)}")
    torch.set_num_threads(threads)
    device_ = resolve_device(device)
    args = {**PRESETS[preset], "schedule_sampler": PRESETS[preset].get("schedule_sampler", "uniform")}
    x = torch.randn(batch_size, args["num_input_channels"], args["image_size"], args["image_size"], device=device_)
    cond = {"y": torch.arange(batch_size, device=device_) % args["num_class"]} if args.get("class_cond") else {}
    rows = []
    for variant in variants.split(","):
        amp = {"fp32": "none", "bf16": "bf16"}[variant]
        bare = _bare_steps(args, x, cond, steps, amp, device_)
        loop = _loop_steps(args, x, cond, steps, amp, device_)
        rows.append({"variant": variant, "bare_s_per_step": bare, "loop_s_per_step": loop, "ratio": loop / bare})
        print(f"{preset} batch {batch_size} {variant}: bare {bare:.3f} s/step, TrainLoop {loop:.3f} s/step "
              f"ratio {loop / bare:.2f}")
    result = {"preset": preset, "batch_size": batch_size, "device": str(device_), "threads": threads, "rows": rows}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    run_cli(main)
