"""Samplers: plain functions over a denoiser and a time grid.

A *denoiser* is a callable ``denoiser(x, t) -> x0_hat``: x (N, C, H, W), t a float64 scalar tensor
in index units (see `noise_schedule`), x0_hat the data prediction with x's dtype and shape
(clipping / thresholding already applied). The ancestral sampler also needs
``denoiser.predict(x, t) -> (x0_hat, v)`` with v the learned-variance fraction in [0, 1] or None.

A *grid* is a decreasing float64 tensor of times; a last entry of -1 (`CLEAN`) means the final
step lands on clean data (alpha = 1, sigma = 0): that step returns the denoiser's prediction
(first order; multistep solvers of order >= 2 add `clean_step`'s second-order term), so it costs one
network evaluation like every other step.
The trajectory keeps x's dtype (pass float64 to integrate in float64).
"""
import math
import numbers
from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm

from .noise_schedule import GRIDS, DiscreteSchedule, lambda_range, make_grid

ALGORITHMS = ("dpmsolver", "dpmsolver++")
_STAGES = {1: [], 2: [0.5], 3: [1 / 3, 2 / 3]}  # intermediate lambda fractions r of singlestep DPM-Solver-k


def _steps(grid: torch.Tensor, progress: bool, desc: str):
    pairs = list(zip(grid[:-1], grid[1:]))
    return tqdm(pairs, desc=desc, leave=False, disable=not progress)


def is_clean(schedule: DiscreteSchedule, t: torch.Tensor) -> bool:
    return float(schedule.sigma(t)) == 0.0


def eps_from_x0(schedule: DiscreteSchedule, x: torch.Tensor, x0: torch.Tensor, t) -> torch.Tensor:
    """eps = (x_t - alpha_t x0) / sigma_t, inverting x_t = alpha_t x0 + sigma_t eps (DDPM eq. 4); x's dtype."""
    return (x - schedule.alpha(t).to(x) * x0) / schedule.sigma(t).to(x)


def x0_from_eps(schedule: DiscreteSchedule, x: torch.Tensor, eps: torch.Tensor, t) -> torch.Tensor:
    """x0 = (x_t - sigma_t eps) / alpha_t, inverting x_t = alpha_t x0 + sigma_t eps (DDPM eq. 4); x's dtype."""
    return (x - schedule.sigma(t).to(x) * eps) / schedule.alpha(t).to(x)


def learned_range_fraction(raw: torch.Tensor) -> torch.Tensor:
    """The network's variance output v_raw in [-1, 1] mapped to the interpolation fraction v in [0, 1]."""
    return (raw + 1) / 2


def learned_range_log_variance(v, log_beta, log_beta_tilde):
    """log sigma^2 = v log beta + (1 - v) log beta_tilde (IDDPM eq. 15); floats or broadcastable tensors."""
    return v * log_beta + (1 - v) * log_beta_tilde


def _prediction(schedule: DiscreteSchedule, x: torch.Tensor, x0: torch.Tensor, t, algorithm: str) -> torch.Tensor:
    """The quantity the solver integrates: x0 (dpmsolver++) or eps (dpmsolver)."""
    if algorithm == "dpmsolver++":
        return x0
    return eps_from_x0(schedule, x, x0, t)


def add_noise(mean: torch.Tensor, std, generator: torch.Generator | None) -> torch.Tensor:
    """mean + std z with z ~ N(0, I) drawn from `generator`; mean itself when std is None (no draw)."""
    if std is None:
        return mean
    return mean + std * torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)


def _phi(k: int, z: float) -> float:
    """phi_k(z) = (e^z - sum_{j<k} z^j / j!) / z^k (exponential-integrator functions), k >= 1, z != 0."""
    value = math.expm1(z) / z
    for j in range(1, k):
        value = (value - 1 / math.factorial(j)) / z
    return value


def exponential_step(schedule: DiscreteSchedule, x: torch.Tensor, t, s, coeffs: Sequence[torch.Tensor],
                     algorithm: str) -> torch.Tensor:
    """Exact integration from t to s of the semi-linear ODE when the prediction F is the polynomial
    F(lambda_t + u) = sum_j coeffs[j] u^j in u = lambda - lambda_t (DPM-Solver eq. 3.6 / DPM-Solver++ eq. 9):
        dpmsolver:   x_s = (alpha_s/alpha_t) x_t - sigma_s sum_j j! c_j h^(j+1) phi_(j+1)(h)
        dpmsolver++: x_s = (sigma_s/sigma_t) x_t + alpha_s sum_j j! c_j h^(j+1) phi_(j+1)(-h)
    with h = lambda_s - lambda_t > 0.
    """
    h = float(schedule.lambda_(s) - schedule.lambda_(t))
    if algorithm == "dpmsolver++":
        ratio, scale, z = schedule.sigma(s) / schedule.sigma(t), schedule.alpha(s), -h
    else:
        ratio, scale, z = schedule.alpha(s) / schedule.alpha(t), -schedule.sigma(s), h
    out = float(ratio) * x
    for j, c in enumerate(coeffs):
        out = out + float(scale) * math.factorial(j) * h ** (j + 1) * _phi(j + 1, z) * c
    return out


def _taylor_coeffs(history: Sequence[tuple[float, torch.Tensor]]) -> list[torch.Tensor]:
    """Coefficients c_j of the polynomial through the points (lambda_i, F_i) in u = lambda - lambda_0,
    history[0] being the current point (multistep derivative estimates, any spacing)."""
    lam0 = history[0][0]
    u = torch.tensor([lam - lam0 for lam, _ in history], dtype=torch.float64)
    inv = torch.linalg.inv(torch.vander(u, increasing=True))
    return [sum(float(inv[j, i]) * F for i, (_, F) in enumerate(history)) for j in range(len(history))]


def ddim_step(denoiser: Callable, x: torch.Tensor, t, s, schedule: DiscreteSchedule, eta: float = 0.0):
    """One DDIM step t -> s (Song et al. 2021, eq. 12; sigma from eq. 16 scaled by eta): returns
    (mean shaped like x, std: float or None when the step is deterministic, x0_hat)."""
    x0 = denoiser(x, t)
    eps = eps_from_x0(schedule, x, x0, t)
    ab_t, ab_s = float(schedule.alpha_bar(t)), float(schedule.alpha_bar(s))
    sigma_eta = eta * math.sqrt((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s))
    mean = math.sqrt(ab_s) * x0 + math.sqrt(max(1 - ab_s - sigma_eta ** 2, 0.0)) * eps
    return mean, (sigma_eta if sigma_eta > 0 else None), x0


def ancestral_step(denoiser, x: torch.Tensor, t, s, schedule: DiscreteSchedule, variance: str = "fixed_large"):
    """One ancestral step t -> s (DDPM Algorithm 2): q(x_s | x_t, x0_hat) with beta = 1 - alpha_bar_t /
    alpha_bar_s (DDPM eqs. 6-7, the respaced chain of IDDPM section 4). Returns (mean shaped like x,
    std: float, tensor shaped like x (learned_range) or None on the step to clean data, x0_hat)."""
    x0, v = denoiser.predict(x, t)
    ab_t, ab_s = float(schedule.alpha_bar(t)), float(schedule.alpha_bar(s))
    beta = 1 - ab_t / ab_s
    coef_x0, coef_x = math.sqrt(ab_s) * beta / (1 - ab_t), math.sqrt(ab_t / ab_s) * (1 - ab_s) / (1 - ab_t)
    mean = coef_x0 * x0 + coef_x * x
    if is_clean(schedule, s):
        return mean, None, x0
    beta_tilde = beta * (1 - ab_s) / (1 - ab_t)
    if variance == "learned_range":
        std = torch.exp(0.5 * learned_range_log_variance(v, math.log(beta), math.log(beta_tilde)))
    else:
        std = math.sqrt(beta if variance == "fixed_large" else beta_tilde)
    return mean, std, x0


VARIANCES = ("fixed_small", "fixed_large", "learned_range")


def sample_ddim(denoiser: Callable, x: torch.Tensor, grid: torch.Tensor, schedule: DiscreteSchedule,
                eta: float = 0.0, generator: torch.Generator | None = None, progress: bool = False
                ) -> torch.Tensor:
    """DDIM (`ddim_step`) along `grid`; eta = 0 is the ODE. x (N, C, H, W) -> clean sample, x's dtype."""
    for t, s in _steps(grid, progress, "DDIM"):
        mean, std, _ = ddim_step(denoiser, x, t, s, schedule, eta)
        x = add_noise(mean, std, generator)
    return x


def sample_ancestral(denoiser, x: torch.Tensor, grid: torch.Tensor, schedule: DiscreteSchedule,
                     variance: str = "fixed_large", generator: torch.Generator | None = None,
                     progress: bool = False) -> torch.Tensor:
    """Ancestral sampling (`ancestral_step`) along integer times `grid` ending at -1. `variance`:
    "fixed_small" (posterior beta_tilde), "fixed_large" (beta) or "learned_range" (IDDPM eq. 15 with
    the denoiser's fraction v). x (N, C, H, W) -> clean sample, x's dtype."""
    if variance not in VARIANCES:
        raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
    for t, s in _steps(grid, progress, "ancestral"):
        mean, std, _ = ancestral_step(denoiser, x, t, s, schedule, variance)
        x = add_noise(mean, std, generator)
    return x


def _singlestep_update(denoiser, schedule: DiscreteSchedule, x: torch.Tensor, t, s, order: int, algorithm: str,
                       F0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One singlestep DPM-Solver-k step t -> s (DPM-Solver Algorithms 1-2, DPM-Solver++ Algorithm 1,
    Taylor form). Returns (x_s of order k, x_s of order k-1 sharing the same evaluations)."""
    lam_t = schedule.lambda_(t)
    h = float(schedule.lambda_(s) - lam_t)
    if F0 is None:
        F0 = _prediction(schedule, x, denoiser(x, t), t, algorithm)
    coeffs = [F0]
    for r in _STAGES[order]:
        s_r = schedule.inverse_lambda(lam_t + r * h)
        u = exponential_step(schedule, x, t, s_r, coeffs, algorithm)
        F_r = _prediction(schedule, u, denoiser(u, s_r), s_r, algorithm)
        lower, coeffs = coeffs, [F0, (F_r - F0) / (r * h)]
    x_s = exponential_step(schedule, x, t, s, coeffs, algorithm)
    return x_s, (exponential_step(schedule, x, t, s, lower, algorithm) if order > 1 else x_s)


def sample_dpm_singlestep(denoiser: Callable, x: torch.Tensor, grid: torch.Tensor, orders: Sequence[int],
                          schedule: DiscreteSchedule, algorithm: str = "dpmsolver++", progress: bool = False
                          ) -> torch.Tensor:
    """Singlestep DPM-Solver(++) with orders[i] (1-3) on interval i of `grid`; sum(orders) network calls."""
    check_solver_options(algorithm, "singlestep", max(orders))
    if len(orders) != len(grid) - 1:
        raise ValueError(f"need one order per grid interval: {len(orders)} orders for {len(grid) - 1} intervals")
    for (t, s), order in zip(_steps(grid, progress, f"{algorithm} singlestep"), orders):
        if is_clean(schedule, s):
            if order != 1:
                raise ValueError(f"the step to clean data must be first order, got order {order}")
            return denoiser(x, t)
        x = _singlestep_update(denoiser, schedule, x, t, s, order, algorithm)[0]
    return x


def multistep_order(lambdas: Sequence[float], h: float, order: int, max_step_ratio: float) -> int:
    """Order (1 to `order`) of a multistep step of size h > 0 in lambda from lambdas[0], the current time,
    with the previous evaluations at lambdas[1:] (newest first).

    The k-th previous point is used (order k + 1) only while the mean spacing back to it,
    (lambdas[0] - lambdas[k]) / k, is within a factor `max_step_ratio` of h either way. The multistep
    Taylor terms are divided differences over the past steps (DPM-Solver++ eq. (14) and Algorithm 2 with
    r_i = h_(i-1) / h_i); their error enters the update scaled by ~(h / spacing)^k, so a step much larger
    than the past spacing (the typical last jump of a time-uniform grid towards index 0) extrapolates
    wildly, and one much smaller builds the terms from points too far away. Lowering the order there is
    what the reference solvers do at the end of the trajectory (DPM-Solver's and diffusers'
    `lower_order_final`), decided here from the step sizes instead of the step count.
    """
    k = 1
    while k < min(order, len(lambdas)):
        spacing = (lambdas[0] - lambdas[k]) / k
        if not (spacing <= max_step_ratio * h and h <= max_step_ratio * spacing):
            break
        k += 1
    return k


def clean_step(x0: torch.Tensor, u: float, eps: torch.Tensor, previous: tuple[float, torch.Tensor] | None,
               max_step_ratio: float = 3.0) -> torch.Tensor:
    """The step to clean data from noise-to-signal ratio u = sigma / alpha, where the evaluation gave x0
    and eps = (x - alpha x0) / sigma; `previous` = (u_p, eps_p) of the evaluation before (u_p > u), or None.

    In y = x / alpha = x0_hat + u eps the ODE is dy/du = eps (DPM-Solver eq. (3.4) in u = e^(-lambda)),
    so clean data is y(0) = y - int_0^u eps du. Constant eps gives the denoiser's x0 (first order);
    eps linear in u through (u_p, eps_p) and (u, eps) gives x0 + u^2 / 2 (eps - eps_p) / (u - u_p)
    (second order, used while u is within `max_step_ratio` of u_p - u, as `multistep_order` decides).
    Near the data eps is nearly linear in u (eps ~ u (y - mode) / s^2 for a mode of width s), where the
    polynomials in lambda of the other steps cannot reach lambda = infinity. Shapes as x0."""
    if previous is None or multistep_order([-u, -previous[0]], u, 2, max_step_ratio) < 2:
        return x0
    u_p, eps_p = previous
    return x0 + (0.5 * u * u / (u - u_p)) * (eps - eps_p)


def sample_dpm_multistep(denoiser: Callable, x: torch.Tensor, grid: torch.Tensor, schedule: DiscreteSchedule,
                         order: int = 2, algorithm: str = "dpmsolver++", lower_order_final: bool = False,
                         max_step_ratio: float = 3.0, progress: bool = False) -> torch.Tensor:
    """Multistep DPM-Solver(++) of `order` (DPM-Solver++ section 4.2): the prediction's Taylor terms come
    from the previous evaluations (warm-up with lower orders); one network call per grid interval.

    Variable steps: the order of each step comes from `multistep_order` (a previous evaluation is used
    only while the spacing back to it is within `max_step_ratio` of the current step, either way). With
    `lower_order_final` the order is also capped by the number of steps left. For order >= 2 the step to
    clean data is `clean_step`'s second-order step in sigma / alpha (first order with `lower_order_final`)."""
    check_solver_options(algorithm, "multistep", order)
    history: list[tuple[float, torch.Tensor]] = []
    num_steps, previous = len(grid) - 1, None
    for i, (t, s) in enumerate(_steps(grid, progress, f"{algorithm} multistep")):
        x0 = denoiser(x, t)
        u_t, eps = float(schedule.sigma(t) / schedule.alpha(t)), _prediction(schedule, x, x0, t, "dpmsolver")
        if is_clean(schedule, s):
            second = order > 1 and not lower_order_final and previous is not None
            return clean_step(x0, u_t, eps, previous if second else None, max_step_ratio)
        previous = (u_t, eps)
        lam_t = float(schedule.lambda_(t))
        h = float(schedule.lambda_(s)) - lam_t
        history = [(lam_t, _prediction(schedule, x, x0, t, algorithm))] + history[:order - 1]
        k = multistep_order([lam for lam, _ in history], h, order, max_step_ratio)
        k = min(k, num_steps - i) if lower_order_final else k
        x = exponential_step(schedule, x, t, s, _taylor_coeffs(history[:k]), algorithm)
    return x


def sample_dpm_adaptive(denoiser: Callable, x: torch.Tensor, schedule: DiscreteSchedule, order: int = 3,
                        algorithm: str = "dpmsolver++", t_start: float | None = None, t_end: float = 0.0,
                        to_clean: bool = True, atol: float = 0.0078, rtol: float = 0.05, h_init: float = 0.05,
                        theta: float = 0.9) -> torch.Tensor:
    """Adaptive step size DPM-Solver-12 / -23 (DPM-Solver section 4.1, Algorithm 4): a step of order
    `order` (2 or 3) is accepted when its RMS distance to the embedded lower-order solution, scaled by
    max(atol, rtol |x|), is <= 1; h (in lambda) is updated as theta h E^(-1/order)."""
    check_solver_options(algorithm, "adaptive", order)
    t_start = schedule.num_timesteps - 1 if t_start is None else t_start
    t, lam_end = torch.tensor(float(t_start), dtype=torch.float64), float(schedule.lambda_(t_end))
    h, x_prev = h_init, x
    while float(schedule.lambda_(t)) < lam_end - 1e-8:
        lam_t = float(schedule.lambda_(t))
        s = schedule.inverse_lambda(torch.tensor(min(lam_t + h, lam_end), dtype=torch.float64))
        x_high, x_low = _singlestep_update(denoiser, schedule, x, t, s, order, algorithm)
        tol = torch.maximum(torch.full_like(x_low, atol), rtol * torch.maximum(x_low.abs(), x_prev.abs()))
        err = float(((x_high - x_low) / tol).pow(2).flatten(1).mean(1).sqrt().max())
        if err <= 1:
            x, x_prev, t = x_high, x_low, s
        h = min(theta * h * max(err, 1e-12) ** (-1 / order), lam_end - float(schedule.lambda_(t)))
    return denoiser(x, t) if to_clean else x


def dynamic_threshold(x0: torch.Tensor, ratio: float = 0.995, max_val: float = 1.0) -> torch.Tensor:
    """Dynamic thresholding (Imagen, Saharia et al. 2022, section 2.3): per sample, s = the `ratio`
    quantile of |x0| (at least max_val); x0 is clamped to [-s, s] and rescaled to [-max_val, max_val]."""
    s = torch.quantile(x0.abs().flatten(1).float(), ratio, dim=1).to(x0).clamp(min=max_val)
    s = s.reshape(-1, *([1] * (x0.ndim - 1)))
    return torch.maximum(torch.minimum(x0, s), -s) * (max_val / s)


METHODS = ("singlestep", "singlestep_fixed", "multistep", "adaptive")


def singlestep_orders(budget: int, order: int, fixed: bool) -> list[int]:
    """Orders of the singlestep steps using `budget` network calls: as many steps of `order` as fit and
    one lower-order step for the remainder (DPM-Solver-fast), or only steps of `order` when `fixed`."""
    if fixed and budget % order:
        raise ValueError(f"singlestep_fixed of order {order} needs a number of steps (excluding the final "
                         f"denoising call) divisible by {order}, got {budget}")
    return [order] * (budget // order) + ([budget % order] if budget % order else [])


def check_solver_options(algorithm_type: str = "dpmsolver++", method_type: str = "multistep", order: int = 3,
                         skip_type: str = "logSNR", steps: int = 1, denoise_to_zero: bool = True,
                         lambda_min: float | str | None = "auto", lambda_max: float | str | None = "auto",
                         atol: float = 0.0078, rtol: float = 0.05) -> None:
    """ValueError (one line) for any unsupported DPM-Solver option; the one check of `dpm_solver_sample`'s
    options, also run by `sampler_choice.ode_sampler` before a checkpoint is loaded."""
    for name, value in (("lambda_min", lambda_min), ("lambda_max", lambda_max), ("atol", atol), ("rtol", rtol)):
        is_lambda = name.startswith("lambda")
        if is_lambda and (value is None or value == "auto"):
            continue
        if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
                or (not is_lambda and value <= 0)):
            expected = "a finite half-log-SNR, 'auto' or None" if is_lambda else "a finite number > 0"
            raise ValueError(f"{name}: got {value!r}; expected {expected}")
    for name, value, allowed in (("algorithm_type", algorithm_type, ALGORITHMS), ("method_type", method_type, METHODS),
                                 ("skip_type", skip_type, tuple(GRIDS)), ("order", order, (1, 2, 3))):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    if not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"sample_steps must be a positive int, got {steps!r}")
    if method_type == "adaptive" and order == 1:
        raise ValueError("method_type='adaptive' needs order 2 or 3, got 1")
    if method_type == "singlestep_fixed":
        singlestep_orders(steps - int(denoise_to_zero), order, fixed=True)
    low, high = resolve_lambda_range(steps, lambda_min, lambda_max, denoise_to_zero)
    spaced = method_type != "adaptive" and steps - int(denoise_to_zero) > 1  # make_grid spaces between them
    if spaced and low is not None and high is not None and low >= high:
        raise ValueError(f"lambda_min: got {low!r} with lambda_max={high!r} (from lambda_max={lambda_max!r}, "
                         f"sample_steps={steps}); expected lambda_min < lambda_max")


def resolve_lambda_range(steps: int, lambda_min: float | str | None, lambda_max: float | str | None,
                         denoise_to_zero: bool, data_std: float | None = None) -> tuple[float | None, float | None]:
    """The (lambda_min, lambda_max) half-log-SNR range the grid spacing of `steps` calls uses: "auto" ->
    `lambda_range(steps, data_std)`; lambda_max is None (spacing to index 0) without denoise_to_zero."""
    auto_min, auto_max = lambda_range(steps, data_std)
    lambda_min = auto_min if lambda_min == "auto" else lambda_min
    lambda_max = None if not denoise_to_zero else auto_max if lambda_max == "auto" else lambda_max
    return lambda_min, lambda_max


def dpm_solver_sample(denoiser, x: torch.Tensor, steps: int, algorithm_type: str = "dpmsolver++",
                      method_type: str = "multistep", order: int = 3, skip_type: str = "logSNR",
                      lambda_min: float | str | None = "auto", denoise_to_zero: bool = True,
                      lower_order_final: bool = False, atol: float = 0.0078, rtol: float = 0.05,
                      progress: bool = False, lambda_max: float | str | None = "auto") -> torch.Tensor:
    """Solve the probability-flow ODE from x at time T-1 with `steps` network calls (the adaptive method
    chooses its own number). `denoiser` needs a `.schedule` (a `Denoiser`). With `denoise_to_zero` the
    last call maps the state at the end of the grid (index 0, or lambda_max) to clean data; otherwise the
    output is the state at index 0. lambda_min / lambda_max: the lambda range of the grid spacing
    (`make_grid`); "auto" takes `lambda_range(steps)`, None the whole chain (lambda_max applies only
    with denoise_to_zero)."""
    check_solver_options(algorithm_type, method_type, order, skip_type, steps, denoise_to_zero, lambda_min,
                         lambda_max, atol, rtol)
    schedule = denoiser.schedule
    if method_type == "adaptive":
        return sample_dpm_adaptive(denoiser, x, schedule, order, algorithm_type, to_clean=denoise_to_zero,
                                   atol=atol, rtol=rtol)
    grid, orders = solver_grid(schedule, steps, method_type, order, skip_type, lambda_min, lambda_max, denoise_to_zero)
    if method_type == "multistep":
        return sample_dpm_multistep(denoiser, x, grid, schedule, order, algorithm_type, lower_order_final,
                                    progress=progress)
    return sample_dpm_singlestep(denoiser, x, grid, orders, schedule, algorithm_type, progress=progress)


def solver_grid(schedule: DiscreteSchedule, steps: int, method_type: str = "multistep", order: int = 3,
                skip_type: str = "logSNR", lambda_min: float | str | None = "auto",
                lambda_max: float | str | None = "auto", denoise_to_zero: bool = True
                ) -> tuple[torch.Tensor, list[int] | None]:
    """The time grid of a (non-adaptive) DPM-Solver run of `steps` network calls on `schedule`, and the per-step
    orders of the singlestep methods (None for multistep); ValueError for a lambda range the schedule cannot
    hold (e.g. lambda_min above the half-log-SNR of index 0)."""
    lambda_min, lambda_max = resolve_lambda_range(steps, lambda_min, lambda_max, denoise_to_zero)
    final = int(denoise_to_zero)
    orders = None if method_type == "multistep" else (
        singlestep_orders(steps - final, order, method_type == "singlestep_fixed") + [1] * final)
    intervals = steps - final if orders is None else len(orders) - final
    grid = make_grid(schedule, skip_type, intervals, to_clean=denoise_to_zero, lambda_min=lambda_min,
                     lambda_max=lambda_max)
    return grid, orders
