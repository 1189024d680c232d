"""Standardised feature scores and the noise floor: scale-free values, matched counts, the table."""
import warnings

import numpy as np
import pytest

from utils.evaluation.feature_scores import feature_scores, format_scores, noise_floor, standardise


def test_standardise_uses_the_reference_statistics():
    ref = np.array([[0.0, 5.0], [2.0, 5.0]])
    ref_s, other_s = standardise(ref, np.array([[4.0, 6.0]]))
    # column 0: mean 1, std 1; column 1 is constant on the reference: std taken as 1
    assert np.allclose(ref_s, [[-1.0, 0.0], [1.0, 0.0]]) and np.allclose(other_s, [[3.0, 1.0]])


def test_a_nearly_constant_dimension_is_flagged():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(200, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        standardise(real, real)
    real[:, 3] *= 1e-4  # e.g. a ReLU unit that almost never fires on real data
    with pytest.warns(UserWarning, match="1 of 4 feature dimensions are nearly constant"):
        standardise(real, real)


def test_scores_do_not_depend_on_feature_units():
    rng = np.random.default_rng(0)
    real, gen = rng.normal(size=(300, 4)), rng.normal(0.5, 1.5, size=(300, 4))
    units = np.array([1e-4, 1.0, 30.0, 1e3])
    plain = feature_scores(real, gen, num_bootstrap=10)
    scaled = feature_scores(real * units, gen * units, num_bootstrap=10)
    for key, value in (("fid", "fid"), ("fid", "fid_corrected"), ("kid", "kid"), ("precision_recall", "recall")):
        assert scaled[key][value] == pytest.approx(plain[key][value], rel=1e-6)
    assert scaled["fid"]["fid_raw"] > 100 * plain["fid"]["fid_raw"]  # the classic number keeps the units
    # N(0, I) vs N(0.5, 1.5^2 I) after standardising by ~N(0, I): 4 (0.25 + 0.25) = 2
    assert plain["fid"]["ci_low"] < 2.0 < plain["fid"]["ci_high"]


def test_noise_floor_counts_and_separation():
    rng = np.random.default_rng(1)
    real, gen = rng.normal(size=(400, 3)), rng.normal(1.0, 1.0, size=(150, 3))
    floor = noise_floor(real, gen, num_bootstrap=20)
    assert floor["n_reference"] == 200 and floor["n_compared"] == 150
    for part in ("real_vs_real", "real_vs_generated"):
        assert floor[part]["fid"]["n_real"] == 200 and floor[part]["fid"]["n_generated"] == 150
    assert floor["real_vs_real"]["fid"]["ci_high"] < floor["real_vs_generated"]["fid"]["ci_low"]
    assert floor["real_vs_real"]["kid"]["ci_low"] < 0 < floor["real_vs_real"]["kid"]["ci_high"]
    text = format_scores(feature_scores(real, gen, num_bootstrap=20), floor)
    assert "noise floor" in text and len(text.splitlines()) == 4
    with pytest.raises(ValueError, match="at least 8"):
        noise_floor(real[:7], gen)
