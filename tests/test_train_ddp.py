"""torchrun with 2 CPU processes (gloo, loopback) trains like 1 process with the doubled batch."""
import os
import socket
import subprocess
import sys

import torch

import train
from improved_diffusion.checkpoint import load_state_dict
from improved_diffusion.train_state import load_train_state
from tests.conftest import REPO_ROOT
from tests.test_train_script import image_folder

CONFIG = dict(image_size=32, num_input_channels=1, num_model_channels=32, num_res_blocks=1, attention_resolutions="8",
              diffusion_steps=4, noise_schedule="cosine", num_epochs=1, ema_rate="0.9", learn_sigma=True,
              loss_name="rescaled_mse", schedule_sampler="loss-second-moment", grid_interval=0, log_interval=1,
              amp="none")  # compared at float32 tolerance: the precision is pinned, 'auto' is bf16 on some CPUs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_one_process_with_double_batch(tmp_path):
    data = image_folder(tmp_path / "data", n=8)
    single, double = tmp_path / "single", tmp_path / "ddp"
    train.main(data_train_dir=data, url_folder_experiment=str(single), batch_size=4, **CONFIG)

    flags = [f"--{k}={v}" for k, v in CONFIG.items() if not isinstance(v, bool)]
    flags += ["--learn_sigma", f"--data_train_dir={data}", f"--url_folder_experiment={double}", "--batch_size=2",
              "--device=cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(REPO_ROOT / "train.py"), *flags]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]

    for name in ("model_epoch=0_iter=2.pt", "ema_rate=0.9_0.pt"):
        a, b = load_state_dict(single / name), load_state_dict(double / name)
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)
    s1 = load_train_state(single / "train_state_epoch=0_iter=2.pt")
    s2 = load_train_state(double / "train_state_epoch=0_iter=2.pt")
    assert s2.world_size == 2 and s1.world_size == 1
    # The loss-second-moment history holds the losses of both processes, in the single-process order.
    assert torch.equal(s1.sampler["loss_counts"], s2.sampler["loss_counts"]) and s1.sampler["loss_counts"].sum() == 8
    torch.testing.assert_close(s2.sampler["loss_history"], s1.sampler["loss_history"], rtol=1e-4, atol=1e-6)
