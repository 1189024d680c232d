"""bench/sampler_scale.py at toy size: the scaled oracle's closed form against its numerical ODE solution, and
the finding the bench records (bench/RESULTS.md): for data of 4x the oracle's scale, the default lambda range
shifted by -log 4 is more accurate than the unshifted one."""
import math

import torch

from bench import sampler_scale
from bench.oracles import exact_x0


def test_scaled_gaussian_closed_form_matches_the_integrated_ode():
    x_T = torch.randn(64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    closed = exact_x0("gaussian", x_T, 0.01, scale=4.0)
    numeric = exact_x0("gaussian", x_T, 0.01, numeric=True, scale=4.0)
    torch.testing.assert_close(closed, numeric, rtol=1e-7, atol=1e-7)
    assert 1.5 < float(closed.std()) < 2.5  # about 4 x the oracle's std of 0.5


def test_shifted_range_is_more_accurate_beyond_unit_scale():
    lo, hi = sampler_scale.ranges(10, 4.0)["shifted"]
    auto_lo, auto_hi = sampler_scale.lambda_range(10)
    assert math.isclose(lo, auto_lo - math.log(4.0)) and math.isclose(hi, auto_hi - math.log(4.0))
    torch.set_default_dtype(torch.float32)
    try:
        row = sampler_scale.main(scales=[4.0], nfes=[10], oracles=["gaussian"])[0]
    finally:
        torch.set_default_dtype(torch.float32)
    assert row["schedule"] == "cosine" and row["shifted"] < 0.1 * row["auto"]  # 1.1e-3 vs 5.4e-2 measured
