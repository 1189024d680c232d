"""UNet speed and utilisation: forward (batch 16) and training step (batch 8) in fp32, bf16 and compiled.

Utilisation = model FLOPs (torch.utils.flop_counter: convolutions, matmuls and attention) per second,
divided by the dense-matmul FLOP/s this same process measures in the same precision, so the ratio
is meaningful on a noisy shared machine. Prints a table and one JSON line.

    python bench/unet.py                       # MNIST and SAR low-res configurations, on CPU
    python bench/unet.py --configs mnist --variants fp32,bf16 --repeats 5
"""
from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from improved_diffusion.acceleration import native_bf16  # noqa: E402
from improved_diffusion.dist_util import resolve_device  # noqa: E402
from improved_diffusion.script_util import create_model_and_diffusion  # noqa: E402
from utils.cli import run_cli  # noqa: E402

CONFIGS = {
    "mnist": dict(image_size=32, num_input_channels=1, num_model_channels=128, num_res_blocks=3, class_cond=True,
                  num_class=10, attention_resolutions="16,8", num_heads=4, learn_sigma=False, dropout=0.0),
    "sar_lowres": dict(image_size=128, num_input_channels=1, num_model_channels=128, num_res_blocks=4,
                       class_cond=True, num_class=10, attention_resolutions="16,8", num_heads=4, learn_sigma=True,
                       dropout=0.0),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Minimum wall time of `repeats` calls after `warmup` calls (seconds)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_peak(dtype: torch.dtype, device: torch.device, repeats: int = 5) -> float:
    """Dense n x n x n matmul throughput in FLOP/s (n = 2048 on CPU, 8192 on GPU, where smaller products
    do not fill the chip): the faster of the BLAS matmul and the same product run as a 1x1 convolution
    (oneDNN / cuDNN), since on some CPUs the BLAS library is far from the machine's peak while the
    convolutions of the UNet run through oneDNN."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    # a (M, K) row-major is an NHWC image of M = n/32 x 32 pixels with K channels (a channels_last view)
    image = a.reshape(1, n // 32, 32, n).permute(0, 3, 1, 2)
    weight = b.t().contiguous().reshape(n, n, 1, 1)  # (N, K, 1, 1)
    seconds = min(best_time(lambda: a @ b, device, repeats),
                  best_time(lambda: torch.nn.functional.conv2d(image, weight), device, repeats))
    return 2 * n ** 3 / seconds


def emit(result: dict, output_json: str) -> dict:
    """Print `result` as one JSON line, also into the file `output_json` when given; returns it."""
    print(json.dumps(result))
    if output_json:
        Path(output_json).write_text(json.dumps(result, indent=1))
    return result


def count_flops(fn: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def make_case(config: dict, batch: int, device: torch.device, compiled: bool, amp: bool, channels_last: bool):
    """Forward and training-step closures for one configuration."""
    torch.manual_seed(0)
    model, diffusion = create_model_and_diffusion(config)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if compiled else model
    size, channels = config["image_size"], config["num_input_channels"]
    x = torch.randn(batch, channels, size, size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    t = torch.randint(0, diffusion.num_timesteps, (batch,), device=device)
    kwargs = {"y": torch.randint(0, config["num_class"], (batch,), device=device)} if config["class_cond"] else {}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)

    def forward():
        with torch.no_grad(), autocast:
            return net(x, diffusion.model_time(t), **kwargs)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = diffusion.training_losses(net, x, t, model_kwargs=kwargs)["loss"].mean()
        loss.backward()
        optimizer.step()

    return model, forward, step


def main(configs: str = "mnist,sar_lowres",  # comma list among: mnist, sar_lowres
         variants: str = "fp32,bf16,bf16_channels_last,compiled_bf16",  # fp32, bf16, *_channels_last, compiled_*
         forward_batch: int = 16,  # batch of the forward measurement
         train_batch: int = 8,  # batch of the training-step measurement
         repeats: int = 3,  # timed repetitions (the minimum is reported)
         device: str = "auto",  # cpu, cuda or auto
         threads: int = 0,  # torch CPU threads (0 = leave torch's default)
         output_json: str = ""):  # optional path of a JSON file with the results
    """Time the UNet of the original configurations and report utilisation of the matmul peak."""
    dev = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    variant_list = variants.split(",")
    peaks = {"fp32": matmul_peak(torch.float32, dev)}
    if native_bf16(dev):
        peaks["bf16"] = matmul_peak(torch.bfloat16, dev)
    elif any("bf16" in v for v in variant_list):
        variant_list = [v for v in variant_list if "bf16" not in v]
        print(f"{dev} has no native bfloat16 (no AVX512-BF16 / AMX): bf16 variants skipped (emulated bf16 runs "
              "~10-20x slower than fp32; amp='auto' trains in fp32 here)")
    print(f"device {dev} ({platform.processor() or platform.machine()}), threads {torch.get_num_threads()}, "
          "matmul peak " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items()))
    rows = []
    for name in configs.split(","):
        config = CONFIGS[name]
        for variant in variant_list:
            amp = "bf16" in variant
            precision = "bf16" if amp else "fp32"
            compiled, channels_last = variant.startswith("compiled"), "channels_last" in variant
            try:
                model, forward, _ = make_case(config, forward_batch, dev, compiled, amp, channels_last)
                _, _, step = make_case(config, train_batch, dev, compiled, amp, channels_last)
            except Exception as err:  # compile unavailable: report and go on
                print(f"{name:10s} {variant:22s} skipped: {type(err).__name__}: {err}")
                continue
            forward_flops = count_flops(forward)
            step_flops = count_flops(step)
            forward_s = best_time(forward, dev, repeats, warmup=2 if compiled else 1)
            step_s = best_time(step, dev, repeats, warmup=2 if compiled else 1)
            row = dict(config=name, variant=variant, params=sum(p.numel() for p in model.parameters()),
                       forward_s=forward_s, forward_gflop=forward_flops / 1e9,
                       forward_util=forward_flops / forward_s / peaks[precision],
                       step_s=step_s, step_gflop=step_flops / 1e9, step_util=step_flops / step_s / peaks[precision])
            rows.append(row)
            print(f"{name:10s} {variant:22s} forward {forward_s:7.3f} s ({row['forward_gflop']:7.1f} GFLOP, "
                  f"{100 * row['forward_util']:5.1f} %)   step {step_s:7.3f} s ({row['step_gflop']:7.1f} GFLOP, "
                  f"{100 * row['step_util']:5.1f} %)")
    by_key = {(r["config"], r["variant"]): r for r in rows}
    for name in configs.split(","):
        base = by_key.get((name, "fp32"))
        for variant in variant_list:
            r = by_key.get((name, variant))
            if base and r and variant != "fp32":
                print(f"{name:10s} {variant:22s} speed-up vs fp32: forward x{base['forward_s'] / r['forward_s']:.2f}, "
                      f"step x{base['step_s'] / r['step_s']:.2f}")
    return emit(dict(bench="unet", device=str(dev), threads=torch.get_num_threads(), torch=torch.__version__,
                     peak_gflops={k: v / 1e9 for k, v in peaks.items()}, rows=rows), output_json)


if __name__ == "__main__":
    run_cli(main)
