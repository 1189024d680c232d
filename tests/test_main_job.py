"""The main job end to end at toy scale: data -> training -> sampling -> evaluation files, reuse of
finished steps, a new results folder per run, and a clear error for an earlier, longer run."""
import json

import numpy as np
import pytest

import main_job


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("main_job")
    kwargs = dict(data_dir=str(root / "data"), run_dir=str(root / "run"), results_root=str(root / "results"),
                  n_train=64, num_epochs=1, batch_size=32, num_samples=16, sample_steps=3, amp="auto")
    return root, kwargs, main_job.main(**kwargs)


def test_writes_every_result(small_run):
    _, _, results = small_run
    for name in ("samples_16x32x32x1.npz", "samples_16x32x32x1.png", "semivariogram_vs_truth.png",
                 "real_vs_generated.png", "metrics.json"):
        assert (results / name).is_file(), name
    metrics = json.loads((results / "metrics.json").read_text())
    assert metrics["run"]["num_epochs"] == 1 and metrics["run"]["sample_steps"] == 3
    errors = metrics["analytic"]["max_abs_rel_error_samples"]
    assert errors >= 0 and metrics["analytic"]["lags_checked_px"][0] >= 2


def test_mixture_model_is_stratified_by_strength_and_sampled_at_its_proportions(small_run):
    root, _, results = small_run
    metadata = json.loads((root / "run" / "metadata.json").read_text())
    assert metadata["class_cond"] and metadata["num_class"] == 3
    assert metadata["hdf5_keys"]["key_class"] == "strength"
    summary = json.loads((root / "data" / "strength_labels.json").read_text())
    assert summary["quantiles"] == [0.9, 0.98] and summary["counts"]["train"] == metadata["class_counts"]
    # each class scaled to the bulk's amplitude (robust model units), the strong classes drawn more often
    assert metadata["class_scale"] == summary["class_scale"] and summary["normalization"] == "robust"
    assert metadata["class_scale"][0] == 1.0 and metadata["class_scale"][2] > metadata["class_scale"][1] > 1.0
    assert metadata["class_weights"] == main_job.DATA_PRESETS["mixture"]["strength_weights"]
    counts = metadata["class_counts"]
    assert sum(counts) == 64 and counts[2] >= 1  # the strongest class holds about 2 % of the fields
    drawn = np.load(results / "samples_16x32x32x1.npz")["arr_1"]
    assert np.bincount(drawn, minlength=3).tolist() == np.bincount(
        main_job.proportional_labels(counts, 16, 0), minlength=3).tolist()


def test_a_finished_run_trained_otherwise_is_not_reused(small_run):
    root, kwargs, _ = small_run
    with pytest.raises(ValueError, match="finished run trained otherwise.*'key_class': \\('strength', 'label'\\)"):
        main_job.main(**{**kwargs, "class_cond": True})


def test_rerun_reuses_data_and_model_and_writes_a_new_folder(small_run, capsys):
    root, kwargs, first = small_run
    checkpoint = root / "run" / "ema_rate=0.99_0.pt"
    stamp = checkpoint.stat().st_mtime_ns
    second = main_job.main(**kwargs)
    out = capsys.readouterr().out
    assert "[data] reusing" in out and "[train] reusing the finished run" in out
    assert second != first and first.is_dir() and checkpoint.stat().st_mtime_ns == stamp


def test_a_longer_earlier_run_is_not_silently_replaced(small_run):
    root, kwargs, _ = small_run
    longer = root / "run" / "model_epoch=4_iter=10.pt"
    longer.write_bytes(b"")  # an earlier run of 5 epochs whose EMA for epoch 0 was pruned
    (root / "run" / "ema_rate=0.99_0.pt").rename(root / "run" / "kept.pt")
    try:
        with pytest.raises(ValueError, match="holds a run of 5 epochs without ema_rate=0.99_0.pt; pass --num_epochs 5"):
            main_job.main(**kwargs)
    finally:
        longer.unlink()
        (root / "run" / "kept.pt").rename(root / "run" / "ema_rate=0.99_0.pt")


def test_class_conditional_run_samples_at_the_training_proportions(tmp_path):
    kwargs = dict(data_dir=str(tmp_path / "data"), run_dir=str(tmp_path / "run"), results_root=str(tmp_path / "res"),
                  n_train=64, num_epochs=1, batch_size=32, num_samples=20, sample_steps=2, amp="none",
                  class_cond=True)
    results = main_job.main(**kwargs)
    metadata = json.loads((tmp_path / "run" / "metadata.json").read_text())
    assert metadata["class_cond"] and metadata["num_class"] == 2 and metadata["hdf5_keys"]["key_class"] == "label"
    counts = metadata["class_counts"]
    assert sum(counts) == 64 and counts[1] > 0
    drawn = np.load(results / "samples_20x32x32x1.npz")["arr_1"]
    expected = 20 * counts[1] / 64
    assert abs(int(drawn.sum()) - expected) < 1  # largest-remainder rounding of the deformation share
