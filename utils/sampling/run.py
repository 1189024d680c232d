"""The sampling run shared by `sample.py` and `sample_DPM.py`: checkpoint, labels, low-res input,
seeded batches streamed to resumable shards, then the `.npz`, PNG grid, HDF5 and provenance JSON.

Under `torchrun --nproc_per_node=N` the batches are split across the N ranks (rank r samples batches
r, r + N, ...; each writes its own shards), then rank 0 merges the shards in batch order into the one
`.npz`. Every batch has its own seed (from `seed` and the batch index) and the labels are drawn once
for the whole run, so the output equals a single-process run with the same `seed` and `batch_size`,
and an interrupted run (with any N) resumes at the missing shards. The ranks share `url_save_path`
(one machine, or a file system every node sees)."""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from improved_diffusion.acceleration import (
    autocast,
    compile_model,
    enable_fast_matmul,
    memory_format,
    resolve_amp,
    resolve_channels_last,
)
from improved_diffusion.checkpoint import (
    check_free,
    code_version,
    file_sha256,
    find_metadata,
    load_model,
    read_metadata,
)
from improved_diffusion.data_normalization import default_clip, from_uint8, to_uint8
from improved_diffusion.denoiser import Denoiser
from improved_diffusion.dist_util import barrier, cleanup_dist, get_rank, get_world_size, is_distributed, setup_dist
from improved_diffusion.sampler_choice import SampleBatch
from improved_diffusion.script_util import check_types
from improved_diffusion.train_state import derive_seed
from utils.changed_defaults import notice_changed_default
from utils.sampling import sample_io


def read_run_metadata(model_path: str, diffusion_steps: int | None) -> dict:
    """The checkpoint's metadata, with `diffusion_steps` checked (None keeps the checkpoint's own T)."""
    if model_path is None or not Path(model_path).is_file():
        raise FileNotFoundError(f"model_path: no checkpoint file at {model_path}")
    meta_path = find_metadata(Path(model_path).parent)
    args_dic = read_metadata(meta_path)
    try:
        check_types(args_dic)
    except ValueError as err:
        raise ValueError(f"metadata file {meta_path}: {err}") from None
    if diffusion_steps is not None:
        if not args_dic.get("rescale_timesteps", True):
            raise ValueError(f"diffusion_steps={diffusion_steps}: this model was trained with rescale_timesteps=False, "
                             "so its network only knows the indices of its own chain; use sampling_steps instead")
        warnings.warn(f"diffusion_steps={diffusion_steps} re-discretises the schedule (the original behaviour); the "
                      f"model was trained on T={args_dic.get('diffusion_steps')}. Prefer sampling_steps.", stacklevel=3)
    return args_dic


def choose_labels(sample_class, num_samples: int, num_class: int | None, seed: int) -> np.ndarray:
    """int64 (num_samples,) labels: an int (one class for all), a list (cycled: balanced over those
    classes), "balanced" (all classes equally often, shuffled) or None / "random" (uniform per sample)."""
    if not num_class:
        raise ValueError(f"the model is class-conditional but its metadata has num_class={num_class}")
    rng = np.random.default_rng([seed, 1])
    if isinstance(sample_class, str) and sample_class not in ("balanced", "random"):
        try:
            sample_class = [int(c) for c in sample_class.split(",")]
        except ValueError:
            raise ValueError(f"sample_class: got {sample_class!r}; expected an int, a list of ints, "
                             "'balanced', 'random' or None") from None
    if sample_class is None or sample_class == "random":
        labels = rng.integers(0, num_class, num_samples)
    elif sample_class == "balanced":
        labels = rng.permutation(np.arange(num_samples) % num_class)
    else:
        chosen = sample_class if isinstance(sample_class, (list, tuple)) else [sample_class]
        if not chosen or any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= c < num_class
                             for c in chosen):
            raise ValueError(f"sample_class: got {sample_class!r}; expected an int or a list of ints in "
                             f"[0, {num_class - 1}], 'balanced', 'random' or None")
        labels = np.resize(np.asarray(chosen), num_samples)
    return labels.astype(np.int64)


def load_low_res(url_lr_data: str | None, image_size_lr: int, channels: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Low-res input of a super-resolution model from an `.npz`: `arr_0` NHWC (float in [-1, 1] or uint8)
    -> float32 NCHW in [-1, 1]; `arr_1` labels when present."""
    if url_lr_data is None:
        raise ValueError("url_lr_data: this is a super-resolution model (metadata has image_size_lr); give the "
                         ".npz of low-resolution images (arr_0 NHWC) to condition on")
    images, labels = sample_io.read_samples_npz(url_lr_data, "url_lr_data")
    expected = (image_size_lr, image_size_lr, channels)
    if images.ndim != 4 or images.shape[1:] != expected:
        raise ValueError(f"url_lr_data: arr_0 has shape {images.shape}; expected (N, {image_size_lr}, "
                         f"{image_size_lr}, {channels}) (NHWC at the model's image_size_lr)")
    if images.dtype == np.uint8:
        images = from_uint8(images)
    elif np.abs(images).max() > 1 + 1e-3:
        raise ValueError(f"url_lr_data: float images must be in [-1, 1], got values up to {np.abs(images).max():.3g}")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"url_lr_data: {len(labels)} labels for {len(images)} images")
    return np.ascontiguousarray(np.moveaxis(images.astype(np.float32), -1, 1)), labels


def check_run_options(num_samples: int, batch_size: int, max_clip_val: float, threshold_ratio: float | None) -> None:
    """ValueError naming the option when a count is not a positive int, max_clip_val not a finite number > 0
    or dynamic_threshold_ratio not in (0, 1] (checked before any file or folder is written)."""
    for name, value in (("num_samples", num_samples), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: got {value!r}; expected a positive integer")
    if isinstance(max_clip_val, bool) or not isinstance(max_clip_val, (int, float)) or not (
            math.isfinite(max_clip_val) and max_clip_val > 0):
        raise ValueError(f"max_clip_val: got {max_clip_val!r}; expected a finite number > 0 (the clamp bound of x0)")
    if threshold_ratio is not None and (isinstance(threshold_ratio, bool) or not isinstance(
            threshold_ratio, (int, float)) or not 0 < threshold_ratio <= 1):
        raise ValueError(f"dynamic_threshold_ratio: got {threshold_ratio!r}; expected a quantile in (0, 1] "
                         "(e.g. 0.995) or None")


def run_sampling(sample_batch: SampleBatch, sampler_info: dict, *, model_path: str, num_samples: int,
                 batch_size: int, seed: int, device, url_save_path: str, sample_class=None,
                 clip_denoised: bool | None = None, max_clip_val: float = 1.0, threshold_ratio: float | None = None,
                 diffusion_steps: int | None = None, to_0_255: bool = False, plot: bool = True,
                 save_hdf5: bool = False, url_lr_data: str | None = None, shift_to_lr_mean: bool = False,
                 trajectory_dtype: torch.dtype = torch.float32, amp: str = "auto", channels_last: bool | str = "auto",
                 compile: bool = False, overwrite: bool = False,
                 progress: bool = True, check: Callable[[int], None] | None = None) -> Path:
    """Validate, sample `num_samples` images batch by batch and write the outputs; returns the `.npz` path.
    `check(T)`, called before the model is loaded, validates the sampler's options for a chain of T steps.
    `clip_denoised=None` takes the clamp from the model's data normalisation (`default_clip`); the provenance
    records the clamp applied and why. Under torchrun, rank r samples batches r, r + N, ...; rank 0 merges."""
    check_run_options(num_samples, batch_size, max_clip_val, threshold_ratio)
    joined = not is_distributed()
    device = setup_dist(device)  # joins torchrun's process group (no-op in one process)
    rank, world = get_rank(), get_world_size()
    amp_requested, amp = amp, resolve_amp(amp, device)
    if amp_requested == "auto" and amp != "none":
        notice_changed_default("amp.auto")
    channels_last = resolve_channels_last(channels_last, device, amp_requested, amp)  # recorded in the provenance
    args_dic = read_run_metadata(model_path, diffusion_steps)
    if check is not None:
        check(int(diffusion_steps or args_dic.get("diffusion_steps", 1000)))
    out_dir = Path(url_save_path)
    if out_dir.resolve() == Path(model_path).resolve().parent:
        raise ValueError(f"url_save_path: {url_save_path} is the folder of the checkpoint {model_path}; expected "
                         "a results folder elsewhere (a JSON written beside a checkpoint makes it unloadable)")
    # the metadata completed from the weights (image_size, num_input_channels, ... of older JSONs)
    model, diffusion, args_dic = load_model(model_path, device=device, diffusion_steps=diffusion_steps)
    size, channels = args_dic["image_size"], args_dic["num_input_channels"]
    clip_reason = "set by the caller"
    if clip_denoised is None:
        clip_denoised, clip_reason = default_clip(args_dic.get("data_normalization"))
        if not clip_denoised:
            notice_changed_default("sample.clip_denoised")
    low_res = lr_labels = None
    if args_dic.get("image_size_lr") is not None:
        low_res, lr_labels = load_low_res(url_lr_data, args_dic["image_size_lr"], channels)
        if num_samples > len(low_res):
            print(f"[sample] {len(low_res)} low-res images in {url_lr_data}: sampling {len(low_res)}")
            num_samples = len(low_res)
    labels = None
    if not args_dic.get("class_cond") and sample_class is not None:
        raise ValueError(f"sample_class: got {sample_class!r}, but {model_path} is an unconditional model "
                         "(metadata class_cond is false); leave sample_class out")
    if args_dic.get("class_cond"):
        labels = lr_labels[:num_samples] if lr_labels is not None else choose_labels(
            sample_class, num_samples, args_dic.get("num_class"), seed)
        if labels.min() < 0 or labels.max() >= args_dic["num_class"]:
            raise ValueError(f"labels must lie in [0, {args_dic['num_class'] - 1}], got {labels.min()}..{labels.max()}")
    npz_path = out_dir / sample_io.npz_name(num_samples, size, channels)
    outputs = [npz_path, npz_path.with_suffix(".json")] + [npz_path.with_suffix(".png")] * plot + [
        npz_path.with_suffix(".hdf5")] * save_hdf5
    check_free(outputs, overwrite)

    model.to(memory_format=memory_format(channels_last))
    enable_fast_matmul(device, amp)
    network = compile_model(model, "sample") if compile else model
    config = {"model_path": str(Path(model_path).resolve()), "checkpoint_sha256": file_sha256(model_path),
              "sampler": sampler_info, "seed": seed,
              "batch_size": batch_size, "num_samples": num_samples, "to_0_255": to_0_255,
              "clip_denoised": clip_denoised, "clip_denoised_reason": clip_reason, "max_clip_val": max_clip_val,
              "threshold_ratio": threshold_ratio,
              "diffusion_steps": diffusion_steps, "shift_to_lr_mean": shift_to_lr_mean, "url_lr_data": url_lr_data,
              "sample_class": sample_class, "amp": amp, "channels_last": channels_last}
    out_dir.mkdir(parents=True, exist_ok=True)
    shard_folder = out_dir / f".shards_{npz_path.stem}"
    store = sample_io.ShardStore(shard_folder, config, overwrite) if rank == 0 else None
    barrier()  # rank 0 has checked (or cleared) the shard folder; the others join it
    store = store or sample_io.ShardStore(shard_folder, config)
    num_batches = -(-num_samples // batch_size)
    for b in tqdm(range(rank, num_batches, world), desc="batches", disable=not progress or rank != 0):
        if store.done(b):
            continue
        lo, hi = b * batch_size, min((b + 1) * batch_size, num_samples)
        # per-batch seed: resuming redraws exactly the same batches
        generator = torch.Generator(device).manual_seed(derive_seed(seed, b, bits=32))
        y = None if labels is None else torch.as_tensor(labels[lo:hi], device=device)
        lr = None if low_res is None else torch.as_tensor(low_res[lo:hi], device=device)
        denoiser = Denoiser(network, diffusion, y=y, low_res=lr, clip_denoised=clip_denoised,
                            max_clip_val=max_clip_val, threshold_ratio=threshold_ratio)
        x_T = torch.randn((hi - lo, channels, size, size), generator=generator, device=device, dtype=trajectory_dtype)
        # autocast covers the network only: the samplers' update formulas are elementwise and stay in the
        # trajectory dtype.
        with torch.inference_mode(), autocast(device, amp):
            x = sample_batch(denoiser, x_T, generator).float()
        if not torch.isfinite(x).all():
            raise FloatingPointError(f"batch {b} of {model_path} gave {int((~torch.isfinite(x)).sum())} non-finite "
                                     f"sample values (NaN/Inf); nothing was merged into {npz_path} (try amp='none', "
                                     "clip_denoised=True or another checkpoint)")
        if shift_to_lr_mean and lr is not None:  # original's bias removal (docs/original.md#superres-sampling)
            x = x - x.mean(dim=(1, 2, 3), keepdim=True) + lr.mean(dim=(1, 2, 3), keepdim=True)
        images = x.permute(0, 2, 3, 1).cpu().numpy()
        store.write(b, to_uint8(images) if to_0_255 else images.astype(np.float32),
                    None if labels is None else labels[lo:hi])
    barrier()  # every rank's shards are written
    if rank == 0:
        sample_io.merge_shards(store, num_batches, num_samples, npz_path)
        if plot:
            sample_io.save_sample_figure(sample_io.first_samples(store, num_batches), npz_path.with_suffix(".png"),
                                         args_dic.get("data_normalization"), num_samples,
                                         (args_dic.get("hdf5_keys") or {}).get("key_data"))
        units = "model"
        if save_hdf5:
            units = sample_io.save_hdf5(npz_path, npz_path.with_suffix(".hdf5"), args_dic.get("data_normalization"))
        store.remove()
        sample_io.write_provenance(npz_path.with_suffix(".json"), {
            **config, "code_version": code_version(),
            "num_timesteps_model": int(len(diffusion.alphas_cumprod)), "class_names": args_dic.get("class_names"),
            "label_counts": None if labels is None else np.bincount(labels, minlength=args_dic["num_class"]).tolist(),
            "arr_0": f"NHWC {'uint8' if to_0_255 else 'float32 in model units'}",
            "hdf5_units": units if save_hdf5 else None,
            "device": str(device), "processes": world, "outputs": [p.name for p in outputs]})
        print(f"[sample] wrote {npz_path}")
    barrier()  # the merged outputs exist before any rank returns
    if joined:
        cleanup_dist()
    return npz_path
