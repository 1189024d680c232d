"""End to end: the scripts' default speed options against the fastest explicit flags and the original's default.

A few training steps (`train.main`) and one 20-NFE sampling batch (`sample_DPM.sample_from_ODE`) are run
with the defaults (amp='auto', channels_last='auto'), with every explicit combination this hardware
computes natively (fp32 / bf16 where native, NCHW / channels_last), and with the original code's
default (amp='none', NCHW). Each is timed `repeats` times, the variants interleaved in rotating order, and the
minimum wall time is kept (the machines we measure on are shared). Prints a table, the ratios and one JSON line:

    speed vs fastest = t(fastest explicit) / t(default)      (goal >= 0.9)
    speed vs original = t(original default) / t(default)

    python bench/defaults.py                      # MNIST-sized UNet, 6 training steps, batch 8, on CPU
    python bench/defaults.py --repeats 5 --device cuda
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import train  # noqa: E402
from bench.unet import emit  # noqa: E402
from improved_diffusion.acceleration import native_bf16, resolve_amp, resolve_channels_last  # noqa: E402
from improved_diffusion.dist_util import resolve_device  # noqa: E402
from sample_DPM import sample_from_ODE  # noqa: E402
from utils.cli import run_cli  # noqa: E402

MODEL = dict(image_size=32, num_input_channels=1, num_model_channels=64, num_res_blocks=2, attention_resolutions="16,8",
             num_heads=4, diffusion_steps=1000, grid_interval=0, log_interval=1000)
DEFAULT, ORIGINAL = ("auto", "auto"), ("none", False)


def write_images(folder: Path, n: int, size: int) -> str:
    """`n` random grey-level PNGs of `size` x `size` pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(folder / f"x_{i}.png")
    return str(folder)


def wall_time(fn, **kwargs) -> float:
    """Seconds one call `fn(**kwargs)` takes."""
    start = time.perf_counter()
    fn(**kwargs)
    return time.perf_counter() - start


def main(steps: int = 6,  # training steps per timed run (one epoch of steps * batch_size images)
         batch_size: int = 8,  # training and sampling batch
         nfe: int = 20,  # network evaluations of the sampling batch (DPM-Solver++ multistep)
         repeats: int = 3,  # timed repetitions of each variant (the minimum is reported)
         device: str = "cpu",  # cpu, cuda or auto
         output_json: str = ""):  # optional path of a JSON file with the results
    """Time training steps and a sampling batch through the defaults and through explicit flags."""
    dev = resolve_device(device)
    amps = ["none"] + (["bf16"] if native_bf16(dev) else [])
    explicit = [(amp, cl) for amp in amps for cl in (False, True)]
    resolved_default = (resolve_amp("auto", dev), resolve_channels_last("auto", dev, "auto", resolve_amp("auto", dev)))
    print(f"device {dev}: default resolves to amp={resolved_default[0]!r}, channels_last={resolved_default[1]}")
    variants = [DEFAULT] + explicit
    seconds = {v: {"train_s": [], "sample_s": []} for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = write_images(tmp / "data", steps * batch_size, MODEL["image_size"])
        checkpoint = None
        for r in range(repeats):  # interleaved, and each repeat starts at another variant (no order effect)
            for amp, channels_last in variants[r % len(variants):] + variants[:r % len(variants)]:
                run = tmp / f"run_{amp}_{channels_last}"
                seconds[amp, channels_last]["train_s"].append(wall_time(
                    train.main, data_train_dir=data, url_folder_experiment=str(run), num_epochs=1,
                    batch_size=batch_size, amp=amp, channels_last=channels_last, device=str(dev), overwrite=True,
                    **MODEL))
                checkpoint = checkpoint or next(run.glob("ema_rate=*.pt"))  # the default run's EMA model
                seconds[amp, channels_last]["sample_s"].append(wall_time(
                    sample_from_ODE, model_path=str(checkpoint), sample_steps=nfe, num_samples=batch_size,
                    batch_size=batch_size, url_save_path=str(run / "samples"), amp=amp, channels_last=channels_last,
                    device=str(dev), plot=False, progress=False, overwrite=True))
    rows = {}
    for (amp, channels_last), times in seconds.items():
        rows[amp, channels_last] = dict(amp=amp, channels_last=channels_last, train_s=min(times["train_s"]),
                                        sample_s=min(times["sample_s"]))
        print(f"amp={amp:5s} channels_last={channels_last!s:5s}  {steps} training steps {min(times['train_s']):7.2f} s"
              f"   {nfe}-NFE batch of {batch_size} {min(times['sample_s']):7.2f} s")
    default = rows[DEFAULT]
    ratios = {}
    for kind in ("train_s", "sample_s"):
        fastest = min(explicit, key=lambda key: rows[key][kind])
        ratios[kind] = dict(fastest=dict(zip(("amp", "channels_last"), fastest)),
                            vs_fastest=rows[fastest][kind] / default[kind],
                            vs_original=rows[ORIGINAL][kind] / default[kind])
        print(f"{kind[:-2]:6s} default speed vs fastest explicit (amp={fastest[0]}, channels_last={fastest[1]}): "
              f"x{ratios[kind]['vs_fastest']:.2f}; vs the original default (fp32 NCHW): "
              f"x{ratios[kind]['vs_original']:.2f}")
    return emit(dict(bench="defaults", device=str(dev), resolved_default=dict(amp=resolved_default[0],
                     channels_last=resolved_default[1]), steps=steps, batch_size=batch_size, nfe=nfe,
                     repeats=repeats, rows=list(rows.values()), ratios=ratios), output_json)


if __name__ == "__main__":
    run_cli(main)
