"""The adapter between a trained network and the samplers.

`Denoiser(model, diffusion, y=..., low_res=...)` is the callable every sampler uses:
``denoiser(x, t) -> x0_hat``. It hides the UNet's conventions: the learned-sigma half of the
output, what the network predicts (noise, x0, v or x_{t-1}), the time it receives
(`diffusion.model_time`, interpolated between indices for fractional times when the model uses
rescaled times, rounded to the nearest index otherwise), the fixed conditioning (labels, low-res
input), the clipping or dynamic thresholding of x0, and the network's precision: under `amp` only the network
call is autocast; its output is cast back to x's dtype before any arithmetic, so the trajectory keeps x's dtype.
"""
import math

import torch

from .acceleration import autocast
from .diffusion_types import ModelMeanType, ModelVarType
from .noise_schedule import DiscreteSchedule
from .samplers import dynamic_threshold, learned_range_fraction, x0_from_eps

VARIANCE_NAMES = {ModelVarType.FIXED_SMALL: "fixed_small", ModelVarType.FIXED_LARGE: "fixed_large",
                  ModelVarType.LEARNED_RANGE: "learned_range"}


class Denoiser:
    """x0 prediction of `model` at any time t in [0, T-1] of `diffusion`'s chain (index units).

    model: network called as model(x, model_time, **kwargs), in eval mode.
    diffusion: a GaussianDiffusion (or SpacedDiffusion: t then indexes its kept steps).
    y: int64 (N,) class labels, fixed for the whole trajectory (class-conditional models).
    low_res: float (N, C, h, w) low-resolution input in model units (super-resolution models).
    clip_denoised / max_clip_val: clamp x0 to [-max_clip_val, max_clip_val];
    threshold_ratio: use dynamic thresholding at that quantile instead (Imagen), None to disable.
    amp: resolved autocast mode of the network call ('none', 'bf16', 'fp16'; `acceleration.resolve_amp`).
    """

    def __init__(self, model: torch.nn.Module, diffusion, y: torch.Tensor | None = None,
                 low_res: torch.Tensor | None = None, clip_denoised: bool = True, max_clip_val: float = 1.0,
                 threshold_ratio: float | None = None, amp: str = "none") -> None:
        if max_clip_val <= 0:
            raise ValueError(f"max_clip_val must be > 0, got {max_clip_val}")
        if threshold_ratio is not None and not 0 < threshold_ratio <= 1:
            raise ValueError(f"threshold_ratio must be in (0, 1], got {threshold_ratio}")
        if diffusion.model_var_type not in VARIANCE_NAMES:
            raise ValueError(f"unsupported model_var_type {diffusion.model_var_type}; "
                             f"expected one of {sorted(v.name for v in VARIANCE_NAMES)}")
        self.model, self.diffusion = model, diffusion
        self.schedule = DiscreteSchedule(diffusion.alphas_cumprod)
        self.student_t_nu = getattr(diffusion, "student_t_nu", None)  # the law of x_T (noise_law.py)
        self.model_kwargs = {k: v for k, v in (("y", y), ("low_res", low_res)) if v is not None}
        self.clip_denoised, self.max_clip_val, self.threshold_ratio = clip_denoised, max_clip_val, threshold_ratio
        self.variance = VARIANCE_NAMES[diffusion.model_var_type]
        self.amp = amp
        self.nfe = 0  # network evaluations so far

    @property
    def _dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def model_time(self, t: torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
        """What the network receives at time t (float scalar, index units) for a batch of n: the core's
        `diffusion.model_time` at integer times, linear between indices for rescaled-time models,
        at the nearest index for integer-time models."""
        t = float(t)
        if not 0 <= t <= self.diffusion.num_timesteps - 1:
            raise ValueError(f"network time must be in [0, {self.diffusion.num_timesteps - 1}], got {t}")
        lo = math.floor(t) if self.diffusion.rescale_timesteps else round(t)
        frac = t - lo if self.diffusion.rescale_timesteps else 0.0
        index = torch.full((n,), lo, dtype=torch.int64, device=device)
        time = self.diffusion.model_time(index)
        if frac > 0:
            time = time + frac * (self.diffusion.model_time(index + 1) - time)
        return time

    def predict(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (N, C, H, W) at time t -> (x0_hat with x's dtype, learned-variance fraction v in [0, 1] or None)."""
        n = x.shape[0]
        for name, value in self.model_kwargs.items():
            if value.shape[0] != n:
                raise ValueError(f"{name} has batch size {value.shape[0]}, x has {n}")
        with autocast(x.device, self.amp):
            out = self.model(x.to(self._dtype), self.model_time(t, n, x.device), **self.model_kwargs)
        out = out.to(x.dtype)
        self.nfe += 1
        v = None
        if self.variance == "learned_range":
            out, v_raw = out.split(x.shape[1], dim=1)
            v = learned_range_fraction(v_raw)
        x0 = self._to_x0(x, t, out)
        if self.threshold_ratio is not None:
            x0 = dynamic_threshold(x0, self.threshold_ratio, self.max_clip_val)
        elif self.clip_denoised:
            x0 = x0.clamp(-self.max_clip_val, self.max_clip_val)
        return x0, v

    def _to_x0(self, x: torch.Tensor, t: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        mean_type = self.diffusion.model_mean_type
        if mean_type == ModelMeanType.START_X:
            return out
        if mean_type == ModelMeanType.EPSILON:
            return x0_from_eps(self.schedule, x, out, t)
        if mean_type == ModelMeanType.VELOCITY:  # x0 = alpha_t x_t - sigma_t v (Salimans & Ho 2022, sec. 4)
            return self.schedule.alpha(t).to(x) * x - self.schedule.sigma(t).to(x) * out
        # x_{t-1} = coef1 x0 + coef2 x_t (DDPM eq. 7), defined at chain indices only
        i = round(float(t))
        coef1, coef2 = self.diffusion.posterior_mean_coef1[i], self.diffusion.posterior_mean_coef2[i]
        return (out - coef2 * x) / coef1

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.predict(x, t)[0]
