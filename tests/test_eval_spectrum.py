"""Radially averaged PSD: white noise is flat at its variance, a plane wave peaks at its frequency."""
import numpy as np
import pytest

from utils.evaluation.spectrum import radial_psd


def test_white_noise_is_flat_at_the_variance():
    fields = np.random.default_rng(0).normal(0, 2.0, size=(200, 32, 32))
    spec = radial_psd(fields)
    assert spec.n_fields == 200 and spec.frequency[0] == pytest.approx(1 / 32)
    np.testing.assert_allclose(spec.psd, 4.0, rtol=0.15)


def test_plane_wave_peaks_at_its_frequency():
    x = np.arange(64)
    wave = np.cos(2 * np.pi * 8 * x / 64)[None, :].repeat(64, axis=0)
    spec = radial_psd(wave[None])
    assert spec.frequency[np.argmax(spec.psd)] == pytest.approx(8 / 64)
    assert np.isnan(spec.psd_se).all()


def test_bad_shape():
    with pytest.raises(ValueError, match="expected \\(N, H, W\\)"):
        radial_psd(np.zeros((4, 4)))
