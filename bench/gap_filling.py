"""Gap filling with a trained model on held-out Gaussian fields, scored against the exact answer (kriging).

The data are the `gaussian` synthetic set (`python main_job.py --data_preset gaussian` writes the data and
trains the demo model); the model is a checkpoint of such a run (metadata.json beside it). Each of
`num_fields` test fields gets a mask of about `mask_fraction` of its pixels (one disc + scattered pixels);
the conditional law of the missing pixels is the simple-kriging Gaussian of the generator's covariance
(`utils.radar.insar_truth`). Printed, and as one JSON line:
- coverage: fraction of missing pixels whose true value lies in the samples' central 90 % interval (goal 0.85-0.95),
  beside what exact samples score with the same ensemble size (`exact_coverage`: 0.845 for 32 samples);
- rms_ratio: rms error of the ensemble mean over rms error of the kriging mean, both against the truth
  (goal <= 1.2; the kriging mean is the best possible predictor);
- seconds_per_field.

    python bench/gap_filling.py --model_path models_data/demo_insar/ema_0.99_6.pt --data_dir data/insar_synthetic

The 64 fields take hours on one CPU core; run them in chunks (one per core, or one per sitting) and pool them:

    python bench/gap_filling.py ... --num_fields 32 --first_field 0 --save_path chunk0.npz
    python bench/gap_filling.py ... --num_fields 32 --first_field 32 --save_path chunk1.npz
    python bench/gap_filling.py --pool chunk0.npz,chunk1.npz
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from improved_diffusion.checkpoint import load_model  # noqa: E402
from improved_diffusion.hdf5_datasets import list_hdf5_files  # noqa: E402
from utils.cli import run_cli  # noqa: E402
from utils.radar.insar_truth import field_covariance, simple_kriging  # noqa: E402
from utils.sampling.gap_filling import fill_gaps, read_observed  # noqa: E402


def gap_mask(rng: np.random.Generator, size: int, fraction: float) -> np.ndarray:
    """Bool (size, size), True = missing: a disc holding half of `fraction` of the pixels at a random centre,
    plus scattered pixels until about `fraction` is missing."""
    rows, cols = np.mgrid[:size, :size]
    radius = np.sqrt(fraction / 2 * size * size / np.pi)
    centre = rng.uniform(radius, size - radius, 2)
    mask = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius ** 2
    extra = (fraction * size * size - mask.sum()) / max(1, (~mask).sum())
    return mask | (rng.random((size, size)) < max(0.0, extra))


def isolated(masks: np.ndarray) -> np.ndarray:
    """Bool like masks (N, H, W): missing pixels whose four neighbours inside the field are all observed."""
    padded = np.pad(masks, ((0, 0), (1, 1), (1, 1)))
    neighbours = padded[:, :-2, 1:-1] | padded[:, 2:, 1:-1] | padded[:, 1:-1, :-2] | padded[:, 1:-1, 2:]
    return masks & ~neighbours


def exact_coverage(num_samples: int, level: float = 0.9) -> float:
    """Expected coverage of the central `level` interval of `num_samples` exact conditional samples (np.quantile's
    linear interpolation): the truth is exchangeable with the samples, so P(truth < the p-quantile) is
    ((S - 1) p + 1) / (S + 1) (the mean of a uniform order statistic), and the coverage is level (S - 1) / (S + 1):
    0.845 for 32 samples, 0.872 for 64; the figure a perfect model scores with that ensemble."""
    return level * (num_samples - 1) / (num_samples + 1)


def score(truth: np.ndarray, masks: np.ndarray, samples: np.ndarray, krig_means: list[np.ndarray],
          krig_vars: list[np.ndarray]) -> dict:
    """Coverage of the central 90 % interval, rms ratio to kriging and spread ratio (ensemble variance over
    kriging variance, means over pixels) on missing pixels, all fields pooled; the spread ratio also on the
    `isolated` missing pixels, whose conditional variance is mostly the white noise.
    truth (N, H, W), masks (N, H, W) bool, samples (N, S, H, W), krig_means / krig_vars: per field (n_missing,)."""
    lo, hi = np.quantile(samples, [0.05, 0.95], axis=1)
    inside = ((truth >= lo) & (truth <= hi))[masks]
    err_model = (samples.mean(1) - truth)[masks]
    err_krig = np.concatenate([k - t[m] for k, t, m in zip(krig_means, truth, masks)])
    krig_var = np.zeros(truth.shape)
    for field, m, v in zip(krig_var, masks, krig_vars):
        field[m] = v
    ensemble_var = samples.var(1, ddof=1)
    alone = isolated(masks)
    return {"coverage_90": float(inside.mean()), "coverage_90_exact_samples": exact_coverage(samples.shape[1]),
            "rms_ratio": float(np.sqrt(np.mean(err_model ** 2) / np.mean(err_krig ** 2))),
            "spread_ratio": float(ensemble_var[masks].mean() / krig_var[masks].mean()),
            "spread_ratio_isolated": float(ensemble_var[alone].mean() / krig_var[alone].mean())
            if alone.any() else None}


def main(model_path: str = "",  # checkpoint of a run trained on the gaussian synthetic data
         data_dir: str = "data/insar_synthetic",  # the synthetic data folder (test/ and ground_truth.json)
         num_fields: int = 64,  # held-out test fields
         num_samples: int = 64,  # conditional samples per field
         mask_fraction: float = 0.3,  # fraction of pixels hidden per field
         method: str = "posterior",  # improved_diffusion.inpainting method: posterior or repaint
         steps: int = 0,  # solver calls (posterior) or chain steps (repaint); 0 = the method's default
         device: str = "cpu",  # torch device
         batch_size: int = 32,  # samples per network call (small batches run faster on CPU: they stay in cache)
         first_field: int = 0,  # score test fields first_field .. first_field + num_fields - 1 (a chunk of a long run)
         save_path: str | None = None,  # also write the chunk's truth, masks, samples and kriging to this .npz
         pool: str | None = None,  # comma-separated .npz files of save_path: score them together, sample nothing
         seed: int = 0) -> dict:  # seed of the masks; the sampling's is seed + first_field
    """Score gap filling against kriging on held-out fields; print a table and a JSON line; return the figures.
    A long run may go in chunks (first_field, save_path) scored together afterwards (pool): the masks are those
    of one run over all the fields, and each chunk draws its own noise."""
    if pool is not None:
        return report(*pooled(pool.split(",")))
    if save_path is not None and Path(save_path).exists():
        raise FileExistsError(f"save_path: {save_path!r} exists; choose another name (nothing is overwritten)")
    truth_json = json.loads((Path(data_dir) / "ground_truth.json").read_text())
    p = truth_json["params"]
    model, diffusion, args_dic = load_model(model_path, device=device)
    key = truth_json["loader_kwargs"]["key_data"]
    truth = read_observed(list_hdf5_files(Path(data_dir) / "test")[0], key, first_field + num_fields)[..., 0]
    if len(truth) < first_field + num_fields:
        raise ValueError(f"first_field + num_fields = {first_field + num_fields}: the test folder of {data_dir!r} "
                         f"holds {len(truth)} fields")
    rng = np.random.default_rng(seed)
    masks = np.stack([gap_mask(rng, truth.shape[1], mask_fraction) for _ in truth])[first_field:]
    truth = truth[first_field:]
    cov = field_covariance(truth.shape[1], p["covariance_model"], p["atmo_sigma_rad"], p["atmo_length_px"],
                           nugget=p["noise_sigma_rad"] ** 2)
    krig = [simple_kriging(cov, np.zeros(len(cov)), t.ravel(), ~m.ravel()) for t, m in zip(truth, masks)]
    start = time.perf_counter()
    result = fill_gaps(model, diffusion, args_dic, np.where(masks, np.nan, truth)[..., None], num_samples, method,
                       seed + first_field, source=data_dir, steps=steps or None, progress=True,
                       batch_size=batch_size)
    seconds = (time.perf_counter() - start) / len(truth)
    chunk = {"truth": truth, "masks": masks, "samples": result["samples"][..., 0],
             "krig_means": np.concatenate([k[0] for k in krig]),
             "krig_vars": np.concatenate([np.diag(k[1]) for k in krig]),
             "seconds_per_field": np.full(len(truth), seconds), "method": method}
    if save_path is not None:
        np.savez(save_path, **chunk)
    return report(chunk, method)


def pooled(paths: list[str]) -> tuple[dict, str]:
    """The chunks written by `save_path`, concatenated field by field; and their method (all must agree)."""
    chunks = []
    for path in paths:
        with np.load(path) as f:
            chunks.append({k: f[k] for k in f.files})
    methods, sizes = {str(c["method"]) for c in chunks}, {c["samples"].shape[1] for c in chunks}
    if len(methods) != 1:
        raise ValueError(f"pool: the chunks were filled by different methods {sorted(methods)}")
    if len(sizes) != 1:
        raise ValueError(f"pool: the chunks have different numbers of samples per field {sorted(sizes)}")
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0] if k != "method"}, methods.pop()


def report(chunk: dict, method: str) -> dict:
    """Score one chunk (or pooled chunks), print the summary line and the JSON line, return the figures."""
    truth, masks, samples = chunk["truth"], chunk["masks"], chunk["samples"]
    split = np.cumsum(masks.reshape(len(masks), -1).sum(1))[:-1]  # the per-field kriging vectors, in field order
    num_samples, seconds = samples.shape[1], float(np.mean(chunk["seconds_per_field"]))
    figures = {**score(truth, masks, samples, np.split(chunk["krig_means"], split),
                       np.split(chunk["krig_vars"], split)),
               "seconds_per_field": seconds, "num_fields": len(truth), "num_samples": num_samples, "method": method,
               "missing_fraction": float(masks.mean())}
    print(f"coverage of the 90 % interval {figures['coverage_90']:.3f} (goal 0.85-0.95; exact samples score "
          f"{figures['coverage_90_exact_samples']:.3f} with {num_samples}), rms / kriging rms "
          f"{figures['rms_ratio']:.3f} (goal <= 1.2), ensemble / kriging variance {figures['spread_ratio']:.2f} "
          f"(isolated pixels {figures['spread_ratio_isolated']}), {seconds:.2f} s per field ({num_samples} samples, "
          f"{method})")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    run_cli(main)
