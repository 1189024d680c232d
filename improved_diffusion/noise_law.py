"""The law of the forward process's noise eps in x_t = alpha_t x_0 + sigma_t eps: standard normal (DDPM eq. 4)
or, for heavy-tailed data, a multivariate Student-t with nu degrees of freedom per example (the t-EDM forward
process of Pandey et al., ICLR 2025, "Heavy-Tailed Diffusion Models", sec. 3: one scalar nu).

The Student-t noise of one example is eps = z * sqrt(nu / kappa), z ~ N(0, I) over all its values and one
kappa ~ chi^2_nu per example, so an example's pixels share one random scale: its per-pixel marginal is t_nu
(variance nu / (nu - 2)) and nu -> infinity gives back the Gaussian. The deterministic samplers (DDIM with
eta = 0, DPM-Solver) integrate the same flow for any noise law once the denoiser E[x_0 | x_t] is trained under
it and x_T is drawn from it; the ancestral chain and the bits/dim bound use Gaussian posteriors and do not
apply (`require_gaussian`).
"""
from __future__ import annotations

import math

import numpy as np
import torch

GAUSSIAN_CHAIN = "the ancestral sampler (and DDIM with eta > 0)"  # the samplers that Student-t models refuse


def check_student_t_nu(nu: float | None) -> None:
    """ValueError unless `nu` is None (Gaussian noise) or a finite number > 2 (finite noise variance)."""
    if nu is None:
        return
    if isinstance(nu, bool) or not isinstance(nu, (int, float)) or not (math.isfinite(nu) and nu > 2):
        raise ValueError(f"student_t_nu: got {nu!r}; expected None (Gaussian noise) or a finite number > 2 "
                         "(degrees of freedom of the Student-t noise)")


def standard_noise(shape: tuple[int, ...], generator: torch.Generator | None = None,
                   device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                   student_t_nu: float | None = None) -> torch.Tensor:
    """Noise eps of `shape` (N, ...): N(0, I) when `student_t_nu` is None (exactly `torch.randn`), else the
    multivariate Student-t of the module docstring, one chi^2 scale per leading index. The chi^2 draws come from
    a numpy generator seeded from `generator`, so the result is fixed by `generator`'s state."""
    if generator is not None:
        device = generator.device if device is None else device
    z = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    if student_t_nu is None:
        return z
    seed = int(torch.randint(2 ** 62, (1,), generator=generator, device=z.device if generator is None
                             else generator.device))
    kappa = np.random.default_rng(seed).chisquare(student_t_nu, size=shape[0])
    scale = torch.as_tensor(np.sqrt(student_t_nu / kappa), dtype=z.dtype, device=z.device)
    return z * scale.reshape(-1, *([1] * (len(shape) - 1)))


def require_gaussian(student_t_nu: float | None, what: str) -> None:
    """ValueError naming `what` when the noise is Student-t (`what` assumes Gaussian posteriors)."""
    if student_t_nu is not None:
        raise ValueError(f"{what} assumes Gaussian noise, and this model was trained with Student-t noise "
                         f"(student_t_nu={student_t_nu}); use the deterministic samplers (dpm-solver, or ddim "
                         "with eta=0)")
