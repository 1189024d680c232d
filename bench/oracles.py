"""Exact-ODE oracles for the deterministic samplers: per-pixel data whose denoiser is known in closed form.

Two data distributions, every pixel independent:
- "gaussian": x0 ~ N(MU, S^2) (bench/README.md); the probability-flow ODE map is closed-form.
- "gmm": x0 ~ sum_k w_k N(m_k, s_k^2), two components (GMM_WEIGHTS, GMM_MEANS, GMM_STDS); the
  denoiser is closed-form and the exact ODE map is integrated numerically in float64 (DOP853 at
  rtol 1e-11), per pixel value (the ODE is separable).

At a noise level alpha_bar = ab (alpha = sqrt(ab), sigma = sqrt(1 - ab), x_t = alpha x0 + sigma eps),
`x0_prediction(name, x, ab)` is E[x0 | x_t = x], `eps_prediction` the matching E[eps | x_t], and
`exact_x0(name, x_T, ab_T)` the clean end point of the probability-flow ODE started from x_T at ab_T.
Only numpy, scipy and torch are needed, so the reference harness (oracle_reference_diffusers.py, run
in its own environment with diffusers) uses the same definitions as the project's bench.
"""
import math

import numpy as np
import torch
from scipy.integrate import solve_ivp

MU, S = 0.3, 0.5
GMM_WEIGHTS, GMM_MEANS, GMM_STDS = (0.35, 0.65), (-0.5, 0.4), (0.15, 0.3)
ORACLES = ("gaussian", "gmm")
LAMBDA_CLEAN = 25.0  # half-log-SNR where the GMM integration stops: sigma/alpha = 1.4e-11, x moves < 1e-20 beyond
ODE_RTOL, ODE_ATOL = 1e-11, 1e-13


def _components(name: str, scale: float = 1.0) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """(weights, means, stds) of the oracle's data multiplied by `scale`."""
    if name == "gaussian":
        return (1.0,), (scale * MU,), (scale * S,)
    if name == "gmm":
        return GMM_WEIGHTS, tuple(scale * m for m in GMM_MEANS), tuple(scale * s for s in GMM_STDS)
    raise ValueError(f"oracle must be one of {ORACLES}, got {name!r}")


def x0_prediction(name: str, x: torch.Tensor, ab, scale: float = 1.0) -> torch.Tensor:
    """E[x0 | x_t = x] for x (any shape, float64) at alpha_bar `ab` (scalar or broadcastable to x), for the
    oracle's data multiplied by `scale`.

    Each component k contributes x_t ~ N(alpha m_k, alpha^2 s_k^2 + sigma^2) and, given it, the
    Gaussian posterior mean m_k + alpha s_k^2 (x - alpha m_k) / (alpha^2 s_k^2 + sigma^2); the
    responsibilities weight them."""
    weights, means, stds = _components(name, scale)
    ab = torch.as_tensor(ab, dtype=x.dtype, device=x.device)
    alpha = ab.sqrt()
    log_resp, post = [], []
    for w, m, s in zip(weights, means, stds):
        var = ab * s * s + 1 - ab
        log_resp.append(math.log(w) - 0.5 * torch.log(var) - 0.5 * (x - alpha * m) ** 2 / var)
        post.append(m + alpha * s * s * (x - alpha * m) / var)
    resp = torch.softmax(torch.stack(log_resp), dim=0)
    return (resp * torch.stack(post)).sum(0)


def eps_prediction(name: str, x: torch.Tensor, ab, scale: float = 1.0) -> torch.Tensor:
    """E[eps | x_t = x] = (x - alpha x0_hat) / sigma at alpha_bar `ab` < 1 (what a perfect eps-model outputs)."""
    ab = torch.as_tensor(ab, dtype=x.dtype, device=x.device)
    return (x - ab.sqrt() * x0_prediction(name, x, ab, scale)) / (1 - ab).sqrt()


def exact_x0(name: str, x_T: torch.Tensor, ab_T: float, numeric: bool = False, scale: float = 1.0) -> torch.Tensor:
    """The probability-flow ODE's clean end point for x_T (any shape) started at alpha_bar ab_T (float64);
    `numeric` integrates the Gaussian too (a check of the integrator against the closed form).

    Gaussian: x0 = MU + S (x_T - alpha_T MU) / sqrt(alpha_T^2 S^2 + sigma_T^2). GMM: in half-log-SNR
    lambda the ODE reads dx/dlambda = alpha (x0_hat(x, lambda) - alpha x) with alpha^2 = sigmoid(2 lambda)
    (the data-prediction form of DPM-Solver++, arXiv 2211.01095 eq. (8), differentiated), integrated
    from lambda_T to LAMBDA_CLEAN, where alpha = 1 to 1e-22. `scale` multiplies the oracle's data."""
    _, means, stds = _components(name, scale)
    if name == "gaussian" and not numeric:
        mu, s = means[0], stds[0]
        return mu + s * (x_T - math.sqrt(ab_T) * mu) / math.sqrt(ab_T * s * s + 1 - ab_T)
    lam_T = 0.5 * math.log(ab_T / (1 - ab_T))

    def rhs(lam: float, x: np.ndarray) -> np.ndarray:
        ab = 1 / (1 + math.exp(-2 * lam))
        alpha = math.sqrt(ab)
        x0 = x0_prediction(name, torch.from_numpy(x), ab, scale).numpy()
        return alpha * (x0 - alpha * x)

    flat = x_T.detach().cpu().double().flatten().numpy()
    sol = solve_ivp(rhs, (lam_T, LAMBDA_CLEAN), flat, method="DOP853", rtol=ODE_RTOL, atol=ODE_ATOL)
    if not sol.success:
        raise RuntimeError(f"the exact GMM ODE solve failed: {sol.message}")
    return torch.from_numpy(sol.y[:, -1].copy()).reshape(x_T.shape).to(x_T.device)


class GaussianFieldDenoiser:
    """The exact denoiser of a correlated Gaussian field x0 ~ N(mean, cov) over the pixels of a (C, H, W)
    image (d = C H W, row-major), for the samplers' calls ``denoiser(x, t)`` / ``denoiser.predict(x, t)``:

        E[x0 | x_t] = mean + alpha cov (alpha^2 cov + sigma^2 I)^-1 (x_t - alpha mean)

    (x_t = alpha x0 + sigma eps). With cov = V diag(lam) V^T computed once, the gain is
    V diag(alpha lam / (alpha^2 lam + sigma^2)) V^T: two (N, d) x (d, d) products per call.
    mean (d,), cov (d, d) float64 in model units; `schedule` a `DiscreteSchedule`; `dtype` of the products."""

    def __init__(self, mean: np.ndarray, cov: np.ndarray, schedule, dtype: torch.dtype = torch.float64) -> None:
        lam, vecs = np.linalg.eigh(np.asarray(cov, dtype=np.float64))
        self.lam = torch.from_numpy(np.clip(lam, 0.0, None)).to(dtype)
        self.vecs = torch.from_numpy(vecs).to(dtype)
        self.mean = torch.from_numpy(np.asarray(mean, dtype=np.float64)).to(dtype)
        self.schedule, self.nfe = schedule, 0

    def predict(self, x: torch.Tensor, t) -> tuple[torch.Tensor, None]:
        """x (N, C, H, W) at time t (index units, sigma_t > 0) -> (E[x0 | x_t] with x's dtype and shape, None)."""
        alpha, sigma = float(self.schedule.alpha(t)), float(self.schedule.sigma(t))
        gain = alpha * self.lam / (alpha ** 2 * self.lam + sigma ** 2)
        centred = x.flatten(1).to(self.vecs) - alpha * self.mean
        x0 = self.mean + ((centred @ self.vecs) * gain) @ self.vecs.T
        self.nfe += 1
        return x0.to(x.dtype).reshape(x.shape), None

    def __call__(self, x: torch.Tensor, t) -> torch.Tensor:
        return self.predict(x, t)[0]
