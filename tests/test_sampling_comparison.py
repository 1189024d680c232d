"""Sampler comparison: one row per (configuration, steps), scores from the scoring function, plots."""
import numpy as np
import pytest

from utils.sampler_comparison import compare_samplers, plot_comparison

from .conftest import FIXTURES

CKPT = FIXTURES / "compat-a" / "model_epoch=3_iter=120.pt"


def test_compare_samplers_rows_scores_and_plots(tmp_path):
    configs = [{"sampler": "ddim", "label": "DDIM"}, {"sampler": "dpm", "order": 2, "label": "DPM++2M"}]
    seen = []

    def score_fn(images):
        seen.append(images.shape)
        return {"FID": float(np.abs(images).mean())}

    rows = compare_samplers(str(CKPT), configs, [1, 2], num_samples=2, batch_size=2, device="cpu", score_fn=score_fn)
    assert [(r["label"], r["steps"]) for r in rows] == [("DDIM", 1), ("DDIM", 2), ("DPM++2M", 1), ("DPM++2M", 2)]
    assert seen == [(2, 32, 32, 1)] * 4
    assert all(r["seconds_per_sample"] > 0 and "FID" in r for r in rows)
    paths = plot_comparison(rows, tmp_path)
    assert [p.name for p in paths] == ["comparison_FID_vs_time.png"] and paths[0].is_file()


def test_bad_configuration():
    with pytest.raises(ValueError, match="sampler"):
        compare_samplers(str(CKPT), [{"sampler": "euler"}], [2], device="cpu")
