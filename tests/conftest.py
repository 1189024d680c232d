"""Shared test fixtures: paths and deterministic torch settings."""
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
# One intra-op thread from the start, so module-scoped fixtures (built before the autouse fixture below)
# compute with the same thread count as the tests that compare against them bit for bit.
torch.set_num_threads(1)


# Test modules that compare numbers (across runs, processes, layouts or against fixtures). `make test` runs them with
# PDM_RADAR_ASSUME_BF16=1 (improved_diffusion.acceleration), where amp='auto' resolves as on a CPU with native
# bfloat16, so a comparison that does not pin its precision fails on every machine kind, not only on AVX512-BF16 / AMX.
NUMERIC_MODULES = {
    "test_core_checkpoint", "test_core_compat", "test_faults_training", "test_migration", "test_perf_defaults",
    "test_perf_options", "test_perf_precision", "test_sampling_ddp", "test_sampling_denoiser", "test_sampling_io",
    "test_sampling_scripts", "test_sampling_solvers", "test_sampling_steps", "test_train_ddp", "test_train_ema",
    "test_train_loop", "test_train_resume", "test_train_script",
}


def pytest_collection_modifyitems(items):
    for item in items:
        if item.module.__name__.rsplit(".", 1)[-1] in NUMERIC_MODULES:
            item.add_marker(pytest.mark.numeric)


@pytest.fixture(autouse=True)
def _deterministic_torch():
    """Seeded, and one intra-op thread: on a busy 2-core machine two spinning OpenMP threads run ~10x slower."""
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT
