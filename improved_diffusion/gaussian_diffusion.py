"""Gaussian diffusion (Ho et al. 2020, "DDPM") with the improvements of Nichol & Dhariwal (2021).

Equation numbers: DDPM = Ho et al. 2020 (arXiv 2006.11239); IDDPM = Nichol & Dhariwal 2021
(arXiv 2102.09672); DDIM = Song et al. 2021 (arXiv 2010.02502).
Schedule arrays are float64 numpy; values taken from them are cast to float32 when indexed,
exactly as the original code does (this matters for bit-level compatibility).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from .denoiser import Denoiser
from .diffusion_types import LossType, ModelMeanType, ModelVarType  # also the names upstream users import from here
from .losses import discretized_gaussian_log_likelihood, normal_kl
from .nn import mean_flat
from .noise_law import GAUSSIAN_CHAIN, check_student_t_nu, require_gaussian, standard_noise
from .noise_schedule import CLEAN
from .samplers import ancestral_step, ddim_step, learned_range_fraction, learned_range_log_variance

NOISE_SCHEDULES = ("linear", "cosine")


def get_named_beta_schedule(schedule_name: str, num_diffusion_timesteps: int) -> np.ndarray:
    """Betas (T,) float64 of a named schedule.

    linear: DDPM's 1e-4 .. 0.02 rescaled by 1000 / T. cosine: IDDPM eq. 17 with s = 0.008,
    betas clipped at 0.999.
    """
    if schedule_name == "linear":
        scale = 1000 / num_diffusion_timesteps
        return np.linspace(scale * 0.0001, scale * 0.02, num_diffusion_timesteps, dtype=np.float64)
    if schedule_name == "cosine":
        return betas_for_alpha_bar(
            num_diffusion_timesteps, lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        )
    raise ValueError(f"noise_schedule must be one of {NOISE_SCHEDULES}, got {schedule_name!r}")


def betas_for_alpha_bar(num_diffusion_timesteps: int, alpha_bar: Callable[[float], float],
                        max_beta: float = 0.999) -> np.ndarray:
    """Discretise a continuous alpha_bar(t), t in [0, 1]: beta_i = 1 - alpha_bar((i+1)/T) / alpha_bar(i/T)."""
    T = num_diffusion_timesteps
    return np.array([min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), max_beta) for i in range(T)],
                    dtype=np.float64)


def _extract_into_tensor(arr: np.ndarray, timesteps: torch.Tensor, broadcast_shape) -> torch.Tensor:
    """arr[timesteps] as float32 on the device of `timesteps`, broadcast to `broadcast_shape`."""
    res = torch.from_numpy(arr).to(device=timesteps.device)[timesteps].float()
    res = res.reshape(*res.shape, *([1] * (len(broadcast_shape) - res.ndim)))
    return res.expand(broadcast_shape)


class GaussianDiffusion:
    """A discrete-time Gaussian diffusion with T = len(betas) steps, indexed t = 0 .. T-1.

    The network is always called as ``model(x_t, self.model_time(t), **model_kwargs)``.
    """

    def __init__(self, *, betas: np.ndarray, model_mean_type: ModelMeanType, model_var_type: ModelVarType,
                 loss_type: LossType, rescale_timesteps: bool = False, min_snr_gamma: float | None = None,
                 student_t_nu: float | None = None):
        if min_snr_gamma is not None and not (min_snr_gamma > 0 and math.isfinite(min_snr_gamma)):
            raise ValueError(f"min_snr_gamma: got {min_snr_gamma!r}, expected None or a finite number > 0")
        if min_snr_gamma is not None and model_mean_type == ModelMeanType.PREVIOUS_X:
            raise ValueError("min_snr_gamma: the Min-SNR weight is defined for the 'epsilon', 'x_start' and "
                             "'velocity' outputs, not 'x_previous'")
        self.min_snr_gamma = min_snr_gamma  # None: unweighted MSE (the original)
        check_student_t_nu(student_t_nu)
        self.student_t_nu = student_t_nu  # None: Gaussian noise (the original); else t-EDM's noise (noise_law.py)
        self.model_mean_type = model_mean_type
        self.model_var_type = model_var_type
        self.loss_type = loss_type
        self.rescale_timesteps = rescale_timesteps

        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or not ((betas > 0).all() and (betas <= 1).all()):
            raise ValueError("betas must be a 1-D array with values in (0, 1]")
        self.betas = betas
        self.num_timesteps = len(betas)
        # Identity map to the training chain; SpacedDiffusion keeps the kept original indices.
        self.timestep_map = np.arange(self.num_timesteps)
        self.original_num_steps = self.num_timesteps

        alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(alphas)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.log_one_minus_alphas_cumprod = np.log(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1)
        # Posterior q(x_{t-1} | x_t, x_0), DDPM eqs. 6-7.
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        # log of the posterior variance, whose t = 0 value (0) is replaced by the t = 1 value.
        self.posterior_log_variance_clipped = np.log(np.append(self.posterior_variance[1], self.posterior_variance[1:]))
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - self.alphas_cumprod)

    # ------------------------------------------------------------------ time seen by the network
    def model_time(self, t: torch.Tensor) -> torch.Tensor:
        """What the network receives for chain indices t (N,) int64.

        The original training-chain index t_orig = timestep_map[t]; with `rescale_timesteps`
        it is mapped to t_orig * 1000 / T_orig (float32), so that networks see times in
        [0, 1000) whatever the chain length; otherwise the integer index itself.
        """
        t_orig = torch.as_tensor(self.timestep_map, device=t.device, dtype=torch.int64)[t]
        if self.rescale_timesteps:
            return t_orig.float() * (1000.0 / self.original_num_steps)
        return t_orig

    def _call_model(self, model, x: torch.Tensor, t: torch.Tensor, model_kwargs: dict | None) -> torch.Tensor:
        return model(x, self.model_time(t), **(model_kwargs or {}))

    # ------------------------------------------------------------------ forward process
    def q_mean_variance(self, x_start: torch.Tensor, t: torch.Tensor):
        """Mean, variance and log-variance of q(x_t | x_0) (DDPM eq. 4)."""
        mean = _extract_into_tensor(self.sqrt_alphas_cumprod, t, x_start.shape) * x_start
        variance = _extract_into_tensor(1.0 - self.alphas_cumprod, t, x_start.shape)
        log_variance = _extract_into_tensor(self.log_one_minus_alphas_cumprod, t, x_start.shape)
        return mean, variance, log_variance

    def q_sample(self, x_start: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Sample x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps (DDPM eq. 4), eps from `noise`."""
        if noise is None:
            noise = self.noise(x_start.shape, device=x_start.device, dtype=x_start.dtype)
        return (_extract_into_tensor(self.sqrt_alphas_cumprod, t, x_start.shape) * x_start
                + _extract_into_tensor(self.sqrt_one_minus_alphas_cumprod, t, x_start.shape) * noise)

    def noise(self, shape: tuple[int, ...], generator: torch.Generator | None = None,
              device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Forward-process noise eps of `shape` in this chain's law (`noise_law.standard_noise`)."""
        return standard_noise(shape, generator, device, dtype, self.student_t_nu)

    def q_posterior_mean_variance(self, x_start: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0) (DDPM eqs. 6-7)."""
        mean = (_extract_into_tensor(self.posterior_mean_coef1, t, x_t.shape) * x_start
                + _extract_into_tensor(self.posterior_mean_coef2, t, x_t.shape) * x_t)
        variance = _extract_into_tensor(self.posterior_variance, t, x_t.shape)
        log_variance = _extract_into_tensor(self.posterior_log_variance_clipped, t, x_t.shape)
        return mean, variance, log_variance

    # ------------------------------------------------------------------ reverse process
    def p_mean_variance(self, model, x: torch.Tensor, t: torch.Tensor, clip_denoised: bool = True,
                        max_clip_val: float = 1, denoised_fn: Callable | None = None,
                        model_kwargs: dict | None = None, model_output: torch.Tensor | None = None) -> dict:
        """p(x_{t-1} | x_t): dict of `mean`, `variance`, `log_variance` and `pred_xstart` (all shaped like x).

        The predicted x_0 goes through `denoised_fn` then, with `clip_denoised`, is clamped to
        [-max_clip_val, max_clip_val]. A precomputed raw `model_output` may be passed instead of calling the model.
        """
        C = x.shape[1]
        if model_output is None:
            model_output = self._call_model(model, x, t, model_kwargs)
        if self.model_var_type in (ModelVarType.LEARNED, ModelVarType.LEARNED_RANGE):
            if model_output.shape[1] != 2 * C:
                raise ValueError(f"a learned-variance model must output {2 * C} channels, got {model_output.shape[1]}")
            model_output, var_values = torch.split(model_output, C, dim=1)
            if self.model_var_type == ModelVarType.LEARNED:
                model_log_variance = var_values
            else:  # IDDPM eq. 15, v in [-1, 1] mapped to [0, 1]
                min_log = _extract_into_tensor(self.posterior_log_variance_clipped, t, x.shape)
                max_log = _extract_into_tensor(np.log(self.betas), t, x.shape)
                model_log_variance = learned_range_log_variance(learned_range_fraction(var_values), max_log, min_log)
            model_variance = torch.exp(model_log_variance)
        else:
            if self.model_var_type == ModelVarType.FIXED_LARGE:
                # beta_t, with the first entry set to beta_tilde_1 for a better decoder likelihood
                variance = np.append(self.posterior_variance[1], self.betas[1:])
                log_variance = np.log(variance)
            else:
                variance, log_variance = self.posterior_variance, self.posterior_log_variance_clipped
            model_variance = _extract_into_tensor(variance, t, x.shape)
            model_log_variance = _extract_into_tensor(log_variance, t, x.shape)

        def process_xstart(x0: torch.Tensor) -> torch.Tensor:
            if denoised_fn is not None:
                x0 = denoised_fn(x0)
            return x0.clamp(-max_clip_val, max_clip_val) if clip_denoised else x0

        if self.model_mean_type == ModelMeanType.PREVIOUS_X:
            pred_xstart = process_xstart(self._predict_xstart_from_xprev(x, t, model_output))
            model_mean = model_output
        else:
            if self.model_mean_type == ModelMeanType.START_X:
                pred_xstart = process_xstart(model_output)
            elif self.model_mean_type == ModelMeanType.VELOCITY:
                pred_xstart = process_xstart(self._predict_xstart_from_v(x, t, model_output))
            else:
                pred_xstart = process_xstart(self._predict_xstart_from_eps(x, t, model_output))
            model_mean, _, _ = self.q_posterior_mean_variance(pred_xstart, x, t)
        return {"mean": model_mean, "variance": model_variance, "log_variance": model_log_variance,
                "pred_xstart": pred_xstart}

    def _predict_xstart_from_eps(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_0 = sqrt(1/alpha_bar) x_t - sqrt(1/alpha_bar - 1) eps (inverse of DDPM eq. 4)."""
        return (_extract_into_tensor(self.sqrt_recip_alphas_cumprod, t, x_t.shape) * x_t
                - _extract_into_tensor(self.sqrt_recipm1_alphas_cumprod, t, x_t.shape) * eps)

    def _predict_xstart_from_v(self, x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """x_0 = alpha_t x_t - sigma_t v, alpha_t = sqrt(alpha_bar), sigma_t = sqrt(1 - alpha_bar) (Salimans & Ho
        2022, sec. 4)."""
        return (_extract_into_tensor(self.sqrt_alphas_cumprod, t, x_t.shape) * x_t
                - _extract_into_tensor(self.sqrt_one_minus_alphas_cumprod, t, x_t.shape) * v)

    def velocity(self, x_start: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The v target alpha_t eps - sigma_t x_0 (Salimans & Ho 2022, sec. 4), shaped like x_start."""
        return (_extract_into_tensor(self.sqrt_alphas_cumprod, t, x_start.shape) * noise
                - _extract_into_tensor(self.sqrt_one_minus_alphas_cumprod, t, x_start.shape) * x_start)

    def min_snr_weight(self, t: torch.Tensor) -> torch.Tensor:
        """Min-SNR-gamma weight (N,) float32 of the MSE at chain indices t (Hang et al. 2023, arXiv 2303.09556):
        with SNR_t = alpha_bar_t / (1 - alpha_bar_t), min(SNR_t, gamma) / SNR_t for an epsilon target,
        min(SNR_t, gamma) for x_0 and min(SNR_t, gamma) / (SNR_t + 1) for v; all ones when min_snr_gamma is None."""
        if self.min_snr_gamma is None:
            return torch.ones(t.shape, device=t.device)
        snr = self.alphas_cumprod / (1.0 - self.alphas_cumprod)
        clipped = np.minimum(snr, self.min_snr_gamma)
        weight = {ModelMeanType.EPSILON: clipped / snr, ModelMeanType.START_X: clipped,
                  ModelMeanType.VELOCITY: clipped / (snr + 1.0)}[self.model_mean_type]
        return _extract_into_tensor(weight, t, t.shape)

    def _predict_xstart_from_xprev(self, x_t: torch.Tensor, t: torch.Tensor, xprev: torch.Tensor) -> torch.Tensor:
        """Invert the posterior mean (DDPM eq. 7) for x_0."""
        return (_extract_into_tensor(1.0 / self.posterior_mean_coef1, t, x_t.shape) * xprev
                - _extract_into_tensor(self.posterior_mean_coef2 / self.posterior_mean_coef1, t, x_t.shape) * x_t)

    def _predict_eps_from_xstart(self, x_t: torch.Tensor, t: torch.Tensor, pred_xstart: torch.Tensor) -> torch.Tensor:
        return ((_extract_into_tensor(self.sqrt_recip_alphas_cumprod, t, x_t.shape) * x_t - pred_xstart)
                / _extract_into_tensor(self.sqrt_recipm1_alphas_cumprod, t, x_t.shape))

    @staticmethod
    def _noise_like(x: torch.Tensor, generator) -> torch.Tensor:
        """Standard-normal noise shaped like x. `generator`: None, one torch.Generator, or a sequence of
        CPU generators, one per example (then example i's noise does not depend on the batch it is in)."""
        if isinstance(generator, (list, tuple)):
            return torch.stack([torch.randn(x.shape[1:], generator=g, dtype=x.dtype) for g in generator]).to(x.device)
        return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)

    def _step(self, model, x: torch.Tensor, t: torch.Tensor, clip_denoised: bool, max_clip_val: float,
              model_kwargs: dict | None, generator, ddim: bool, eta: float = 0.0) -> dict:
        """One step x_t -> x_{t-1} at chain indices t (N,) int64 through the one sampler implementation
        (`samplers.ddim_step` / `samplers.ancestral_step` over a `Denoiser`), examples grouped by t.
        The noise is drawn for the whole batch (`_noise_like`) and is zero at t = 0."""
        kwargs = dict(model_kwargs or {})
        if not ddim or eta:
            require_gaussian(self.student_t_nu, GAUSSIAN_CHAIN)
        if set(kwargs) - {"y", "low_res"}:
            raise ValueError(f"model_kwargs: expected only 'y' and 'low_res', got {sorted(kwargs)}")
        mean, std, pred_xstart = torch.empty_like(x), torch.zeros_like(x), torch.empty_like(x)
        for i in torch.unique(t).tolist():
            rows = t == i
            den = Denoiser(model, self, clip_denoised=clip_denoised, max_clip_val=max_clip_val,
                           **{k: v[rows] for k, v in kwargs.items()})
            t_i, s_i = (torch.tensor(float(v), dtype=torch.float64) for v in (i, i - 1 if i > 0 else CLEAN))
            if ddim:
                mean[rows], std_i, pred_xstart[rows] = ddim_step(den, x[rows], t_i, s_i, den.schedule, eta)
            else:
                mean[rows], std_i, pred_xstart[rows] = ancestral_step(den, x[rows], t_i, s_i, den.schedule,
                                                                      den.variance)
            if std_i is not None:
                std[rows] = std_i
        return {"sample": mean + std * self._noise_like(x, generator), "pred_xstart": pred_xstart}

    def p_sample(self, model, x: torch.Tensor, t: torch.Tensor, clip_denoised: bool = True, max_clip_val: float = 1,
                 model_kwargs: dict | None = None, generator=None) -> dict:
        """One ancestral step x_t -> x_{t-1} (`samplers.ancestral_step`) for x (N, C, H, W), t (N,) int64:
        dict of `sample` and `pred_xstart` shaped like x. `generator`: see `_noise_like`."""
        return self._step(model, x, t, clip_denoised, max_clip_val, model_kwargs, generator, ddim=False)

    def ddim_sample(self, model, x: torch.Tensor, t: torch.Tensor, clip_denoised: bool = True,
                    max_clip_val: float = 1, model_kwargs: dict | None = None, eta: float = 0.0,
                    generator=None) -> dict:
        """One DDIM step x_t -> x_{t-1} (`samplers.ddim_step`) for x (N, C, H, W), t (N,) int64: dict of
        `sample` and `pred_xstart` shaped like x. `generator`: see `_noise_like`."""
        return self._step(model, x, t, clip_denoised, max_clip_val, model_kwargs, generator, ddim=True, eta=eta)

    def _sample_loop_progressive(self, step, model, shape, noise, device, progress, generator, **step_kwargs
                                 ) -> Iterator[dict]:
        if device is None:
            device = next(model.parameters()).device
        img = noise if noise is not None else self.noise(shape, generator, device)
        indices = range(self.num_timesteps - 1, -1, -1)
        for i in tqdm(indices, desc="sampling", leave=False, disable=not progress):
            t = torch.full((shape[0],), i, device=device, dtype=torch.int64)
            with torch.no_grad():
                out = step(model, img, t, generator=generator, **step_kwargs)
            yield out
            img = out["sample"]

    def p_sample_loop_progressive(self, model, shape, noise=None, clip_denoised=True, max_clip_val=1,
                                  model_kwargs=None, device=None, progress=False, generator=None) -> Iterator[dict]:
        """Yield the output of `p_sample` at every step, from t = T-1 down to 0."""
        yield from self._sample_loop_progressive(
            self.p_sample, model, shape, noise, device, progress, generator,
            clip_denoised=clip_denoised, max_clip_val=max_clip_val, model_kwargs=model_kwargs)

    def p_sample_loop(self, model, shape, noise=None, clip_denoised=True, max_clip_val=1, model_kwargs=None,
                      device=None, progress=False, generator=None) -> torch.Tensor:
        """Ancestral sampling over the whole chain; returns x_0 of shape `shape`."""
        for out in self.p_sample_loop_progressive(model, shape, noise, clip_denoised, max_clip_val, model_kwargs,
                                                  device, progress, generator):
            final = out
        return final["sample"]

    def ddim_sample_loop_progressive(self, model, shape, noise=None, clip_denoised=True, max_clip_val=1,
                                     model_kwargs=None, device=None, progress=False, eta=0.0,
                                     generator=None) -> Iterator[dict]:
        """Yield the output of `ddim_sample` at every step of this chain."""
        yield from self._sample_loop_progressive(
            self.ddim_sample, model, shape, noise, device, progress, generator,
            clip_denoised=clip_denoised, max_clip_val=max_clip_val, model_kwargs=model_kwargs, eta=eta)

    def ddim_sample_loop(self, model, shape, noise=None, clip_denoised=True, max_clip_val=1, model_kwargs=None,
                         device=None, progress=False, eta=0.0, generator=None) -> torch.Tensor:
        """DDIM sampling over every step of this chain (respace the chain for fewer steps)."""
        for out in self.ddim_sample_loop_progressive(model, shape, noise, clip_denoised, max_clip_val, model_kwargs,
                                                     device, progress, eta, generator):
            final = out
        return final["sample"]

    # ------------------------------------------------------------------ losses and the bound
    def _vb_terms_bpd(self, model, x_start: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
                      clip_denoised: bool = True, max_clip_val: float = 1, model_kwargs: dict | None = None,
                      model_output: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> dict:
        """One term of the variational bound in bits/dim (N,): L_{t-1} = KL(q || p) for t > 0 and the
        decoder NLL -log p(x_0 | x_1) at t = 0 (DDPM eq. 5). Also returns `pred_xstart`."""
        true_mean, _, true_log_variance = self.q_posterior_mean_variance(x_start, x_t, t)
        out = self.p_mean_variance(model, x_t, t, clip_denoised, max_clip_val, model_kwargs=model_kwargs,
                                   model_output=model_output)
        kl = mean_flat(normal_kl(true_mean, true_log_variance, out["mean"], out["log_variance"]), mask) / np.log(2.0)
        decoder_nll = -discretized_gaussian_log_likelihood(
            x_start, means=out["mean"], log_scales=0.5 * out["log_variance"])
        decoder_nll = mean_flat(decoder_nll, mask) / np.log(2.0)
        return {"output": torch.where(t == 0, decoder_nll, kl), "pred_xstart": out["pred_xstart"]}

    def training_losses(self, model, x_start: torch.Tensor, t: torch.Tensor, model_kwargs: dict | None = None,
                        noise: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> dict:
        """Per-example losses (N,) for one batch: keys `loss`, `mse` and (learned variance) `vb`.

        `loss` = w_t mse (+ vb), w_t the Min-SNR weight when `min_snr_gamma` is set (`mse` stays unweighted).

        `mask` (shaped like x_start, 1 = valid pixel) restricts every mean to valid pixels.
        """
        if noise is None:
            noise = self.noise(x_start.shape, device=x_start.device, dtype=x_start.dtype)
        x_t = self.q_sample(x_start, t, noise=noise)
        terms = {}
        if self.loss_type.is_vb():
            terms["loss"] = self._vb_terms_bpd(model, x_start, x_t, t, clip_denoised=False,
                                               model_kwargs=model_kwargs, mask=mask)["output"]
            if self.loss_type == LossType.RESCALED_KL:
                terms["loss"] = terms["loss"] * self.num_timesteps
            return terms

        model_output = self._call_model(model, x_t, t, model_kwargs)
        if self.model_var_type in (ModelVarType.LEARNED, ModelVarType.LEARNED_RANGE):
            C = x_t.shape[1]
            model_output, var_values = torch.split(model_output, C, dim=1)
            # IDDPM sec. 3.1: the VLB term trains the variance only (stop-gradient on the mean).
            frozen = torch.cat([model_output.detach(), var_values], dim=1)
            terms["vb"] = self._vb_terms_bpd(None, x_start, x_t, t, clip_denoised=False, model_output=frozen,
                                             mask=mask)["output"]
            if self.loss_type == LossType.RESCALED_MSE:
                terms["vb"] = terms["vb"] * (self.num_timesteps / 1000.0)  # IDDPM sec. 3.1, lambda = 0.001
        if self.model_mean_type == ModelMeanType.PREVIOUS_X:
            target = self.q_posterior_mean_variance(x_start, x_t, t)[0]
        elif self.model_mean_type == ModelMeanType.START_X:
            target = x_start
        elif self.model_mean_type == ModelMeanType.VELOCITY:
            target = self.velocity(x_start, t, noise)
        else:
            target = noise
        terms["mse"] = mean_flat((target - model_output) ** 2, mask)
        weighted = terms["mse"] if self.min_snr_gamma is None else self.min_snr_weight(t) * terms["mse"]
        terms["loss"] = weighted + terms["vb"] if "vb" in terms else weighted
        return terms

    def _prior_bpd(self, x_start: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """KL(q(x_T | x_0) || N(0, I)) in bits/dim (N,): the prior term of the bound."""
        t = torch.full((x_start.shape[0],), self.num_timesteps - 1, device=x_start.device, dtype=torch.int64)
        mean, _, log_variance = self.q_mean_variance(x_start, t)
        return mean_flat(normal_kl(mean, log_variance, 0.0, 0.0), mask) / np.log(2.0)

    def calc_bpd_loop(self, model, x_start: torch.Tensor, clip_denoised: bool = True, max_clip_val: float = 1,
                      subset_timesteps: int | None = None, model_kwargs: dict | None = None,
                      generator=None, progress: bool = False, mask: torch.Tensor | None = None) -> dict:
        """The variational bound of x_start (N, C, H, W) in bits/dim, term by term.

        Returns `total_bpd` (N,) = sum of the computed terms + `prior_bpd` (N,), `vb` (N, T_used),
        `xstart_mse` and `mse` (eps) (N, T_used). With `subset_timesteps=k` only the k lowest-noise
        terms t = k-1 .. 0 are computed, so `total_bpd` is a partial sum. `generator`: see `_noise_like`.
        `mask` (shaped like x_start, 1 = valid pixel): every term is averaged over the valid pixels only
        (bits per valid dimension; masked pixels still enter the network as their filled values).
        """
        require_gaussian(self.student_t_nu, "the bits/dim bound")
        steps = self.num_timesteps if subset_timesteps is None else min(int(subset_timesteps), self.num_timesteps)
        vb, xstart_mse, mse = [], [], []
        for i in tqdm(range(steps - 1, -1, -1), desc="bits/dim", leave=False, disable=not progress):
            t = torch.full((x_start.shape[0],), i, device=x_start.device, dtype=torch.int64)
            noise = self._noise_like(x_start, generator)
            x_t = self.q_sample(x_start, t, noise=noise)
            with torch.no_grad():
                out = self._vb_terms_bpd(model, x_start, x_t, t, clip_denoised=clip_denoised,
                                         max_clip_val=max_clip_val, model_kwargs=model_kwargs, mask=mask)
            vb.append(out["output"])
            xstart_mse.append(mean_flat((out["pred_xstart"] - x_start) ** 2, mask))
            mse.append(mean_flat((self._predict_eps_from_xstart(x_t, t, out["pred_xstart"]) - noise) ** 2, mask))
        vb_t = torch.stack(vb, dim=1)
        prior_bpd = self._prior_bpd(x_start, mask)
        return {"total_bpd": vb_t.sum(dim=1) + prior_bpd, "prior_bpd": prior_bpd, "vb": vb_t,
                "xstart_mse": torch.stack(xstart_mse, dim=1), "mse": torch.stack(mse, dim=1)}
