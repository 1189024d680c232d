"""Do the feature metrics tell a poor model from a good one? Real data vs demo models trained 1 and 7 epochs.

On the built-in synthetic InSAR data (`main_job.py`'s data of `data_preset`, generated when missing):
train (or reuse) the demo model for each epoch count exactly as the main job does (the largest count is
the main job's own run), sample `num_samples` fields with the main job's sampler (DPM-Solver++(3M),
`sample_steps` evaluations), train (or reuse) the contrastive domain extractor on the training fields
(`example_fine_tuning.py --unlabelled_data`, its defaults), then score against the test fields:
held-out real fields (the validation set, as many as samples), fields of the synthetic law with one
parameter changed by a known factor, each model's samples and the other half of the test set (the noise
floor), each against the same half of the test set at the same counts. Prints one table: standardised
FID with its basic bootstrap interval, KID with its 95 % interval (+- 1.96 SE), precision / recall
(k = 3), and whether neighbouring model rows' intervals overlap. The extractor's sha256 goes into the
JSON with the figures.

    python bench/feature_metrics.py                         # mixture data, 1 vs 7 epochs (the 7-epoch run
                                                            # is main_job's models_data/demo_mixture)
    python bench/feature_metrics.py --data_preset gaussian  # the Gaussian case (models_data/demo_insar)
    python bench/feature_metrics.py --data_dir data/insar_mixture_1000 --n_train 1000 --epochs 1,3 \
        --sample_steps 10 --out_dir results/feature_metrics_small \
        --run_dir results/feature_metrics_small/run_epochs_3                # reduced scale
    python bench/feature_metrics.py --no-models             # extractor and perturbed laws only
"""
from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import example_fine_tuning  # noqa: E402
import main_job  # noqa: E402
import sample_DPM  # noqa: E402
from datasets import insar_synthetic  # noqa: E402
from improved_diffusion.hdf5_datasets import hdf5_normalization, inspect_hdf5_folder  # noqa: E402
from utils.cli import run_cli  # noqa: E402
from utils.evaluation.array_io import load_image_set  # noqa: E402
from utils.evaluation.feature_scores import noise_floor  # noqa: E402
from utils.evaluation.features import load_extractor  # noqa: E402
from utils.evaluation.fine_tuning import BEST_NAME  # noqa: E402
from utils.evaluation.report import normalization_from  # noqa: E402

MAIN_JOB = {k: p.default for k, p in inspect.signature(main_job.main).parameters.items()}
GENERATOR_OPTIONS = set(inspect.signature(insar_synthetic.main).parameters) - {"out_dir", "overwrite"}
# known departures from each synthetic law: factors on its ground-truth parameters (no model needed)
PERTURBATIONS = {
    "mixture": {"same law": {}, "turbulence sigma x 1.1": {"turbulence_sigma_rad": 1.1},
                "turbulence sigma x 1.3": {"turbulence_sigma_rad": 1.3}, "white noise x 1.5": {"noise_sigma_rad": 1.5},
                "ramp sigma x 1.5": {"ramp_sigma_rad": 1.5}, "deformation fraction x 2": {"deformation_fraction": 2.0}},
    "gaussian": {"same law": {}, "correlation length x 7/6": {"atmo_length_px": 7 / 6},
                 "correlation length x 1.5": {"atmo_length_px": 1.5}, "white noise x 1.5": {"noise_sigma_rad": 1.5},
                 "atmosphere sigma x 1.1": {"atmo_sigma_rad": 1.1}},
}


def perturbed_law(folder: Path, params: dict, factors: dict, count: int, seed: int) -> Path:
    """Write `count` test fields of the synthetic law `params` (ground_truth.json's) with the parameters named
    in `factors` multiplied by them, under `folder` (replaced); return the folder of the fields."""
    options = {k: v for k, v in params.items() if k in GENERATOR_OPTIONS}
    options.update({k: options[k] * f for k, f in factors.items()}, n_train=0, n_val=0, n_test=count, seed=seed,
                   truth_monte_carlo_fields=0)
    insar_synthetic.main(out_dir=str(folder), overwrite=True, **options)
    return folder / "test"


def training_normalization(data: Path, truth: dict, normalization: str, norm_range: list | None) -> dict:
    """The `data_normalization` training computes on `data`/train (what the demo runs store)."""
    loader = truth["loader_kwargs"]
    inv = inspect_hdf5_folder(data / "train", loader["image_size"], loader["list_keys_hdf5_original"],
                              loader["key_data"])
    return hdf5_normalization(inv, loader["key_data"], normalization, norm_range, "error", False)


def train_domain_extractor(folder: Path, data_dir: Path, metadata_json: Path, seed: int) -> Path:
    """The contrastive DomainCNN of `example_fine_tuning.py` (its defaults) on `data_dir`/train, validated
    on `data_dir`/val, in model units of `metadata_json`; reused when `folder` already holds one."""
    if not (folder / BEST_NAME).is_file():
        example_fine_tuning.main(out_folder=str(folder), unlabelled_data=str(data_dir / "train"),
                                 data_val_dir=str(data_dir / "val"), key_data="unwrap",
                                 metadata_json=str(metadata_json), seed=seed)
    return folder / BEST_NAME


def _row(name: str, scores: dict) -> dict:
    fid, kid, pr = scores["fid"], scores["kid"], scores["precision_recall"]
    return {"name": name, "n": fid["n_generated"], "fid": fid["fid"], "fid_corrected": fid["fid_corrected"],
            "fid_ci": [fid["ci_low"], fid["ci_high"]], "kid": kid["kid"], "kid_ci": [kid["ci_low"], kid["ci_high"]],
            "precision": pr["precision"], "recall": pr["recall"]}


def _overlap(a: list, b: list) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def main(data_preset: str = "mixture",  # synthetic data of main_job: 'mixture' (radar-like) or 'gaussian'
         data_dir: str | None = None,  # synthetic data, generated when missing (default: main_job's of the preset)
         run_dir: str | None = None,  # run of the largest epoch count (default: main_job's demo run of the preset)
         out_dir: str | None = None,  # other runs, samples, extractor, laws, JSON (results/feature_metrics_<preset>)
         n_train: int = MAIN_JOB["n_train"],  # training fields of the data (another count: use another data_dir)
         epochs: str = "1,7",  # training epochs of the compared models (comma list)
         num_samples: int = 512,  # samples per model (and held-out real fields)
         sample_steps: int = 20,  # DPM-Solver++(3M) network evaluations per sample
         num_bootstrap: int = 100,  # bootstrap replicates of the FID interval
         perturbations: bool = True,  # also score fields of the synthetic law with known parameter changes
         models: bool = True,  # train / sample the demo models (False: extractor and perturbations only)
         seed: int = 0) -> dict:  # seed of data, training, sampling and scores
    """Print the table of feature metrics per model and one JSON line; write feature_metrics.json."""
    if data_preset not in main_job.DATA_PRESETS:
        raise ValueError(f"data_preset={data_preset!r}; expected one of {sorted(main_job.DATA_PRESETS)}")
    preset = main_job.DATA_PRESETS[data_preset]
    data = Path(data_dir or preset["data_dir"])
    out = Path(out_dir or f"results/feature_metrics_{data_preset}")
    counts = sorted(int(e) for e in epochs.split(",")) if models else []
    out.mkdir(parents=True, exist_ok=True)
    image_size = MAIN_JOB["image_size"]
    truth = main_job.prepare_data(data, image_size, n_train, seed, data_preset)
    norm_range = list(MAIN_JOB["norm_range"]) if preset["normalization"] == "range" else None
    checkpoints = {}
    for e in counts:
        run = Path(run_dir or preset["run_dir"]) if e == counts[-1] else out / f"run_epochs_{e}"
        checkpoints[e] = main_job.train_or_reuse(run, data, truth, image_size, e, MAIN_JOB["batch_size"],
                                                 MAIN_JOB["lr"], MAIN_JOB["ema_rate"], MAIN_JOB["amp"],
                                                 preset["normalization"], norm_range, seed)
    # the demo runs' map of radians to model units; the extractor and every row use it
    norm = training_normalization(data, truth, preset["normalization"], norm_range)
    for checkpoint in checkpoints.values():
        stored = normalization_from(str(checkpoint.parent / "metadata.json"))
        if {k: v for k, v in stored.items() if k != "report"} != {k: v for k, v in norm.items() if k != "report"}:
            raise ValueError(f"{checkpoint.parent / 'metadata.json'}: data_normalization {stored} differs from "
                             f"{norm} (what training computes on {data / 'train'})")
    (out / "normalization.json").write_text(json.dumps({"data_normalization": norm}))
    extractor = load_extractor("domain_cnn", train_domain_extractor(out / "extractor", data,
                                                                    out / "normalization.json", seed))

    def features(source: str, n: int | None = None) -> np.ndarray:
        images = load_image_set(source, key_data="unwrap", data_normalization=norm, num_samples=n, seed=seed).images
        return extractor.extract(images, batch_size=256, progress=False)
    real = features(str(data / "test"))
    options = dict(num_bootstrap=num_bootstrap, seed=seed)
    # every row against the same half A of the test set, at the same counts as the noise floor (half B vs A)
    floor = noise_floor(real, features(str(data / "val"), num_samples), **options)
    rows = [_row("real (held-out val fields)", floor["real_vs_generated"])]
    for i, (name, factors) in enumerate(PERTURBATIONS[data_preset].items() if perturbations else ()):
        law = perturbed_law(out / "laws" / f"law_{i}", truth["params"], factors, num_samples, seed + 1000 + i)
        rows.append(_row(f"synthetic, {name}", noise_floor(real, features(str(law)), **options)["real_vs_generated"]))
    for e in reversed(counts):
        npz = sample_DPM.sample_from_ODE(model_path=str(checkpoints[e]), sample_steps=sample_steps,
                                         num_samples=num_samples, batch_size=128, seed=seed, device="cpu",
                                         url_save_path=str(out / f"samples_{e}"), plot=False, progress=False,
                                         overwrite=True)
        rows.append(_row(f"demo model, {e} epoch(s)", noise_floor(real, features(str(npz)), **options)[
            "real_vs_generated"]))
    rows.append(_row("noise floor: test half B", floor["real_vs_real"]))
    print(f"{'':44s} {'n':>4s} {'FID (std.)':>10s} {'FID 95% interval':>20s} {'KID':>9s} {'KID 95% interval':>22s} "
          f"{'P':>6s} {'R':>6s}")
    demo = [r for r in rows if r["name"].startswith("demo")]
    for r, above in zip(demo, rows[:1] + demo[:-1]):
        r["intervals_overlap"] = {"with": above["name"], "fid": _overlap(r["fid_ci"], above["fid_ci"]),
                                  "kid": _overlap(r["kid_ci"], above["kid_ci"])}
    for r in rows:
        apart = "" if "intervals_overlap" not in r else (
            f"  overlap with '{r['intervals_overlap']['with']}': FID {r['intervals_overlap']['fid']}, "
            f"KID {r['intervals_overlap']['kid']}")
        print(f"{r['name']:44s} {r['n']:4d} {r['fid']:10.4g} [{r['fid_ci'][0]:8.4g}, {r['fid_ci'][1]:8.4g}] "
              f"{r['kid']:9.3g} [{r['kid_ci'][0]:9.3g}, {r['kid_ci'][1]:9.3g}] {r['precision']:6.3f} "
              f"{r['recall']:6.3f}{apart}")
    result = {"bench": "feature_metrics", "data_preset": data_preset, "data_dir": str(data), "n_train": n_train,
              "epochs": counts, "n_reference": floor["n_reference"],
              "checkpoints": {e: str(p) for e, p in checkpoints.items()},
              "num_samples": num_samples, "sample_steps": sample_steps, "n_test": len(real),
              "extractor": extractor.description(), "rows": rows}
    (out / "feature_metrics.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    run_cli(main)
