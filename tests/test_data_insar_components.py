"""Synthetic InSAR v2 components against truths computed here from their defining formulas.

Each statistic is tested jointly over lags (or frequency bins) by a chi-square with the covariance of
the per-field estimates, T = d' (S / N)^-1 d ~ chi2(L) for d = mean - truth; a wrong truth is rejected.
"""
import math

import h5py
import numpy as np
import pytest
import scipy.stats

from datasets import insar_synthetic
from improved_diffusion.dataloaders import create_dataloader

N = 32  # field side (px)
LAGS = np.arange(1, N // 2 + 1)
OFF = dict(atmo_sigma_rad=0.0, noise_sigma_rad=0.0, deformation_fraction=0.0, truth_monte_carlo_fields=0)


def _generate(tmp_path, count, **kwargs):
    truth = insar_synthetic.main(out_dir=str(tmp_path), n_train=count, n_val=0, n_test=0, image_size=N,
                                 fields_per_file=500, **kwargs)
    files = sorted((tmp_path / "train").glob("*.hdf5"))
    unwrap = np.concatenate([h5py.File(f, "r")["unwrap"][()] for f in files]).astype(np.float64)
    wrap = np.concatenate([h5py.File(f, "r")["wrap"][()] for f in files])
    return truth, unwrap, wrap


def _axis_gamma(fields):
    """Per-field semivariogram (count, len(LAGS)) along rows and columns, NaN pixels left out."""
    out = np.empty((len(fields), len(LAGS)))
    for j, h in enumerate(LAGS):
        d = np.concatenate([(fields[:, :, h:] - fields[:, :, :-h]).reshape(len(fields), -1),
                            (fields[:, h:] - fields[:, :-h]).reshape(len(fields), -1)], axis=1)
        out[:, j] = 0.5 * np.nanmean(d ** 2, axis=1)
    return out


def _chi2(per_field, truth):
    """Hotelling-type statistic of the mean of per-field estimates (count, L) against ``truth`` (L,)."""
    d = per_field.mean(axis=0) - truth
    cov = np.cov(per_field, rowvar=False) / len(per_field)
    return float(d @ np.linalg.solve(cov, d))


def _limit(dof):
    return scipy.stats.chi2.ppf(0.999, dof)


def _power_law(slopes, break_px, sigma):
    """Spectral variances of the turbulence written out mode by mode (independent of utils.radar)."""
    s = np.zeros((N, N))
    for a in range(N):
        for b in range(N):
            ka, kb = min(a, N - a) / N, min(b, N - b) / N
            k = math.hypot(ka, kb)
            if k > 0:
                s[a, b] = (k * break_px) ** (slopes[0] if k < 1 / break_px else slopes[1])
    return sigma ** 2 * s / s.sum()


def _gamma_from_variances(s):
    """gamma(h) = sum_k s_k (1 - cos(2 pi k h / N)) along the column axis (equal to the row axis here)."""
    j = np.arange(N)
    return np.array([(s * (1 - np.cos(2 * np.pi * j[None, :] * h / N))).sum() for h in LAGS])


def _radial_psd(fields):
    """Per-field radially averaged |DFT(z - mean)|^2 / N^2 in bins round(|k| N) = 1..N/2 (count, N/2)."""
    f = np.fft.fftfreq(N)
    bins = np.rint(np.hypot(f[:, None], f[None, :]) * N).astype(int).ravel()
    z = fields - fields.mean(axis=(1, 2), keepdims=True)
    power = (np.abs(np.fft.fft2(z)) ** 2 / N ** 2).reshape(len(z), -1)
    return np.stack([power[:, bins == r].mean(axis=1) for r in range(1, N // 2 + 1)], axis=1), bins


def test_turbulence_semivariogram_and_spectrum_match_the_power_law(tmp_path):
    slopes, break_px, sigma = (-5 / 3, -8 / 3), 8.0, 1.5
    truth, fields, _ = _generate(tmp_path, 2000, turbulence_sigma_rad=sigma, turbulence_slopes=slopes,
                                 turbulence_break_px=break_px, seed=3, **OFF)
    s = _power_law(slopes, break_px, sigma)
    assert math.isclose(fields.var(), sigma ** 2, rel_tol=0.03)
    gamma = _axis_gamma(fields)
    assert _chi2(gamma, _gamma_from_variances(s)) < _limit(len(LAGS))
    assert _chi2(gamma, _gamma_from_variances(_power_law((-8 / 3, -8 / 3), break_px, sigma))) > _limit(len(LAGS))
    np.testing.assert_allclose(truth["semivariogram"]["gamma_turbulence"][1:N // 2 + 1], _gamma_from_variances(s),
                               rtol=1e-9)
    psd, bins = _radial_psd(fields)
    expected = np.array([(N ** 2 * s).ravel()[bins == r].mean() for r in range(1, N // 2 + 1)])
    assert _chi2(psd, expected) < _limit(N // 2)
    np.testing.assert_allclose(truth["components"]["turbulence"]["expected_psd"], expected, rtol=1e-9)
    # slope of the mean spectrum over the short-wavelength band against the truth's, with a jackknife error
    freq = np.arange(1, N // 2 + 1) / N
    band = freq >= 1 / break_px
    slope = lambda p: np.polyfit(np.log(freq[band]), np.log(p[band]), 1)[0]  # noqa: E731
    groups = np.array_split(np.arange(len(psd)), 20)
    jack = np.array([slope(np.delete(psd, g, axis=0).mean(axis=0)) for g in groups])
    se = math.sqrt((len(groups) - 1) * jack.var())
    assert abs(slope(psd.mean(axis=0)) - slope(expected)) < 4 * se
    assert abs(truth["components"]["turbulence"]["expected_psd_slopes"]["short"] - slope(expected)) < 1e-9
    assert abs(slope(expected) - slopes[1]) < 0.15  # the discrete expected spectrum follows -8/3


def test_ramp_semivariogram_is_quadratic_in_the_lag(tmp_path):
    sigma = 4.0
    truth, fields, _ = _generate(tmp_path, 1500, ramp_sigma_rad=sigma, seed=5, **OFF)
    gamma = _axis_gamma(fields)
    expected = 0.5 * (sigma / N) ** 2 * LAGS ** 2
    assert _chi2(gamma, expected) < _limit(len(LAGS))
    assert _chi2(gamma, 1.2 * expected) > _limit(len(LAGS))
    sources = np.load(tmp_path / "sources_train.npz")
    grads = sources["sources"][:, list(sources["columns"]).index("ramp_g_row_rad_per_px")]
    assert abs(grads.std() / (sigma / N) - 1) < 4 / math.sqrt(2 * len(grads))
    np.testing.assert_allclose(truth["semivariogram"]["gamma_ramps"][1:N // 2 + 1], expected, rtol=1e-12)


def test_total_semivariogram_with_masks_is_the_sum_of_the_components(tmp_path):
    kw = dict(atmo_sigma_rad=1.0, atmo_length_px=6.0, noise_sigma_rad=0.3, turbulence_sigma_rad=0.8,
              ramp_sigma_rad=3.0, deformation_fraction=0.0, mask_fraction=0.5, mask_coverage=0.25, mask_length_px=3.0,
              truth_monte_carlo_fields=0, seed=8)
    truth, fields, wrap = _generate(tmp_path, 1500, **kw)
    expected = (1 - np.exp(-LAGS / 6.0) + 0.3 ** 2 + _gamma_from_variances(_power_law((-5 / 3, -8 / 3), 8.0, 0.8))
                + 0.5 * (3.0 / N) ** 2 * LAGS ** 2)
    gamma = _axis_gamma(fields)
    assert _chi2(gamma, expected) < _limit(len(LAGS))
    assert _chi2(gamma, expected - 0.3 ** 2) > _limit(len(LAGS))
    np.testing.assert_allclose(truth["semivariogram"]["gamma_total"][1:N // 2 + 1], expected, rtol=1e-9)
    # masks: NaN blobs in half the fields, a quarter of their pixels, the same in both products
    nan = np.isnan(fields)
    assert np.array_equal(nan, np.isnan(wrap))
    per_field = nan.mean(axis=(1, 2))
    masked = per_field > 0
    assert abs(masked.mean() - 0.5) < 4 * math.sqrt(0.25 / len(fields))
    assert abs(per_field[masked].mean() - 0.25) < 4 * per_field[masked].std() / math.sqrt(masked.sum())
    neighbour = (nan[:, :, 1:] & nan[:, :, :-1]).mean() / nan.mean()
    assert neighbour > 0.6  # correlated blobs: a masked pixel's right neighbour is mostly masked (0.25 if white)
    assert truth["components"]["masks"]["expected_masked_fraction"] == 0.125
    np.testing.assert_allclose(np.exp(1j * wrap[~nan]), np.exp(1j * fields[~nan]), atol=1e-4)
    kwl = {k: v for k, v in truth["loader_kwargs"].items() if k != "type_dataset"}
    loader, _ = create_dataloader(str(tmp_path / "train"), type_dataset="hdf5", batch_size=500, **kwl)
    x, cond = next(iter(loader))
    assert cond["mask"].shape == x.shape and 0.05 < 1 - cond["mask"].mean() < 0.2


def test_pareto_volumes_follow_the_truncated_power_law(tmp_path):
    low, high, alpha = 1e3, 1e6, 0.8
    _generate(tmp_path, 3000, deformation_fraction=1.0, mogi_volume_m3=(low, high), deformation_law="pareto",
              deformation_pareto_index=alpha, truth_monte_carlo_fields=0, seed=2)
    sources = np.load(tmp_path / "sources_train.npz")["sources"]
    volumes = np.abs(sources[:, 6])
    cdf = lambda v: (1 - (low / v) ** alpha) / (1 - (low / high) ** alpha)  # noqa: E731
    assert scipy.stats.kstest(volumes, cdf).pvalue > 1e-3
    assert scipy.stats.kstest(volumes, lambda v: np.log(v / low) / np.log(high / low)).pvalue < 1e-6


def test_mixture_semivariogram_matches_its_monte_carlo_reference(tmp_path):
    kw = dict(atmo_sigma_rad=1.0, noise_sigma_rad=0.2, deformation_fraction=0.3, mogi_volume_m3=(2e4, 1e5),
              truth_monte_carlo_fields=20000, seed=6)
    truth, fields, _ = _generate(tmp_path, 2000, **kw)
    mixture = np.array(truth["semivariogram"]["gamma_mixture"])[LAGS]
    mc_se = np.array(truth["semivariogram"]["gamma_mixture_se"])[LAGS]
    gamma = _axis_gamma(fields)
    d = gamma.mean(axis=0) - mixture
    cov = np.cov(gamma, rowvar=False) / len(gamma) + np.diag(mc_se ** 2)
    assert float(d @ np.linalg.solve(cov, d)) < _limit(len(LAGS))
    background = np.array(truth["semivariogram"]["gamma_total"])[LAGS]
    assert _chi2(gamma, background) > _limit(len(LAGS))  # the deformation part is detectable
    mc = truth["components"]["deformation"]["monte_carlo"]
    assert mc["num_fields"] == 20000 and 0 < mc["max_abs_rad_se"] < 0.05 * mc["max_abs_rad_mean"]


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(deformation_law="cauchy"), "deformation_law='cauchy'"),
    (dict(turbulence_sigma_rad=-1.0), "turbulence_sigma_rad=-1.0"),
    (dict(mask_coverage=1.5), "mask_coverage=1.5"),
    (dict(deformation_source="dyke"), "deformation_source='dyke'"),
    (dict(okada_top_depth_px=(0.0, 1.0)), r"okada_top_depth_px=\[0.0, 1.0\]"),
    (dict(okada_dip_deg=(10.0, 100.0)), r"okada_dip_deg=\[10.0, 100.0\]"),
    (dict(turbulence_slopes=(-1.0,)), r"turbulence_slopes=\[-1.0\]"),
])
def test_bad_component_options(tmp_path, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        insar_synthetic.main(out_dir=str(tmp_path), **kwargs)
