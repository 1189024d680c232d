"""A continuous-time view of a discrete variance-preserving schedule, and the time grids of the samplers.

Time is measured in *index units* of the training chain: tau in [-1, T-1], where tau = i is the
chain index i (alpha_bar[i]) and tau = -1 is clean data (alpha_bar = 1, the `alphas_cumprod_prev`
convention). Between indices log(alpha) is interpolated linearly (DPM-Solver's discrete
schedule, Lu et al. 2022, appendix), so every quantity below is defined at fractional times too.
alpha_t = sqrt(alpha_bar), sigma_t = sqrt(1 - alpha_bar), lambda_t = log(alpha_t / sigma_t)
(half the log-SNR, DPM-Solver eq. 3.5).
"""
import math

import numpy as np
import torch

CLEAN = -1.0  # the time of clean data: alpha = 1, sigma = 0, lambda = +inf


class DiscreteSchedule:
    """VP schedule over `alphas_cumprod` (T,) float64 in (0, 1], decreasing; all methods take and return float64."""

    def __init__(self, alphas_cumprod) -> None:
        alpha_bar = torch.as_tensor(np.asarray(alphas_cumprod, dtype=np.float64))
        if alpha_bar.ndim != 1 or len(alpha_bar) < 1 or not bool(((alpha_bar > 0) & (alpha_bar <= 1)).all()):
            raise ValueError(f"alphas_cumprod must be a 1-D array in (0, 1], got shape {tuple(alpha_bar.shape)}")
        if len(alpha_bar) > 1 and not bool((alpha_bar[1:] < alpha_bar[:-1]).all()):
            raise ValueError("alphas_cumprod must be strictly decreasing")
        self.num_timesteps = len(alpha_bar)
        # Table of log(alpha) at tau = -1, 0, ..., T-1.
        self._log_alpha = torch.cat([torch.zeros(1, dtype=torch.float64), 0.5 * torch.log(alpha_bar)])

    def _table(self, t: torch.Tensor) -> torch.Tensor:
        return self._log_alpha.to(t.device)

    def log_alpha(self, t) -> torch.Tensor:
        """log(alpha_t) for times t (any shape) in [-1, T-1], linear between indices."""
        t = torch.as_tensor(t, dtype=torch.float64)
        table = self._table(t)
        pos = (t + 1).clamp(0, self.num_timesteps)
        lo = pos.floor().clamp(max=self.num_timesteps - 1).long()
        frac = pos - lo
        return table[lo] + frac * (table[(lo + 1).clamp(max=self.num_timesteps)] - table[lo])

    def alpha(self, t) -> torch.Tensor:
        return torch.exp(self.log_alpha(t))

    def sigma(self, t) -> torch.Tensor:
        return torch.sqrt(-torch.expm1(2 * self.log_alpha(t)))

    def alpha_bar(self, t) -> torch.Tensor:
        return torch.exp(2 * self.log_alpha(t))

    def lambda_(self, t) -> torch.Tensor:
        """lambda_t = log(alpha_t / sigma_t); +inf at tau = -1."""
        log_alpha = self.log_alpha(t)
        return log_alpha - 0.5 * torch.log(-torch.expm1(2 * log_alpha))

    def inverse_lambda(self, lam) -> torch.Tensor:
        """The time tau whose lambda_tau equals `lam` (alpha^2 = sigmoid(2 lambda))."""
        lam = torch.as_tensor(lam, dtype=torch.float64)
        log_alpha = -0.5 * torch.logaddexp(torch.zeros_like(lam), -2 * lam)
        table = -self._table(lam)  # increasing in tau
        hi = torch.searchsorted(table, (-log_alpha).contiguous()).clamp(1, self.num_timesteps)
        frac = (-log_alpha - table[hi - 1]) / (table[hi] - table[hi - 1])
        return (hi - 1).to(torch.float64) + frac.clamp(0, 1) - 1


def grid_time_uniform(schedule: DiscreteSchedule, num_intervals: int, t_start: float, t_end: float) -> torch.Tensor:
    """num_intervals + 1 times from t_start down to t_end, uniform in tau."""
    return torch.linspace(t_start, t_end, num_intervals + 1, dtype=torch.float64)


def grid_time_quadratic(schedule: DiscreteSchedule, num_intervals: int, t_start: float, t_end: float) -> torch.Tensor:
    """Uniform in sqrt of DPM-Solver's continuous time (tau + 1) / T (denser near the data); the end
    points are exactly t_start and t_end (squaring the root leaves them off by an ulp, e.g. -2.2e-16 for 0)."""
    T = schedule.num_timesteps
    root = torch.linspace(math.sqrt((t_start + 1) / T), math.sqrt((t_end + 1) / T), num_intervals + 1,
                          dtype=torch.float64)
    times = root ** 2 * T - 1
    times[0], times[-1] = t_start, t_end
    return times


def grid_logsnr(schedule: DiscreteSchedule, num_intervals: int, t_start: float, t_end: float) -> torch.Tensor:
    """Uniform in lambda between lambda(t_start) and lambda(t_end) (DPM-Solver's 'logSNR' spacing)."""
    lam = torch.linspace(float(schedule.lambda_(t_start)), float(schedule.lambda_(t_end)), num_intervals + 1,
                         dtype=torch.float64)
    times = schedule.inverse_lambda(lam)
    times[0], times[-1] = t_start, t_end
    return times


GRIDS = {"time-uniform": grid_time_uniform, "time-quadratic": grid_time_quadratic, "logSNR": grid_logsnr}


def make_grid(schedule: DiscreteSchedule, skip_type: str, num_intervals: int, t_start: float | None = None,
              t_end: float = 0.0, to_clean: bool = True, lambda_min: float | None = None,
              lambda_max: float | None = None) -> torch.Tensor:
    """Decreasing times (float64) for a sampler: num_intervals spaced steps from t_start (default T-1)
    to t_end, then, when `to_clean`, one more step to clean data (time -1).

    With `lambda_min`, the spacing runs from the time where lambda = lambda_min (when later than
    t_start) and the first step jumps from t_start onto the grid: below lambda ~ -3 the data is invisible
    under the noise (SNR < 0.25 % for data of std 0.5) and the ODE is nearly the identity, so steps
    spent there are wasted (cf. DPM-Solver's clipping of discrete schedules at lambda = -5.1).
    With `lambda_max` (only with `to_clean`), the spacing ends at the time where lambda = lambda_max
    (when earlier than t_end) and the last step goes from there to clean data: above it the data
    prediction hardly changes any more (noise std < 3 % of the signal at lambda = 3.5).
    The returned tensor has num_intervals + 1 (+ 1) entries.
    """
    if skip_type not in GRIDS:
        raise ValueError(f"skip_type must be one of {sorted(GRIDS)}, got {skip_type!r}")
    if num_intervals < 0 or (num_intervals == 0 and not to_clean):
        raise ValueError(f"the grid needs at least one step, got num_intervals={num_intervals}, to_clean={to_clean}")
    if lambda_max is not None and not to_clean:
        raise ValueError("lambda_max needs to_clean=True (the last step goes from lambda_max to clean data)")
    t_start = schedule.num_timesteps - 1 if t_start is None else t_start
    if not -1 < t_end < t_start <= schedule.num_timesteps - 1 and num_intervals > 0:
        raise ValueError(f"need -1 < t_end < t_start <= T-1, got t_start={t_start}, t_end={t_end}")
    t_space, t_stop = t_start, t_end
    if lambda_min is not None and num_intervals > 1 and float(schedule.lambda_(t_start)) < lambda_min:
        t_space = min(float(schedule.inverse_lambda(torch.tensor(lambda_min, dtype=torch.float64))), t_start)
    if lambda_max is not None and num_intervals > 1 and float(schedule.lambda_(t_end)) > lambda_max:
        t_stop = max(float(schedule.inverse_lambda(torch.tensor(lambda_max, dtype=torch.float64))), t_end)
    if t_stop >= t_space:
        end = float(schedule.lambda_(t_stop))
        raise ValueError(f"lambda_min={lambda_min}: expected a half-log-SNR below {end:.3g}, where the grid ends "
                         f"({'lambda_max' if t_stop > t_end else f'chain index {t_end:g}'} of this schedule)")
    times = GRIDS[skip_type](schedule, num_intervals, t_space, t_stop) if num_intervals else torch.tensor(
        [float(t_start)], dtype=torch.float64)
    times[0] = t_start
    return torch.cat([times, torch.tensor([CLEAN], dtype=torch.float64)]) if to_clean else times


# (largest number of network calls, lambda_min, lambda_max) of `lambda_range`, chosen on the exact-ODE
# oracles of bench/sampler_oracle.py (DPM-Solver++(3M), logSNR spacing; bench/RESULTS.md): the fewer the
# steps, the narrower the lambda range worth spending them on.
LAMBDA_RANGES = ((7, -2.0, 2.5), (14, -2.25, 3.5), (29, -2.75, None), (math.inf, -4.0, None))


# model-unit std of the oracles LAMBDA_RANGES was tuned on
REFERENCE_DATA_STD = 0.5


def lambda_range(steps: int, data_std: float | None = None) -> tuple[float, float | None]:
    """Default (lambda_min, lambda_max) of `make_grid` for a sampler with `steps` network calls
    (lambda_max None: the spacing runs to index 0). For data of model-unit std `data_std` above
    REFERENCE_DATA_STD both ends move down by log(data_std / REFERENCE_DATA_STD): x_t = alpha x_0 + sigma eps
    has signal-to-noise ratio (s alpha / sigma)^2 for data of std s, so a given SNR is reached at a half-log-SNR
    lambda = log(alpha / sigma) lower by log s (bench/sampler_scale.py: more accurate in 23 of 24 oracle cases)."""
    lo, hi = next((lo, hi) for most, lo, hi in LAMBDA_RANGES if steps <= most)
    shift = math.log(data_std / REFERENCE_DATA_STD) if data_std is not None and data_std > REFERENCE_DATA_STD else 0.0
    return lo - shift, None if hi is None else hi - shift


def grid_from_indices(indices) -> torch.Tensor:
    """Chain indices (any order) -> decreasing float64 times ending with a step to clean data,
    e.g. the kept steps of a respacing (DDIM over a SpacedDiffusion steps to alpha_bar = 1 at the end)."""
    idx = sorted({int(i) for i in indices}, reverse=True)
    if not idx or idx[-1] < 0:
        raise ValueError(f"indices must be a non-empty set of chain indices >= 0, got {list(indices)[:10]}")
    return torch.tensor(idx + [CLEAN], dtype=torch.float64)
