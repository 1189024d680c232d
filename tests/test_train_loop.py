"""TrainLoop on an in-memory loader: micro-batch averaging, lr schedule, best-only saving across a
resume, validation (eval mode, per-example weighting), non-finite loss, atomic saves, tensorboard."""
import hashlib
from pathlib import Path

import pytest
import torch

from improved_diffusion import train_logging
from improved_diffusion.script_util import create_model_and_diffusion
from improved_diffusion.train_setup import loop_config
from improved_diffusion.train_util import EpochData, TrainLoop

TINY = dict(image_size=32, num_input_channels=1, num_model_channels=32, num_res_blocks=1, attention_resolutions="8",
            diffusion_steps=10, noise_schedule="cosine")


class MemoryLoader:
    """Batches of a fixed tensor, shuffled as a function of the epoch only."""

    def __init__(self, x: torch.Tensor, batch_size: int, y: torch.Tensor | None = None):
        self.x, self.y, self.batch_size, self.epoch = x, y, batch_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(self.epoch))
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield self.x[idx], ({} if self.y is None else {"y": self.y[idx]})


def make_loop(folder, x, batch_size=2, **kw):
    torch.manual_seed(0)
    model, diffusion = create_model_and_diffusion({**TINY, **kw.pop("model_args", {})})
    loader = MemoryLoader(x, batch_size)
    kw = {"num_epochs": 1, "lr": 1e-3, "ema_rate": "0.9", "grid_interval": 0, **kw}
    val_data, device = kw.pop("val_data", None), torch.device(kw.pop("device", "cpu"))
    return TrainLoop(model=model, diffusion=diffusion, data=EpochData(loader, loader.set_epoch), folder=str(folder),
                     config=loop_config(kw, device), val_data=val_data, device=device)


def folder_hashes(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_microbatch_gradients_are_the_batch_mean(tmp_path):
    x = torch.randn(4, 1, 32, 32)
    grads = []
    for microbatch in (-1, 1):
        loop = make_loop(tmp_path, x, batch_size=4, microbatch=microbatch)
        loop._wrap_model()
        loop._seed_epoch(0)
        loop._forward_backward(x.clone(), {})
        grads.append(torch.cat([p.grad.flatten() for p in loop.params]))
    # Summing micro-batch gradients (the original) would give 4x the full-batch gradient.
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-6)


def test_lr_warmup_and_annealing_never_negative(tmp_path):
    loop = make_loop(tmp_path, torch.randn(2, 1, 32, 32), lr=1.0, warmup_steps=4, lr_anneal_steps=10)
    got = []
    for step in range(14):
        loop.step_total = step
        got.append(loop._current_lr())
    expected = [min(1.0, (s + 1) / 4) * max(0.0, 1 - s / 10) for s in range(14)]
    assert got == pytest.approx(expected) and min(got) == 0.0


def test_lr_anneal_stops_within_the_epoch(tmp_path):
    loop = make_loop(tmp_path, torch.randn(4, 1, 32, 32), num_epochs=3, lr_anneal_steps=3)
    result = loop.run()
    assert result["step_total"] == 3
    assert result["checkpoint"].name == "model_epoch=1_step=1.pt"


def test_lr_anneal_at_an_epoch_end_writes_the_epoch_checkpoints(tmp_path):
    """Annealing that ends with an epoch (the usual choice: lr_anneal_steps = epochs x steps per epoch) ends it as
    any epoch: the full-epoch model and EMA checkpoints, no partial-epoch names, no further epoch."""
    result = make_loop(tmp_path, torch.randn(4, 1, 32, 32), num_epochs=3, lr_anneal_steps=4).run()
    assert result["step_total"] == 4 and result["epochs"] == 2
    assert result["checkpoint"].name == "model_epoch=1_iter=4.pt"
    assert (tmp_path / "ema_rate=0.9_1.pt").is_file() and not list(tmp_path.glob("*step=*"))


@pytest.mark.filterwarnings("ignore:amp='bf16' on a CPU without native bfloat16")
def test_bf16_autocast_trains_on_cpu(tmp_path):
    loop = make_loop(tmp_path, torch.randn(2, 1, 32, 32), amp="bf16")
    before = {k: v.clone() for k, v in loop.model.state_dict().items()}
    loop.run()
    after = loop.model.state_dict()
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in after.values())
    assert not torch.equal(after["out.2.weight"], before["out.2.weight"])


def test_fp16_needs_cuda(tmp_path):
    with pytest.raises(ValueError, match="bf16"):
        make_loop(tmp_path, torch.randn(2, 1, 32, 32), amp="fp16")


def test_best_only_saving_continues_after_resume(tmp_path, monkeypatch):
    scores = iter([1.0, 0.5, 0.7, 0.4])
    monkeypatch.setattr(TrainLoop, "validate", lambda self, epoch: {"vb": next(scores), "mse": 0.1})
    x = torch.randn(2, 1, 32, 32)
    make_loop(tmp_path, x, num_epochs=2, val_data=EpochData([])).run()
    names = sorted(p.name for p in tmp_path.glob("model_*.pt"))
    assert names == ["model_epoch=0_iter=1_vb=1.0_mse=0.1.pt", "model_epoch=1_iter=2_vb=0.5_mse=0.1.pt"]
    loop = make_loop(tmp_path, x, num_epochs=4, val_data=EpochData([]))
    loop.resume(tmp_path / names[1])
    assert loop.best_score == 0.5
    loop.run()
    names = sorted(p.name for p in tmp_path.glob("model_*.pt"))
    assert names[-1] == "model_epoch=3_iter=4_vb=0.4_mse=0.1.pt" and len(names) == 3  # epoch 2 (0.7) not saved
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    logged = [e.value for e in EventAccumulator(str(tmp_path)).Reload().Scalars("val/vb")]
    assert logged == pytest.approx([1.0, 0.5, 0.7, 0.4])  # both runs, every epoch


def test_validation_is_eval_mode_and_weighted_per_example(tmp_path, monkeypatch):
    loop = make_loop(tmp_path, torch.randn(2, 1, 32, 32), model_args={"dropout": 0.1})
    batches = [(torch.full((3, 1, 32, 32), 1.0), {}), (torch.full((1, 1, 32, 32), 5.0), {})]
    loop.val_data = EpochData(batches)
    modes = []

    def fake_bpd(model, x, **kw):
        modes.append(model.training)
        value = x.mean(dim=(1, 2, 3))
        return {"total_bpd": value, "xstart_mse": value[:, None].repeat(1, 2)}
    monkeypatch.setattr(loop.diffusion, "calc_bpd_loop", fake_bpd)
    val = loop.validate(0)
    assert modes == [False, False] and loop.model.training
    assert val["vb"] == pytest.approx((3 * 1.0 + 5.0) / 4) and val["mse"] == pytest.approx(2.0)  # not (1 + 5) / 2


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tmp_path):
    x = torch.randn(4, 1, 32, 32)
    make_loop(tmp_path, x, batch_size=4).run()
    before = folder_hashes(tmp_path)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    loop = make_loop(tmp_path, bad, batch_size=4, num_epochs=3, log_interval=100)
    loop.resume(tmp_path / "model_epoch=0_iter=1.pt")
    with pytest.raises(FloatingPointError, match="NaN or inf"):
        loop.run()
    after = folder_hashes(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("events")} == \
        {k: v for k, v in before.items() if not k.startswith("events")}


def test_crash_during_save_leaves_previous_set_intact(tmp_path, monkeypatch):
    x = torch.randn(2, 1, 32, 32)
    real_save, calls, seen = torch.save, [], {}

    def failing_save(obj, path, *args, **kwargs):
        calls.append(path)
        if any("opt1" in Path(c).name for c in calls):  # the second set: fail while writing its optimizer
            seen.update({k: v for k, v in folder_hashes(tmp_path).items() if not k.endswith(".tmp")})
            Path(path).write_bytes(b"partial")
            raise OSError("disk full (simulated)")
        return real_save(obj, path, *args, **kwargs)
    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="simulated"):
        make_loop(tmp_path, x, num_epochs=2).run()
    after = folder_hashes(tmp_path)
    assert after == seen  # every earlier file byte-identical, no temporary file left
    assert "model_epoch=0_iter=1.pt" in after and "model_epoch=1_iter=2.pt" not in after
    assert not any(name.endswith(".tmp") for name in after)


def test_keep_checkpoints_and_tensorboard_tags(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    loop = make_loop(tmp_path, torch.randn(4, 1, 32, 32), num_epochs=3, keep_checkpoints=2, log_interval=1,
                     grid_interval=3, schedule_sampler="uniform")
    monkeypatch.setattr(train_logging, "GRID_STEPS", 2)
    loop.run()
    assert sorted(p.name for p in tmp_path.glob("model_*.pt")) == ["model_epoch=1_iter=4.pt", "model_epoch=2_iter=6.pt"]
    assert not list(tmp_path.glob("*_0.pt")) and not list(tmp_path.glob("opt0.pt"))
    events = EventAccumulator(str(tmp_path)).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss", "mse", "lr", "grad_norm", "samples_per_s", "samples"} <= tags
    assert any(t.startswith("loss_q") for t in tags)
    assert [e.step for e in events.Scalars("loss")] == list(range(1, 7))
    assert events.Tags()["images"] == ["samples/ema_0.9"]
