"""Build a UNet and its diffusion from the original `metadata.json` dict; named presets.

`args_dic` is the dict the original `train.main` writes (docs/original.md#metadata-json); keys missing from it
take the original `train.py` defaults (`ORIGINAL_DEFAULTS`).
"""
from __future__ import annotations

from .diffusion_types import LossType, ModelMeanType, ModelVarType
from .gaussian_diffusion import NOISE_SCHEDULES, get_named_beta_schedule
from .respace import SpacedDiffusion, space_timesteps
from .run_config import ORIGINAL_DEFAULTS, ConfigError, DiffusionConfig, ModelConfig, check_types
from .unet import SuperResModel, UNetModel, attention_downsample_factors, attention_sizes

# Channel multipliers per resolution level, by image size (docs/original.md#unet; 512 made to work).
CHANNEL_MULT: dict[int, tuple] = {
    32: (1, 2, 2, 2), 64: (1, 2, 3, 4), 128: (1, 1, 2, 3, 4), 256: (1, 1, 2, 2, 4, 4), 512: (0.5, 1, 1, 2, 2, 4, 4),
}

LOSS_TYPES = {"mse": LossType.MSE, "rescaled_mse": LossType.RESCALED_MSE, "kl": LossType.KL,
              "rescaled_kl": LossType.RESCALED_KL}
OUTPUT_TYPES = {"epsilon": ModelMeanType.EPSILON, "x_start": ModelMeanType.START_X,
                "x_previous": ModelMeanType.PREVIOUS_X, "velocity": ModelMeanType.VELOCITY}

_TRAINING = {"schedule_sampler": "loss-second-moment", "loss_name": "rescaled_mse", "noise_schedule": "cosine",
             "dropout": 0.1, "lr": 1e-4, "batch_size": 8, "microbatch": 4, "rescale_timesteps": True,
             "use_scale_shift_norm": True, "num_heads": 4, "attention_resolutions": "16,8"}

# Named presets: the configurations of the original example scripts and published models.
PRESETS: dict[str, dict] = {
    "mnist_32": {**_TRAINING, "image_size": 32, "num_input_channels": 1, "num_model_channels": 128,
                 "num_res_blocks": 3, "class_cond": True, "num_class": 10, "diffusion_steps": 1000,
                 "learn_sigma": False, "type_dataset": "image"},
    "sar_lowres_128": {**_TRAINING, "image_size": 128, "image_size_hr": 256, "num_input_channels": 1,
                       "num_model_channels": 128, "num_res_blocks": 4, "class_cond": True, "num_class": 10,
                       "diffusion_steps": 2000, "learn_sigma": True, "crop": True, "type_dataset": "image"},
    "sar_superres_128_256": {**_TRAINING, "image_size": 256, "image_size_lr": 128, "num_input_channels": 1,
                             "num_model_channels": 128, "num_res_blocks": 3, "class_cond": True, "num_class": 10,
                             "diffusion_steps": 2000, "learn_sigma": True, "type_dataset": "image"},
    "insar_128": {**_TRAINING, "image_size": 128, "num_input_channels": 1, "num_model_channels": 128,
                  "num_res_blocks": 3, "class_cond": False, "diffusion_steps": 2000, "learn_sigma": True,
                  "type_dataset": "hdf5"},
    "insar_noise_32": {**_TRAINING, "image_size": 32, "num_input_channels": 1, "num_model_channels": 128,
                       "num_res_blocks": 3, "class_cond": False, "diffusion_steps": 1000, "learn_sigma": True,
                       "type_dataset": "hdf5"},
    "demo": {"image_size": 32, "num_input_channels": 1, "num_model_channels": 32, "num_res_blocks": 1,
             "num_heads": 4, "attention_resolutions": "8", "dropout": 0.0, "learn_sigma": False,
             "class_cond": False, "diffusion_steps": 1000, "noise_schedule": "cosine", "loss_name": "mse",
             # velocity (v = alpha eps - sigma x0, Salimans & Ho 2022): x0 = alpha x_t - sigma v is well
             # conditioned at every step (eps is not at the cosine chain's near-zero terminal SNR), and at low
             # noise x0 ~ x_t, a skip path the x_start target lacks: that target made the UNet redraw the fine
             # texture, with 1.5-1.9x the real power at 3-6 px wavelengths (bench/RESULTS.md, "v-prediction").
             "output_type": "velocity",
             # lr and ema_rate of the demo model of `make demo` (main_job.py; bench/RESULTS.md): a short
             # run, so a high learning rate and a short EMA memory
             "schedule_sampler": "uniform", "lr": 5e-4, "ema_rate": "0.99", "batch_size": 32, "microbatch": -1,
             "rescale_timesteps": True, "use_scale_shift_norm": True, "type_dataset": "hdf5"},
}


def apply_preset(name: str, **overrides) -> dict:
    """`train.main` keywords of preset `name` (a key of PRESETS) with `overrides` on top; a new dict
    (lists copied), so the caller may change it. ValueError naming the presets for an unknown name."""
    if name not in PRESETS:
        raise ValueError(f"preset: got {name!r}, expected one of {sorted(PRESETS)}")
    settings = {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in PRESETS[name].items()}
    return {**settings, **overrides}


def with_defaults(args_dic: dict) -> dict:
    """A copy of `args_dic` with every missing original key set to its original default."""
    return {**ORIGINAL_DEFAULTS, **args_dic}


def _fail(key: str, value, expected: str):
    raise ConfigError(key, f"{key}: got {value!r}, expected {expected}")


def validate_args(args_dic: dict) -> None:
    """Check the types and values of the architecture and diffusion keys of `args_dic`; raise ConfigError naming
    key, value and expectation."""
    a = with_defaults(args_dic)
    check_types(a)
    size = a["image_size"]
    if size not in CHANNEL_MULT:
        _fail("image_size", size, f"one of {sorted(CHANNEL_MULT)}")
    if not isinstance(a["num_input_channels"], int) or a["num_input_channels"] < 1:
        _fail("num_input_channels", a["num_input_channels"], "a positive integer")
    C = a["num_model_channels"]
    widths = {int(m * C) for m in CHANNEL_MULT[size]} if isinstance(C, int) else set()
    if not isinstance(C, int) or C < 32 or any(w % 32 for w in widths) or any(m * C != int(m * C) for m in
                                                                              CHANNEL_MULT[size]):
        extra = " and of 64 for 512 px" if size == 512 else ""
        _fail("num_model_channels", C, f"a multiple of 32 (GroupNorm uses 32 groups){extra}")
    if not isinstance(a["num_res_blocks"], int) or a["num_res_blocks"] < 1:
        _fail("num_res_blocks", a["num_res_blocks"], "a positive integer")
    feature_maps = [size // 2 ** i for i in range(len(CHANNEL_MULT[size]))]
    try:  # a size must be a feature map (image_size / 2^k): 7 at 32 px would floor to factor 4
        sizes = attention_sizes(a["attention_resolutions"])
    except (TypeError, ValueError):
        sizes = [None]
    if any(r not in feature_maps for r in sizes):
        _fail("attention_resolutions", a["attention_resolutions"],
              f"comma-separated feature-map sizes among {feature_maps}")
    for key in ("num_heads", "num_heads_upsample"):
        heads = a["num_heads"] if key == "num_heads_upsample" and a[key] == -1 else a[key]
        if not isinstance(heads, int) or heads < 1 or any(w % heads for w in widths):
            _fail(key, a[key], f"a positive integer dividing every attention width {sorted(widths)}"
                  + (" (or -1 = num_heads)" if key == "num_heads_upsample" else ""))
    if not 0.0 <= float(a["dropout"]) < 1.0:
        _fail("dropout", a["dropout"], "a probability in [0, 1)")
    if a["class_cond"] and (not isinstance(a["num_class"], int) or a["num_class"] < 1):
        _fail("num_class", a["num_class"], "a positive integer when class_cond is true")
    if not isinstance(a["diffusion_steps"], int) or a["diffusion_steps"] < 1:
        _fail("diffusion_steps", a["diffusion_steps"], "a positive integer")
    if a["noise_schedule"] not in NOISE_SCHEDULES:
        _fail("noise_schedule", a["noise_schedule"], f"one of {list(NOISE_SCHEDULES)}")
    if a["noise_schedule"] == "linear" and a["diffusion_steps"] < 20:
        _fail("diffusion_steps", a["diffusion_steps"], "at least 20 with the linear schedule (its last beta is 20 / T)")
    if a["loss_name"] not in LOSS_TYPES:
        _fail("loss_name", a["loss_name"], f"one of {list(LOSS_TYPES)}")
    if a["output_type"] not in OUTPUT_TYPES:
        _fail("output_type", a["output_type"], f"one of {list(OUTPUT_TYPES)}")
    if a["timestep_respacing"]:
        check_respacing(a["diffusion_steps"], a["timestep_respacing"])
    check_image_sizes(size, a.get("image_size_hr"), a.get("image_size_lr"))


def check_respacing(num_timesteps: int, spec: str, key: str = "timestep_respacing") -> set[int]:
    """`space_timesteps(num_timesteps, spec)` with a ValueError that names `key`, the value and the accepted forms."""
    try:
        return space_timesteps(num_timesteps, spec)
    except ValueError as err:
        raise ConfigError(key, f"{key}={spec!r} (chain of {num_timesteps} steps): {err}") from None


def check_image_sizes(image_size: int, image_size_hr: int | None, image_size_lr: int | None) -> None:
    """Low-res mode (`image_size_hr`: read size, > image_size) or super-res mode (`image_size_lr`:
    conditioning size, < image_size), at most one; ValueError naming the key otherwise. Sizes in pixels."""
    if image_size_hr is not None and image_size_lr is not None:
        raise ConfigError("image_size_lr", f"image_size_hr={image_size_hr} and image_size_lr={image_size_lr} both "
                          "given; expected at most one (image_size_hr: low-res mode, image_size_lr: super-res mode)")
    hr, lr_size = image_size_hr, image_size_lr
    if hr is not None and (not isinstance(hr, int) or isinstance(hr, bool) or hr <= image_size):
        raise ConfigError("image_size_hr", f"image_size_hr={hr!r}; expected an integer > image_size={image_size} "
                          "(low-res mode: the size read before area downscaling)")
    if lr_size is not None and (not isinstance(lr_size, int) or isinstance(lr_size, bool)
                                or not 1 <= lr_size < image_size):
        raise ConfigError("image_size_lr", f"image_size_lr={lr_size!r}; expected an integer >= 1 and < "
                          f"image_size={image_size} (super-res mode: the conditioning size)")


def create_model(*, image_size: int, num_input_channels: int, num_model_channels: int, num_res_blocks: int,
                 learn_sigma: bool, class_cond: bool, num_class: int | None, use_checkpoint: bool,
                 attention_resolutions: str, num_heads: int, num_heads_upsample: int, use_scale_shift_norm: bool,
                 dropout: float, super_res: bool = False) -> UNetModel:
    """The original UNet for `image_size` (channel multipliers from CHANNEL_MULT)."""
    cls = SuperResModel if super_res else UNetModel
    model = cls(
        num_input_channels,
        model_channels=num_model_channels,
        out_channels=num_input_channels * (2 if learn_sigma else 1),
        num_res_blocks=num_res_blocks,
        attention_resolutions=attention_downsample_factors(attention_resolutions, image_size),
        dropout=dropout,
        channel_mult=CHANNEL_MULT[image_size],
        num_classes=num_class if class_cond else None,
        use_checkpoint=use_checkpoint,
        num_heads=num_heads,
        num_heads_upsample=num_heads_upsample,
        use_scale_shift_norm=use_scale_shift_norm,
    )
    model.image_size = image_size
    return model


def create_gaussian_diffusion(*, steps: int = 1000, learn_sigma: bool = False, sigma_small: bool = False,
                              noise_schedule: str = "linear", loss_name: str = "mse", output_type: str = "epsilon",
                              rescale_timesteps: bool = False, timestep_respacing: str = "",
                              min_snr_gamma: float | None = None,
                              student_t_nu: float | None = None) -> SpacedDiffusion:
    """The diffusion of the original factory: always a SpacedDiffusion (identity spacing when
    `timestep_respacing` is empty), so schedule arrays equal the original's bit for bit. `min_snr_gamma`:
    Min-SNR weighting of the training MSE (None: unweighted, the original). `student_t_nu`: Student-t noise of
    that many degrees of freedom (`noise_law.py`; None: Gaussian, the original)."""
    if learn_sigma:
        var_type = ModelVarType.LEARNED_RANGE
    else:
        var_type = ModelVarType.FIXED_SMALL if sigma_small else ModelVarType.FIXED_LARGE
    return SpacedDiffusion(
        use_timesteps=space_timesteps(steps, timestep_respacing or [steps]),
        betas=get_named_beta_schedule(noise_schedule, steps),
        model_mean_type=OUTPUT_TYPES[output_type],
        model_var_type=var_type,
        loss_type=LOSS_TYPES[loss_name],
        rescale_timesteps=rescale_timesteps,
        min_snr_gamma=min_snr_gamma,
        student_t_nu=student_t_nu,
    )


def model_config(args_dic: dict, super_res: bool) -> ModelConfig:
    """The model group of a metadata dict (missing keys: the original defaults); check it with validate_args."""
    a = with_defaults(args_dic)
    return ModelConfig(**{name: a[name] for name in ModelConfig.__dataclass_fields__ if name != "super_res"},
                       super_res=super_res)


def diffusion_config(args_dic: dict) -> DiffusionConfig:
    """The diffusion group of a metadata dict (missing keys: the original defaults); check it with validate_args."""
    a = with_defaults(args_dic)
    # min_snr_gamma, student_t_nu: absent from metadata written before they existed, i.e. no weighting, Gaussian
    return DiffusionConfig(**{name: a.get(name) for name in DiffusionConfig.__dataclass_fields__})


def build_model(config: ModelConfig) -> UNetModel:
    """The UNet of a model group."""
    return create_model(**vars(config))


def build_diffusion(config: DiffusionConfig) -> SpacedDiffusion:
    """The diffusion of a diffusion group."""
    return create_gaussian_diffusion(
        steps=config.diffusion_steps, learn_sigma=config.learn_sigma, sigma_small=config.sigma_small,
        noise_schedule=config.noise_schedule, loss_name=config.loss_name, output_type=config.output_type,
        rescale_timesteps=config.rescale_timesteps, timestep_respacing=config.timestep_respacing,
        min_snr_gamma=config.min_snr_gamma, student_t_nu=config.student_t_nu)


def _model_and_diffusion(args_dic: dict, super_res: bool):
    validate_args(args_dic)
    return build_model(model_config(args_dic, super_res)), build_diffusion(diffusion_config(args_dic))


def is_super_res(args_dic: dict) -> bool:
    """True when the metadata describes a super-resolution model (it has `image_size_lr`)."""
    return args_dic.get("image_size_lr") is not None


def create_model_and_diffusion(args_dic: dict):
    """(model, diffusion) for a metadata dict; a SuperResModel when `image_size_lr` is set."""
    return _model_and_diffusion(args_dic, super_res=is_super_res(args_dic))


def create_sr_model_and_diffusion(args_dic: dict):
    """(SuperResModel, diffusion) for a metadata dict (the model takes `low_res=` (N, C, h, w))."""
    return _model_and_diffusion(args_dic, super_res=True)
