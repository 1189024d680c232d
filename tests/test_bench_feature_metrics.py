"""bench/feature_metrics.py at toy scale, on the main job's current data and training path: every row is
scored, a model trained one epoch on 64 fields sits far above the noise floor, plug-in FIDs are >= 0,
and a run whose stored normalisation differs from the data's is refused."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import feature_metrics  # noqa: E402

from improved_diffusion import train_logging  # noqa: E402


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("feature_metrics")
    kwargs = dict(data_dir=str(root / "data"), run_dir=str(root / "run"), out_dir=str(root / "out"), n_train=64,
                  epochs="1,2", num_samples=32, sample_steps=3, num_bootstrap=10)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_logging, "GRID_STEPS", 2)  # the tensorboard grids are not under test here
        return root, kwargs, feature_metrics.main(**kwargs)


def test_every_row_is_scored_and_the_json_is_written(toy):
    root, _, result = toy
    names = [r["name"] for r in result["rows"]]
    laws = [f"synthetic, {name}" for name in feature_metrics.PERTURBATIONS["mixture"]]
    assert names == ["real (held-out val fields)", *laws, "demo model, 2 epoch(s)", "demo model, 1 epoch(s)",
                     "noise floor: test half B"]
    assert all(r["n"] == 32 and r["fid"] >= 0 for r in result["rows"])
    assert all(np.isfinite(r["kid"]) and 0 < r["kid_ci"][1] - r["kid_ci"][0] < np.inf for r in result["rows"])
    saved = json.loads((root / "out" / "feature_metrics.json").read_text())
    assert saved["data_preset"] == "mixture" and len(saved["extractor"]["weights_sha256"]) == 64
    assert saved["rows"][-2]["intervals_overlap"]["with"] == "demo model, 2 epoch(s)"


def test_a_barely_trained_model_scores_far_above_the_noise_floor(toy):
    rows = {r["name"]: r for r in toy[2]["rows"]}
    floor, poor = rows["noise floor: test half B"], rows["demo model, 1 epoch(s)"]
    assert poor["fid_ci"][0] > floor["fid_ci"][1] and poor["recall"] < floor["recall"]


def test_a_run_with_another_normalisation_is_refused(toy):
    root, kwargs, _ = toy
    metadata = root / "run" / "metadata.json"
    original = metadata.read_text()
    stored = json.loads(original)
    stored["data_normalization"]["low"] -= 1.0
    metadata.write_text(json.dumps(stored))
    try:
        with pytest.raises(ValueError, match="data_normalization .* differs from"):
            feature_metrics.main(**{**kwargs, "perturbations": False})
    finally:
        metadata.write_text(original)
