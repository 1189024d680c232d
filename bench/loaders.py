"""Loader throughput (samples/s) for 128 px HDF5 and PNG data, and its ratio to training throughput.

Generates the data with the project's own generators in a temporary folder, times full passes of
``create_dataloader`` (after one warm-up pass) for each worker count, times demo-model training
steps (``PRESETS["demo"]``: 32 px) and prints loader samples/s / training samples/s on the demo
data (32 px synthetic InSAR HDF5). A ratio well above 1 means the loader is not the bottleneck.
Run: ``python bench/loaders.py`` (2 CPU threads by default).
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from datasets import insar_synthetic, sar_synthetic  # noqa: E402
from improved_diffusion.dataloaders import create_dataloader, set_loader_epoch  # noqa: E402
from improved_diffusion.script_util import PRESETS, create_model_and_diffusion  # noqa: E402
from utils.cli import run_cli  # noqa: E402


def loader_rate(data_dir: str, passes: int, **kwargs) -> float:
    """Samples per second over ``passes`` full epochs, after one warm-up epoch."""
    loader, _ = create_dataloader(data_dir, **kwargs)
    count, start = 0, 0.0
    for epoch in range(passes + 1):
        if epoch == 1:
            count, start = 0, time.perf_counter()
        set_loader_epoch(loader, epoch)
        for x, _ in loader:
            count += len(x)
    return count / (time.perf_counter() - start)


def training_rate(steps: int, batch_size: int) -> float:
    """Training samples per second of the demo model (forward, loss, backward, AdamW step)."""
    model, diffusion = create_model_and_diffusion(PRESETS["demo"])
    opt = torch.optim.AdamW(model.parameters(), lr=PRESETS["demo"]["lr"])
    x = torch.randn(batch_size, 1, 32, 32)
    for step in range(steps + 1):
        if step == 1:
            start = time.perf_counter()
        t = torch.randint(0, diffusion.num_timesteps, (batch_size,))
        loss = diffusion.training_losses(model, x, t)["loss"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * batch_size / (time.perf_counter() - start)


def main(
        num_fields: int = 2048,  # 128 px HDF5 fields generated for the benchmark
        num_png_per_class: int = 256,  # 128 px PNG images per class (4 classes)
        batch_size: int = 32,  # loader and training batch size
        worker_counts: tuple[int, ...] = (0, 2),  # num_workers values to time
        passes: int = 2,  # timed epochs per measurement
        train_steps: int = 10,  # timed demo-model training steps
        threads: int = 2,  # torch CPU threads
) -> dict:
    """Print loader samples/s (128 px HDF5 and PNG, 32 px demo HDF5) and the loader/training ratio."""
    torch.set_num_threads(threads)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        insar_synthetic.main(out_dir=f"{tmp}/insar128", n_train=num_fields, n_val=0, n_test=0, image_size=128)
        results["generator_fields_per_s_128px"] = num_fields / (time.perf_counter() - start)
        start = time.perf_counter()
        insar_synthetic.main(out_dir=f"{tmp}/insar32", n_train=4 * num_fields, n_val=0, n_test=0, image_size=32)
        results["generator_fields_per_s_32px"] = 4 * num_fields / (time.perf_counter() - start)
        sar_synthetic.main(out_dir=f"{tmp}/sar128", n_train_per_class=num_png_per_class, n_val_per_class=0,
                           n_test_per_class=0, image_size=128)
        common = dict(num_channels=1, batch_size=batch_size, passes=passes)
        for w in worker_counts:
            results[f"hdf5_128px_workers{w}"] = loader_rate(f"{tmp}/insar128/train", type_dataset="hdf5",
                                                            image_size=128, num_workers=w, **common)
            results[f"png_128px_workers{w}"] = loader_rate(f"{tmp}/sar128/train", image_size=128, class_cond=True,
                                                           num_workers=w, **common)
            results[f"png_128px_crop_workers{w}"] = loader_rate(f"{tmp}/sar128/train", image_size=96, crop=True,
                                                                num_workers=w, **common)
            results[f"hdf5_32px_demo_workers{w}"] = loader_rate(f"{tmp}/insar32/train", type_dataset="hdf5",
                                                                image_size=32, normalization="range",
                                                                norm_range=(-10, 10), num_workers=w, **common)
    results["demo_training_samples_per_s"] = training_rate(train_steps, batch_size)
    for w in worker_counts:
        results[f"ratio_loader_to_training_demo_workers{w}"] = (results[f"hdf5_32px_demo_workers{w}"]
                                                                / results["demo_training_samples_per_s"])
    for key, value in results.items():
        print(f"{key:45s} {value:12.1f}")
    return results


if __name__ == "__main__":
    run_cli(main)
