"""Fidelity against training budget: the demo recipe (or a variant) trained on the main job's radar-like mixture
for a ladder of optimizer-step budgets, one resumable run per recipe evaluated at each budget.

At each budget: 512 samples with the main job's sampler (DPM-Solver++(3M), 20 evaluations), the scorecard
against the real test fields and the generator's truth (`utils/evaluation/scorecard.py`), and the figures that
issue #24 follows: statistics within noise, detected-deformation fraction, excess kurtosis, per-field std and
max |value| quantiles, spectral slope, error of the mean semivariogram vs the truth and of the median-of-fields
semivariogram vs the real data, and the CPU-minutes of this process so far. Every row records the CPU flags.
Rows are appended to ``<work_dir>/fidelity_<recipe>_seed<seed>.json`` (a finished budget is skipped on rerun) and
the table is printed in markdown.

    nice -n 10 python bench/fidelity_curve.py --recipe baseline --budgets 250,500,875,1500 --work_dir bench_out
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import main_job  # noqa: E402
import sample_DPM  # noqa: E402
from improved_diffusion.script_util import PRESETS  # noqa: E402
from utils.cli import run_cli  # noqa: E402
from utils.evaluation.report import evaluate_samples  # noqa: E402

STRENGTH_QUANTILES = main_job.DATA_PRESETS["mixture"]["strength_quantiles"]
RECIPES = {  # the train.main keywords (on top of the demo preset) of each recipe, from the data's ground_truth.json
    # and folder (where a recipe labels the data, the other recipes still read it)
    "baseline": lambda truth, data: {},  # the demo preset, one unconditional model (v-prediction since 2026-12-05)
    # what `make demo` trained on 2026-12-05: conditioned on the strength classes, sampled at their training
    # proportions (main_job.strength_recipe, datasets/strength_labels.py)
    "strength": lambda truth, data: main_job.strength_recipe(data, STRENGTH_QUANTILES),
    # finer classes: a split at the median for the bulk, or one more at the top for the strongest 0.5 %
    "strength_median": lambda truth, data: main_job.strength_recipe(data, [0.5, *STRENGTH_QUANTILES]),
    "strength_top": lambda truth, data: main_job.strength_recipe(data, [*STRENGTH_QUANTILES, 0.995]),
    # each class divided by its median field std over the weakest class's (improved_diffusion/class_scale.py)
    "strength_scaled": lambda truth, data: main_job.strength_recipe(data, STRENGTH_QUANTILES, scaled=True),
    # and the strong classes drawn more often in training (odds 1 : 2 : 8; sampling keeps the true proportions):
    # what `make demo` trains since 2026-12-06
    "strength_scaled_weighted": lambda truth, data: main_job.strength_recipe(
        data, STRENGTH_QUANTILES, scaled=True, class_weights=main_job.DATA_PRESETS["mixture"]["strength_weights"]),
    "x_start": lambda truth, data: {"output_type": "x_start"},  # the demo's target before 2026-12-05
    "class_cond": lambda truth, data: main_job.class_recipe(truth),  # the labels, sampled at training proportions
    "min_snr": lambda truth, data: {"min_snr_gamma": 5.0},  # Min-SNR-5 weights of the loss (Hang et al. 2023)
    # v-prediction (Salimans & Ho 2022): x0 = alpha x_t - sigma v keeps a skip path from x_t at low noise
    "velocity": lambda truth, data: {"output_type": "velocity"},
    "velocity_min_snr": lambda truth, data: {"output_type": "velocity", "min_snr_gamma": 5.0},
    "class_cond_velocity": lambda truth, data: {**main_job.class_recipe(truth), "output_type": "velocity"},
    "velocity_lr1e-3": lambda truth, data: {"output_type": "velocity", "lr": 1e-3},  # twice the demo's learning rate
    "augment": lambda truth, data: {"symmetry_augment": True},  # the generator's fields are isotropic
    "class_cond_augment": lambda truth, data: {**main_job.class_recipe(truth), "symmetry_augment": True},
    "student_t": lambda truth, data: {"student_t_nu": 5.0},  # t-EDM's Student-t forward process (Pandey et al. 2025)
}
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_flags() -> list[str]:
    """The flags of CPU_FLAGS that /proc/cpuinfo lists (empty where it is unreadable)."""
    try:
        words = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return []
    return [flag for flag in CPU_FLAGS if flag in words]


def summarise(card: dict) -> dict:
    """The issue's figures from a scorecard dict (utils/evaluation/scorecard.py)."""
    rows = {row["statistic"]: row for row in card["rows"]}
    mean, median = rows["semivariogram mean"], rows["semivariogram median of fields"]
    rel_truth = np.asarray(mean["samples"]) / np.asarray(mean["truth"]) - 1
    rel_real = np.asarray(median["samples"]) / np.asarray(median["real"]) - 1
    pick = lambda prefix: {k.removeprefix(prefix): [rows[k]["samples"], rows[k]["real"]]  # noqa: E731
                           for k in rows if k.startswith(prefix)}
    return {"within_noise": card["summary"]["within_noise_of_real"], "checked": card["summary"]["checked_against_real"],
            "detected_fraction": [rows["detected fraction"]["samples"], rows["detected fraction"]["real"]],
            "kurtosis": [rows["value kurtosis (excess)"]["samples"], rows["value kurtosis (excess)"]["real"]],
            "field_std_q": pick("field std q"), "field_max_q": pick("field max|v| q"),
            "psd_slope": [rows["PSD log-log slope"]["samples"], rows["PSD log-log slope"]["real"]],
            "semivariogram_mean_rel_err_vs_truth": {"mean_over_lags": float(rel_truth.mean()),
                                                    "lag1": float(rel_truth[0])},
            "semivariogram_median_rel_err_vs_real": {"mean_over_lags": float(rel_real.mean()),
                                                     "lag1": float(rel_real[0])},
            "not_within_noise": [row["statistic"] for row in card["rows"] if not row["within_noise"]]
            + ([] if card["w1"]["within_noise"] else ["W1 of values"])}


def markdown(rows: list[dict]) -> str:
    """The rows as a markdown table."""
    head = ("| recipe | seed | steps | within noise | detected (real) | kurtosis (real) | field std q99 (real) | "
            "field max q99 (real) | PSD slope (real) | mean semivar. err vs truth | median semivar. err vs real | "
            "CPU-min |\n" + "|---" * 12 + "|")
    lines = [head]
    for r in rows:
        s = r["summary"]
        pair = lambda v: f"{v[0]:.3g} ({v[1]:.3g})"  # noqa: E731
        lines.append(f"| {r['recipe']} | {r['seed']} | {r['steps']} | {s['within_noise']}/{s['checked']} | "
                     f"{pair(s['detected_fraction'])} | {pair(s['kurtosis'])} | {pair(s['field_std_q']['99%'])} | "
                     f"{pair(s['field_max_q']['99%'])} | {pair(s['psd_slope'])} | "
                     f"{100 * s['semivariogram_mean_rel_err_vs_truth']['mean_over_lags']:+.0f} % | "
                     f"{100 * s['semivariogram_median_rel_err_vs_real']['mean_over_lags']:+.0f} % | "
                     f"{r['cpu_minutes']:.1f} |")
    return "\n".join(lines)


def main(work_dir: str = "bench_out/fidelity",  # data, runs, samples and the result JSON (reused across calls)
         recipe: str = "baseline",  # training recipe: a key of RECIPES
         budgets: str = "250,500,875,1500",  # optimizer-step budgets, multiples of the steps per epoch (125)
         n_train: int = 4000,  # synthetic training fields of the mixture
         num_samples: int = 512,  # generated fields per budget (and real test fields compared)
         sample_steps: int = 20,  # DPM-Solver++(3M) network evaluations
         amp: str = "auto",  # mixed precision of training: 'auto', 'none' or 'bf16'
         ema_rate: str = PRESETS["demo"]["ema_rate"],  # EMA rate(s) kept in training; the first one is sampled
         seed: int = 0) -> list[dict]:  # seed of training and sampling (the data always use seed 0)
    """Train `recipe` up the budget ladder, evaluate at each budget, print and write the table."""
    if recipe not in RECIPES:
        raise ValueError(f"recipe={recipe!r}; expected one of {sorted(RECIPES)}")
    batch_size = PRESETS["demo"]["batch_size"]
    per_epoch = -(-n_train // batch_size)
    steps = sorted({int(b) for b in budgets.split(",") if b.strip()})
    if not steps or any(s <= 0 or s % per_epoch for s in steps):
        raise ValueError(f"budgets={budgets!r}; expected positive multiples of {per_epoch} steps per epoch")
    work = Path(work_dir)
    data, run = work / "data", work / f"run_{recipe}_seed{seed}"
    out = work / f"fidelity_{recipe}_seed{seed}.json"
    rows = json.loads(out.read_text()) if out.is_file() else []
    truth = main_job.prepare_data(data, PRESETS["demo"]["image_size"], n_train, 0, "mixture")
    options = RECIPES[recipe](truth, data)
    for budget in steps:
        if any(r["steps"] == budget for r in rows):
            continue
        start_cpu, start = time.process_time(), time.time()
        checkpoint = main_job.train_or_reuse(run, data, truth, PRESETS["demo"]["image_size"], budget // per_epoch,
                                             batch_size, options.get("lr", PRESETS["demo"]["lr"]),
                                             ema_rate, amp, "robust", None, seed,
                                             recipe={k: v for k, v in options.items() if k != "lr"})
        train_cpu = time.process_time() - start_cpu
        results = work / f"results_{recipe}_seed{seed}" / f"steps_{budget}"
        npz = sample_DPM.sample_from_ODE(model_path=str(checkpoint), sample_steps=sample_steps,
                                         num_samples=num_samples, batch_size=128, url_save_path=str(results),
                                         seed=seed, device="cpu", channels_last=True, plot=False,
                                         sampled_class=main_job.sample_labels(run, num_samples, seed))
        report = evaluate_samples(real=str(data / "test"), samples=str(npz), results_dir=str(results),
                                  metrics="scorecard", key_data="unwrap", metadata_json=str(run / "metadata.json"),
                                  units="physical", truth_json=str(data / "ground_truth.json"),
                                  num_samples=num_samples, seed=seed)
        previous = rows[-1]["cpu_minutes"] if rows else 0.0
        rows.append({"recipe": recipe, "train_options": options, "seed": seed, "steps": budget,
                     "summary": summarise(report["scorecard"]), "cpu_flags": cpu_flags(),
                     "train_cpu_minutes_this_budget": round(train_cpu / 60, 2),
                     "cpu_minutes": round(previous + (time.process_time() - start_cpu) / 60, 2),
                     "wall_minutes_this_budget": round((time.time() - start) / 60, 2)})
        out.write_text(json.dumps(rows, indent=1))
        print(markdown(rows), flush=True)
    (work / f"fidelity_{recipe}_seed{seed}.md").write_text(markdown(rows) + f"\n\nCPU flags: {cpu_flags()}\n")
    print(markdown(rows))
    return rows


if __name__ == "__main__":
    run_cli(main)
