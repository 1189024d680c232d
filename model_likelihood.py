"""Variational bound (bits/dim) of a trained checkpoint on a dataset (DDPM eq. 5, Nichol & Dhariwal sec. 2).

    python model_likelihood.py --model_path models_data/run/ema_rate=0.9999_3.pt --url_dataset data/mnist_val/

The bound is evaluated on the checkpoint's own training chain (its T steps) unless
``diffusion_steps`` asks for a re-discretised chain (then a warning: that is another model's
bound). ``subset_timesteps=k`` computes only the k lowest-noise terms t = k-1..0 (+ prior):
a partial sum, reported under ``partial_bpd_k_lowest_noise_terms``, not a likelihood.

The decoder term p(x_0 | x_1) is discretised on 256 levels over [-1, 1] (8-bit images). For
data off that grid (HDF5 floats) the values are quantised to the grid first and the report
says so: the number is then the bound on the bits/dim of the 8-bit-quantised data, clipped to
[-1, 1]. ``bpd_without_decoder`` (KL terms t >= 1 + prior) is reported alongside, and the
reference point ``reference_bpd_uniform_8bit`` = 8 bits/dim (uniform over the 256 levels: a model
must score below it). HDF5 data: ``key_data`` defaults to the ``hdf5_keys`` of ``metadata.json``.

Every field's bits/dim is in ``per_example_bpd`` (rank fields by it). When the data carry labels 0 / 1
(e.g. key_class ``label`` of datasets/deformation_detector_set.py), ``bpd_roc_auc_label1_vs_0`` gives the
ROC AUC of bits/dim as a score for label 1 with a 95 % bootstrap interval (utils/evaluation/detection.py).

Noise is drawn from one generator per example seeded by (seed, example index), so results do
not depend on the batch size.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from improved_diffusion.checkpoint import checkpoint_path, load_model
from improved_diffusion.data_normalization import from_uint8
from improved_diffusion.file_io import atomic_write_text, check_free
from utils.changed_defaults import notice_changed_default
from utils.evaluation.array_io import load_image_set
from utils.evaluation.detection import roc_auc_interval

GRID_TOLERANCE = 1e-4  # max distance to the 8-bit grid for data to count as 8-bit
UNIFORM_8BIT_BPD = 8.0  # bits/dim of the uniform distribution over the 256 levels: the reference point


def to_8bit_grid(x: np.ndarray) -> np.ndarray:
    """Nearest of the 256 8-bit levels in model units (``from_uint8`` of 0..255), values clipped to [-1, 1]."""
    return from_uint8(np.round((np.clip(x, -1, 1) + 1) * 127.5).astype(np.uint8))


def _labels_for_model(labels, class_names, args_dic, source):
    if not args_dic.get("class_cond"):
        return None
    if labels is None:
        raise ValueError(f"url_dataset={source!r}: the model is class-conditional but the data have no labels "
                         "(image file prefixes, HDF5 key_class or npz arr_1)")
    model_names = args_dic.get("class_names")
    if model_names and class_names:
        missing = sorted(set(class_names) - set(model_names))
        if missing:
            raise ValueError(f"url_dataset={source!r}: classes {missing} unknown to the model {model_names}")
        labels = np.array([model_names.index(class_names[i]) for i in labels], dtype=np.int64)
    if labels.max() >= args_dic["num_class"]:
        raise ValueError(f"url_dataset={source!r}: label {labels.max()} >= num_class={args_dic['num_class']}")
    return labels


def valid_pixels(images: np.ndarray, nan_policy: str, source: str) -> np.ndarray:
    """bool NHWC, True where a value is known; ValueError for NaN under nan_policy 'error', for an image
    without any known value, or for an unknown policy."""
    if nan_policy not in ("error", "fill"):
        raise ValueError(f"nan_policy={nan_policy!r}; expected 'error' or 'fill'")
    valid = ~np.isnan(images)
    holed = int((~valid).reshape(len(images), -1).any(axis=1).sum())
    if holed and nan_policy == "error":
        raise ValueError(f"url_dataset={source!r}: {holed} of {len(images)} images hold NaN; pass nan_policy='fill' "
                         "(bits/dim over the valid pixels, holes filled as in training)")
    empty = np.flatnonzero(~valid.reshape(len(images), -1).any(axis=1))
    if len(empty):
        raise ValueError(f"url_dataset={source!r}: image {int(empty[0])} (of {len(empty)}) has no valid pixel")
    return valid


def calc_model_loss(
    model_path: str,                    # model or EMA checkpoint (.pt) with metadata.json beside it
    url_dataset: str,                   # image folder, HDF5 folder (both read as in training) or .npz
    data_type: str | None = None,       # "image", "hdf5" or "npz"; None: told by url_dataset itself
    list_keys_hdf5_original: list | None = None,  # allowed HDF5 keys (checked when given)
    key_data: str | None = None,        # HDF5 dataset name (default: metadata.json's hdf5_keys)
    key_other: str | None = None,       # HDF5 key whose first axis counts the examples (checked when given)
    diffusion_steps: int | None = None,  # None: the checkpoint's training T; other values re-discretise
    batch_size: int = 32,               # examples per model call
    clip_denoised: bool = True,         # clamp predicted x0 to [-1, 1]
    subset_timesteps: int | None = None,  # k: only the k lowest-noise terms (partial sum)
    key_class: str | None = None,       # HDF5 labels dataset (class-conditional models)
    num_samples: int | None = None,     # random subset of the data (all when None)
    scale: float = 1.0,                 # stored values -> model units: x * scale + offset
    offset: float = 0.0,                # (see scale)
    seed: int = 0,                      # seed of the subset and of the per-example noise
    device: str = "cpu",                # torch device
    out_json: str | None = None,        # also write the report here (not in the checkpoint folder)
    overwrite: bool = False,            # replace an existing out_json
    progress: bool = True,              # tqdm progress bar
    nan_policy: str | None = None,      # NaN pixels: 'error' or 'fill' (0, left out of the mean); None: training's
) -> dict:
    """Mean bits/dim of the dataset under the checkpoint; returns (and optionally writes) a report.

    The first ten parameters are the original's, in its order. The report keeps the original's ``vb_loss``
    (mean total bits/dim) and ``mse_xstart_loss`` (mean x0 MSE) beside ``bpd_mean`` / ``xstart_mse_mean``."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: expected a positive integer")
    checkpoint_path(model_path)
    if out_json is not None:
        check_free([out_json], overwrite, key="out_json")
        if Path(out_json).resolve().parent == Path(model_path).resolve().parent:
            raise ValueError(f"out_json={out_json!r}: write results outside the checkpoint folder")
    detected = ("npz" if str(url_dataset).endswith(".npz")
                else "hdf5" if Path(url_dataset).is_dir() and any(Path(url_dataset).glob("*.hdf5")) else "image")
    if data_type not in (None, detected):
        raise ValueError(f"data_type={data_type!r}, but url_dataset={url_dataset!r} holds {detected} data")
    model, diffusion, args_dic = load_model(model_path, device=device, diffusion_steps=diffusion_steps)
    keys = tuple(list_keys_hdf5_original) if list_keys_hdf5_original else None  # the original's [] = no check
    if key_data is None and keys is not None:
        key_data = keys[0]
    if key_data is None and detected == "hdf5":
        key_data = (args_dic.get("hdf5_keys") or {}).get("key_data")
    if args_dic.get("class_scale") is not None:
        raise ValueError(f"model_path={str(model_path)!r} was trained on class-scaled values (metadata class_scale "
                         f"{args_dic['class_scale']}): bits/dim of 256 levels on [-1, 1] are not defined for it")
    trained_t = int(args_dic["diffusion_steps"])
    if diffusion_steps is not None and diffusion_steps != trained_t:
        warnings.warn(f"diffusion_steps={diffusion_steps} differs from the training chain (T={trained_t}): "
                      "this is the bound of a re-discretised model, not of the trained one", stacklevel=2)
    if diffusion_steps is None and trained_t != 100:
        notice_changed_default("likelihood.diffusion_steps")
    T = diffusion.num_timesteps
    if subset_timesteps is not None and not 1 <= subset_timesteps <= T:
        raise ValueError(f"subset_timesteps={subset_timesteps!r}: expected 1..{T} or None")
    data = load_image_set(url_dataset, num_samples=num_samples, seed=seed, key_data=key_data, key_class=key_class,
                          key_other=key_other, list_keys_hdf5_original=keys,
                          num_channels=args_dic["num_input_channels"], image_size=args_dic["image_size"],
                          data_normalization=args_dic.get("data_normalization"), scale=scale, offset=offset)
    expected = (args_dic["image_size"], args_dic["image_size"], args_dic["num_input_channels"])
    if data.images.shape[1:] != expected:
        raise ValueError(f"url_dataset={url_dataset!r}: items of shape {data.images.shape[1:]} (H, W, C); "
                         f"the model expects {expected}")
    valid = valid_pixels(data.images, nan_policy or args_dic.get("nan_policy", "error"), url_dataset)
    labels = _labels_for_model(data.labels, data.class_names, args_dic, url_dataset)
    images = np.where(valid, data.images, 0.0)  # holes: 0 in model units, as training's nan_policy='fill'
    grid = to_8bit_grid(images)
    on_grid = bool(np.abs(grid - images).max() <= GRID_TOLERANCE)
    if not on_grid:
        warnings.warn("data are not 8-bit levels in [-1, 1]: reporting the bound for the data quantised to "
                      "256 levels (clipped to [-1, 1])", stacklevel=2)
    x_all = torch.from_numpy(grid.astype(np.float32)).permute(0, 3, 1, 2)
    mask_all = None if valid.all() else torch.from_numpy(valid.astype(np.float32)).permute(0, 3, 1, 2)
    parts = {"vb": [], "prior_bpd": [], "xstart_mse": []}
    for start in tqdm(range(0, len(x_all), batch_size), desc="batches", disable=not progress):
        idx = np.arange(start, min(start + batch_size, len(x_all)))
        kwargs = {} if labels is None else {"y": torch.from_numpy(labels[idx]).to(device)}
        generators = [torch.Generator().manual_seed(int(seed) * 1_000_003 + int(i)) for i in idx]
        mask = None if mask_all is None else mask_all[idx].to(device)
        with torch.no_grad():
            out = diffusion.calc_bpd_loop(model, x_all[idx].to(device), clip_denoised=clip_denoised,
                                          subset_timesteps=subset_timesteps, model_kwargs=kwargs, generator=generators,
                                          progress=progress, mask=mask)
        for k in parts:
            parts[k].append(out[k].cpu().double())
    vb, prior, xstart_mse = (torch.cat(parts[k]).numpy() for k in ("vb", "prior_bpd", "xstart_mse"))
    total = vb.sum(axis=1) + prior
    report = {"model_path": str(model_path), "url_dataset": str(url_dataset), "n_examples": len(total),
              "diffusion_steps": T, "trained_diffusion_steps": trained_t, "seed": seed,
              "quantity": ("bits/dim of 8-bit data" if on_grid else
                           "bits/dim of the data quantised to 256 levels on [-1, 1] (clipped)"),
              "key_data": key_data, "reference_bpd_uniform_8bit": UNIFORM_8BIT_BPD,
              "masked_pixels": {"n_with_nan": int((~valid).reshape(len(valid), -1).any(axis=1).sum()),
                                "nan_fraction": float((~valid).mean()),
                                "treatment": "filled with 0 (model units) as in training; every term averaged "
                                             "over the valid pixels only (bits per valid dimension)"},
              "xstart_mse_mean": float(xstart_mse.mean()), "prior_bpd_mean": float(prior.mean()),
              # the original's keys: mean total bits/dim (a partial sum with subset_timesteps), mean x0 MSE
              "vb_loss": float(total.mean()), "mse_xstart_loss": float(xstart_mse.mean())}
    if subset_timesteps is None:
        report.update(bpd_mean=float(total.mean()), bpd_se=float(total.std(ddof=1) / np.sqrt(len(total)))
                      if len(total) > 1 else None, bpd_without_decoder=float((total - vb[:, -1]).mean()))
    else:
        report.update(partial_bpd_k_lowest_noise_terms=float(total.mean()), subset_timesteps=subset_timesteps)
    report["per_example_bpd"] = total.tolist()
    if data.labels is not None and set(np.unique(data.labels).tolist()) == {0, 1}:
        # per-field ranking: how well the bits/dim separate label 1 (e.g. deformation) from label 0 (background)
        report["per_example_label"] = data.labels.tolist()
        report["bpd_roc_auc_label1_vs_0"] = roc_auc_interval(total[data.labels == 1], total[data.labels == 0])
    if out_json is not None:
        report["out_json"] = str(out_json)
        Path(out_json).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_json, json.dumps(report, indent=1))
    return report


def summary_line(report: dict) -> str:
    """One printable line of a report: the bound (or partial sum), its standard error, the uniform 8-bit reference
    and where it was written."""
    partial = "partial_bpd_k_lowest_noise_terms" in report
    value = report["partial_bpd_k_lowest_noise_terms"] if partial else report["bpd_mean"]
    se = f" ± {report['bpd_se']:.3f} (SE)" if report.get("bpd_se") is not None else ""
    what = (f"PARTIAL SUM of the {report['subset_timesteps']} lowest-noise terms + prior (not a likelihood) of the "
            if partial else "")
    where = f"; written to {report['out_json']}" if report.get("out_json") else " (pass --out_json to keep it)"
    masked = report.get("masked_pixels", {}).get("nan_fraction", 0.0)
    valid = f" (valid pixels only: {100 * masked:.1f} % masked)" if masked else ""
    return (f"[likelihood] {value:.4f}{se} {what}{report['quantity']}{valid} over {report['n_examples']} examples, "
            f"T={report['diffusion_steps']} (reference: uniform over 256 levels = {UNIFORM_8BIT_BPD:g} bits/dim)"
            f"{where}")


if __name__ == "__main__":
    from utils.cli import run_cli

    print(summary_line(run_cli(calc_model_loss)))
