"""Samplers and time grids on the analytic Gaussian oracle (no network): identities and reference errors."""
import math

import numpy as np
import pytest
import torch

from bench.oracles import exact_x0, x0_prediction
from bench.sampler_oracle import OracleNet
from improved_diffusion.denoiser import Denoiser
from improved_diffusion.gaussian_diffusion import get_named_beta_schedule
from improved_diffusion.noise_schedule import CLEAN, GRIDS, DiscreteSchedule, grid_from_indices, make_grid
from improved_diffusion.samplers import (
    clean_step,
    dpm_solver_sample,
    dynamic_threshold,
    multistep_order,
    sample_ddim,
    sample_dpm_multistep,
    sample_dpm_singlestep,
    singlestep_orders,
)
from improved_diffusion.script_util import create_gaussian_diffusion

MU, S, T = 0.3, 0.5, 1000


class Oracle:
    """Exact x0 prediction for N(MU, S^2) data at any time of `schedule`, counting calls."""

    def __init__(self, schedule):
        self.schedule, self.nfe = schedule, 0

    def __call__(self, x, t):
        self.nfe += 1
        ab = self.schedule.alpha_bar(t)
        return MU + ab.sqrt() * S * S * (x - ab.sqrt() * MU) / (ab * S * S + 1 - ab)


class OracleDenoiser:
    """Exact x0 prediction of a `bench.oracles` data distribution at any time of `schedule`."""

    def __init__(self, oracle, schedule):
        self.oracle, self.schedule = oracle, schedule

    def __call__(self, x, t):
        return x0_prediction(self.oracle, x, self.schedule.alpha_bar(t))


@pytest.fixture(scope="module", params=["linear", "cosine"])
def problem(request):
    schedule = DiscreteSchedule(np.cumprod(1 - get_named_beta_schedule(request.param, T)))
    x_T = torch.randn(1024, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ab = float(schedule.alpha_bar(T - 1))
    exact = MU + S * (x_T - math.sqrt(ab) * MU) / math.sqrt(ab * S * S + 1 - ab)
    return request.param, schedule, x_T, exact


def rms(a, b):
    return float((a - b).pow(2).mean().sqrt())


def test_schedule_interpolates_log_alpha_and_inverts_lambda():
    ab = np.cumprod(1 - get_named_beta_schedule("linear", 50))
    schedule = DiscreteSchedule(ab)
    assert torch.allclose(schedule.alpha_bar(torch.arange(50.0)), torch.tensor(ab))
    mid = 0.5 * (0.5 * math.log(ab[10]) + 0.5 * math.log(ab[11]))
    assert math.isclose(float(schedule.log_alpha(10.5)), mid, rel_tol=1e-12)
    assert float(schedule.sigma(CLEAN)) == 0 and float(schedule.alpha(CLEAN)) == 1
    times = torch.tensor([0.0, 3.25, 17.5, 49.0], dtype=torch.float64)
    assert torch.allclose(schedule.inverse_lambda(schedule.lambda_(times)), times, atol=1e-9)


def test_grids():
    schedule = DiscreteSchedule(np.cumprod(1 - get_named_beta_schedule("cosine", 100)))
    g = make_grid(schedule, "logSNR", 4)
    assert g[0] == 99 and g[-2] == 0 and g[-1] == CLEAN and len(g) == 6
    lam = schedule.lambda_(g[:-1])
    assert torch.allclose(lam.diff(), lam.diff()[0].expand(4), rtol=1e-6)
    assert torch.allclose(make_grid(schedule, "time-uniform", 3, to_clean=False), torch.tensor([99.0, 66, 33, 0], dtype=torch.float64))
    quad = make_grid(schedule, "time-quadratic", 2, to_clean=False)
    assert torch.allclose((quad + 1).sqrt(), torch.linspace(10, 1, 3, dtype=torch.float64))
    floored = make_grid(schedule, "logSNR", 4, lambda_min=-2.0)
    assert floored[0] == 99 and math.isclose(float(schedule.lambda_(floored[1])), -2 + (float(
        schedule.lambda_(0)) + 2) / 4, rel_tol=1e-6)
    assert grid_from_indices({0, 50, 99}).tolist() == [99, 50, 0, CLEAN]


def test_ddim_matches_reference_on_trailing_grid(problem):
    """DDIM rms errors of diffusers 0.42.1 (bench/README.md#sampler-oracle), same algorithm and grid."""
    name, schedule, x_T, exact = problem
    reference = {"linear": {10: 1.30e-1, 20: 6.84e-2}, "cosine": {10: 7.29e-2, 20: 3.78e-2}}[name]
    for nfe, expected in reference.items():
        indices = np.round(np.arange(T, 0, -T / nfe)).astype(int) - 1
        oracle = Oracle(schedule)
        err = rms(sample_ddim(oracle, x_T, grid_from_indices(indices), schedule), exact)
        assert oracle.nfe == nfe
        assert err == pytest.approx(expected, rel=5e-3)


def test_dpm_solver_beats_reference(problem):
    """Default DPM-Solver++(3M) at NFE 10 / 20: at most half the best diffusers DPM-Solver++ error."""
    name, schedule, x_T, exact = problem
    reference = {"linear": {10: 9.05e-2, 20: 2.00e-2}, "cosine": {10: 2.02e-2, 20: 1.45e-3}}[name]
    for nfe, best in reference.items():
        oracle = Oracle(schedule)
        assert rms(dpm_solver_sample(oracle, x_T, nfe), exact) <= 0.5 * best
        assert oracle.nfe == nfe


@pytest.mark.parametrize("algorithm", ["dpmsolver", "dpmsolver++"])
def test_order_one_equals_ddim(problem, algorithm):
    _, schedule, x_T, _ = problem
    grid = make_grid(schedule, "logSNR", 7)
    ddim = sample_ddim(Oracle(schedule), x_T, grid, schedule)
    multi = sample_dpm_multistep(Oracle(schedule), x_T, grid, schedule, order=1, algorithm=algorithm)
    single = sample_dpm_singlestep(Oracle(schedule), x_T, grid, [1] * 8, schedule, algorithm=algorithm)
    assert torch.allclose(multi, ddim, atol=1e-10) and torch.allclose(single, ddim, atol=1e-10)


@pytest.mark.parametrize("method", ["multistep", "singlestep", "singlestep_fixed"])
@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("to_zero", [True, False])
def test_network_calls_equal_requested_steps(problem, method, order, to_zero):
    _, schedule, x_T, exact = problem
    steps = 13 if to_zero else 12
    oracle = Oracle(schedule)
    out = dpm_solver_sample(oracle, x_T[:8], steps, method_type=method, order=order, denoise_to_zero=to_zero)
    assert oracle.nfe == steps and torch.isfinite(out).all()


def test_solvers_converge(problem):
    """Every order converges to the exact ODE map; higher orders are more accurate at 50 steps."""
    _, schedule, x_T, exact = problem
    errors = {}
    for method in ("multistep", "singlestep"):
        for order in (1, 2, 3):
            errors[method, order] = rms(dpm_solver_sample(Oracle(schedule), x_T, 49,
                                                          method_type=method, order=order), exact)
        assert errors[method, 3] < errors[method, 2] < errors[method, 1] < 0.05
    adaptive = Oracle(schedule)
    assert rms(dpm_solver_sample(adaptive, x_T, 10, method_type="adaptive", order=3, atol=1e-4, rtol=1e-4),
               exact) < 1e-3
    assert adaptive.nfe > 0


def test_singlestep_orders_and_errors():
    assert singlestep_orders(10, 3, fixed=False) == [3, 3, 3, 1]
    assert singlestep_orders(9, 3, fixed=True) == [3, 3, 3]
    with pytest.raises(ValueError, match="divisible by 3"):
        singlestep_orders(10, 3, fixed=True)
    schedule = DiscreteSchedule(np.cumprod(1 - get_named_beta_schedule("linear", 100)))
    with pytest.raises(ValueError, match="method_type"):
        dpm_solver_sample(Oracle(schedule), torch.zeros(1, 1, 2, 2), 5, method_type="euler")
    with pytest.raises(ValueError, match="skip_type"):
        dpm_solver_sample(Oracle(schedule), torch.zeros(1, 1, 2, 2), 5, skip_type="karras")


def test_dynamic_threshold():
    x0 = torch.tensor([[0.5, -0.2, 0.1, 0.3], [4.0, -2.0, 1.0, 0.5]]).reshape(2, 1, 2, 2)
    out = dynamic_threshold(x0, ratio=1.0, max_val=1.0)
    assert torch.equal(out[0], x0[0])  # quantile below 1: plain clamp to [-1, 1], unchanged
    assert torch.allclose(out[1], x0[1] / 4)  # s = max |x0| = 4: rescaled into [-1, 1]


@pytest.mark.parametrize("T", [100, 250, 500, 1000, 4000])
@pytest.mark.parametrize("skip_type", sorted(GRIDS))
def test_every_skip_type_samples_at_every_T(T, skip_type):
    """Every time grid, through `Denoiser` (which rejects times outside [0, T-1]), ends at index 0 exactly
    and samples the Gaussian oracle: error well below the prior's spread S around the exact ODE map
    (10 NFE on the coarse time grids is about as accurate as DDIM, ~0.1-0.17)."""
    diffusion = create_gaussian_diffusion(steps=T, noise_schedule="linear", rescale_timesteps=True)
    denoiser = Denoiser(OracleNet("gaussian", DiscreteSchedule(diffusion.alphas_cumprod)), diffusion,
                        clip_denoised=False)
    grid = make_grid(denoiser.schedule, skip_type, 9)
    assert grid[0] == T - 1 and grid[-2] == 0 and grid[-1] == CLEAN
    x_T = torch.randn(64, 1, 2, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    exact = exact_x0("gaussian", x_T, float(diffusion.alphas_cumprod[T - 1]))
    for method in ("multistep", "singlestep"):
        for to_zero in (True, False):
            denoiser.nfe = 0
            out = dpm_solver_sample(denoiser, x_T, 10, skip_type=skip_type, method_type=method,
                                    denoise_to_zero=to_zero, lambda_max=None)
            assert denoiser.nfe == 10
            if to_zero:
                assert rms(out, exact) < 0.5 * S


def test_multistep_order_from_step_sizes():
    """Hand-worked cases: the k-th previous point is used while its mean spacing is within 3x of h."""
    assert multistep_order([0.0, -1.0, -2.0], 1.0, 3, 3.0) == 3
    assert multistep_order([0.0, -1.0, -2.0], 1.0, 2, 3.0) == 2  # capped by the order
    assert multistep_order([0.0, -1.0, -2.0], 4.0, 3, 3.0) == 1  # step 4x the past spacing
    assert multistep_order([0.0, -1.0, -2.0], 0.5, 3, 3.0) == 3  # spacing 2x the step
    assert multistep_order([0.0, -4.0], 1.0, 3, 3.0) == 1  # past point 4 steps away
    assert multistep_order([0.0, -1.0, -5.0], 1.0, 3, 3.0) == 3  # mean spacing 2.5
    assert multistep_order([0.0, -1.0, -8.0], 1.0, 3, 3.0) == 2  # mean spacing 4
    assert multistep_order([0.0], 1.0, 3, 3.0) == 1  # no history yet


def test_large_last_step_is_first_order(problem):
    """A step > 3x the past spacing (the time-uniform grid's jump to index 0) is a DDIM step from the
    state the same solver reaches before it, and the order-3 solver then beats DDIM on that grid."""
    _, schedule, x_T, exact = problem
    grid = make_grid(schedule, "time-uniform", 18)  # 999 ... 55.5, 0, clean
    lam = schedule.lambda_(grid[:-1])
    assert float(lam[-1] - lam[-2]) > 3 * float(lam[-2] - lam[-3])
    full = sample_dpm_multistep(Oracle(schedule), x_T, grid[:-1], schedule, order=3)
    before = sample_dpm_multistep(Oracle(schedule), x_T, grid[:-2], schedule, order=3)
    expected = sample_ddim(Oracle(schedule), before, grid[-3:-1], schedule)
    assert torch.allclose(full, expected, atol=1e-12)
    third = rms(sample_dpm_multistep(Oracle(schedule), x_T, grid, schedule, order=3, algorithm="dpmsolver++"), exact)
    assert third < 0.5 * rms(sample_ddim(Oracle(schedule), x_T, grid, schedule), exact)


def test_grid_lambda_range():
    schedule = DiscreteSchedule(np.cumprod(1 - get_named_beta_schedule("cosine", 100)))
    g = make_grid(schedule, "logSNR", 5, lambda_min=-2.0, lambda_max=3.0)
    assert g[0] == 99 and g[-1] == CLEAN and len(g) == 7
    lam = schedule.lambda_(g[1:-1])
    assert math.isclose(float(lam[-1]), 3.0, rel_tol=1e-9)
    assert torch.allclose(lam.diff(), torch.full((4,), 1.0, dtype=torch.float64), rtol=1e-6)  # (3 + 2) / 5
    with pytest.raises(ValueError, match="lambda_max needs to_clean"):
        make_grid(schedule, "logSNR", 5, lambda_max=3.0, to_clean=False)
    with pytest.raises(ValueError, match="lambda_min"):
        dpm_solver_sample(Oracle(schedule), torch.zeros(1, 1, 2, 2), 5, lambda_min="low")


# rms errors of the best diffusers DPM-Solver++ (2M or 3M) on the oracles (bench/oracle_reference_diffusers.py)
BEST_REFERENCE = {("gaussian", "linear", 5): 2.271e-01, ("gaussian", "linear", 20): 1.996e-02,
                  ("gaussian", "cosine", 5): 1.041e-01, ("gaussian", "cosine", 20): 1.446e-03,
                  ("gmm", "linear", 5): 2.278e-01, ("gmm", "linear", 20): 3.043e-02,
                  ("gmm", "cosine", 5): 9.696e-02, ("gmm", "cosine", 20): 1.567e-02}


@pytest.mark.parametrize("oracle", ["gaussian", "gmm"])
def test_default_solver_accuracy_goal(problem, oracle):
    """The default configuration at 5 and 20 NFE: error <= 0.5x / 0.1x the best reference solver's."""
    name, schedule, x_T, _ = problem
    exact = exact_x0(oracle, x_T, float(schedule.alpha_bar(T - 1)))
    for nfe, goal in ((5, 0.5), (20, 0.1)):
        denoiser = OracleDenoiser(oracle, schedule)
        assert rms(dpm_solver_sample(denoiser, x_T, nfe), exact) <= goal * BEST_REFERENCE[oracle, name, nfe]


def test_gmm_exact_solution_integrator():
    """The numerical ODE integration reproduces the Gaussian closed form, and the GMM end points have the
    mixture's mean and cover both components in proportion (the ODE map pushes N(0, 1) onto the data)."""
    x_T = torch.randn(4096, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    closed, numeric = exact_x0("gaussian", x_T, 4e-5), exact_x0("gaussian", x_T, 4e-5, numeric=True)
    assert torch.allclose(closed, numeric, atol=1e-9, rtol=0)
    x0 = exact_x0("gmm", x_T, 4e-5)
    assert abs(float(x0.mean()) - (0.35 * -0.5 + 0.65 * 0.4)) < 0.03
    def normal_cdf(z):
        return 0.5 * (1 + math.erf(z / math.sqrt(2)))

    below = 0.35 * normal_cdf((-0.05 + 0.5) / 0.15) + 0.65 * normal_cdf((-0.05 - 0.4) / 0.3)  # P(x0 < -0.05)
    assert abs(float((x0 < -0.05).double().mean()) - below) < 0.03


def test_clean_step_is_exact_for_eps_linear_in_u():
    """With eps(u) = a + b u (u = sigma / alpha) the clean end point y - int_0^u eps = y - a u - b u^2 / 2
    (y = x / alpha); the denoiser's x0 = y - u eps(u) misses b u^2 / 2. A previous point too far away
    (u_p - u < u / 3) falls back to x0."""
    a, b, u, u_p, y = torch.tensor([0.2, -1.0]), torch.tensor([3.0, 0.5]), 0.05, 0.12, torch.tensor([0.7, -0.4])
    x0 = y - u * (a + b * u)
    out = clean_step(x0, u, a + b * u, (u_p, a + b * u_p))
    assert torch.allclose(out, y - a * u - b * u * u / 2, atol=1e-15)
    assert torch.equal(clean_step(x0, u, a + b * u, (0.06, a + b * 0.06)), x0)
    assert torch.equal(clean_step(x0, u, a + b * u, None), x0)
