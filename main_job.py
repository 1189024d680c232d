"""The main job: train -> sample -> evaluate a diffusion model on built-in synthetic InSAR data, offline.

1. Generate synthetic interferograms with `datasets/insar_synthetic.py`, or reuse them when the folder
   already holds them: by default (`--data_preset mixture`) a radar-like mixture of power-law turbulence,
   white noise, orbital ramps and Mogi sources with heavy-tailed (Pareto) volumes in 30 % of the fields,
   normalised with the heavy-tail-safe `robust` option; `--data_preset gaussian` gives the v1 case
   (exponential-covariance screens + white noise, `range` normalisation).
2. Train the `demo` preset (`train.py`), or reuse / resume the run in `run_dir`. On the mixture the model is
   conditioned on each field's strength class (`datasets/strength_labels.py`: its std below the training
   fields' 90 % quantile, between the 90 % and 98 %, above), so that it learns the rare strong fields; each class
   reaches the network at the bulk's amplitude (`class_scale`) and the two strong classes are drawn 2x and 8x as
   often in training (`class_weights`).
3. Sample with the default few-step sampler (`sample_DPM.py`) into a new results folder; a conditional model's
   classes are drawn at their training proportions, so the samples follow the data's own mix.
4. Evaluate: semivariogram and power spectrum of samples vs real data vs the truth, the scorecard against
   truth (`utils/evaluation/scorecard.py`: every statistic with its noise band, printed as a table), a
   sample grid, a real-vs-generated figure, a memorisation check and `metrics.json`.

    python main_job.py                  # what `make demo` runs
    python main_job.py --num_epochs 4 --num_samples 256   # quicker
    python main_job.py --data_preset gaussian             # the idealised Gaussian case
    python main_job.py --class_cond    # conditioned on the deformation labels, sampled at the training proportions
    python main_job.py --no-stratify   # one unconditional model instead of the strength classes (mixture)
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import sample_DPM  # noqa: E402
import train  # noqa: E402
from datasets import insar_synthetic, strength_labels  # noqa: E402
from improved_diffusion.checkpoint import ema_checkpoint_name, parse_checkpoint_name  # noqa: E402
from improved_diffusion.file_io import atomic_write_text  # noqa: E402
from improved_diffusion.script_util import PRESETS, apply_preset  # noqa: E402
from utils.cli import run_cli  # noqa: E402
from utils.evaluation.demo_figures import analytic_comparison, real_vs_generated_figure  # noqa: E402
from utils.evaluation.report import evaluate_samples  # noqa: E402
from utils.radar.ground_truth import GROUND_TRUTH_NAME, read_ground_truth  # noqa: E402
from utils.sampling.run import proportional_labels  # noqa: E402

DATA_PRESETS = {  # generator options, normalisation and default folders of each synthetic data set
    "mixture": {"generator": dict(atmo_sigma_rad=0.0, noise_sigma_rad=0.2, turbulence_sigma_rad=1.0,
                                  ramp_sigma_rad=1.0, deformation_fraction=0.3, deformation_law="pareto",
                                  mogi_volume_m3=[1e4, 1e6], write_labels=True),
                "normalization": "robust", "data_dir": "data/insar_mixture", "run_dir": "models_data/demo_mixture",
                # strength classes of the stratified model (datasets/strength_labels.py): std quantiles 0.9, 0.98,
                # each class scaled to the bulk's amplitude and the strong classes drawn 2x and 8x as often in
                # training (bench/RESULTS.md, "Class scales and class weights": 13, 13, 14 of 17 within noise on seeds
                # 0-2; 9, 11, 11 with the classes alone on the same CPU; 5, 6, 4 without classes, AVX2 float32)
                "strength_quantiles": [0.9, 0.98], "strength_scaled": True, "strength_weights": [1.0, 2.0, 8.0]},
    "gaussian": {"generator": dict(deformation_fraction=0.0, noise_sigma_rad=0.2),
                 "normalization": "range", "data_dir": "data/insar_synthetic", "run_dir": "models_data/demo_insar",
                 "strength_quantiles": None, "strength_scaled": False, "strength_weights": None},  # one class
}


def prepare_data(data_dir: Path, image_size: int, n_train: int, seed: int, preset: str) -> dict:
    """Generate the synthetic InSAR folders unless `data_dir` already holds the same data; return the truth JSON."""
    wanted = dict(image_size=image_size, n_train=n_train, n_val=500, n_test=1000, seed=seed,
                  **DATA_PRESETS[preset]["generator"])
    truth_path = data_dir / GROUND_TRUTH_NAME
    if truth_path.is_file():
        truth = read_ground_truth(truth_path)
        if all(truth["params"].get(k) == v for k, v in wanted.items()):
            print(f"[data] reusing {data_dir}")
            return truth
        raise ValueError(f"data_dir={str(data_dir)!r} holds other synthetic data ({truth_path}); choose another "
                         "data_dir or delete that folder")
    print(f"[data] generating synthetic InSAR fields in {data_dir}")
    insar_synthetic.main(out_dir=str(data_dir), **wanted)
    return read_ground_truth(truth_path)


def latest_model_checkpoint(run_dir: Path) -> Path | None:
    """The newest end-of-epoch model checkpoint of a run folder (None when there is none)."""
    found = []
    for path in run_dir.glob("model_epoch=*_iter=*.pt"):
        name = parse_checkpoint_name(path)
        found.append((name.epoch, name.iteration, path))
    return max(found)[2] if found else None


def train_or_reuse(run_dir: Path, data_dir: Path, truth: dict, image_size: int, num_epochs: int, batch_size: int,
                   lr: float, ema_rate: str, amp: str, normalization: str, norm_range: list | None, seed: int,
                   recipe: dict | None = None) -> Path:
    """Train the demo preset into `run_dir` (resuming an unfinished run); return the final EMA checkpoint.

    `recipe`: further `train.main` keywords of the run (the same on every resume)."""
    loader = truth["loader_kwargs"]
    keys = list(loader["list_keys_hdf5_original"])
    if (data_dir / strength_labels.SUMMARY_NAME).is_file():  # the files also hold the strength label
        label = json.loads((data_dir / strength_labels.SUMMARY_NAME).read_text())["key_label"]
        keys += [label] if label not in keys else []
    latest = latest_model_checkpoint(run_dir) if run_dir.is_dir() else None
    done = parse_checkpoint_name(latest).epoch + 1 if latest else 0
    final_ema = run_dir / ema_checkpoint_name(ema_rate.split(",")[0], num_epochs - 1)
    if done >= num_epochs:
        metadata = json.loads((run_dir / "metadata.json").read_text())
        stored = {**metadata, **{k: v for k, v in metadata.get("hdf5_keys", {}).items() if v is not None}}
        differ = {k: (stored.get(k), v) for k, v in (recipe or {}).items() if stored.get(k) != v}
        if differ:
            raise ValueError(f"run_dir={str(run_dir)!r} holds a finished run trained otherwise (metadata vs wanted: "
                             f"{differ}); choose another run_dir or delete that folder")
        if final_ema.is_file():
            print(f"[train] reusing the finished run {run_dir} ({done} epochs)")
            return final_ema
        raise ValueError(f"run_dir={str(run_dir)!r} holds a run of {done} epochs without {final_ema.name}; pass "
                         f"--num_epochs {done} to reuse it, or choose another run_dir")
    print(f"[train] {'resuming ' + str(latest.name) if latest else 'training'} -> {run_dir} "
          f"(tensorboard --logdir {run_dir})")
    train.main(**apply_preset(
        "demo", data_train_dir=str(data_dir / "train"), data_val_dir=str(data_dir / "val"), image_size=image_size,
        num_epochs=num_epochs, lr=lr, batch_size=batch_size, ema_rate=ema_rate,
        resume_checkpoint=str(latest) if latest else None, url_folder_experiment=str(run_dir),
        list_keys_hdf5_original=keys, key_data=loader["key_data"],
        normalization=normalization, norm_range=norm_range,
        seed=seed, amp=amp, log_interval=50, grid_interval=max(1, round(num_epochs / 4)), keep_checkpoints=2,
        **(recipe or {})))
    return final_ema


def class_recipe(truth: dict) -> dict:
    """`train.main` keywords of a model conditioned on the generator's labels (1 = deformation, 0 = none)."""
    key = truth["loader_kwargs"].get("key_class")
    if key is None:
        raise ValueError("class_cond=True needs labelled data (the generator's write_labels=True: the "
                         f"'mixture' data preset); the data of {truth['params']['out_dir']!r} have none")
    return {"class_cond": True, "num_class": len(truth["class_names"]), "key_class": key}


def run_recipe(data_dir: Path, truth: dict, preset: dict, class_cond: bool, stratify: bool) -> dict | None:
    """The `train.main` keywords beyond the demo preset: the generator's labels (class_cond), else the strength
    classes where the data preset defines them and `stratify` is on, else none."""
    if class_cond:
        return class_recipe(truth)
    if stratify and preset["strength_quantiles"]:
        return strength_recipe(data_dir, preset["strength_quantiles"], preset["strength_scaled"],
                               preset["strength_weights"])
    return None


def strength_recipe(data_dir: Path, quantiles: list[float], scaled: bool = False,
                    class_weights: list[float] | None = None) -> dict:
    """Label the fields of `data_dir` with their strength class (std `quantiles` of the training fields; done once,
    redone when the quantiles change) and return the `train.main` keywords of a model conditioned on it;
    `scaled`: each class divided by its class_scale (robust model units; improved_diffusion/class_scale.py);
    `class_weights`: the training odds of each class."""
    summary_path = data_dir / strength_labels.SUMMARY_NAME
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    if summary is None or summary["quantiles"] != [float(q) for q in quantiles] or "class_scale" not in summary:
        summary = strength_labels.main(data_dir=str(data_dir), key_data="unwrap", quantiles=list(quantiles),
                                       normalization="robust", overwrite=True)
    return {"class_cond": True, "num_class": summary["num_class"], "key_class": summary["key_label"],
            **({"class_scale": summary["class_scale"]} if scaled else {}),
            **({"class_weights": list(class_weights)} if class_weights else {})}


def sample_labels(run_dir: Path, num_samples: int, seed: int) -> list[int] | None:
    """Class labels of the samples of a class-conditional run (training proportions, from the class_counts of
    its metadata.json); None for an unconditional run."""
    metadata = json.loads((run_dir / "metadata.json").read_text())
    return proportional_labels(metadata["class_counts"], num_samples, seed) if metadata["class_cond"] else None


def main(data_preset: str = "mixture",  # synthetic data: 'mixture' (radar-like, heavy tails) or 'gaussian' (v1 case)
         data_dir: str | None = None,  # synthetic data, generated when missing (default: data/insar_<preset>)
         run_dir: str | None = None,  # checkpoints, metadata.json and tensorboard logs (default: per preset)
         results_root: str = "results",  # each run writes a new results_root/demo_<time>/ folder
         image_size: int = PRESETS["demo"]["image_size"],  # side of the synthetic fields (and the model) in pixels
         n_train: int = 4000,  # synthetic training fields
         num_epochs: int = 7,  # training epochs of the demo model (quality plateaus from epoch 7: bench/RESULTS.md)
         batch_size: int = PRESETS["demo"]["batch_size"],  # training batch size
         lr: float = PRESETS["demo"]["lr"],  # AdamW learning rate
         ema_rate: str = PRESETS["demo"]["ema_rate"],  # EMA rate of the sampled weights (short run: a short memory)
         norm_range: list = (-3.0, 3.0),  # gaussian preset: phase range (rad) mapped to [-1, 1], ~ +-3 sigma
         amp: str = "auto",  # mixed precision of training: 'auto' (bf16 where the CPU/GPU has it), 'none' or 'bf16'
         num_samples: int = 512,  # generated fields
         sample_steps: int = 20,  # network evaluations per sample (DPM-Solver++(3M), logSNR grid)
         channels_last: bool = True,  # NHWC network while sampling (forward 1.3-1.45x faster on CPU, same samples)
         class_cond: bool = False,  # condition on the generator's labels; samples drawn at the training proportions
         stratify: bool = True,  # condition on strength classes (the preset's std quantiles; the mixture only)
         seed: int = 0) -> Path:  # seed of data, training and sampling
    """Run the whole pipeline on built-in data and print where the results are."""
    start = time.time()
    if data_preset not in DATA_PRESETS:
        raise ValueError(f"data_preset={data_preset!r}; expected one of {sorted(DATA_PRESETS)}")
    preset = DATA_PRESETS[data_preset]
    data, run = Path(data_dir or preset["data_dir"]), Path(run_dir or preset["run_dir"])
    truth = prepare_data(data, image_size, n_train, seed, data_preset)
    normalization = preset["normalization"]
    checkpoint = train_or_reuse(run, data, truth, image_size, num_epochs, batch_size, lr, ema_rate, amp,
                                normalization, list(norm_range) if normalization == "range" else None, seed,
                                recipe=run_recipe(data, truth, preset, class_cond, stratify))
    labels = sample_labels(run, num_samples, seed)

    results = Path(results_root) / time.strftime("demo_%Y%m%d-%H%M%S")
    while results.exists():  # never overwrite an earlier results folder
        results = results.with_name(results.name + "_")
    print(f"[sample] {num_samples} samples, DPM-Solver++(3M) with {sample_steps} network evaluations")
    npz = sample_DPM.sample_from_ODE(model_path=str(checkpoint), sample_steps=sample_steps, num_samples=num_samples,
                                     batch_size=128, url_save_path=str(results), seed=seed, device="cpu",
                                     channels_last=channels_last, sampled_class=labels)

    print("[evaluate] semivariogram, power spectrum, memorisation, scorecard against truth")
    report = evaluate_samples(real=str(data / "test"), samples=str(npz), results_dir=str(results),
                              metrics="semivariogram,spectrum,memorisation,scorecard", key_data="unwrap",
                              metadata_json=str(run / "metadata.json"), units="physical",
                              train_data=str(data / "train"), truth_json=str(data / GROUND_TRUTH_NAME),
                              num_samples=num_samples, seed=seed)
    metadata = json.loads((run / "metadata.json").read_text())
    report["analytic"] = analytic_comparison(npz, data / "test", truth, metadata["data_normalization"], results)
    real_vs_generated_figure(npz, data / "test", metadata["data_normalization"], results / "real_vs_generated.png")
    sampler = json.loads(npz.with_suffix(".json").read_text())["sampler"]  # as sample_DPM.py recorded it
    report["run"] = {"checkpoint": str(checkpoint), "num_epochs": num_epochs, "sampler": sampler,
                     "sample_steps": sample_steps, "seconds": round(time.time() - start, 1)}
    atomic_write_text(results / "metrics.json", json.dumps(report, indent=1))
    worst = report["analytic"]["max_abs_rel_error_samples"]
    real_worst = report["analytic"]["max_abs_rel_error_real"]
    print(f"[done] semivariogram of the samples off by up to {100 * worst:.1f} % from the truth at lags "
          f"{report['analytic']['lags_checked_px'][0]:g}-{report['analytic']['lags_checked_px'][-1]:g} px "
          f"(real test fields: up to {100 * real_worst:.1f} %)")
    card = report["scorecard"]["summary"]
    print(f"[done] scorecard: {card['within_noise_of_real']}/{card['checked_against_real']} statistics within noise "
          f"of the real data, {card['within_noise_of_truth']}/{card['checked_against_truth']} of the truth")
    print(f"[done] results in {results.resolve()}  ({time.time() - start:.0f} s)")
    return results


if __name__ == "__main__":
    run_cli(main)
