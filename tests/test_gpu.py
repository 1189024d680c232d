"""The CUDA paths: fp32 (SDPA kernels, channels_last) reproduces the original-code fixture, bf16 stays
within its documented tolerance, fp16 training scales its loss, and sampling runs on the GPU.
Skipped where no CUDA device is present (`bench/gpu_check.sh` runs this file on a lent GPU)."""
import shutil

import numpy as np
import pytest
import torch

from improved_diffusion.checkpoint import load_model
from sample_DPM import sample_from_ODE

from .conftest import FIXTURES
from .test_perf_precision import OUTPUT_TOLERANCE, STEP_TOLERANCE, relative_l2
from .test_train_loop import make_loop

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CKPT = "model_epoch=3_iter=120.pt"


@pytest.fixture
def exact_fp32():
    """Plain fp32 arithmetic: TF32 off for matmuls and cuDNN convolutions during the test."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def fixture_inputs(device, channels_last=False):
    expected = np.load(FIXTURES / "compat-a" / "expected.npz")
    model, diffusion, _ = load_model(FIXTURES / "compat-a" / CKPT, device=device)
    x = torch.from_numpy(expected["x"]).to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    t, y = (torch.from_numpy(expected[k]).to(device) for k in ("t", "y"))
    return expected, model, diffusion, x, t, y


@pytest.mark.parametrize("channels_last", [False, True])
def test_fp32_cuda_reproduces_the_original_code_fixture(exact_fp32, channels_last):
    expected, model, diffusion, x, t, y = fixture_inputs("cuda", channels_last)
    with torch.no_grad():
        out = model(x, diffusion.model_time(t), y=y)
        step = diffusion.ddim_sample(model, x, t, model_kwargs={"y": y})["sample"]
    np.testing.assert_allclose(out.cpu().numpy(), expected["model_out"], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(step.cpu().numpy(), expected["ddim_sample"], rtol=2e-3, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_cuda_within_documented_tolerance(dtype):
    expected, model, diffusion, x, t, y = fixture_inputs("cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=dtype):
        out = model(x, diffusion.model_time(t), y=y)
        step = diffusion.ddim_sample(model, x, t, model_kwargs={"y": y})["sample"]
    assert relative_l2(out.cpu(), torch.from_numpy(expected["model_out"])) < OUTPUT_TOLERANCE
    assert relative_l2(step.cpu(), torch.from_numpy(expected["ddim_sample"])) < STEP_TOLERANCE


@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_mixed_precision_training_on_cuda(tmp_path, amp):
    loop = make_loop(tmp_path, torch.randn(4, 1, 32, 32), batch_size=2, num_epochs=2, amp=amp, device="cuda",
                     channels_last=True)
    before = loop.model.out[2].weight.detach().clone()
    loop.run()
    weight = loop.model.out[2].weight
    assert weight.dtype == torch.float32 and torch.isfinite(weight).all() and not torch.equal(weight, before)
    assert (loop.scaler is not None) == (amp == "fp16")
    if loop.scaler is not None:
        assert loop.scaler.get_scale() > 0


def test_sampling_on_cuda_bf16_close_to_fp32(tmp_path):
    for name in (CKPT, "metadata.json"):
        shutil.copy(FIXTURES / "compat-a" / name, tmp_path / name)
    runs = {}
    for amp in ("none", "bf16"):
        out = sample_from_ODE(model_path=str(tmp_path / CKPT), sample_steps=5, num_samples=8, batch_size=8,
                              sampled_class=1, url_save_path=str(tmp_path / amp), amp=amp, channels_last=True,
                              device="cuda", progress=False, plot=False)
        with np.load(out) as data:
            runs[amp] = data["arr_0"]
    assert np.isfinite(runs["bf16"]).all() and np.abs(runs["bf16"]).max() <= 1
    assert np.linalg.norm(runs["bf16"] - runs["none"]) / np.linalg.norm(runs["none"]) < 0.15
