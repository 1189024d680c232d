"""Gap filling with a trained model: read observed fields (NaN = unknown), sample, write samples, ensemble
mean and std in physical units, and a figure.

The observed-field file is a `.npz` (``arr_0``: (N, H, W) or (N, H, W, C), stored units) or an HDF5 file in
the loaders' layout (dataset ``key_data``, (N, H, W) or (N, H, W, C)). Stored values are mapped to model
units with the model's ``data_normalization`` (metadata.json) and the samples mapped back
(`improved_diffusion.data_normalization`). Observed pixels of every sample equal the observation up to
that round trip in float32 (relative error ~1e-6 of the normalisation range).
The sampling itself is `improved_diffusion.inpainting.conditional_samples`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from improved_diffusion.checkpoint import load_model
from improved_diffusion.data_normalization import default_clip, denormalize, normalize, value_unit
from improved_diffusion.denoiser import Denoiser
from improved_diffusion.file_io import atomic_write, atomic_write_text, check_free, code_version, file_sha256
from improved_diffusion.hdf5_datasets import open_hdf5
from improved_diffusion.inpainting import METHODS, check_observation, conditional_samples
from utils.sampling.options import SamplingOptions
from utils.sampling.run import check_results_folder, read_run_metadata

OUTPUT_NAMES = ("gap_filling.npz", "gap_filling.png", "gap_filling.json")
FIGURE_SAMPLES = 3  # samples shown per field in the figure


def read_observed(path: str | Path, key_data: str = "unwrap", num_fields: int | None = None) -> np.ndarray:
    """Observed fields (N, H, W, C) float32 in stored units, NaN = unknown, from a `.npz` (arr_0) or an HDF5
    file (key_data); the first `num_fields` (all when None)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"observed: no file at {path}")
    if path.suffix == ".npz":
        with np.load(path) as f:
            if "arr_0" not in f:
                raise ValueError(f"observed {path}: no array 'arr_0'; expected the fields (N, H, W[, C]) there")
            fields = np.asarray(f["arr_0"], dtype=np.float32)
    else:
        with open_hdf5(str(path)) as f:
            if key_data not in f:
                raise ValueError(f"observed {path}: no dataset {key_data!r} (has {sorted(f)}); pass key_data")
            fields = np.asarray(f[key_data], dtype=np.float32)
    if fields.ndim == 3:
        fields = fields[..., None]
    if fields.ndim != 4:
        raise ValueError(f"observed {path}: array of shape {fields.shape}; expected (N, H, W) or (N, H, W, C)")
    return fields if num_fields is None else fields[:num_fields]


def to_model_units(fields: np.ndarray, args_dic: dict, source: str) -> torch.Tensor:
    """(N, H, W, C) stored units -> (N, C', H, W) float32 model units (NaN kept), checked against the model's
    image size and channel count (one-line ValueError naming `source`)."""
    norm = args_dic.get("data_normalization")
    x = normalize(fields, norm) if norm is not None else fields.astype(np.float32)
    size, channels = int(args_dic["image_size"]), int(args_dic["num_input_channels"])
    if x.shape[1:] != (size, size, channels):
        raise ValueError(f"observed {source}: fields of shape {fields.shape[1:]} (H, W, C) give {x.shape[1:]} in "
                         f"model units; the model expects ({size}, {size}, {channels})")
    observed = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    try:
        check_observation(observed)
    except ValueError as err:
        raise ValueError(f"observed {source}: {err}") from None
    return observed


def fill_gaps(model: torch.nn.Module, diffusion, args_dic: dict, fields: np.ndarray, num_samples: int,
              method: str = "posterior", seed: int = 0, source: str = "fields", amp: str = "none",
              **options) -> dict:
    """Conditional samples of each observed field (N, H, W, C stored units, NaN = unknown) in stored units:
    {"samples": (N, S, H, W, C), "mean", "std" (N, H, W, C; ensemble mean and std, ddof=1), "observed"}.
    `amp`: the network's precision (`Denoiser`). `options`: steps, cg_iters, resample, jump, batch_size, progress of
    `conditional_samples`."""
    observed = to_model_units(fields, args_dic, source)
    norm = args_dic.get("data_normalization")
    clip = default_clip(norm)[0]
    denoiser = Denoiser(model, diffusion, clip_denoised=clip, amp=amp)
    with torch.no_grad():
        x = conditional_samples(denoiser, observed.to(next(model.parameters()).device), denoiser.schedule,
                                num_samples, method, seed, **options)
    x = x.cpu().numpy().transpose(0, 1, 3, 4, 2)
    samples = denormalize(x, norm) if norm is not None else x
    samples = np.where(np.isfinite(fields)[:, None], fields[:, None], samples).astype(np.float32)
    return {"samples": samples, "mean": samples.mean(1), "std": samples.std(1, ddof=1) if num_samples > 1
            else np.zeros_like(samples[:, 0]), "observed": fields}


def gap_filling_figure(result: dict, path: str | Path, unit: str, max_fields: int = 4) -> None:
    """PNG: one row per field (up to `max_fields`): observed (NaN white), ensemble mean, ensemble std and
    FIGURE_SAMPLES samples, channel 0, colorbars in `unit`; observed / mean / samples share one colour scale."""
    from utils.evaluation.plots import plt

    n = min(max_fields, len(result["observed"]))
    shown = min(FIGURE_SAMPLES, result["samples"].shape[1])
    fig, axes = plt.subplots(n, 3 + shown, figsize=(2.4 * (3 + shown), 2.3 * n), squeeze=False)
    for i in range(n):
        lo, hi = np.nanmin(result["samples"][i]), np.nanmax(result["samples"][i])
        panels = [("observed", result["observed"][i], "viridis"), ("ensemble mean", result["mean"][i], "viridis"),
                  ("ensemble std", result["std"][i], "magma")]
        panels += [(f"sample {k}", result["samples"][i, k], "viridis") for k in range(shown)]
        for ax, (title, image, cmap) in zip(axes[i], panels):
            scale = {} if cmap == "magma" else {"vmin": lo, "vmax": hi}
            im = ax.imshow(image[..., 0], cmap=cmap, interpolation="nearest", **scale)
            ax.set_title(f"field {i}: {title}", fontsize=8)
            ax.axis("off")
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).set_label(unit, fontsize=7)
    fig.tight_layout()
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def write_gap_filling(result: dict, out_dir: str | Path, info: dict, unit: str, overwrite: bool = False) -> dict:
    """Write OUTPUT_NAMES into out_dir (refused when any exists, unless overwrite): the npz (samples, mean,
    std, observed; stored units), the figure and a JSON of `info`; returns the paths."""
    out = Path(out_dir)
    paths = {name.split(".")[1]: out / name for name in OUTPUT_NAMES}
    check_free(paths.values(), overwrite, key="out_dir")
    out.mkdir(parents=True, exist_ok=True)

    def save(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, **result)

    atomic_write(paths["npz"], save)
    gap_filling_figure(result, paths["png"], unit)
    atomic_write_text(paths["json"], json.dumps({**info, "unit": unit,
                                                 "outputs": {k: str(p) for k, p in paths.items()}}, indent=1))
    return paths


def output_unit(args_dic: dict, key_data: str | None) -> str:
    """The unit of the written fields (`value_unit` of the model's normalisation)."""
    return value_unit(args_dic.get("data_normalization"), key_data=key_data)


def run_gap_filling(options: SamplingOptions, *, model_path: str, observed_path: str, url_save_path: str,
                    samples_per_field: int, method: str, steps: int | None = None) -> Path:
    """The gap-filling run of `sample.py` / `sample_DPM.py`: check the method, the model (unconditional, not
    super-res), the observed file and the outputs, then sample `samples_per_field` fields per observed field
    and write OUTPUT_NAMES into `url_save_path` (nothing written when a check fails); returns the `.npz`."""
    if method not in METHODS:
        raise ValueError(f"gap_method: got {method!r}; expected one of {list(METHODS)}")
    if isinstance(samples_per_field, bool) or not isinstance(samples_per_field, int) or samples_per_field < 1:
        raise ValueError(f"samples_per_field: got {samples_per_field!r}; expected a positive integer")
    args_dic = read_run_metadata(model_path, None)
    check_results_folder(url_save_path, model_path)
    if args_dic.get("class_cond") or args_dic.get("image_size_lr") is not None:
        raise ValueError(f"observed_path: gap filling needs an unconditional, non-super-resolution model; "
                         f"{model_path} is class-conditional or super-resolution (metadata class_cond / image_size_lr)")
    key_data = (args_dic.get("hdf5_keys") or {}).get("key_data") or "unwrap"
    fields = read_observed(observed_path, key_data)
    to_model_units(fields, args_dic, observed_path)  # checks the fields before any weights are read
    out = Path(url_save_path)
    check_free([out / name for name in OUTPUT_NAMES], options.overwrite, key="url_save_path")
    model, diffusion, args_dic = load_model(model_path, device=options.device)
    result = fill_gaps(model, diffusion, args_dic, fields, samples_per_field, method, seed=options.seed,
                       source=str(observed_path), amp=options.amp, steps=steps, batch_size=options.batch_size,
                       progress=options.progress)
    info = {"model_path": str(Path(model_path).resolve()), "checkpoint_sha256": file_sha256(model_path),
            "observed_path": str(Path(observed_path).resolve()), "method": method, "steps": steps,
            "samples_per_field": samples_per_field, "seed": options.seed, "batch_size": options.batch_size,
            "amp": options.amp, "code_version": code_version()}
    paths = write_gap_filling(result, out, info, output_unit(args_dic, key_data), options.overwrite)
    print(f"[gap filling] wrote {paths['npz']}")
    return paths["npz"]
