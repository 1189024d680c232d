"""Conditional sampling on observed pixels (gap filling): plain functions over a denoiser and a schedule.

The observation y is a field in model units, (N, C, H, W), NaN where the value is unknown; P keeps the
observed pixels. Two methods (`METHODS`):

- "posterior" (for the ODE solvers): the probability-flow ODE of the conditional law p(x0 | y), solved by
  DPM-Solver++(2M) (`samplers.sample_dpm_multistep`) with the *conditional* denoiser E[x0 | x_t, y].
  Under a Gaussian approximation of p(x0 | x_t) with Tweedie's moments, mean x0_hat and covariance
  C_t = (sigma_t^2 / alpha_t) J, J = d x0_hat / d x_t (Tweedie moment projection, Boys et al. 2023;
  the posterior-mean guidance of DPS, Chung et al. 2023, with the full covariance instead of r^2 I):
      E[x0 | x_t, y] = x0_hat + C_t P^T (P C_t P^T)^-1 (y - P x0_hat).
  The linear system is solved by `cg_iters` conjugate-gradient iterations, each one more denoiser call
  (J v by a finite difference along v), keeping per field the iterate of least residual (a trained network's
  J is not symmetric positive definite, and plain CG diverged on it). Exact for Gaussian data once CG has
  converged.
- "repaint" (for the ancestral chain): after each ancestral step t -> s (`samplers.ancestral_step`) the
  observed pixels are replaced by y noised to level s, alpha_s y + sigma_s z (DDPM eq. 4), and the merged
  x_s is taken back to t with fresh noise, x_t = sqrt(ab_t / ab_s) x_s + sqrt(1 - ab_t / ab_s) z, and
  stepped again, `resample` passes per interval (RePaint, Lugmayr et al. 2022, Algorithm 1, jump length 1);
  with `jump` = j > 1 the chain instead goes back j intervals at every j-th level and comes down again
  (`repaint_schedule`, the paper's section 4.2). The chain runs on chain indices spaced uniformly in
  logSNR (`repaint_grid`). With `cg_iters` = k > 0 each ancestral step uses the conditional denoiser of
  "posterior" (k CG iterations, k + 2 calls) instead of the unconditional one: plain RePaint (k = 0) draws
  the missing pixels from p(x_s | x_t), which ignores y beyond what x_t holds, so each pass drifts the
  ensemble away from p(x_s | y) by an amount that grows with the step (measured on the kriging test: a
  chain started from exact conditional samples loses them within 50 passes); the conditional denoiser
  removes that drift and the resampling corrects the rest (docs/insar_science.md gives the measurements).

Both end on clean data, where the observed pixels are set to y exactly (in x's dtype).
The denoiser is the samplers' callable ``denoiser(x, t) -> x0_hat`` (times in index units), with
``.predict(x, t) -> (x0_hat, v)`` for "repaint" (see `samplers`).
"""
import math
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from .noise_law import require_gaussian
from .noise_schedule import DiscreteSchedule, grid_from_indices, make_grid
from .samplers import add_noise, ancestral_step, is_clean, sample_dpm_multistep

METHODS = ("posterior", "repaint")
# default settings of each method, chosen on the kriging known-answer test (tests/test_inpainting.py)
DEFAULTS = {"posterior": {"steps": 20, "cg_iters": 20},
            "repaint": {"steps": 50, "resample": 5, "jump": 1, "cg_iters": 3}}
GAP_LAMBDA_MIN = -4.0  # half-log-SNR where both methods' logSNR grids start (noise_schedule.lambda_range)


def observation_mask(observed: torch.Tensor) -> torch.Tensor:
    """1.0 where `observed` (any shape) is finite, 0.0 where it is NaN; observed's dtype."""
    return torch.isfinite(observed).to(observed.dtype)


def check_observation(observed: torch.Tensor, name: str = "observed") -> None:
    """ValueError (one line) unless `observed` (N, C, H, W) has both observed (finite) and missing (NaN)
    pixels in every field, and no infinite value."""
    if observed.ndim != 4:
        raise ValueError(f"{name}: got shape {tuple(observed.shape)}; expected (N, C, H, W)")
    if bool(torch.isinf(observed).any()):
        raise ValueError(f"{name}: holds infinite values; expected finite values and NaN for missing pixels")
    known = torch.isfinite(observed).flatten(1)
    none_missing = torch.nonzero(known.all(1)).flatten().tolist()
    none_known = torch.nonzero(~known.any(1)).flatten().tolist()
    if none_missing:
        raise ValueError(f"{name}: field(s) {none_missing[:10]} have no NaN (nothing to fill); expected NaN "
                         "where the value is unknown")
    if none_known:
        raise ValueError(f"{name}: field(s) {none_known[:10]} are NaN everywhere (nothing observed); expected "
                         "some finite pixels")


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-field inner product of (N, ...) tensors, shaped (N, 1, ..., 1) for broadcasting."""
    return (a * b).flatten(1).sum(1).reshape(-1, *([1] * (a.ndim - 1)))


class PosteriorDenoiser:
    """The conditional denoiser E[x0 | x_t, y] of the "posterior" method (module docstring), wrapping an
    unconditional `denoiser`; callable like it, ``(x (N, C, H, W), t) -> x0`` in x's dtype.
    observed (N, C, H, W) model units, NaN = missing; cg_iters >= 1; fd_step: the finite-difference step
    of J v, in units of sigma_t along v scaled to unit RMS."""

    def __init__(self, denoiser: Callable, observed: torch.Tensor, schedule: DiscreteSchedule, cg_iters: int = 20,
                 fd_step: float = 1e-2) -> None:
        self.denoiser, self.schedule, self.cg_iters, self.fd_step = denoiser, schedule, cg_iters, fd_step
        self.mask, self.y = observation_mask(observed), torch.nan_to_num(observed, nan=0.0)

    def _covariance_times(self, x: torch.Tensor, x0: torch.Tensor, t, v: torch.Tensor) -> torch.Tensor:
        """C_t v = (sigma_t^2 / alpha_t) J v, J v ~ (x0_hat(x + h v / |v|) - x0_hat(x)) |v| / h."""
        alpha, sigma = float(self.schedule.alpha(t)), float(self.schedule.sigma(t))
        norm = _dot(v, v).sqrt().clamp_min(1e-30) / math.sqrt(v[0].numel())
        h = self.fd_step * sigma
        jv = (self.denoiser(x + (h / norm) * v, t) - x0) * (norm / h)
        return (sigma ** 2 / alpha) * jv

    def predict(self, x: torch.Tensor, t) -> tuple[torch.Tensor, None]:
        """(E[x0 | x_t, y], None): the samplers' `predict` form, for fixed step variances (`ancestral_step`)."""
        return self(x, t), None

    def __call__(self, x: torch.Tensor, t) -> torch.Tensor:
        x0 = self.denoiser(x, t)
        # 1. solve (P C_t P^T) w = P (y - x0_hat) by conjugate gradients (w lives on the observed pixels)
        r = self.mask * (self.y - x0)
        w, p, rr = torch.zeros_like(r), r, _dot(r, r)
        best_w, best_rr = w, rr
        for _ in range(self.cg_iters):
            ap = self.mask * self._covariance_times(x, x0, t, p)
            curvature = _dot(p, ap)
            # a network's J need not be positive definite: a field meeting p^T C p <= 0 stops moving
            step = torch.where(curvature > 0, rr / curvature.clamp_min(1e-30), torch.zeros_like(curvature))
            w, r = w + step * p, r - step * ap
            rr_new = _dot(r, r)
            # a trained network's J is neither symmetric nor exact (worst at high noise, where C_t = sigma^2 / alpha
            # J magnifies its errors): CG can diverge there, so each field keeps its iterate of least residual
            better = rr_new < best_rr
            best_w, best_rr = torch.where(better, w, best_w), torch.where(better, rr_new, best_rr)
            p, rr = r + (rr_new / rr.clamp_min(1e-30)) * p, rr_new
        # 2. E[x0 | x_t, y] = x0_hat + C_t P^T w
        return x0 + self._covariance_times(x, x0, t, best_w)


def renoise(x_s: torch.Tensor, s, t, schedule: DiscreteSchedule, generator: torch.Generator | None
            ) -> torch.Tensor:
    """x_t ~ q(x_t | x_s) = N(sqrt(ab_t / ab_s) x_s, (1 - ab_t / ab_s) I) for t later than s (RePaint eq. 9)."""
    ratio = float(schedule.alpha_bar(t) / schedule.alpha_bar(s))
    return add_noise(math.sqrt(ratio) * x_s, math.sqrt(1 - ratio), generator)


def repaint_schedule(num_intervals: int, resample: int = 10, jump: int = 1) -> list[int]:
    """The grid indices RePaint visits, from 0 (pure noise) to `num_intervals` (clean data): RePaint's time
    schedule (Lugmayr et al. 2022, Algorithm 1 and section 4.2 "Resampling", jump length j, r resamplings).
    Going down one index at a time, at every jump point (the noisy indices i >= jump with
    num_intervals - 1 - i a multiple of `jump`, so the last one is the last noisy level) the chain goes back
    `jump` indices, the first `resample` - 1 times it gets there, and comes down again. jump=1 is one
    re-noising step per pass, `resample` passes per interval (except the step to clean data)."""
    path, left, i = [0], {}, 0
    while i < num_intervals:
        i += 1
        path.append(i)
        if jump <= i < num_intervals and (num_intervals - 1 - i) % jump == 0 and left.setdefault(i, resample - 1):
            left[i] -= 1
            i -= jump
            path.append(i)
    return path


def repaint_grid(schedule: DiscreteSchedule, steps: int) -> torch.Tensor:
    """RePaint's chain: T-1, then times spaced uniformly in lambda from GAP_LAMBDA_MIN to index 0 (`make_grid`:
    `steps` times in all, the first step jumping from T-1 onto the spacing), rounded to chain indices (duplicates
    dropped, so possibly fewer), then clean data (-1). Decreasing float64."""
    times = make_grid(schedule, "logSNR", steps - 1, to_clean=False, lambda_min=GAP_LAMBDA_MIN)
    return grid_from_indices(times.round().long().tolist())


def repaint(denoiser, observed: torch.Tensor, grid: torch.Tensor, schedule: DiscreteSchedule, resample: int = 10,
            variance: str = "fixed_large", generator: torch.Generator | None = None, progress: bool = False,
            jump: int = 1) -> torch.Tensor:
    """One RePaint sample per row of `observed` (N, C, H, W; NaN = missing) along `grid` (decreasing times
    ending at -1), visiting its indices in `repaint_schedule` order: a step down is an ancestral step of
    `variance` with the observed pixels replaced by y noised to the step's level, a step back from s to t
    re-noises with q(x_t | x_s) (`renoise`). Returns (N, C, H, W) in observed's dtype."""
    m, y = observation_mask(observed), torch.nan_to_num(observed, nan=0.0)
    x = torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
    path = repaint_schedule(len(grid) - 1, resample, jump)
    for a, b in tqdm(list(zip(path[:-1], path[1:])), desc="RePaint", leave=False, disable=not progress):
        t, s = grid[a], grid[b]  # from time t to time s
        if b < a:  # back up the chain to the noisier time s
            x = renoise(x, t, s, schedule, generator)
            continue
        mean, std, _ = ancestral_step(denoiser, x, t, s, schedule, variance)
        known = y if is_clean(schedule, s) else add_noise(float(schedule.alpha(s)) * y, float(schedule.sigma(s)),
                                                          generator)
        x = m * known + (1 - m) * add_noise(mean, std, generator)
    return x


def posterior_sample(denoiser: Callable, observed: torch.Tensor, schedule: DiscreteSchedule, steps: int = 20,
                     cg_iters: int = 20, generator: torch.Generator | None = None, progress: bool = False
                     ) -> torch.Tensor:
    """One "posterior" sample per row of `observed` (N, C, H, W; NaN = missing): DPM-Solver++(2M) with
    `steps` calls of the conditional denoiser (each 1 + cg_iters + 1 calls of `denoiser`) on a logSNR grid
    from lambda = GAP_LAMBDA_MIN, observed pixels set to y at the end. Observed's dtype and shape."""
    m, y = observation_mask(observed), torch.nan_to_num(observed, nan=0.0)
    x = torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
    grid = make_grid(schedule, "logSNR", steps - 1, to_clean=True, lambda_min=GAP_LAMBDA_MIN)
    x0 = sample_dpm_multistep(PosteriorDenoiser(denoiser, observed, schedule, cg_iters), x, grid, schedule, order=2,
                              progress=progress)
    return m * y + (1 - m) * x0


def _positive_int(name: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return value


def conditional_samples(denoiser: Callable, observed: torch.Tensor, schedule: DiscreteSchedule, num_samples: int,
                        method: str = "posterior", seed: int = 0, steps: int | None = None,
                        cg_iters: int | None = None, resample: int | None = None, jump: int | None = None,
                        batch_size: int = 256, progress: bool = False) -> torch.Tensor:
    """`num_samples` conditional samples of each field of `observed` (N, C, H, W; NaN = missing, model
    units) -> (N, num_samples, C, H, W) in observed's dtype, observed pixels equal to `observed`.
    method: "posterior" (ODE; `steps` solver calls, `cg_iters` >= 1) or "repaint" (ancestral chain on the
    `repaint_grid(steps)` indices, visited in `repaint_schedule(intervals, resample, jump)` order: `resample`
    passes with jumps back of `jump` intervals; `cg_iters` >= 0 CG iterations of the conditional denoiser,
    0 = plain RePaint); None takes the method's `DEFAULTS` (steps at most T). Draws in batches of
    `batch_size`; the result depends on `seed` and `batch_size`."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    defaults = {**DEFAULTS[method], "steps": min(DEFAULTS[method]["steps"], schedule.num_timesteps)}
    opts = {**defaults, **{k: v for k, v in (("steps", steps), ("cg_iters", cg_iters), ("resample", resample),
                                             ("jump", jump)) if v is not None and k in defaults}}
    lowest = {"steps": 2, "cg_iters": 1 if method == "posterior" else 0}
    for name, value in opts.items():
        _positive_int(name, value, lowest.get(name, 1))
    _positive_int("num_samples", num_samples)
    _positive_int("batch_size", batch_size)
    if opts["steps"] > schedule.num_timesteps:
        raise ValueError(f"steps must be <= {schedule.num_timesteps} (the chain's length), got {opts['steps']}")
    grid = repaint_grid(schedule, opts["steps"]) if method == "repaint" else None
    if method == "repaint" and opts["jump"] >= len(grid) - 1:
        raise ValueError(f"jump must be < the chain's {len(grid) - 1} intervals (steps={opts['steps']}; the chain "
                         f"goes back jump intervals), got {opts['jump']}")
    check_observation(observed)
    require_gaussian(getattr(denoiser, "student_t_nu", None), "gap filling")
    generator = torch.Generator(device=observed.device).manual_seed(seed)
    out = []
    for chunk in observed.repeat_interleave(num_samples, dim=0).split(batch_size):
        if method == "posterior":
            out.append(posterior_sample(denoiser, chunk, schedule, opts["steps"], opts["cg_iters"], generator,
                                        progress))
        else:
            chain_denoiser = PosteriorDenoiser(denoiser, chunk, schedule, opts["cg_iters"]) if opts["cg_iters"] \
                else denoiser
            out.append(repaint(chain_denoiser, chunk, grid, schedule, opts["resample"], generator=generator,
                               progress=progress, jump=opts["jump"]))
    return torch.cat(out).reshape(observed.shape[0], num_samples, *observed.shape[1:])
