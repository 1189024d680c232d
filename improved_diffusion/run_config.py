"""The one table of `train.main`'s keywords and the typed groups a run is resolved into.

Each row of TABLE gives a keyword's new-run default, its type, its group (model / diffusion / data / loop /
process), its resume rule and its help text; every other list of training keywords (the original defaults, the
JSON types checked in metadata.json, what is fixed on resume or never stored) is a view of it. A resolved run is
frozen dataclasses, one per group (`ModelConfig`, `DiffusionConfig`, `DataConfig`, `LoopConfig`); building them
from a `train.main` call is `train_setup.resolve_run`. This module imports nothing of the project.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

MODEL, DIFFUSION, DATA, LOOP, PROCESS = "model", "diffusion", "data", "loop", "process"
FIXED = "fixed"              # model, diffusion, how stored values map to model units: never changes on resume
OVERRIDABLE = "overridable"  # stored in metadata.json; a resume takes it from there unless the call gives it
NOT_STORED = "not stored"    # about this process only: never written to metadata.json, always from the call
_SAME = object()


class ConfigError(ValueError):
    """A training keyword or metadata.json value is wrong; `.key` names it (the message starts with it)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key

    def __reduce__(self):  # pickled across processes (DataLoader workers, torch.distributed) with its key
        return ConfigError, (self.key, str(self))


class Key(NamedTuple):
    """One training keyword. `legacy`: the value a run recorded without this key in its metadata.json ran
    with (the original trainer's behaviour), where it differs from `default`. `strict`: its JSON type is
    checked exactly in metadata.json (`check_types`)."""
    name: str
    default: Any
    kind: str
    group: str
    resume: str
    help: str
    strict: bool = False
    legacy: Any = _SAME
    in_group: str = ""  # the metadata.json group holding it ('' = top level)

    @property
    def has_legacy(self) -> bool:
        return self.legacy is not _SAME

    @property
    def absent(self) -> Any:
        """The value of a run whose metadata.json predates this key."""
        return self.default if self.legacy is _SAME else self.legacy


# The keywords of the original train.py main() (docs/original.md#train-defaults), in its key order: the first
# keys of every metadata.json.
_ORIGINAL_ROWS = (
    Key("data_train_dir", None, 'str | None', DATA, OVERRIDABLE, 'training data folder'),
    Key("data_val_dir", None, 'str | None', DATA, OVERRIDABLE,
        'validation folder (read only when compute_val is true)'),
    Key("num_epochs", 1000, 'int', LOOP, OVERRIDABLE, 'total epochs of the run, also when resuming'),
    Key("schedule_sampler", "uniform", 'str', LOOP, OVERRIDABLE,
        "timestep sampling: 'uniform' or 'loss-second-moment'"),
    Key("lr", 1e-4, 'float', LOOP, OVERRIDABLE, 'AdamW learning rate'),
    Key("weight_decay", 0.0, 'float', LOOP, OVERRIDABLE, 'AdamW weight decay', strict=True),
    Key("lr_anneal_steps", 0, 'int', LOOP, OVERRIDABLE,
        '> 0: lr decays linearly to 0 at this total step, where training stops'),
    Key("batch_size", 4, 'int', LOOP, OVERRIDABLE, 'batch size per process'),
    Key("microbatch", -1, 'int', LOOP, OVERRIDABLE,
        '-1: whole batch at once; else micro-batch size (gradients averaged)'),
    Key("ema_rate", "0.9999", 'str', LOOP, OVERRIDABLE, 'EMA rate(s) of the weights, comma-separated'),
    Key("save_interval", None, 'int | None', LOOP, OVERRIDABLE, 'also save a checkpoint every N steps within an epoch'),
    Key("resume_checkpoint", None, 'str | None', PROCESS, OVERRIDABLE,
        'model_epoch=E_iter=I.pt or _step=S.pt to continue (see docs)'),
    Key("use_fp16", False, 'bool', LOOP, OVERRIDABLE,
        "original fp16 switch: amp='fp16' (CUDA only; use amp='bf16' on CPU)"),
    Key("fp16_scale_growth", 1e-3, 'float', LOOP, OVERRIDABLE, 'fp16 loss scale grows by 2**this per good step'),
    Key("image_size", 64, 'int', MODEL, FIXED, "H = W of the model's images, 32/64/128/256/512", strict=True),
    Key("num_input_channels", 3, 'int', MODEL, FIXED, 'image channels', strict=True),
    Key("num_model_channels", 128, 'int', MODEL, FIXED, 'UNet base width (multiple of 32)', strict=True),
    Key("num_res_blocks", 2, 'int', MODEL, FIXED, 'residual blocks per resolution', strict=True),
    Key("num_heads", 4, 'int', MODEL, FIXED, 'attention heads', strict=True),
    Key("num_heads_upsample", -1, 'int', MODEL, FIXED, 'attention heads in the decoder (-1: num_heads)', strict=True),
    Key("attention_resolutions", "16,8", 'str', MODEL, FIXED, 'feature-map sizes with self-attention, comma-separated'),
    Key("dropout", 0.0, 'float', MODEL, OVERRIDABLE, 'dropout in residual blocks', strict=True),
    Key("learn_sigma", False, 'bool', MODEL, FIXED, 'learn the reverse-process variance (IDDPM)', strict=True),
    Key("sigma_small", False, 'bool', DIFFUSION, FIXED,
        'fixed variance: posterior (True) or beta (False)', strict=True),
    Key("class_cond", False, 'bool', MODEL, FIXED, 'class-conditional model', strict=True),
    Key("num_class", None, 'int | None', MODEL, FIXED, 'number of classes (class_cond)', strict=True),
    Key("diffusion_steps", 1000, 'int', DIFFUSION, FIXED, 'T, steps of the diffusion chain', strict=True),
    Key("noise_schedule", "linear", 'str', DIFFUSION, FIXED, "'linear' or 'cosine'", strict=True),
    Key("timestep_respacing", "", 'str', DIFFUSION, FIXED, "train on a respaced chain ('' = all steps)", strict=True),
    Key("loss_name", "mse", 'str', DIFFUSION, FIXED, "'mse', 'rescaled_mse', 'kl' or 'rescaled_kl'", strict=True),
    Key("output_type", "epsilon", 'str', DIFFUSION, FIXED,
        "network predicts 'epsilon', 'x_start', 'x_previous' or 'velocity'", strict=True),
    Key("rescale_timesteps", True, 'bool', DIFFUSION, FIXED, 'network sees t * 1000 / T', strict=True),
    Key("use_checkpoint", False, 'bool', MODEL, OVERRIDABLE,
        'gradient checkpointing (less memory, more compute)', strict=True),
    Key("use_scale_shift_norm", True, 'bool', MODEL, FIXED,
        'FiLM-style time conditioning after GroupNorm', strict=True),
    Key("type_dataset", "image", 'str', DATA, FIXED, "'image' (PNG/JPG/TIFF folder) or 'hdf5' (folder of .hdf5 files)"),
    Key("compute_val", False, 'bool', LOOP, OVERRIDABLE,
        'validation bits/dim each epoch; then only improving epochs are saved'),
    Key("crop", False, 'bool', DATA, OVERRIDABLE, 'random crop instead of resize (image folders)'),)
# Keywords added by this code, in the order of `train.main`.
_ADDED_ROWS = (
    Key("ema_warmup", True, 'bool', LOOP, OVERRIDABLE,
        'EMA decay ramps up to ema_rate: min(rate, (1 + step) / (10 + step))', legacy=False),
    Key("url_folder_experiment", "./models_data/first_try/", 'str', PROCESS, OVERRIDABLE,
        'output folder (resume: another = branch)'),
    Key("list_keys_hdf5_original", ("wrap", "unwrap"), 'list[str]', DATA, OVERRIDABLE,
        'keys allowed in the HDF5 files', in_group="hdf5_keys"),
    Key("key_data", "unwrap", 'str', DATA, OVERRIDABLE, 'HDF5 key of the data to model', in_group="hdf5_keys"),
    Key("key_other", None, 'str | None', DATA, OVERRIDABLE, 'HDF5 key used to count examples cheaply',
        in_group="hdf5_keys"),
    Key("subset_timesteps", None, 'int | None', LOOP, OVERRIDABLE,
        'validation bound over the k lowest-noise steps only'),
    Key("image_size_hr", None, 'int | None', DATA, FIXED,
        'low-res mode: read at this size, area-downscale to image_size'),
    Key("image_size_lr", None, 'int | None', DATA, FIXED,
        'super-res mode: condition on the image area-downscaled to this'),
    Key("key_class", None, 'str | None', DATA, OVERRIDABLE,
        'HDF5 key of integer class labels (class_cond with HDF5)', in_group="hdf5_keys"),
    Key("normalization", "none", 'Literal["none", "minmax", "range", "robust"]', DATA, FIXED,
        'stored values (HDF5 or image folder) -> model units'),
    Key("norm_range", None, 'list[float] | None', DATA, FIXED,
        "value range mapped to [-1, 1] ('range' normalization)"),
    Key("nan_policy", "error", 'str', DATA, OVERRIDABLE,
        "NaN pixels in HDF5 data: 'error', or 'fill' (0, masked out of the loss)"),
    Key("phase_as_cos_sin", False, 'bool', DATA, FIXED, 'HDF5 wrapped phase as (cos, sin) channels'),
    Key("db", False, 'bool', DATA, FIXED, 'SAR image values to decibels before normalisation (see db_quantity)'),
    Key("db_quantity", "power", 'Literal["power", "amplitude"]', DATA, FIXED,
        'with db: power 10*log10, amplitude 20*log10', legacy="power"),
    Key("seed", 0, 'int', LOOP, OVERRIDABLE, 'seed of weights, data order, timesteps and noise'),
    Key("device", "auto", 'str', PROCESS, NOT_STORED, "'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1', ..."),
    Key("num_workers", 0, 'int', DATA, NOT_STORED, 'data-loading worker processes'),
    Key("amp", "auto", 'str', LOOP, OVERRIDABLE,
        "'auto' (bf16 where computed natively), 'none' (original fp32), 'bf16', 'fp16'", legacy="none"),
    Key("grad_clip", None, 'float | None', LOOP, OVERRIDABLE, 'max global gradient norm (None: no clipping)'),
    Key("warmup_steps", 0, 'int', LOOP, OVERRIDABLE, 'linear lr warm-up over this many steps'),
    Key("keep_checkpoints", 3, 'int | None', LOOP, OVERRIDABLE,
        'keep the newest K sets (compute_val: K best by val); None: all'),
    Key("log_interval", 100, 'int', LOOP, OVERRIDABLE, 'steps between tensorboard scalars'),
    Key("grid_interval", 1, 'int', LOOP, OVERRIDABLE,
        'epochs between tensorboard sample grids from the EMA model (0: never)'),
    Key("compile", False, 'bool', LOOP, NOT_STORED, 'torch.compile the model (falls back to eager where it fails)'),
    Key("channels_last", "auto", 'bool | str', LOOP, OVERRIDABLE,
        "NHWC: true, false or 'auto' (where faster; never with amp=none)", legacy=False),
    Key("min_snr_gamma", None, 'float | None', DIFFUSION, OVERRIDABLE,
        'Min-SNR-gamma weight of the MSE (Hang et al. 2023); None: off', legacy=None),
    Key("student_t_nu", None, 'float | None', DIFFUSION, FIXED,
        'Student-t noise of nu > 2 dof (t-EDM); None: Gaussian', legacy=None),
    Key("symmetry_augment", False, 'bool', DATA, OVERRIDABLE,
        'random flips / 90-degree rotations (only for isotropic data)', legacy=False),
    Key("class_scale", None, 'list[float] | None', DATA, FIXED,
        'network input x / class_scale[y] (class_cond); None: off', legacy=None),
    Key("class_weights", None, 'list[float] | None', DATA, OVERRIDABLE,
        'class k drawn with odds class_weights[k]; None: off', legacy=None),
    Key("overwrite", False, 'bool', PROCESS, NOT_STORED, 'new run in a non-empty folder; resume: delete later sets'),
    # A new run's defaults from a named preset or an earlier run's metadata.json (docs/training.md#presets-and-
    # configs): not stored, the keys they expand to are.
    Key("preset", None, 'str | None', PROCESS, NOT_STORED,
        "named preset (e.g. 'demo'): the defaults of every keyword not given"),
    Key("config", None, 'str | None', PROCESS, NOT_STORED,
        "a run's metadata.json whose keywords are the defaults of a new run"),)
TABLE: dict[str, Key] = {row.name: row for row in _ORIGINAL_ROWS + _ADDED_ROWS}

ORIGINAL_DEFAULTS: dict = {row.name: row.default for row in _ORIGINAL_ROWS}
FIXED_ON_RESUME = frozenset(name for name, row in TABLE.items() if row.resume == FIXED)
NOT_STORED_KEYS = frozenset(name for name, row in TABLE.items() if row.resume == NOT_STORED)
HDF5_KEYS = tuple(name for name, row in TABLE.items() if row.in_group == "hdf5_keys")
BOOKKEEPING = frozenset({"resumes", "code_version", "hdf5_keys"})  # metadata.json keys that are not keywords


def group_keys(group: str) -> tuple[str, ...]:
    """The keywords of `group` (MODEL, DIFFUSION, DATA, LOOP or PROCESS), in table order."""
    return tuple(name for name, row in TABLE.items() if row.group == group)


def _type_name(value) -> str:
    return "null" if value is None else type(value).__name__


def _wrong_type(value, kind: str) -> bool:
    if kind == "bool":
        return not isinstance(value, (bool, np.bool_))
    if kind in ("int", "int | None"):
        return (value is not None or kind == "int") and (
            isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)))
    if kind == "float":
        return (isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number))
                or not np.isfinite(value))
    return not isinstance(value, str)


_INTEGER = "an integer (e.g. 32, not 32.0 or \"32\")"
_EXPECTED = {"bool": "a boolean (JSON true/false, not a string or number)", "int": _INTEGER, "int | None": _INTEGER,
             "float": "a finite number (e.g. 0.1, not a string or null)", "str": "a string"}


def check_types(a: dict) -> None:
    """ConfigError naming the first `strict` key of `a` (booleans first, then integers, numbers, strings) whose
    value has the wrong JSON type, e.g. `class_cond: "false"` (a string, which Python reads as true) or `32.0`, or a
    `resumes` entry that is not a list of objects."""
    for kinds in (("bool",), ("int", "int | None"), ("float",), ("str",)):
        for name, row in TABLE.items():
            if row.strict and row.kind in kinds and name in a and _wrong_type(a[name], row.kind):
                raise ConfigError(name, f"{name}: got {a[name]!r} ({_type_name(a[name])}), "
                                        f"expected {_EXPECTED[row.kind]}")
    resumes = a.get("resumes")  # bookkeeping, not a keyword: the resume history train.py appends to
    if resumes is not None and not (isinstance(resumes, list) and all(isinstance(r, dict) for r in resumes)):
        raise ConfigError("resumes", f"resumes: got {resumes!r} ({_type_name(resumes)}), expected a list with one "
                                     "object per resume (checkpoint, step_total, overrides, code_version)")


_JSON_TYPES = {"None": type(None), "bool": bool, "int": int, "float": (int, float), "str": str, "list": list}


def json_kind_ok(value, kind: str) -> bool:
    """Whether a JSON value fits a row's `kind` (e.g. 'int | None', 'list[float]', 'Literal["a", "b"]': a string);
    booleans are not numbers, the items of a list are checked too."""
    for part in kind.split(" | "):
        name = "str" if part.startswith("Literal") else part.split("[")[0]
        if name in ("int", "float") and isinstance(value, bool):
            continue
        if isinstance(value, _JSON_TYPES[name]) and (name != "list" or all(
                json_kind_ok(item, part[5:-1]) for item in value)):
            return True
    return False


@dataclass(frozen=True)
class ModelConfig:
    """The UNet: the MODEL keys (`script_util.create_model`'s keywords); `super_res`: a SuperResModel."""
    image_size: int
    num_input_channels: int
    num_model_channels: int
    num_res_blocks: int
    num_heads: int
    num_heads_upsample: int
    attention_resolutions: str
    dropout: float
    learn_sigma: bool
    class_cond: bool
    num_class: int | None
    use_checkpoint: bool
    use_scale_shift_norm: bool
    super_res: bool = False


@dataclass(frozen=True)
class DiffusionConfig:
    """The diffusion chain: the DIFFUSION keys and `learn_sigma` (the reverse variance is learned)."""
    sigma_small: bool
    diffusion_steps: int
    noise_schedule: str
    timestep_respacing: str
    loss_name: str
    output_type: str
    rescale_timesteps: bool
    learn_sigma: bool
    min_snr_gamma: float | None = None
    student_t_nu: float | None = None


@dataclass(frozen=True)
class DataConfig:
    """The training (and validation) loaders: the DATA keys, with the model's size and classes, the batch size
    and seed, and what an earlier part of the run recorded (`class_names`, `norm_stats`: its
    `data_normalization`). Every field but the two folders is a keyword of `dataloaders.create_dataloader`.
    `data_val_dir` is None when the run does not validate."""
    data_train_dir: str
    data_val_dir: str | None
    type_dataset: str
    image_size: int
    num_channels: int
    batch_size: int
    class_cond: bool
    num_class: int | None
    crop: bool
    image_size_hr: int | None
    image_size_lr: int | None
    list_keys_hdf5_original: tuple[str, ...] | None
    key_data: str
    key_other: str | None
    key_class: str | None
    normalization: str
    norm_range: tuple[float, float] | None
    nan_policy: str
    phase_as_cos_sin: bool
    db: bool
    db_quantity: str
    symmetry_augment: bool
    num_workers: int
    seed: int
    class_names: tuple[str, ...] | None = None
    norm_stats: dict | None = None
    class_scale: tuple[float, ...] | None = None
    class_weights: tuple[float, ...] | None = None


@dataclass(frozen=True)
class LoopConfig:
    """The training loop (`train_util.TrainLoop`): the LOOP keys, resolved. `amp`: 'none', 'bf16' or 'fp16'
    (what 'auto' / use_fp16 mean on the run's device); `channels_last`: bool; `ema_rates`: the rates of
    `ema_rate`, each in (0, 1). lr, weight_decay: AdamW's; steps count optimizer steps."""
    num_epochs: int
    lr: float
    ema_rates: tuple[float, ...] = (0.9999,)
    ema_warmup: bool = False
    schedule_sampler: str = "uniform"
    weight_decay: float = 0.0
    lr_anneal_steps: int = 0
    warmup_steps: int = 0
    batch_size: int = 4
    microbatch: int = -1
    grad_clip: float | None = None
    save_interval: int | None = None
    keep_checkpoints: int | None = None
    log_interval: int = 100
    grid_interval: int = 1
    amp: str = "none"
    fp16_scale_growth: float = 1e-3
    compute_val: bool = False
    subset_timesteps: int | None = None
    seed: int = 0
    compile: bool = False
    channels_last: bool = False


@dataclass(frozen=True)
class RunConfig:
    """A resolved training run: its four groups, and `args`, every keyword with amp and channels_last as resolved
    (what metadata.json records)."""
    model: ModelConfig
    diffusion: DiffusionConfig
    data: DataConfig
    loop: LoopConfig
    args: dict
