"""The sampling run shared by `sample.py` and `sample_DPM.py`: checkpoint, labels, low-res input,
seeded batches streamed to resumable shards, then the `.npz`, PNG grid, HDF5 and provenance JSON.

Under `torchrun --nproc_per_node=N` the batches are split across the N ranks (rank r samples batches
r, r + N, ...; each writes its own shards), then rank 0 merges the shards in batch order into the one
`.npz`. Every batch has its own seed (from `seed` and the batch index) and the labels are drawn once
for the whole run, so the output equals a single-process run with the same `seed` and `batch_size`,
and an interrupted run (with any N) resumes at the missing shards. The ranks share `url_save_path`
(one machine, or a file system every node sees).

`run_sampling` = `prepare_run` (every check, the model, the shard store) -> `sample_shards` (this rank's missing
batches, from `sampler_choice.seeded_batches`) -> `finish_run` (rank 0: merge, figure, HDF5, provenance)."""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from improved_diffusion.acceleration import compile_model, enable_fast_matmul, memory_format
from improved_diffusion.checkpoint import find_metadata, load_model, read_metadata
from improved_diffusion.class_scale import to_model_units
from improved_diffusion.data_normalization import default_clip, from_uint8, to_uint8
from improved_diffusion.denoiser import Denoiser
from improved_diffusion.dist_util import barrier, cleanup_dist, get_rank, get_world_size, is_distributed, setup_dist
from improved_diffusion.file_io import check_free, code_version, file_sha256
from improved_diffusion.noise_schedule import DiscreteSchedule
from improved_diffusion.sampler_choice import Sampler, seeded_batches
from improved_diffusion.script_util import check_types
from utils.changed_defaults import notice_changed_default
from utils.sampling import georef, sample_io
from utils.sampling.options import SamplingOptions


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


def class_index(name: str, class_names: list | None, given: str | list) -> int:
    """The index of a class given by its number ("2") or its name in the metadata's `class_names` ("urban");
    `given` is the whole value the user wrote, named in the error."""
    if name.strip().lstrip("-").isdigit():
        return int(name)
    if class_names and name.strip() in class_names:
        return list(class_names).index(name.strip())
    raise ValueError(f"sample_class: got {given!r}; {name!r} is neither a class index nor one of the "
                     f"model's class names {list(class_names or [])}; expected those, 'balanced', 'proportional', "
                     "'random' or None")


def proportional_labels(class_counts: list[int], num_samples: int, seed: int) -> list[int]:
    """`num_samples` class labels at the training proportions `class_counts` (largest-remainder rounding of
    num_samples * n_k / sum n), in a random order fixed by `seed`: the samples then follow the data's marginal
    p(x) = sum_k p(k) p(x | k)."""
    counts = np.asarray(class_counts, dtype=np.float64)
    share = num_samples * counts / counts.sum()
    per_class = np.floor(share).astype(np.int64)
    per_class[np.argsort(per_class - share)[:num_samples - per_class.sum()]] += 1
    labels = np.repeat(np.arange(len(counts)), per_class)
    return np.random.default_rng(seed).permutation(labels).tolist()


def choose_labels(sample_class, num_samples: int, num_class: int | None, seed: int,
                  class_names: list | None = None, class_counts: list | None = None) -> np.ndarray:
    """int64 (num_samples,) labels: an int (one class for all), a list (cycled: balanced over those
    classes), "balanced" (all classes equally often, shuffled), "proportional" (the training proportions,
    `class_counts` of the run's metadata) or None / "random" (uniform per sample).
    A string may name the classes by index or by name in `class_names` (comma-separated: "urban,forest")."""
    if not num_class:
        raise ValueError(f"the model is class-conditional but its metadata has num_class={num_class}")
    if sample_class == "proportional":
        if not class_counts or len(class_counts) != num_class:
            raise ValueError(f"sample_class='proportional' needs the training class counts (metadata class_counts, "
                             f"{num_class} values); this run's metadata has {class_counts!r}: use 'balanced' or "
                             "'random'")
        return np.asarray(proportional_labels(class_counts, num_samples, seed), dtype=np.int64)
    rng = np.random.default_rng([seed, 1])
    if isinstance(sample_class, str) and sample_class not in ("balanced", "random"):
        sample_class = [class_index(c, class_names, sample_class) for c in sample_class.split(",")]
    elif isinstance(sample_class, (list, tuple)) and any(isinstance(c, str) for c in sample_class):
        sample_class = [class_index(c, class_names, sample_class) if isinstance(c, str) else c
                        for c in sample_class]
    if sample_class is None or sample_class == "random":
        labels = rng.integers(0, num_class, num_samples)
    elif sample_class == "balanced":
        labels = rng.permutation(np.arange(num_samples) % num_class)
    else:
        chosen = sample_class if isinstance(sample_class, (list, tuple)) else [sample_class]
        if not chosen or any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= c < num_class
                             for c in chosen):
            raise ValueError(f"sample_class: got {sample_class!r}; expected an int or a list of ints in "
                             f"[0, {num_class - 1}], 'balanced', 'proportional', 'random' or None")
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


def check_run_options(num_samples: int, max_clip_val: float, threshold_ratio: float | None) -> None:
    """ValueError naming the option when num_samples is not a positive int, max_clip_val not a finite number > 0
    or dynamic_threshold_ratio not in (0, 1] (checked before any file or folder is written)."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples: got {num_samples!r}; expected a positive integer")
    if isinstance(max_clip_val, bool) or not isinstance(max_clip_val, (int, float)) or not (
            math.isfinite(max_clip_val) and max_clip_val > 0):
        raise ValueError(f"max_clip_val: got {max_clip_val!r}; expected a finite number > 0 (the clamp bound of x0)")
    if threshold_ratio is not None and (isinstance(threshold_ratio, bool) or not isinstance(
            threshold_ratio, (int, float)) or not 0 < threshold_ratio <= 1):
        raise ValueError(f"dynamic_threshold_ratio: got {threshold_ratio!r}; expected a quantile in (0, 1] "
                         "(e.g. 0.995) or None")


@dataclass(frozen=True)
class RunRequest:
    """What a sampling run is asked for, beyond the shared `SamplingOptions` (the keywords of `run_sampling`)."""
    model_path: str
    num_samples: int
    url_save_path: str
    sample_class: object = None
    clip_denoised: bool | None = None
    max_clip_val: float = 1.0
    threshold_ratio: float | None = None
    diffusion_steps: int | None = None
    to_0_255: bool = False
    plot: bool = True
    save_hdf5: bool = False
    url_lr_data: str | None = None
    shift_to_lr_mean: bool = False
    save_geotiff: bool = False


@dataclass
class PreparedRun:
    """A checked run ready to sample: the network (in its memory format, compiled if asked), the diffusion, the
    sampler for this model's data (`Sampler.for_model`), the completed metadata, the final sample count, labels
    (int64 (N,) or None), low-res input (float32 NCHW or None), the clamp applied, the output paths (npz first),
    the provenance `config` and the shard store."""
    network: torch.nn.Module
    diffusion: object
    sampler: Sampler
    args_dic: dict
    num_samples: int
    labels: np.ndarray | None
    low_res: np.ndarray | None
    clip_denoised: bool
    outputs: list[Path]
    config: dict
    store: sample_io.ShardStore


def check_results_folder(url_save_path: str, model_path: str) -> None:
    """ValueError when `url_save_path` is the checkpoint's own folder (a JSON beside a checkpoint makes it
    unloadable)."""
    if Path(url_save_path).resolve() == Path(model_path).resolve().parent:
        raise ValueError(f"url_save_path: {url_save_path} is the folder of the checkpoint {model_path}; expected a "
                         "results folder elsewhere (a JSON written beside a checkpoint makes it unloadable)")


def load_checked_model(request: RunRequest, device: torch.device, check: Callable[[int], None] | None):
    """(model, diffusion, metadata completed from the weights) after the checks that need no weights:
    metadata, `check(T)` (the sampler's options for a chain of T steps), the results folder."""
    args_dic = read_run_metadata(request.model_path, request.diffusion_steps)
    if check is not None:
        check(int(request.diffusion_steps or args_dic.get("diffusion_steps", 1000)))
    check_results_folder(request.url_save_path, request.model_path)
    return load_model(request.model_path, device=device, diffusion_steps=request.diffusion_steps)


def conditioning(request: RunRequest, args_dic: dict, seed: int) -> tuple[int, np.ndarray | None, np.ndarray | None]:
    """(num_samples, labels int64 (N,) or None, low-res input float32 NCHW or None) of the run: a super-res model
    samples at most one image per low-res input; labels come from the low-res file, else from `sample_class`."""
    num_samples, low_res, lr_labels, labels = request.num_samples, None, None, None
    if args_dic.get("image_size_lr") is not None:
        low_res, lr_labels = load_low_res(request.url_lr_data, args_dic["image_size_lr"],
                                          args_dic["num_input_channels"])
        if num_samples > len(low_res):
            print(f"[sample] {len(low_res)} low-res images in {request.url_lr_data}: sampling {len(low_res)}")
            num_samples = len(low_res)
    if not args_dic.get("class_cond") and request.sample_class is not None:
        raise ValueError(f"sample_class: got {request.sample_class!r}, but {request.model_path} is an unconditional "
                         "model (metadata class_cond is false); leave sample_class out")
    if args_dic.get("class_cond"):
        labels = lr_labels[:num_samples] if lr_labels is not None else choose_labels(
            request.sample_class, num_samples, args_dic.get("num_class"), seed, args_dic.get("class_names"),
            args_dic.get("class_counts"))
        if labels.min() < 0 or labels.max() >= args_dic["num_class"]:
            raise ValueError(f"labels must lie in [0, {args_dic['num_class'] - 1}], got {labels.min()}..{labels.max()}")
    return num_samples, labels, low_res


def prepare_run(sampler: Sampler, options: SamplingOptions, request: RunRequest,
                check: Callable[[int], None] | None, rank: int) -> PreparedRun:
    """Check everything, load the model and open the shard store (rank 0 checks or clears it first); nothing is
    written before every check has passed. `clip_denoised=None` takes the clamp from the model's data
    normalisation (`default_clip`); the provenance records the clamp applied and why."""
    model, diffusion, args_dic = load_checked_model(request, options.device, check)
    sampler = sampler.for_model(args_dic)
    # e.g. a lambda range beyond this chain, or the ancestral chain on Student-t noise: refused now
    sampler.check(DiscreteSchedule(diffusion.alphas_cumprod), diffusion.student_t_nu)
    clip_denoised, clip_reason = request.clip_denoised, "set by the caller"
    if clip_denoised is None:
        clip_denoised, clip_reason = default_clip(args_dic.get("data_normalization"))
        if not clip_denoised:
            notice_changed_default("sample.clip_denoised")
    num_samples, labels, low_res = conditioning(request, args_dic, options.seed)
    npz_path = Path(request.url_save_path) / sample_io.npz_name(num_samples, args_dic["image_size"],
                                                                args_dic["num_input_channels"])
    outputs = [npz_path, npz_path.with_suffix(".json")] + [npz_path.with_suffix(".png")] * request.plot + [
        npz_path.with_suffix(".hdf5")] * request.save_hdf5 + [npz_path.with_name(f"{npz_path.stem}_geotiff")] * (
        request.save_geotiff)
    check_free(outputs, options.overwrite)
    model.to(memory_format=memory_format(options.channels_last))
    enable_fast_matmul(options.device, options.amp)
    config = {"model_path": str(Path(request.model_path).resolve()),
              "checkpoint_sha256": file_sha256(request.model_path), "sampler": sampler.info, "seed": options.seed,
              "batch_size": options.batch_size, "num_samples": num_samples, "to_0_255": request.to_0_255,
              "clip_denoised": clip_denoised, "clip_denoised_reason": clip_reason,
              "max_clip_val": request.max_clip_val, "threshold_ratio": request.threshold_ratio,
              "diffusion_steps": request.diffusion_steps, "shift_to_lr_mean": request.shift_to_lr_mean,
              "url_lr_data": request.url_lr_data, "sample_class": request.sample_class, "amp": options.amp,
              "channels_last": options.channels_last}
    npz_path.parent.mkdir(parents=True, exist_ok=True)
    shard_folder = npz_path.parent / f".shards_{npz_path.stem}"
    store = sample_io.ShardStore(shard_folder, config, options.overwrite) if rank == 0 else None
    barrier()  # rank 0 has checked (or cleared) the shard folder; the others join it
    network = compile_model(model, "sample") if options.compile else model
    return PreparedRun(network, diffusion, sampler, args_dic, num_samples, labels, low_res, clip_denoised, outputs,
                       config, store or sample_io.ShardStore(shard_folder, config))


def sample_shards(run: PreparedRun, sampler: Sampler, options: SamplingOptions, request: RunRequest, rank: int,
                  world: int) -> None:
    """Sample this rank's missing batches (r, r + N, ...) with `seeded_batches` and write each to its shard;
    FloatingPointError at the first batch with non-finite values."""
    device, num_batches = options.device, -(-run.num_samples // options.batch_size)

    def denoiser_for(lo: int, hi: int) -> Denoiser:
        y = None if run.labels is None else torch.as_tensor(run.labels[lo:hi], device=device)
        lr = None if run.low_res is None else torch.as_tensor(run.low_res[lo:hi], device=device)
        return Denoiser(run.network, run.diffusion, y=y, low_res=lr, clip_denoised=run.clip_denoised,
                        max_clip_val=request.max_clip_val, threshold_ratio=request.threshold_ratio, amp=options.amp)

    todo = [b for b in range(rank, num_batches, world) if not run.store.done(b)]
    image_shape = (run.args_dic["num_input_channels"], run.args_dic["image_size"], run.args_dic["image_size"])
    for batch in seeded_batches(sampler, denoiser_for, image_shape, run.num_samples, options.batch_size,
                                options.seed, device, todo, options.progress and rank == 0):
        x = batch.x.float()
        if not torch.isfinite(x).all():
            raise FloatingPointError(f"batch {batch.index} of {request.model_path} gave "
                                     f"{int((~torch.isfinite(x)).sum())} non-finite sample values (NaN/Inf); nothing "
                                     f"was merged into {run.outputs[0]} (try amp='none', clip_denoised=True or "
                                     "another checkpoint)")
        labels = None if run.labels is None else run.labels[batch.lo:batch.hi]
        x = to_model_units(x, labels, run.args_dic.get("class_scale"))  # class_scale runs: network -> model units
        if request.shift_to_lr_mean and run.low_res is not None:  # docs/original.md#superres-sampling
            lr = torch.as_tensor(run.low_res[batch.lo:batch.hi], device=device)
            x = x - x.mean(dim=(1, 2, 3), keepdim=True) + lr.mean(dim=(1, 2, 3), keepdim=True)
        images = x.permute(0, 2, 3, 1).cpu().numpy()
        run.store.write(batch.index, to_uint8(images) if request.to_0_255 else images.astype(np.float32),
                        labels)


def finish_run(run: PreparedRun, request: RunRequest, options: SamplingOptions, world: int) -> None:
    """Rank 0: merge the shards in batch order into the `.npz`, write the figure, HDF5 and provenance JSON."""
    npz_path, args_dic = run.outputs[0], run.args_dic
    num_batches = -(-run.num_samples // options.batch_size)
    sample_io.merge_shards(run.store, num_batches, run.num_samples, npz_path)
    if request.plot:
        sample_io.save_sample_figure(sample_io.first_samples(run.store, num_batches), npz_path.with_suffix(".png"),
                                     args_dic.get("data_normalization"), run.num_samples,
                                     (args_dic.get("hdf5_keys") or {}).get("key_data"))
    units = None
    if request.save_hdf5:
        units = sample_io.save_hdf5(npz_path, npz_path.with_suffix(".hdf5"), args_dic.get("data_normalization"),
                                    class_names=args_dic.get("class_names"),
                                    key_data=(args_dic.get("hdf5_keys") or {}).get("key_data"))
    if request.save_geotiff and georef.write_geotiff_samples(npz_path, args_dic, overwrite=options.overwrite) is None:
        print(f"[sample] save_geotiff: the training data {args_dic.get('data_train_dir')} carry no georeference; "
              "no GeoTIFF written")
    run.store.remove()
    sample_io.write_provenance(npz_path.with_suffix(".json"), {
        **run.config, "code_version": code_version(),
        "num_timesteps_model": int(len(run.diffusion.alphas_cumprod)), "class_names": args_dic.get("class_names"),
        "label_counts": None if run.labels is None else np.bincount(
            run.labels, minlength=args_dic["num_class"]).tolist(),
        "arr_0": f"NHWC {'uint8' if request.to_0_255 else 'float32 in model units'}", "hdf5_units": units,
        "device": str(options.device), "processes": world, "outputs": [p.name for p in run.outputs]})
    print(f"[sample] wrote {npz_path}")


def run_sampling(sampler: Sampler, options: SamplingOptions, *, model_path: str, num_samples: int,
                 url_save_path: str, sample_class=None, clip_denoised: bool | None = None, max_clip_val: float = 1.0,
                 threshold_ratio: float | None = None, diffusion_steps: int | None = None, to_0_255: bool = False,
                 plot: bool = True, save_hdf5: bool = False, url_lr_data: str | None = None,
                 shift_to_lr_mean: bool = False, save_geotiff: bool = False,
                 check: Callable[[int], None] | None = None) -> Path:
    """Validate, sample `num_samples` images batch by batch and write the outputs; returns the `.npz` path.
    `check(T)`, called before the model is loaded, validates the sampler's options for a chain of T steps.
    Under torchrun, rank r samples batches r, r + N, ...; rank 0 merges."""
    check_run_options(num_samples, max_clip_val, threshold_ratio)
    request = RunRequest(model_path, num_samples, url_save_path, sample_class, clip_denoised, max_clip_val,
                         threshold_ratio, diffusion_steps, to_0_255, plot, save_hdf5, url_lr_data, shift_to_lr_mean,
                         save_geotiff)
    joined = not is_distributed()
    setup_dist(options.device)  # joins torchrun's process group (no-op in one process)
    rank, world = get_rank(), get_world_size()
    run = prepare_run(sampler, options, request, check, rank)
    sample_shards(run, run.sampler, options, request, rank, world)
    barrier()  # every rank's shards are written
    if rank == 0:
        finish_run(run, request, options, world)
    barrier()  # the merged outputs exist before any rank returns
    if joined:
        cleanup_dist()
    return run.outputs[0]
