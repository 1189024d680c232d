"""Samplers and time grids on the analytic Gaussian oracle (no network): identities and reference errors."""
import math

import numpy as np
import pytest
import torch

from improved_diffusion.gaussian_diffusion import get_named_beta_schedule
from improved_diffusion.noise_schedule import CLEAN, DiscreteSchedule, grid_from_indices, make_grid
from improved_diffusion.samplers import (
    dpm_solver_sample,
    dynamic_threshold,
    sample_ddim,
    sample_dpm_multistep,
    sample_dpm_singlestep,
    singlestep_orders,
)

MU, S, T = 0.3, 0.5, 1000


class Oracle:
    """Exact x0 prediction for N(MU, S^2) data at any time of `schedule`, counting calls."""

    def __init__(self, schedule):
        self.schedule, self.nfe = schedule, 0

    def __call__(self, x, t):
        self.nfe += 1
        ab = self.schedule.alpha_bar(t)
        return MU + ab.sqrt() * S * S * (x - ab.sqrt() * MU) / (ab * S * S + 1 - ab)


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
