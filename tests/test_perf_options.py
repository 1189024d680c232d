"""Speed options: amp='auto' follows the hardware, channels_last reproduces the original-code fixture
and trains / samples like the standard layout, compile falls back to eager and runs through dynamo."""
import functools
import json
import shutil

import numpy as np
import pytest
import torch

from improved_diffusion import acceleration
from improved_diffusion.acceleration import compile_model, native_bf16, resolve_amp
from improved_diffusion.checkpoint import load_model
from sample_DPM import sample_from_ODE

from .conftest import FIXTURES
from .test_core_compat import STRICT
from .test_train_loop import make_loop

CKPT = "model_epoch=3_iter=120.pt"
FAST = dict(batch_size=2, device="cpu", progress=False, plot=False, amp="none")  # the original numerics


@pytest.fixture
def compat_dir(tmp_path):
    for name in (CKPT, "metadata.json"):
        shutil.copy(FIXTURES / "compat-a" / name, tmp_path / name)
    return tmp_path


@pytest.mark.parametrize("flags, expected", [({"avx512_bf16", "avx2"}, "bf16"), ({"amx_bf16"}, "bf16"),
                                             ({"bf16", "asimd"}, "bf16"), ({"avx2", "fma"}, "none"), (set(), "none")])
def test_auto_amp_is_bf16_only_with_native_bf16(monkeypatch, flags, expected):
    monkeypatch.setattr(acceleration, "_cpu_flags", lambda: frozenset(flags))
    assert native_bf16("cpu") == (expected == "bf16")
    assert resolve_amp("auto", "cpu") == expected


def test_assume_bf16_switch_makes_auto_resolve_as_on_a_bf16_cpu(monkeypatch):
    monkeypatch.setattr(acceleration, "_proc_cpu_flags", lambda: frozenset({"avx2", "fma"}))
    monkeypatch.delenv(acceleration.ASSUME_BF16_ENV, raising=False)
    assert resolve_amp("auto", "cpu") == "none"
    monkeypatch.setenv(acceleration.ASSUME_BF16_ENV, "1")
    assert resolve_amp("auto", "cpu") == "bf16"
    assert {"avx2", "avx512_bf16"} <= acceleration._cpu_flags()
    monkeypatch.setenv(acceleration.ASSUME_BF16_ENV, "0")
    assert resolve_amp("auto", "cpu") == "none"


def test_make_test_runs_every_numeric_module_under_the_bf16_switch(repo_root):
    from .conftest import NUMERIC_MODULES
    recipe = (repo_root / "Makefile").read_text().split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert f"{acceleration.ASSUME_BF16_ENV}=1 $(BIN)/python -m pytest -q -m numeric" in recipe
    assert '-m "not numeric"' in recipe
    missing = sorted(m for m in NUMERIC_MODULES if not (repo_root / "tests" / f"{m}.py").is_file())
    assert not missing, f"NUMERIC_MODULES names test files that do not exist: {missing}"


def test_explicit_amp_modes_and_errors(monkeypatch):
    monkeypatch.setattr(acceleration, "_cpu_flags", lambda: frozenset({"avx2"}))
    assert resolve_amp("none", "cpu") == "none"
    with pytest.warns(UserWarning, match="emulates it and runs ~10-20x slower"):
        assert resolve_amp("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="'fp16' on a CPU device"):
        resolve_amp("fp16", "cpu")
    with pytest.raises(ValueError, match="use_fp16: got True on a CPU device"):
        resolve_amp("none", "cpu", use_fp16=True)
    with pytest.raises(ValueError, match=r"amp: got 'fp8', expected one of \('none', 'auto', 'bf16', 'fp16'\)"):
        resolve_amp("fp8", "cpu")


def test_cpu_flags_come_from_this_machine():
    flags = acceleration._cpu_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo here")
    assert {"sse2", "asimd", "fp"} & flags  # x86-64 always has SSE2; aarch64 lists fp / asimd


def test_channels_last_reproduces_the_original_code_fixture():
    expected = np.load(FIXTURES / "compat-a" / "expected.npz")
    model, diffusion, _ = load_model(FIXTURES / "compat-a" / CKPT)
    model.to(memory_format=torch.channels_last)
    assert model.input_blocks[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.from_numpy(expected["x"]).contiguous(memory_format=torch.channels_last)
    t, y = torch.from_numpy(expected["t"]), torch.from_numpy(expected["y"])
    with torch.no_grad():
        out = model(x, diffusion.model_time(t), y=y)
        step = diffusion.ddim_sample(model, x, t, model_kwargs={"y": y})["sample"]
    np.testing.assert_allclose(out.numpy(), expected["model_out"], **STRICT)
    np.testing.assert_allclose(step.numpy(), expected["ddim_sample"], rtol=2e-3, atol=1e-4)


def test_channels_last_training_matches_the_standard_layout(tmp_path):
    """Same gradients in both layouts (AdamW would amplify float rounding of near-zero gradients, so the
    step is compared before the update); checkpoints of a channels_last run keep the standard layout."""
    x = torch.randn(4, 1, 32, 32)
    grads = {}
    for channels_last in (False, True):
        loop = make_loop(tmp_path / str(channels_last), x, batch_size=4, channels_last=channels_last)
        loop._wrap_model()
        loop._seed_epoch(0)
        loop._forward_backward(x.to(memory_format=loop.memory_format), {})
        grads[channels_last] = torch.cat([p.grad.flatten() for p in loop.params])
    torch.testing.assert_close(grads[True], grads[False], rtol=1e-4, atol=1e-6)
    assert loop.model.out[2].weight.is_contiguous(memory_format=torch.channels_last)
    folder = tmp_path / "run"
    make_loop(folder, x, batch_size=2, channels_last=True).run()
    for name in ("model_epoch=0_iter=2.pt", "ema_rate=0.9_0.pt"):
        state = torch.load(folder / name, weights_only=True)
        assert all(v.is_contiguous() for v in state.values()), name


def samples_off_and_on(folder, option: str, sample_steps: int) -> dict:
    """{False: samples, True: samples} of sample_DPM with `option` off and on (same seed and labels)."""
    runs = {}
    for value in (False, True):
        out = sample_from_ODE(model_path=str(folder / CKPT), sample_steps=sample_steps, num_samples=2,
                              sampled_class=1, url_save_path=str(folder / f"{option}{value}"), **{option: value}, **FAST)
        with np.load(out) as data:
            runs[value] = data["arr_0"]
        assert json.loads(out.with_suffix(".json").read_text()).get("channels_last") is (
            value if option == "channels_last" else False)
    return runs


def test_channels_last_sampling_gives_the_same_samples(compat_dir):
    runs = samples_off_and_on(compat_dir, "channels_last", sample_steps=3)
    # float rounding only; clipping x0 at +-1 (the untrained fixture saturates) amplifies it at a few pixels (on an
    # AVX-512 CPU, where the two layouts run different convolution kernels, one pixel in 2048 differed by 0.6 %)
    np.testing.assert_allclose(runs[True], runs[False], rtol=2e-2, atol=1e-4)
    assert np.linalg.norm(runs[True] - runs[False]) < 5e-3 * np.linalg.norm(runs[False])


def test_compile_falls_back_to_eager_when_unavailable(monkeypatch, capsys):
    def unavailable(model):
        raise RuntimeError("no C++ compiler")
    monkeypatch.setattr(torch, "compile", unavailable)
    model = torch.nn.Linear(2, 2)
    assert compile_model(model, "sample") is model
    assert "[sample] compile=True ignored, running eagerly: RuntimeError: no C++ compiler" in capsys.readouterr().out


def test_compiled_sampling_traces_the_network_and_matches_eager(compat_dir, monkeypatch):
    """compile=True runs the network through dynamo (the 'eager' backend keeps this test fast: Inductor's
    code generation is PyTorch's own concern) and gives the eager samples."""
    import torch._dynamo
    calls = []
    real_compile = torch.compile

    def traced(model):
        calls.append(model)
        return real_compile(model, backend="eager")
    monkeypatch.setattr(torch, "compile", traced)
    torch._dynamo.reset()
    runs = samples_off_and_on(compat_dir, "compile", sample_steps=2)
    assert len(calls) == 1
    np.testing.assert_allclose(runs[True], runs[False], rtol=1e-5, atol=1e-6)


def test_compiled_training_step_matches_eager(tmp_path, monkeypatch):
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", functools.partial(real_compile, backend="eager"))
    x = torch.randn(2, 1, 32, 32)
    weights = []
    for compile_ in (False, True):
        loop = make_loop(tmp_path / str(compile_), x, compile=compile_)
        loop.run()
        weights.append(loop.model.out[2].weight.detach().clone())
    assert loop.ddp_model is not loop.model
    torch.testing.assert_close(weights[1], weights[0], rtol=1e-5, atol=1e-6)
