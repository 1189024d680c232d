"""Compare samplers on one checkpoint: wall time per sample (model loading excluded) and, when a scoring
function is given (FID with its interval, KID, precision / recall against a reference set, and the
noise floor of two real halves at matched counts), the scores; a JSON and score-vs-time plots.

    python -m utils.sampling.comparison --model_path run/ema_rate=0.9999_3.pt --step_counts 10,20,50

A configuration is a dict: {"sampler": "ddim" | "ancestral"} (+ "eta") or {"sampler": "dpm-solver", ...keywords
of `dpm_solver_sample`: algorithm_type, method_type, order, skip_type, ...} (the names of
`improved_diffusion.sampler_choice`; the older spelling "dpm" is read too); "label" names its curve.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from improved_diffusion.checkpoint import load_model
from improved_diffusion.class_scale import to_model_units
from improved_diffusion.denoiser import Denoiser
from improved_diffusion.dist_util import resolve_device
from improved_diffusion.file_io import atomic_write_text, check_free
from improved_diffusion.sampler_choice import Sampler, choose_sampler, seeded_batches
from utils.cli import run_cli
from utils.evaluation.array_io import load_image_set
from utils.evaluation.feature_scores import feature_scores, noise_floor
from utils.evaluation.features import load_extractor
from utils.sampling.run import choose_labels

DEFAULT_CONFIGS = [
    {"sampler": "ddim", "label": "DDIM"},
    {"sampler": "dpm-solver", "algorithm_type": "dpmsolver++", "method_type": "multistep", "order": 2,
     "label": "DPM++(2M)"},
    {"sampler": "dpm-solver", "algorithm_type": "dpmsolver++", "method_type": "multistep", "order": 3,
     "label": "DPM++(3M)"},
    {"sampler": "dpm-solver", "algorithm_type": "dpmsolver", "method_type": "singlestep", "order": 3,
     "label": "DPM(3S)"},
]


def _sampler(config: dict, steps: int) -> Sampler:
    options = {k: v for k, v in config.items() if k not in ("sampler", "label")}
    return choose_sampler(config["sampler"], steps, **options)


def label_of(config: dict) -> str:
    return config.get("label") or "_".join(str(v) for k, v in sorted(config.items()))


def compare_samplers(model_path: str, configs: list[dict], step_counts: list[int], num_samples: int = 64,
                     batch_size: int = 16, seed: int = 0, device="auto", sampled_class=None,
                     score_fn: Callable[[np.ndarray], dict] | None = None) -> list[dict]:
    """For every (config, step count): seconds per sample and, with `score_fn(images NHWC float32 in model
    units) -> {"FID": ..., "Precision": ..., ...}`, its scores. Every configuration sees the same x_T and labels."""
    for n in step_counts:
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"step_counts must hold positive ints, got {step_counts!r}")
    for config in configs:
        _sampler(config, 1)
    device = resolve_device(device)
    model, diffusion, args_dic = load_model(model_path, device=device)
    if args_dic.get("image_size_lr") is not None:
        raise ValueError(f"{model_path} is a super-resolution model; compare samplers on a low-res model")
    size, channels = args_dic["image_size"], args_dic["num_input_channels"]
    labels = None
    if args_dic.get("class_cond"):
        labels = choose_labels(sampled_class, num_samples, args_dic.get("num_class"), seed,
                               args_dic.get("class_names"), args_dic.get("class_counts"))

    def denoiser_for(lo: int, hi: int) -> Denoiser:
        return Denoiser(model, diffusion, y=None if labels is None else torch.as_tensor(labels[lo:hi], device=device))
    warm = min(batch_size, num_samples)
    with torch.inference_mode():  # warm-up network call at the batch shape, not timed
        denoiser_for(0, warm)(torch.zeros(warm, channels, size, size, device=device),
                              torch.tensor(0.0, dtype=torch.float64))
    results = []
    for config in configs:
        for steps in tqdm(step_counts, desc=label_of(config)):
            batches = list(seeded_batches(_sampler(config, steps), denoiser_for, (channels, size, size), num_samples,
                                          batch_size, seed, device))
            row = {"label": label_of(config), "config": config, "steps": steps,
                   "seconds_per_sample": sum(batch.seconds for batch in batches) / num_samples}
            if score_fn is not None:  # scored in model units (class_scale runs: multiplied back)
                images = [to_model_units(batch.x.float(), None if labels is None else labels[batch.lo:batch.hi],
                                         args_dic.get("class_scale")) for batch in batches]
                row.update(score_fn(np.concatenate([x.permute(0, 2, 3, 1).cpu().numpy() for x in images])))
            results.append(row)
    return results


def feature_score_fn(real: str, extractor_path: str, extractor: str = "domain_cnn", key_data: str | None = None,
                     metadata_json: str | None = None, nhood_size: int = 3, num_samples: int | None = None,
                     seed: int = 0, num_bootstrap: int = 50) -> Callable[[np.ndarray], dict]:
    """A `score_fn` scoring generated images against the `real` set (image folder, HDF5 folder or .npz)
    in the standardised features of a local extractor file (`utils.evaluation.feature_scores`).

    Row keys: FID (plug-in, all points), FID_corrected / FID_ci_low / FID_ci_high (bias-corrected
    value, basic bootstrap interval of `num_bootstrap` replicates), KID / KID_se, Precision, Recall;
    FID_matched / KID_matched (against real half A, n_matched samples) next to FID_matched_floor /
    KID_matched_floor (real half B against A at the same counts: the noise floor); extractor_sha256."""
    norm = json.loads(Path(metadata_json).read_text()).get("data_normalization") if metadata_json else None
    network = load_extractor(extractor, extractor_path)
    real_images = load_image_set(real, num_samples=num_samples, seed=seed, key_data=key_data,
                                 data_normalization=norm).images
    real_features = network.extract(real_images, progress=False)
    options = dict(nhood_size=nhood_size, num_bootstrap=num_bootstrap, seed=seed)

    def score(images: np.ndarray) -> dict:
        features = network.extract(images, progress=False)
        full, floor = feature_scores(real_features, features, **options), noise_floor(real_features, features,
                                                                                      **options)
        matched, real_half = floor["real_vs_generated"], floor["real_vs_real"]
        return {"FID": full["fid"]["fid"], "FID_corrected": full["fid"]["fid_corrected"],
                "FID_ci_low": full["fid"]["ci_low"], "FID_ci_high": full["fid"]["ci_high"],
                "KID": full["kid"]["kid"], "KID_se": full["kid"]["se"],
                "Precision": full["precision_recall"]["precision"], "Recall": full["precision_recall"]["recall"],
                "FID_matched": matched["fid"]["fid"], "FID_matched_floor": real_half["fid"]["fid"],
                "KID_matched": matched["kid"]["kid"], "KID_matched_floor": real_half["kid"]["kid"],
                "n_matched": floor["n_compared"], "extractor_sha256": network.digest}
    return score


NOT_PLOTTED = ("_floor", "_se", "_ci_low", "_ci_high", "n_matched", "extractor_sha256")
AXIS_NAMES = {"FID": "FID (standardised domain features; lower is better)",
              "FID_corrected": "bias-corrected FID (lower is better)", "KID": "KID (lower is better)",
              "Precision": "precision (fraction of samples on the real manifold)",
              "Recall": "recall (fraction of real fields on the sample manifold)",
              "steps": "network evaluations per sample"}


def plot_comparison(results: list[dict], folder: Path, title: str = "") -> list[Path]:
    """One PNG per score (or seconds vs steps when there are no scores): a curve per configuration,
    points annotated with their step counts; a score's interval (`<score>_ci_low/high`) as error
    bars and its noise floor (`<score>_floor`) as a dashed line. `title`: the model and sample count."""
    from utils.evaluation.plots import plt, save_figure

    keys = {k for row in results for k in row} - {"label", "config", "steps", "seconds_per_sample"}
    scores = sorted(k for k in keys if not k.endswith(NOT_PLOTTED))
    paths = []
    for score in scores or ["steps"]:
        fig, ax = plt.subplots(figsize=(6, 4))
        for label in dict.fromkeys(row["label"] for row in results):
            rows = [row for row in results if row["label"] == label]
            xs, ys = [r["seconds_per_sample"] for r in rows], [r[score] for r in rows]
            if f"{score}_ci_low" in rows[0] and rows[0][f"{score}_ci_low"] is not None:
                errors = [[y - r[f"{score}_ci_low"] for r, y in zip(rows, ys)],
                          [r[f"{score}_ci_high"] - y for r, y in zip(rows, ys)]]
                ax.errorbar(xs, ys, yerr=np.clip(errors, 0, None), marker="o", label=label, capsize=2)
            else:
                ax.plot(xs, ys, marker="o", label=label)
            for r, x_, y_ in zip(rows, xs, ys):
                ax.annotate(str(r["steps"]), (x_, y_), textcoords="offset points", xytext=(3, 3), fontsize=7)
        if f"{score}_floor" in results[0]:
            ax.axhline(results[0][f"{score}_floor"], color="gray", linestyle="--", label="noise floor (real halves)")
        ax.set_xlabel("seconds per sample (one timed run, wall clock)")
        ax.set_ylabel(AXIS_NAMES.get(score, score))
        name = AXIS_NAMES.get(score, score).split(" (")[0]
        ax.set_title(f"{name} vs sampling time" + (f"\n{title}" if title else ""), fontsize=9)
        ax.legend()
        fig.tight_layout()
        paths.append(folder / f"comparison_{score}_vs_time.png")
        save_figure(fig, paths[-1])
    return paths


def score_text(row: dict) -> str:
    """One line of a scored row: FID with interval, KID +- SE, precision/recall, matched values vs noise floor."""
    if "FID" not in row:
        return ""
    interval = "" if row["FID_ci_low"] is None else f" [{row['FID_ci_low']:.4g}, {row['FID_ci_high']:.4g}]"
    return (f"FID {row['FID']:.4g}{interval}  KID {row['KID']:.3g} "
            f"+- {row['KID_se']:.2g}  P {row['Precision']:.3f} R {row['Recall']:.3f} | n={row['n_matched']}: "
            f"FID {row['FID_matched']:.4g} (floor {row['FID_matched_floor']:.4g})  KID {row['KID_matched']:.3g} "
            f"(floor {row['KID_matched_floor']:.3g})")


def main(
    model_path: str | None = None,  # checkpoint (.pt) with its metadata.json beside it
    step_counts: list = (10, 20, 50),  # network evaluations to compare
    configs_json: str | None = None,  # JSON list of configuration dicts (default: DDIM, DPM++ 2M/3M, DPM 3S)
    num_samples: int = 64,  # samples per (configuration, steps)
    batch_size: int = 16,  # samples per network call
    seed: int = 0,  # seed of x_T and labels (shared by all configurations)
    device: str = "auto",  # "auto", "cpu", "cuda", ...
    url_save_folder: str = "results/sampler_comparison/",  # where the JSON and plots go
    real: str | None = None,  # reference data for FID / precision / recall (None: time only)
    extractor_path: str | None = None,  # local feature-extractor file (example_fine_tuning.py), needed with real
    extractor: str = "domain_cnn",  # feature network: domain_cnn, inception or vgg16
    key_data: str | None = None,  # HDF5 dataset name of the reference data
    metadata_json: str | None = None,  # training metadata.json: maps real HDF5 data to model units
    nhood_size: int = 3,  # k of the precision / recall k-NN manifolds
    num_bootstrap: int = 50,  # bootstrap replicates of the FID interval (0: none)
    overwrite: bool = False,  # replace an existing comparison.json
) -> list[dict]:
    """Time the samplers and, given `real` and `extractor_path`, score them (see `feature_score_fn`)."""
    configs = json.loads(Path(configs_json).read_text()) if configs_json else DEFAULT_CONFIGS
    folder = Path(url_save_folder)
    check_free([folder / "comparison.json"], overwrite)
    if (real is None) != (extractor_path is None):
        raise ValueError(f"real={real!r}, extractor_path={extractor_path!r}: give both to score the samplers "
                         "(or neither to time them only)")
    score_fn = None if real is None else feature_score_fn(real, extractor_path, extractor, key_data, metadata_json,
                                                          nhood_size, seed=seed, num_bootstrap=num_bootstrap)
    results = compare_samplers(model_path, configs, [int(n) for n in step_counts], num_samples, batch_size, seed,
                               device, score_fn=score_fn)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "comparison.json", json.dumps(results, indent=1))
    plot_comparison(results, folder, title=f"{Path(model_path).parent.name}/{Path(model_path).name}, "
                                         f"{num_samples} samples per point, batch {batch_size}")
    for row in results:
        print(f"{row['label']:12s} steps {row['steps']:4d}  {row['seconds_per_sample'] * 1000:.1f} ms/sample  "
              f"{score_text(row)}")
    return results


if __name__ == "__main__":
    run_cli(main)
