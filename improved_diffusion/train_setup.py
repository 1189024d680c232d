"""Checks and bookkeeping of `train.main` before any heavy work: argument validation, the resume
merge with `metadata.json`, the output-folder rule and the metadata written for the run."""
from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import torch

from .acceleration import resolve_amp, resolve_channels_last
from .checkpoint import METADATA_NAME, code_version, find_metadata, read_metadata
from .dist_util import resolve_device
from .resample import SCHEDULE_SAMPLERS
from .script_util import ORIGINAL_DEFAULTS, validate_args
from .train_state import parse_ema_rates, parse_resume_name

# Keywords that may change when a run is resumed (taken from the call, like the original's num_epochs,
# lr and compute_val; precision and micro-batching follow the hardware); every other key must agree
# with metadata.json.
RESUME_CHANGEABLE = {
    "data_train_dir", "data_val_dir", "num_epochs", "lr", "lr_anneal_steps", "save_interval", "resume_checkpoint",
    "compute_val", "subset_timesteps", "url_folder_experiment", "device", "num_workers", "keep_checkpoints",
    "log_interval", "grid_interval", "compile", "channels_last", "overwrite", "grad_clip", "warmup_steps",
    "microbatch", "amp", "use_fp16", "fp16_scale_growth",
}
# Keywords about this process only: not written to metadata.json.
NOT_STORED = {"device", "num_workers", "overwrite", "compile",
              "log_interval", "grid_interval", "keep_checkpoints"}
# Speed choices recorded (resolved) in metadata.json; on resume 'auto' takes the recorded value, or this
# one for a run whose metadata predates the key (it ran with the original float32 NCHW numerics).
RECORDED_SPEED = {"amp": "none", "channels_last": False}
HDF5_KEYS = ("list_keys_hdf5_original", "key_data", "key_other", "key_class")
RUN_FILE_GLOBS = ("model_epoch=*.pt", "ema_rate=*.pt", "opt*.pt", "train_state_*.pt", "events.out.tfevents.*",
                  METADATA_NAME)


def _fail(key: str, value, expected: str):
    raise ValueError(f"{key}: got {value!r}, expected {expected}")


def _check_optional_int(call: dict, key: str, minimum: int) -> None:
    value = call[key]
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < minimum):
        _fail(key, value, f"None or an integer >= {minimum}")


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
    if not (isinstance(call["lr"], (int, float)) and call["lr"] > 0):
        _fail("lr", call["lr"], "a positive number")
    if call["weight_decay"] < 0:
        _fail("weight_decay", call["weight_decay"], "a number >= 0")
    mb = call["microbatch"]
    if mb is not None and mb != -1 and (not isinstance(mb, int) or not 1 <= mb <= call["batch_size"]):
        _fail("microbatch", mb, f"-1 (no split) or an integer in 1..batch_size={call['batch_size']}")
    ema_rates = parse_ema_rates(call["ema_rate"])
    for key in ("save_interval", "keep_checkpoints", "subset_timesteps"):
        _check_optional_int(call, key, 1)
    if call["grad_clip"] is not None and not call["grad_clip"] > 0:
        _fail("grad_clip", call["grad_clip"], "None or a positive max gradient norm")
    if call["fp16_scale_growth"] <= 0:
        _fail("fp16_scale_growth", call["fp16_scale_growth"], "a positive number (log2 loss-scale growth per step)")
    if call["compute_val"] and not call["data_val_dir"]:
        _fail("data_val_dir", call["data_val_dir"], "a validation folder when compute_val is true")
    device = resolve_device(call["device"]) if device is None else device
    amp = resolve_amp(call["amp"], device, call["use_fp16"])
    return {"amp": amp, "channels_last": resolve_channels_last(call["channels_last"], device, call["amp"], amp),
            "ema_rates": ema_rates}


def reuse_recorded_speed(args: dict, folder: Path) -> None:
    """On resume, replace each 'auto' of RECORDED_SPEED in `args` (in place) by the choice recorded in
    the run's metadata.json, so the continued run computes exactly as the first part did."""
    stored = read_metadata(find_metadata(folder))
    for key, before_recording in RECORDED_SPEED.items():
        if isinstance(args.get(key), str) and args[key].lower() == "auto":
            args[key] = stored.get(key, before_recording)


def _comparable(key: str, value):
    if key == "ema_rate" and value is not None:
        return parse_ema_rates(value)
    if isinstance(value, tuple):
        return list(value)
    if key == "attention_resolutions" and isinstance(value, str):
        return [int(v) for v in value.split(",") if v.strip()]
    return value


def merge_resume(call: dict, defaults: dict) -> tuple[dict, Path]:
    """(call merged with the checkpoint folder's metadata, folder) for `call["resume_checkpoint"]`.

    Keys outside RESUME_CHANGEABLE take the stored values; a key the call sets to a non-default
    value that disagrees with the stored one is an error listing every disagreement.
    """
    path = Path(call["resume_checkpoint"])
    parse_resume_name(path)
    if not path.is_file():
        raise FileNotFoundError(f"resume_checkpoint: no file at {path}")
    folder = path.parent
    stored = read_metadata(find_metadata(folder))
    stored.update({k: v for k, v in (stored.pop("hdf5_keys", None) or {}).items() if k in HDF5_KEYS})
    merged, disagree = dict(call), []
    for key, value in stored.items():
        if key not in call:
            merged[key] = value
        elif key not in RESUME_CHANGEABLE:
            mine, theirs = _comparable(key, call[key]), _comparable(key, value)
            if mine != theirs and mine != _comparable(key, defaults.get(key)):
                disagree.append(f"{key}={call[key]!r} (checkpoint metadata: {value!r})")
            merged[key] = value
    out = call["url_folder_experiment"]
    if out != defaults.get("url_folder_experiment") and Path(out).resolve() != folder.resolve():
        disagree.append(f"url_folder_experiment={out!r} (the checkpoint is in {str(folder)!r})")
    if disagree:
        raise ValueError(f"resume_checkpoint: the call disagrees with {find_metadata(folder)}: "
                         + "; ".join(disagree) + ". Leave these keywords at their defaults or match the checkpoint")
    merged["url_folder_experiment"] = str(folder)
    return merged, folder


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
    """{name: default} of a function's keywords."""
    return {name: p.default for name, p in inspect.signature(func).parameters.items()
            if p.default is not inspect.Parameter.empty}


__all__ = ["RESUME_CHANGEABLE", "validate_call", "reuse_recorded_speed", "merge_resume", "check_output_folder",
           "clear_run_files", "run_metadata", "keyword_defaults"]
