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
    find_metadata,
    infer_architecture,
    load_state_dict,
    read_metadata,
    write_metadata,
)
from .class_scale import check_per_class
from .dist_util import resolve_device
from .file_io import atomic_write, code_version
from .resample import SCHEDULE_SAMPLERS
from .run_config import (
    BOOKKEEPING,
    FIXED_ON_RESUME,
    HDF5_KEYS,
    MODEL,
    NOT_STORED,
    NOT_STORED_KEYS,
    ORIGINAL_DEFAULTS,
    TABLE,
    ConfigError,
    DataConfig,
    LoopConfig,
    RunConfig,
    check_types,
    json_kind_ok,
)
from .script_util import apply_preset, diffusion_config, is_super_res, model_config, validate_args
from .train_state import (
    leftover_files,
    list_sets,
    load_train_state,
    parse_ema_rates,
    parse_resume_name,
    remove_set,
    set_files,
)

LEGACY = "the original trainer's behaviour"
FROM_THE_CALL = ("resume_checkpoint", "url_folder_experiment")  # stored, but a resume takes them from the call
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
    raise ConfigError(key, f"{key}: got {value!r}, expected {expected}")


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


def validate_call(call: dict, device: torch.device | None = None) -> LoopConfig:
    """Check every training keyword of `train.main`; raise ConfigError naming the key and value.

    Returns the loop group, with amp ('none' | 'bf16' | 'fp16': what 'auto' / use_fp16 mean on `device`),
    channels_last (bool) and the EMA rates resolved once for the whole run. `device`: the run's device,
    already resolved (None: resolve `call["device"]` here).
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
    for key in ("ema_warmup", "symmetry_augment"):
        if not isinstance(call.get(key, False), bool):
            _fail(key, call[key], "True or False")
    for key in ("save_interval", "keep_checkpoints", "subset_timesteps"):
        _check_optional_int(call, key, 1)
    if call.get("class_scale") is not None and (not call["class_cond"] or call["image_size_lr"] is not None):
        _fail("class_scale", call["class_scale"], "None unless class_cond is true (and not for a super-res model, "
              "whose low-res input is in model units)")
    if call.get("class_weights") is not None and not call["class_cond"]:
        _fail("class_weights", call["class_weights"], "None unless class_cond is true")
    for key in ("class_scale", "class_weights"):
        _keyed(key, check_per_class, call.get(key), call["num_class"] if call["class_cond"] else None, key)
    _check_float(call, "grad_clip", 0.0, optional=True)  # max global gradient norm
    _check_float(call, "min_snr_gamma", 0.0, optional=True)  # Min-SNR clip of the loss weight
    if call["min_snr_gamma"] is not None and call["output_type"] == "x_previous":
        _fail("min_snr_gamma", call["min_snr_gamma"], "None with output_type='x_previous' (no Min-SNR weight for it)")
    _check_float(call, "student_t_nu", 2.0, optional=True)  # Student-t noise: finite variance needs nu > 2
    if call["student_t_nu"] is not None and call["compute_val"]:
        _fail("compute_val", True, "False with student_t_nu (validation reports bits/dim, a bound for Gaussian "
              "noise only)")
    if call["student_t_nu"] is not None and (call["learn_sigma"] or call["output_type"] == "x_previous"):
        _fail("student_t_nu", call["student_t_nu"], "None with learn_sigma or output_type='x_previous' (both "
              "model the Gaussian posterior)")
    _check_float(call, "fp16_scale_growth", 0.0, 1.0)  # log2 loss-scale growth per step
    bounds = call["norm_range"]
    if bounds is not None and not (
            isinstance(bounds, (list, tuple)) and len(bounds) == 2
            and all(isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b) for b in bounds)
            and bounds[0] < bounds[1]):
        _fail("norm_range", bounds, "None or two finite numbers low < high (the stored values mapped to -1 and 1)")
    if call["compute_val"] and not call["data_val_dir"]:
        _fail("data_val_dir", call["data_val_dir"], "a validation folder when compute_val is true")
    return loop_config(call, resolve_device(call["device"]) if device is None else device)


def _keyed(key: str, resolve: Callable, *args):
    """`resolve(*args)`, its ValueError as a ConfigError naming `key`."""
    try:
        return resolve(*args)
    except ValueError as err:
        raise ConfigError(key, str(err)) from None


def loop_config(values: dict, device: torch.device) -> LoopConfig:
    """The loop group of `train.main` keywords `values` (keys it lacks: LoopConfig's defaults), with amp,
    channels_last and the EMA rates resolved once for `device` (ConfigError naming the key)."""
    amp_key = "use_fp16" if values.get("use_fp16") else "amp"
    amp = _keyed(amp_key, resolve_amp, values.get("amp", "none"), device, values.get("use_fp16", False))
    channels_last = _keyed("channels_last", resolve_channels_last, values.get("channels_last", False), device,
                           values.get("amp", "none"), amp)
    rates = _keyed("ema_rate", parse_ema_rates, values.get("ema_rate", "0.9999"))
    fields = {k: values[k] for k in LoopConfig.__dataclass_fields__ if k in values}
    return LoopConfig(**{**fields, "amp": amp, "channels_last": channels_last, "ema_rates": tuple(rates)})


def _data_config(args: dict) -> DataConfig:
    """The data group of a run's keywords (the validation folder only when the run validates)."""
    for key in ("data_train_dir",) + (("data_val_dir",) if args["compute_val"] else ()):
        if not args[key] or not Path(args[key]).is_dir():
            raise FileNotFoundError(f"{key}: got {args[key]!r}, expected an existing data folder")
    fields = {k: args[k] for k in DataConfig.__dataclass_fields__ if k in args}
    return DataConfig(**{**fields, "data_val_dir": args["data_val_dir"] if args["compute_val"] else None,
                         "num_channels": args["num_input_channels"], "class_names": args.get("class_names"),
                         "norm_stats": args.get("data_normalization")})


def resolve_run(args: dict, device: torch.device, plan: ResumePlan | None = None, given: set = frozenset(),
                read_from: Path | None = None) -> RunConfig:
    """Check every keyword of a run (`args`: `split_call`'s values, or a resume plan's `args`) and resolve it
    into its typed groups. A ConfigError of a key read from a metadata.json (the resume's, or `read_from`: the
    `config` of a relaunch), not in `given`, names the file. FileNotFoundError for a missing data folder."""
    source = plan.metadata_path if plan is not None else read_from
    try:
        loop = validate_call(args, device)
    except ConfigError as err:
        if source is None or err.key in given:
            raise
        raise ConfigError(err.key, f"{err} (read from {source})") from None
    args = {**args, "amp": loop.amp, "channels_last": loop.channels_last}  # recorded resolved
    return RunConfig(model=model_config(args, is_super_res(args)), diffusion=diffusion_config(args),
                     data=_data_config(args), loop=loop, args=args)


def _config_keywords(path: Path) -> tuple[Path, dict]:
    """The training keywords stored in the metadata.json at `path` (a file or its run folder), for a relaunch:
    HDF5 keys out of `hdf5_keys`, keys absent from an older file at their `legacy` value; bookkeeping
    (`resumes`, `code_version`, `class_names`, `data_normalization`, ...), the keys of this process and the
    run's folder and resume left out. Returns (the file read, the keywords).
    FileNotFoundError / ConfigError naming the file (and the key)."""
    if not path.exists():
        raise FileNotFoundError(f"config: no metadata file at {path}")
    meta_path = find_metadata(path) if path.is_dir() else path
    meta = read_metadata(meta_path)
    try:
        check_types(meta)
    except ConfigError as err:
        raise ConfigError(err.key, f"config {meta_path}: {err}") from None
    hdf5 = meta.get("hdf5_keys")
    if hdf5 is not None and not isinstance(hdf5, dict):
        raise ConfigError("hdf5_keys", f"config {meta_path}: hdf5_keys: got {hdf5!r}, expected an object")
    stored = _stored_keywords(meta)
    stored.update({k: row.legacy for k, row in TABLE.items() if row.has_legacy and k not in stored})
    return meta_path, {k: v for k, v in stored.items()
                       if k in TABLE and TABLE[k].resume != NOT_STORED and k not in FROM_THE_CALL}


def launch_defaults(values: dict, given: set) -> tuple[dict, Path | None]:
    """`values` (from `split_call`) with every keyword the call did not give taken from `values["preset"]`
    (a key of `script_util.PRESETS`) or from the run of `values["config"]` (its metadata.json; a new run
    in another folder), and the metadata file read (None without `config`). Precedence: the call, then the
    preset or config, then the table's defaults. ConfigError / FileNotFoundError naming the key or file (a value
    of the file taken by the call must have its row's JSON type; one the call gives is not read)."""
    preset, config = values["preset"], values["config"]
    if preset is None and config is None:
        return values, None
    key = "config" if config is not None else "preset"
    if preset is not None and config is not None:
        raise ConfigError(key, f"config: got both preset={preset!r} and config={config!r}; expected at most one "
                               "(the metadata.json of a run already holds every keyword)")
    if values["resume_checkpoint"] is not None:
        raise ConfigError(key, f"{key}: a new run's defaults, not for a resume (resume_checkpoint="
                               f"{values['resume_checkpoint']!r} takes every keyword from its run's metadata.json); "
                               f"leave out {key} or resume_checkpoint")
    if preset is not None:
        defaults, read = apply_preset(preset), None
    else:
        read, defaults = _config_keywords(Path(config))
        if Path(values["url_folder_experiment"]).resolve() == read.parent.resolve():
            raise FileExistsError(f"url_folder_experiment: {values['url_folder_experiment']} is the folder of the "
                                  f"config's run ({read}); a relaunch is a new run: give another folder")
    taken = {k: v for k, v in defaults.items() if k not in given}
    for name, value in taken.items():
        if read is not None and not json_kind_ok(value, TABLE[name].kind):
            raise ConfigError(name, f"config {read}: {name}: got {value!r} ({type(value).__name__}), "
                                    f"expected {TABLE[name].kind} (in JSON)")
    return {**values, **taken}, read


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
    recovered: dict                 # keys metadata.json lacked -> the value the run takes (recorded back)
    notes: list[str]                # where each recovered value came from

    @property
    def branch(self) -> bool:
        return self.folder.resolve() != self.source.resolve()


def _run_record(source: Path, name: CheckpointName) -> tuple[dict, str]:
    """(metadata.json as recorded in the set's train state, that file's name); ({}, '') for a set without one
    (written by the original code or before train states recorded it)."""
    path = source / name.state()
    return (load_train_state(path).metadata, path.name) if path.is_file() else ({}, "")


def _recover_missing(values: dict, given: set, stored: dict, meta: dict, meta_path: Path
                     ) -> tuple[dict, list[str]]:
    """Values of the stored keys that `meta` (read from `meta_path`) lacks, each from, in turn: the metadata
    recorded with the checkpoint set, the shapes of the model weights (architecture keys), the original
    trainer's behaviour (keys added by this code, missing from a metadata.json the original code wrote, or
    with a `legacy` value), or the call. ConfigError naming the key and `meta_path` for any other.
    Returns (key -> value, one line per source)."""
    missing = [k for k, row in TABLE.items() if row.resume != NOT_STORED and k not in stored
               and k not in FROM_THE_CALL]
    path = Path(values["resume_checkpoint"])
    record, record_name = _run_record(path.parent, parse_resume_name(path)) if missing else ({}, "")
    record_keys = {**{k: v for k, v in record.items() if k not in BOOKKEEPING}, **(record.get("hdf5_keys") or {})}
    found, sources = {}, {}
    weights = None
    for key in missing:
        row = TABLE[key]
        if row.group == MODEL and weights is None and key not in record_keys:
            weights = infer_architecture(load_state_dict(path), super_res=is_super_res(stored))
        if row.has_legacy:  # absent: the run predates the key (docs/architecture.md#metadata-keys)
            found[key], sources[key] = row.absent, LEGACY
        elif key in record_keys:
            found[key], sources[key] = record_keys[key], f"recorded in {record_name}"
        elif key in (weights or {}):
            found[key], sources[key] = weights[key], f"read off the weights of {path.name}"
        elif "code_version" not in meta and key not in ORIGINAL_DEFAULTS:
            found[key], sources[key] = row.absent, LEGACY
        elif key in given:
            found[key], sources[key] = values[key], "given in the call"
        else:
            raise ConfigError(key, f"{key}: missing from {meta_path}, and not recorded with {path.name}; pass "
                                   f"{key}=<the run's value> (it is then recorded), or add it to {meta_path.name}")
    for key, value in record.items():  # class_names, data_normalization, hdf5_keys of the run
        if key not in meta and key not in TABLE and key not in BOOKKEEPING - {"hdf5_keys"}:
            found[key], sources[key] = value, f"recorded in {record_name}"
    notes = [f"{key}: {found[key]!r} ({source}; missing from {meta_path.name}, now recorded there)"
             for key, source in sources.items() if source != LEGACY]
    legacy = ", ".join(f"{key}={found[key]!r}" for key, source in sources.items() if source == LEGACY)
    notes += [f"{meta_path.name} predates these keys; they take {LEGACY}, now recorded there: {legacy}"] * bool(legacy)
    return found, notes


def plan_resume(values: dict, given: set) -> ResumePlan:
    """The resume of `values["resume_checkpoint"]` (`values`, `given`: from `split_call`).

    A keyword the call did not give takes the metadata.json value (where the file lacks it:
    `_recover_missing`); a given keyword overrides it, except those of FIXED_ON_RESUME (ConfigError naming
    them). A `url_folder_experiment` other than the checkpoint's folder starts a branch there. A checkpoint with
    later sets in its folder is refused (FileExistsError naming them) unless it is a branch or `overwrite`.
    Reads only."""
    path = Path(values["resume_checkpoint"])
    name = parse_resume_name(path)
    if not path.is_file():
        raise FileNotFoundError(f"resume_checkpoint: no file at {path}")
    source = path.parent
    meta_path = find_metadata(source)
    meta = read_metadata(meta_path)
    try:
        check_types(meta)
    except ValueError as err:
        raise ValueError(f"metadata file {meta_path}: {err}") from None
    stored = _stored_keywords(meta)
    if stored.get("type_dataset") != "hdf5":  # an image-folder run stores no HDF5 keys: they are not used
        stored.update({key: TABLE[key].default for key in HDF5_KEYS if key not in stored})
    recovered, notes = _recover_missing(values, given, stored, meta, meta_path)
    stored.update(recovered)
    args, overrides, fixed = {}, {}, []
    for key, value in values.items():
        from_call = key in NOT_STORED_KEYS or key in FROM_THE_CALL
        args[key] = value if from_call or key in given else stored[key]
        if from_call or key not in given:
            continue
        before = stored[key]
        if _comparable(key, value) != _comparable(key, before):
            if key in FIXED_ON_RESUME:
                fixed.append(key)
            else:
                overrides[key] = [before, value]
    if fixed:
        shown = "; ".join(f"{key}={values[key]!r} (checkpoint metadata: {stored[key]!r})" for key in fixed)
        raise ConfigError(fixed[0], f"resume_checkpoint: the call disagrees with {meta_path}: {shown}. Model, "
                                    "diffusion and data-mapping keys cannot change on resume: leave them out")
    args.update({k: v for k, v in stored.items() if k not in args})  # class_names, data_normalization, ...
    folder = Path(values["url_folder_experiment"]) if "url_folder_experiment" in given else source
    args["url_folder_experiment"] = str(folder)
    later = [s for s in list_sets(source) if s.order() > name.order()]
    plan = ResumePlan(path, name, source, folder, args, meta, meta_path, overrides, later, recovered, notes)
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


def _set_key(meta: dict, key: str, value) -> None:
    if key in HDF5_KEYS and isinstance(meta.get("hdf5_keys"), dict):
        meta["hdf5_keys"] = {**meta["hdf5_keys"], key: value}
    else:
        meta[key] = value


def start_resumed_run(plan: ResumePlan, data_info: dict, step_total: int) -> tuple[list[str], dict]:
    """Write what a resume changes on disk (after every check passed): delete the later sets
    (overwrite) or copy the resumed-from set into the branch folder, delete leftovers of interrupted
    saves, and write metadata.json with the values it lacked (`plan.recovered`) and this resume appended to
    its `resumes` list. Returns (the lines to print, the metadata written)."""
    meta = dict(plan.metadata)
    for key, value in plan.recovered.items():
        _set_key(meta, key, value)
    for key, (_, after) in plan.overrides.items():
        _set_key(meta, key, after)
    for key, value in data_info.items():
        meta.setdefault(key, value)
    meta["resumes"] = list(meta.get("resumes") or []) + [{
        "checkpoint": str(plan.checkpoint), "step_total": step_total,
        "overrides": {k: {"from": a, "to": b} for k, (a, b) in plan.overrides.items()},
        "code_version": code_version()}]
    json.dumps(meta)  # TypeError now, before any file changes, if a value cannot be stored
    lines = list(plan.notes)
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
    return lines, meta


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
    extra = {k: v for k, v in args.items() if k not in meta and k not in NOT_STORED_KEYS and k not in HDF5_KEYS}
    meta.update(extra)
    meta.update(data_info)
    meta["code_version"] = code_version()
    return meta


def keyword_defaults(func: Callable) -> dict:
    """{name: default} of a function's keywords (the value a new run uses, for `NotGiven` defaults)."""
    return {name: p.default.value if isinstance(p.default, NotGiven) else p.default
            for name, p in inspect.signature(func).parameters.items() if p.default is not inspect.Parameter.empty}


__all__ = ["FIXED_ON_RESUME", "NotGiven", "split_call", "validate_call", "loop_config", "resolve_run", "ResumePlan",
           "plan_resume", "start_resumed_run", "undo_failed_start", "check_output_folder", "clear_run_files",
           "run_metadata", "keyword_defaults", "launch_defaults"]
