"""ROC AUC of per-field scores against the Mann-Whitney pair count and known answers."""
import numpy as np
import pytest

from utils.evaluation.detection import roc_auc, roc_auc_interval


def _pair_count_auc(pos, neg):
    """P(S+ > S-) + P(S+ = S-) / 2 by counting all pairs (the definition, independent of ranks)."""
    diff = np.asarray(pos)[:, None] - np.asarray(neg)[None, :]
    return ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size


def test_known_answers():
    assert roc_auc([5.0, 6.0, 7.0], [1.0, 2.0]) == 1.0
    assert roc_auc([1.0, 2.0], [5.0, 6.0, 7.0]) == 0.0
    assert roc_auc([3.0, 3.0], [3.0]) == 0.5  # all tied
    assert roc_auc([2.0, 4.0], [1.0, 3.0]) == 0.75  # pairs: 2>1, 2<3, 4>1, 4>3


def test_matches_pair_count_with_ties():
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 6, 40).astype(float), rng.integers(0, 5, 55).astype(float)
    assert roc_auc(pos, neg) == pytest.approx(_pair_count_auc(pos, neg), abs=1e-12)


def test_identical_laws_give_one_half_within_the_interval():
    rng = np.random.default_rng(1)
    out = roc_auc_interval(rng.normal(size=300), rng.normal(size=300), num_bootstrap=500)
    assert out["low"] < 0.5 < out["high"] and out["high"] - out["low"] < 0.2
    assert out["low"] <= out["auc"] <= out["high"]


def test_separated_laws_interval_excludes_one_half():
    rng = np.random.default_rng(2)
    shift = 1.0  # AUC of N(1, 1) vs N(0, 1) = Phi(1 / sqrt(2)) = 0.7602
    out = roc_auc_interval(rng.normal(size=400) + shift, rng.normal(size=400), num_bootstrap=500)
    assert out["low"] < 0.7602 < out["high"] and out["low"] > 0.6


def test_bad_scores():
    with pytest.raises(ValueError, match="positive"):
        roc_auc([], [1.0])
    with pytest.raises(ValueError, match="negative"):
        roc_auc([1.0], [np.nan])
