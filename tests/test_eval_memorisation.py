"""Memorisation check: an exact copy of a training image is flagged, fresh samples are not."""
import numpy as np
import pytest

from utils.evaluation.features import DomainCNN, FeatureExtractor
from utils.evaluation.memorisation import memorisation_check, plot_closest_pairs


def test_exact_copy_is_flagged(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.uniform(-1, 1, size=(20, 8, 8, 1)).astype(np.float32)
    generated = rng.uniform(-1, 1, size=(5, 8, 8, 1)).astype(np.float32)
    generated[3] = train[11]
    ext = FeatureExtractor(DomainCNN(1, 2, 4), "domain_cnn", None, 299, digest="")
    result = memorisation_check(generated, train, extractor=ext, feature_threshold=1e-6)
    assert result["pixel_index"][3] == 11 and result["pixel_distance"][3] == 0
    assert result["feature_index"][3] == 11 and result["feature_distance"][3] < 1e-6
    assert result["summary"]["fraction_pixel_below_threshold"] == pytest.approx(1 / 5)
    assert result["summary"]["fraction_feature_below_threshold"] == pytest.approx(1 / 5)
    # uniform [-1, 1] pixels: RMS distance of independent images is about sqrt(2/3)
    assert np.all(np.delete(result["pixel_distance"], 3) > 0.3)
    path = plot_closest_pairs(generated, train, result["pixel_distance"], result["pixel_index"],
                              tmp_path / "pairs.png", num_pairs=3)
    assert path.stat().st_size > 0


def test_mismatched_shapes_raise():
    with pytest.raises(ValueError, match="must match"):
        memorisation_check(np.zeros((2, 8, 8, 1)), np.zeros((2, 8, 8, 2)))
