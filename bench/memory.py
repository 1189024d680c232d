"""Peak memory of one training step (forward + backward + AdamW) with and without gradient checkpointing,
for the 128 px (SAR low-res) and 256 px (SAR super-res) configurations of the original examples.

Each case runs in a fresh subprocess; on CPU the figure is the process's peak resident memory
(ru_maxrss) minus the resident memory before the step, on CUDA torch.cuda.max_memory_allocated.

    python bench/memory.py                      # CPU, batch 4 at 128 px and 2 at 256 px
    python bench/memory.py --device cuda --batch_128 16 --batch_256 8
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from improved_diffusion.dist_util import resolve_device  # noqa: E402
from improved_diffusion.script_util import PRESETS, create_model_and_diffusion  # noqa: E402
from utils.cli import run_cli  # noqa: E402

CONFIGS = {"sar_lowres_128": PRESETS["sar_lowres_128"], "sar_superres_128_256": PRESETS["sar_superres_128_256"]}


def rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_step(config: str, batch: int, checkpointing: bool, device: str) -> dict:
    """Build the model, run one training step, return peak memory figures (MiB)."""
    dev = resolve_device(device)
    args = {**CONFIGS[config], "use_checkpoint": checkpointing, "dropout": 0.0}
    model, diffusion = create_model_and_diffusion(args)
    model.to(dev).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    size, channels = args["image_size"], args["num_input_channels"]
    x = torch.randn(batch, channels, size, size, device=dev)
    kwargs = {"y": torch.zeros(batch, dtype=torch.int64, device=dev)} if args["class_cond"] else {}
    if args.get("image_size_lr"):
        kwargs["low_res"] = torch.randn(batch, channels, args["image_size_lr"], args["image_size_lr"], device=dev)
    t = torch.randint(0, diffusion.num_timesteps, (batch,), device=dev)
    before = rss_mib()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    diffusion.training_losses(model, x, t, model_kwargs=kwargs)["loss"].mean().backward()
    optimizer.step()
    result = {"config": config, "batch": batch, "checkpointing": checkpointing, "device": str(dev)}
    if dev.type == "cuda":
        result["peak_allocated_mib"] = torch.cuda.max_memory_allocated(dev) / 2 ** 20
    else:
        result["peak_rss_mib"] = rss_mib()
        result["step_rss_increase_mib"] = rss_mib() - before
    return result


def main(batch_128: int = 4,  # training batch of the 128 px configuration
         batch_256: int = 2,  # training batch of the 256 px configuration
         device: str = "cpu",  # cpu, cuda or auto
         case: str = ""):  # internal: run one case "config,batch,checkpointing" in this process
    """Print a table of peak memory per (configuration, checkpointing) and one JSON line."""
    if case:
        config, batch, flag = case.split(",")
        print(json.dumps(one_step(config, int(batch), flag == "1", device)))
        return None
    rows = []
    for config, batch in (("sar_lowres_128", batch_128), ("sar_superres_128_256", batch_256)):
        for flag in ("0", "1"):
            out = subprocess.run([sys.executable, __file__, "--case", f"{config},{batch},{flag}", "--device", device],
                                 capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            key = "peak_allocated_mib" if "peak_allocated_mib" in r else "step_rss_increase_mib"
            print(f"{config:22s} batch {batch:3d} checkpointing {str(r['checkpointing']):5s} {key} {r[key]:9.0f}")
    print(json.dumps({"bench": "memory", "rows": rows}))
    return rows


if __name__ == "__main__":
    run_cli(main)
