"""Sampler comparison: one row per (configuration, steps), scores from the scoring function, plots."""
import numpy as np
import pytest

from utils.sampling.comparison import compare_samplers, plot_comparison

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


def test_feature_scores_of_the_reference_set_itself(tmp_path):
    import example_fine_tuning
    from utils.sampling.comparison import feature_score_fn

    example_fine_tuning.main(out_folder=str(tmp_path / "cnn"), arch="domain_cnn", random_init=True, width=8)
    images = np.random.default_rng(0).uniform(-1, 1, (80, 32, 32, 1)).astype(np.float32)
    np.savez(tmp_path / "real.npz", images)
    score = feature_score_fn(str(tmp_path / "real.npz"), str(tmp_path / "cnn" / "classifier_best.pt"))
    same = score(images)
    assert abs(same["FID"]) < 1e-6 and same["Precision"] == 1.0 and same["Recall"] == 1.0
    other_noise = np.random.default_rng(1).uniform(-1, 1, images.shape).astype(np.float32)
    blank = score(np.zeros_like(images))
    assert blank["FID"] > 10 * score(other_noise)["FID"] and blank["Precision"] == 0.0


def test_scoring_needs_both_reference_and_extractor(tmp_path):
    from utils.sampling.comparison import main

    with pytest.raises(ValueError, match="give both"):
        main(model_path=str(CKPT), real=str(tmp_path), url_save_folder=str(tmp_path / "out"))


def test_scores_carry_interval_kid_and_noise_floor_at_matched_counts(tmp_path):
    import example_fine_tuning
    from utils.sampling.comparison import feature_score_fn, plot_comparison, score_text

    example_fine_tuning.main(out_folder=str(tmp_path / "cnn"), arch="domain_cnn", random_init=True, width=2)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "real.npz", rng.uniform(-1, 1, (120, 16, 16, 1)).astype(np.float32))
    score = feature_score_fn(str(tmp_path / "real.npz"), str(tmp_path / "cnn" / "classifier_best.pt"),
                             num_bootstrap=20)
    fresh = score(rng.uniform(-1, 1, (50, 16, 16, 1)).astype(np.float32))
    shifted = score(rng.uniform(-0.5, 1, (50, 16, 16, 1)).astype(np.float32))
    assert fresh["n_matched"] == shifted["n_matched"] == 50
    assert fresh["FID_matched_floor"] == shifted["FID_matched_floor"]  # the same two real halves
    assert shifted["FID_matched"] > 3 * shifted["FID_matched_floor"] and shifted["KID_matched"] > 0
    assert fresh["FID_ci_low"] <= fresh["FID_corrected"] <= fresh["FID_ci_high"] and fresh["KID_se"] > 0
    assert len(fresh["extractor_sha256"]) == 64 and "floor" in score_text(fresh)
    rows = [{"label": "a", "steps": s, "seconds_per_sample": 0.1 * s, **score_} for s, score_ in ((1, shifted),
                                                                                                  (2, fresh))]
    names = {p.name for p in plot_comparison(rows, tmp_path)}
    assert "comparison_FID_matched_vs_time.png" in names and "comparison_KID_se_vs_time.png" not in names
