"""Do bf16 and float32 training agree within the seed-to-seed spread? A reduced run of the demo recipe.

The demo preset is trained on a small slice of the main job's radar-like mixture (`n_train` fields, batch
`batch_size`, `num_epochs` epochs) once per (precision, seed) pair; every final EMA model is then scored in
float32 on the same held-out fields with the same noise: the x0 mean-squared error (model units) at
`num_levels` timesteps spread evenly over the chain, averaged over fields and levels (the training loss of the
demo's `x_start` target). Printed: each run's score and seconds per training step, the float32 seed-to-seed
standard deviation, and for each seed the |bf16 - float32| difference in units of that standard deviation
(agreement: below about 2). On a CPU without native bf16 the bf16 runs are emulated (about 19x slower on AVX2:
bench/RESULTS.md), hence the small default run.

    OMP_NUM_THREADS=1 python bench/precision_agreement.py --work_dir bench_out/precision
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import main_job  # noqa: E402
from bench.fidelity_curve import cpu_flags  # noqa: E402
from improved_diffusion.checkpoint import load_model  # noqa: E402
from improved_diffusion.data_normalization import normalize  # noqa: E402
from improved_diffusion.hdf5_datasets import list_hdf5_files  # noqa: E402
from improved_diffusion.script_util import PRESETS  # noqa: E402
from utils.cli import run_cli  # noqa: E402
from utils.sampling.gap_filling import read_observed  # noqa: E402


@torch.no_grad()
def denoising_error(checkpoint: Path, fields: np.ndarray, num_levels: int, seed: int) -> float:
    """Mean x0 squared error (model units) of a float32 evaluation of `checkpoint` on `fields` (N, H, W, 1
    stored units) at `num_levels` evenly spaced timesteps, noise fixed by `seed`."""
    model, diffusion, args_dic = load_model(checkpoint)
    model.eval()
    x0 = torch.from_numpy(np.ascontiguousarray(normalize(fields, args_dic["data_normalization"]).transpose(0, 3, 1, 2)))
    generator = torch.Generator().manual_seed(seed)
    levels = np.linspace(0, diffusion.num_timesteps - 1, num_levels).round().astype(int)
    errors = []
    for level in levels:
        t = torch.full((len(x0),), int(level), dtype=torch.long)
        noise = torch.randn(x0.shape, generator=generator)
        errors.append(diffusion.training_losses(model, x0, t, noise=noise)["mse"].mean().item())
    return float(np.mean(errors))


def main(work_dir: str = "bench_out/precision",  # data and runs (reused across calls)
         n_train: int = 400,  # training fields of the reduced mixture
         batch_size: int = 8,  # training batch size (the demo's is 32: reduced so emulated bf16 stays affordable)
         num_epochs: int = 2,  # training epochs (n_train / batch_size steps each)
         fp32_seeds: str = "0,1,2",  # seeds of the float32 runs (their spread is the yardstick)
         bf16_seeds: str = "0,1",  # seeds of the bf16 runs
         num_fields: int = 256,  # held-out test fields of the score
         num_levels: int = 16) -> dict:  # timesteps of the score
    """Train each (precision, seed), score every model the same way, print and return the comparison."""
    work = Path(work_dir)
    data = work / "data"
    truth = main_job.prepare_data(data, PRESETS["demo"]["image_size"], n_train, 0, "mixture")
    fields = read_observed(list_hdf5_files(data / "test")[0], truth["loader_kwargs"]["key_data"], num_fields)
    runs = [("none", int(s)) for s in fp32_seeds.split(",")] + [("bf16", int(s)) for s in bf16_seeds.split(",")]
    scores = {}
    for amp, seed in runs:
        start = time.time()
        checkpoint = main_job.train_or_reuse(work / f"run_{amp}_seed{seed}", data, truth, PRESETS["demo"]["image_size"],
                                             num_epochs, batch_size, PRESETS["demo"]["lr"], PRESETS["demo"]["ema_rate"],
                                             amp, "robust", None, seed)
        steps = num_epochs * -(-n_train // batch_size)
        score = denoising_error(checkpoint, fields, num_levels, seed=1234)
        seconds = round((time.time() - start) / steps, 3)
        scores[f"{amp}_seed{seed}"] = {"x0_mse": score, "seconds_per_step_incl_setup_and_scoring": seconds}
        print(f"{amp} seed {seed}: x0 MSE {scores[f'{amp}_seed{seed}']['x0_mse']:.6g}", flush=True)
    fp32 = np.array([v["x0_mse"] for k, v in scores.items() if k.startswith("none")])
    spread = float(fp32.std(ddof=1))
    gaps = {f"seed{seed}": abs(scores[f"bf16_seed{seed}"]["x0_mse"] - scores[f"none_seed{seed}"]["x0_mse"]) / spread
            for amp, seed in runs if amp == "bf16" and f"none_seed{seed}" in scores}
    result = {"scores": scores, "fp32_seed_std": spread, "bf16_minus_fp32_in_seed_std": gaps,
              "cpu_flags": cpu_flags(), "n_train": n_train, "batch_size": batch_size, "num_epochs": num_epochs}
    print("| run | x0 MSE (model units) | s / step (incl. set-up and scoring) |\n|---|---|---|")
    for name, value in scores.items():
        print(f"| {name} | {value['x0_mse']:.6g} | {value['seconds_per_step_incl_setup_and_scoring']} |")
    print(f"float32 seed-to-seed std {spread:.5f}; |bf16 - float32| at the same seed, in those stds: "
          + ", ".join(f"{k} {v:.2f}" for k, v in gaps.items()) + f"; CPU flags {cpu_flags()}")
    (work / "precision_agreement.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    run_cli(main)
