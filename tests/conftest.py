"""Shared test fixtures: paths and deterministic torch settings."""
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
# One intra-op thread from the start, so module-scoped fixtures (built before the autouse fixture below)
# compute with the same thread count as the tests that compare against them bit for bit.
torch.set_num_threads(1)


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
