"""bf16 autocast stays within its documented tolerance of fp32 on the original-code fixture.

Documented tolerance (bench/RESULTS.md): under bf16 autocast the relative L2 error of the raw
network output is below 3 % (measured 1.8 %) and that of a DDIM step's sample below 1 % (0.07 %).
"""
import numpy as np
import torch

from improved_diffusion.checkpoint import load_model
from tests.conftest import FIXTURES

OUTPUT_TOLERANCE = 0.03
STEP_TOLERANCE = 0.01


def relative_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def test_bf16_autocast_output_and_ddim_step_within_tolerance():
    folder = FIXTURES / "compat-a"
    expected = np.load(folder / "expected.npz")
    model, diffusion, _ = load_model(folder / "model_epoch=3_iter=120.pt")
    x, t, y = (torch.from_numpy(expected[k]) for k in ("x", "t", "y"))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, diffusion.model_time(t), y=y)
        step = diffusion.ddim_sample(model, x, t, model_kwargs={"y": y})["sample"]
    assert relative_l2(out, torch.from_numpy(expected["model_out"])) < OUTPUT_TOLERANCE
    assert relative_l2(step, torch.from_numpy(expected["ddim_sample"])) < STEP_TOLERANCE
