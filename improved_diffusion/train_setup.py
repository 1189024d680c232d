"""Checks and bookkeeping of `train.main` before any heavy work: argument validation, the resume plan
(keywords from `metadata.json` unless given, the timeline rule: refuse, branch or overwrite later sets), the
output-folder rule, the metadata written for a run and its `resumes` history (docs/training.md#resume)."""
from __future__ import annotations

import inspect
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .acceleration import resolve_amp, resolve_channels_last
from .checkpoint import (
    METADATA_NAME,
    CheckpointName,
    atomic_write,
    code_version,
    find_metadata,
    read_metadata,
    write_metadata,
)
from .dist_util import resolve_device
from .resample import SCHEDULE_SAMPLERS
from .script_util import ORIGINAL_DEFAULTS, validate_args
from .train_state import (
    leftover_files,
    list_sets,
    parse_ema_rates,
    parse_resume_name,
    remove_set,
    set_files,
)

# Keys that can never change on resume: the model, the diffusion and how stored values map to model units
# (a different value is an error naming the key). Every other stored key may be overridden by the call.
FIXED_ON_RESUME = {
    "image_size", "num_input_channels", "num_model_channels", "num_res_blocks", "num_heads", "num_heads_upsample",
    "attention_resolutions", "learn_sigma", "sigma_small", "class_cond", "num_class", "diffusion_steps",
    "noise_schedule", "timestep_respacing", "loss_name", "output_type", "rescale_timesteps", "use_scale_shift_norm",
    "image_size_hr", "image_size_lr", "type_dataset", "normalization", "norm_range", "phase_as_cos_sin", "db",
}
# Keywords about this process only: never written to metadata.json, always from the call.
NOT_STORED = {"device", "num_workers", "overwrite", "compile"}
# metadata.json keys that are bookkeeping, not keywords of a run.
BOOKKEEPING = {"resumes", "code_version", "hdf5_keys"}
# Keywords whose default differs from what a run without the key in its metadata.json did (a run of the
# original trainer, or one recorded before the key existed): a resume keeps that behaviour, given here.
# amp and channels_last are recorded resolved, so a resume computes exactly as the first part did.
ORIGINAL_BEHAVIOUR = {"ema_warmup": False, "amp": "none", "channels_last": False, "min_snr_gamma": None,
                      "symmetry_augment": False}
HDF5_KEYS = ("list_keys_hdf5_original", "key_data", "key_other", "key_class")
RUN_FILE_GLOBS = ("model_epoch=*.pt", "ema_rate=*.pt", "opt*.pt", "train_state_*.pt", "events.out.tfevents.*",
                  METADATA_NAME)


class NotGiven:
    """Default of a `train.main` keyword: the call did not give it. A new run uses `value`; a resumed run
    uses the run's metadata.json value (`value` only where an older metadata.json lacks the key)."""
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)

    def __str__(self) -> str:  # --help shows the default as the command line writes it
        return ",".join(map(str, self.value)) if isinstance(self.value, (list, tuple)) else str(self.value)


def split_call(call: dict) -> tuple[dict, set]:
    """({keyword: value, defaults filled in}, names the call gave) of a `train.main` call."""
    given = {key for key, value in call.items() if not isinstance(value, NotGiven)}
    return {key: value.value if isinstance(value, NotGiven) else value for key, value in call.items()}, given


def _fail(key: str, value, expected: str):
    raise ValueError(f"{key}: got {value!r}, expected {expected}")


def _check_optional_int(call: dict, key: str, minimum: int) -> None:
    value = call[key]
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < minimum):
        _fail(key, value, f"None or an integer >= {minimum}")


def _check_float(call: dict, key: str, low: float, high: float = math.inf, low_open: bool = True,
                 optional: bool = False) -> None:
    """`call[key]` a finite real number in (low, high] (or [low, high] if not `low_open`), or None if `optional`."""
    value = call[key]
    if optional and value is None:
        return
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not number or value > high or value < low or (low_open and value == low):
        bracket = "(" if low_open else "["
        span = f"in {bracket}{low:g}, {high:g}]" if math.isfinite(high) else f"{'>' if low_open else '>='} {low:g}"
        _fail(key, value, f"{'None or ' if optional else ''}a finite number {span}")


def validate_call(call: dict, device: torch.device | None = None) -> dict:
    """Check every training keyword of `train.main`; raise ValueError naming the key and value.

    Returns the run options resolved once for the whole run: {"amp": 'none' | 'bf16' | 'fp16' (what
    'auto' / use_fp16 mean on `device`), "channels_last": bool, "ema_rates": list of floats}. `device`:
    the run's device, already resolved (None: resolve `call["device"]` here).
    """
    validate_args(call)
    if call["type_dataset"] not in ("image", "hdf5"):
        _fail("type_dataset", call["type_dataset"], "'image' or 'hdf5'")
    if call["schedule_sampler"] not in SCHEDULE_SAMPLERS:
        _fail("schedule_sampler", call["schedule_sampler"], f"one of {SCHEDULE_SAMPLERS}")
    for key in ("num_epochs", "batch_size", "log_interval"):
        if not isinstance(call[key], int) or isinstance(call[key], bool) or call[key] < 1:
            _fail(key, call[key], "a positive integer")
    for key in ("lr_anneal_steps", "warmup_steps", "num_workers", "grid_interval", "seed"):
        if not isinstance(call[key], int) or isinstance(call[key], bool) or call[key] < 0:
            _fail(key, call[key], "an integer >= 0")
    _check_float(call, "lr", 0.0, 1.0)  # AdamW's step size; above 1 every update overshoots
    _check_float(call, "weight_decay", 0.0, low_open=False)
    mb = call["microbatch"]
    if mb is not None and mb != -1 and (not isinstance(mb, int) or not 1 <= mb <= call["batch_size"]):
        _fail("microbatch", mb, f"-1 (no split) or an integer in 1..batch_size={call['batch_size']}")
    ema_rates = parse_ema_rates(call["ema_rate"])
    for key in ("ema_warmup", "symmetry_augment"):
        if not isinstance(call.get(key, False), bool):
            _fail(key, call[key], "True or False")
    for key in ("save_interval", "keep_checkpoints", "subset_timesteps"):
        _check_optional_int(call, key, 1)
    _check_float(call, "grad_clip", 0.0, optional=True)  # max global gradient norm
    _check_float(call, "min_snr_gamma", 0.0, optional=True)  # Min-SNR clip of the loss weight
    if call["min_snr_gamma"] is not None and call["output_type"] == "x_previous":
        _fail("min_snr_gamma", call["min_snr_gamma"], "None with output_type='x_previous' (no Min-SNR weight for it)")
    _check_float(call, "fp16_scale_growth", 0.0, 1.0)  # log2 loss-scale growth per step
    bounds = call["norm_range"]
    if bounds is not None and not (
            isinstance(bounds, (list, tuple)) and len(bounds) == 2
            and all(isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b) for b in bounds)
            and bounds[0] < bounds[1]):
        _fail("norm_range", bounds, "None or two finite numbers low < high (the stored values mapped to -1 and 1)")
    if call["compute_val"] and not call["data_val_dir"]:
        _fail("data_val_dir", call["data_val_dir"], "a validation folder when compute_val is true")
    device = resolve_device(call["device"]) if device is None else device
    amp = resolve_amp(call["amp"], device, call["use_fp16"])
    return {"amp": amp, "channels_last": resolve_channels_last(call["channels_last"], device, call["amp"], amp),
            "ema_rates": ema_rates}


def _comparable(key: str, value):
    if key == "ema_rate" and value is not None:
        return parse_ema_rates(value)
    if isinstance(value, tuple):
        return list(value)
    if key == "attention_resolutions" and isinstance(value, str):
        return [int(v) for v in value.split(",") if v.strip()]
    return value


def _stored_keywords(meta: dict) -> dict:
    """The keywords a metadata.json holds (HDF5 keys taken out of their `hdf5_keys` group)."""
    stored = {k: v for k, v in meta.items() if k not in BOOKKEEPING}
    stored.update({k: v for k, v in (meta.get("hdf5_keys") or {}).items() if k in HDF5_KEYS})
    return stored


@dataclass
class ResumePlan:
    """What a resume reads and will write, worked out before anything is written."""
    checkpoint: Path                # the model file resumed from
    name: CheckpointName            # its set
    source: Path                    # the folder it is in
    folder: Path                    # the run folder: `source`, or a new folder (a branch)
    args: dict                      # every keyword of the run
    metadata: dict                  # the source's metadata.json as read
    metadata_path: Path
    overrides: dict                 # key -> [stored value, value of the call]
    later: list[CheckpointName]     # sets after `name` in `source` (removed first when overwrite=True)

    @property
    def branch(self) -> bool:
        return self.folder.resolve() != self.source.resolve()


def plan_resume(values: dict, given: set, defaults: dict) -> ResumePlan:
    """The resume of `values["resume_checkpoint"]` (`values`, `given`: from `split_call`).

    A keyword the call did not give takes the metadata.json value (where an older file lacks it: the
    original code's behaviour, i.e. ORIGINAL_BEHAVIOUR's value or else the default); a given keyword
    overrides it, except those of FIXED_ON_RESUME (ValueError naming them). A `url_folder_experiment` other
    than the checkpoint's folder starts a branch there. A checkpoint with later sets in its folder is
    refused (FileExistsError naming them) unless it is a branch or `overwrite`. Reads only."""
    path = Path(values["resume_checkpoint"])
    name = parse_resume_name(path)
    if not path.is_file():
        raise FileNotFoundError(f"resume_checkpoint: no file at {path}")
    source = path.parent
    meta_path = find_metadata(source)
    meta = read_metadata(meta_path)
    stored = _stored_keywords(meta)
    args, overrides, fixed = {}, {}, []
    for key, value in values.items():
        from_call = key in given or key in NOT_STORED or key == "resume_checkpoint"
        args[key] = value if from_call else stored.get(key, ORIGINAL_BEHAVIOUR.get(key, value))
        if not from_call or key in NOT_STORED or key in ("resume_checkpoint", "url_folder_experiment"):
            continue
        before = stored.get(key, ORIGINAL_BEHAVIOUR.get(key, defaults.get(key)))
        if _comparable(key, value) != _comparable(key, before):
            if key in FIXED_ON_RESUME:
                fixed.append(f"{key}={value!r} (checkpoint metadata: {before!r})")
            else:
                overrides[key] = [before, value]
    if fixed:
        raise ValueError(f"resume_checkpoint: the call disagrees with {meta_path}: " + "; ".join(fixed)
                         + ". Model, diffusion and data-mapping keys cannot change on resume: leave them out")
    args.update({k: v for k, v in stored.items() if k not in args})  # class_names, data_normalization, ...
    folder = Path(values["url_folder_experiment"]) if "url_folder_experiment" in given else source
    args["url_folder_experiment"] = str(folder)
    later = [s for s in list_sets(source) if s.order() > name.order()]
    plan = ResumePlan(path, name, source, folder, args, meta, meta_path, overrides, later)
    if plan.branch:
        overrides["url_folder_experiment"] = [str(source), str(folder)]
        check_output_folder(folder, values["overwrite"], resuming=False)
        plan.later = []
    elif later and not values["overwrite"]:
        shown = ", ".join(s.model() for s in later[:4]) + (f" ... ({len(later)} sets)" if len(later) > 4 else "")
        raise FileExistsError(
            f"resume_checkpoint: {path.name} is not the newest checkpoint set in {source}; later sets: {shown}. "
            "Resume from the newest set, pass url_folder_experiment=<new folder> to branch from this one, "
            "or overwrite=True to delete the later sets")
    return plan


def start_resumed_run(plan: ResumePlan, data_info: dict, step_total: int) -> list[str]:
    """Write what a resume changes on disk (after every check passed): delete the later sets
    (overwrite) or copy the resumed-from set into the branch folder, delete leftovers of interrupted
    saves, and write metadata.json with this resume appended to its `resumes` list. Returns the lines to print."""
    meta = dict(plan.metadata)
    for key, (_, after) in plan.overrides.items():
        if key in HDF5_KEYS and isinstance(meta.get("hdf5_keys"), dict):
            meta["hdf5_keys"] = {**meta["hdf5_keys"], key: after}
        else:
            meta[key] = after
    for key, value in data_info.items():
        meta.setdefault(key, value)
    for key in ORIGINAL_BEHAVIOUR:  # record the behaviour an older metadata.json implied
        meta.setdefault(key, plan.args[key])
    meta["resumes"] = list(meta.get("resumes") or []) + [{
        "checkpoint": str(plan.checkpoint), "step_total": step_total,
        "overrides": {k: {"from": a, "to": b} for k, (a, b) in plan.overrides.items()},
        "code_version": code_version()}]
    json.dumps(meta)  # TypeError now, before any file changes, if a value cannot be stored
    lines = []
    if plan.branch:
        if plan.folder.exists():
            clear_run_files(plan.folder)
        plan.folder.mkdir(parents=True, exist_ok=True)
        for path in reversed(set_files(plan.source, plan.name)):  # the model file last, as a save writes it
            atomic_write(plan.folder / path.name, lambda tmp, src=path: shutil.copyfile(src, tmp))
        lines.append(f"branch: {plan.folder} starts from {plan.checkpoint} (the source folder is left as it is)")
    for later in plan.later:
        remove_set(plan.source, later)
    if plan.later:
        lines.append(f"overwrite=True: deleted {len(plan.later)} later set(s) of the abandoned timeline "
                     f"({plan.later[0].model()} ... {plan.later[-1].model()})")
    for path in leftover_files(plan.folder):
        path.unlink()
        lines.append(f"deleted {path.name}, left by an interrupted save")
    for key, (before, after) in plan.overrides.items():
        lines.append(f"{key}: {before!r} -> {after!r} (given in the call; metadata.json records it)")
    write_metadata(plan.folder, meta, METADATA_NAME if plan.branch else plan.metadata_path.name)
    return lines


def undo_failed_start(folder: Path, created: bool) -> None:
    """After a new run failed before its first checkpoint set: delete what it wrote (metadata.json,
    tensorboard events, temporary files) and the folder if the run created it, so the corrected rerun
    needs no overwrite=True."""
    for pattern in ("events.out.tfevents.*", METADATA_NAME):
        for path in folder.glob(pattern):
            path.unlink()
    for path in leftover_files(folder):
        path.unlink()
    if created and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def check_output_folder(folder: Path, overwrite: bool, resuming: bool) -> None:
    """A new run needs an empty or missing folder unless `overwrite`."""
    if resuming or overwrite or not folder.exists():
        return
    if not folder.is_dir():
        raise FileExistsError(f"url_folder_experiment: {folder} exists and is not a folder")
    entries = sorted(p.name for p in folder.iterdir())
    if entries:
        raise FileExistsError(f"url_folder_experiment: {folder} is not empty ({', '.join(entries[:5])}"
                              f"{' ...' if len(entries) > 5 else ''}); pass overwrite=True to start a new run "
                              "there, or resume_checkpoint=<model file> to continue it")


def clear_run_files(folder: Path) -> list[str]:
    """Remove the files of an earlier run (checkpoints, train states, metadata, tensorboard events)."""
    removed = []
    for pattern in RUN_FILE_GLOBS:
        for path in folder.glob(pattern):
            path.unlink()
            removed.append(path.name)
    for path in leftover_files(folder):
        path.unlink()
        removed.append(path.name)
    return removed


def run_metadata(args: dict, data_info: dict) -> dict:
    """metadata.json content: the original 37 keys in their order, then the keys added by this code."""
    meta = {key: args.get(key, default) for key, default in ORIGINAL_DEFAULTS.items()}
    extra = {k: v for k, v in args.items() if k not in meta and k not in NOT_STORED and k not in HDF5_KEYS}
    meta.update(extra)
    meta.update(data_info)
    meta["code_version"] = code_version()
    return meta


def keyword_defaults(func: Callable) -> dict:
    """{name: default} of a function's keywords (the value a new run uses, for `NotGiven` defaults)."""
    return {name: p.default.value if isinstance(p.default, NotGiven) else p.default
            for name, p in inspect.signature(func).parameters.items() if p.default is not inspect.Parameter.empty}


__all__ = ["FIXED_ON_RESUME", "NotGiven", "split_call", "validate_call", "ResumePlan", "plan_resume",
           "start_resumed_run", "undo_failed_start", "check_output_folder", "clear_run_files", "run_metadata",
           "keyword_defaults"]
