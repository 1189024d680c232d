"""torchrun with 2 CPU processes (gloo, loopback) writes the same samples as one process."""
import json
import os
import subprocess
import sys

import numpy as np

from sample_DPM import sample_from_ODE
from tests.conftest import REPO_ROOT
from tests.test_perf_options import CKPT, compat_dir  # noqa: F401 - the fixture
from tests.test_train_ddp import _free_port

RUN = dict(sample_steps=2, num_samples=5, batch_size=2, seed=7, plot=False)  # 3 batches: rank 0 gets two


def test_two_gloo_processes_write_the_single_process_samples(compat_dir):  # noqa: F811
    single = sample_from_ODE(model_path=str(compat_dir / CKPT), url_save_path=str(compat_dir / "one"),
                             device="cpu", progress=False, **RUN)
    flags = [f"--{k}={v}" for k, v in RUN.items() if not isinstance(v, bool)]
    flags += ["--no-plot", "--no-progress", "--device=cpu", f"--model_path={compat_dir / CKPT}",
              f"--url_save_path={compat_dir / 'two'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(REPO_ROOT / "sample_DPM.py"), *flags]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]

    merged = compat_dir / "two" / single.name
    with np.load(single) as a, np.load(merged) as b:
        assert b["arr_0"].shape == (5,) + a["arr_0"].shape[1:]
        np.testing.assert_array_equal(b["arr_0"], a["arr_0"])
        np.testing.assert_array_equal(b["arr_1"], a["arr_1"])  # labels in sample order
    assert sorted(p.name for p in (compat_dir / "two").iterdir()) == sorted([merged.name, merged.with_suffix(".json").name])
    provenance = json.loads(merged.with_suffix(".json").read_text())
    assert provenance["processes"] == 2
    # the defaults' resolved choices are recorded, not 'auto'
    assert provenance["amp"] in ("none", "bf16") and isinstance(provenance["channels_last"], bool)
