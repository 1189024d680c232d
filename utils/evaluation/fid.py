"""Fréchet Inception Distance on feature vectors (Heusel et al. 2017, eq. 6).

FID = ||mu_r - mu_g||^2 + tr(S_r) + tr(S_g) - 2 tr((S_r S_g)^{1/2}), statistics in float64.

The plug-in estimate (sample means and covariances put into the formula) is biased upwards by
O(D / N) (Chong & Forsyth 2020): two sets drawn from one distribution do not score 0. Hence
:func:`fid_from_features` also gives a bootstrap bias-corrected estimate and a *basic* bootstrap
interval for the true distance (see there), and the reports print the noise floor (real half vs
real half at the same sample counts) next to every value.
"""
from __future__ import annotations

import warnings

import numpy as np

BOOTSTRAP_CHUNK_ELEMENTS = 1 << 23  # float64 elements of resampled features held at once (64 MB)


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of (N, D) features, both float64."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features: shape {features.shape}, expected (N, D)")
    n, d = features.shape
    if n < 2:
        raise ValueError(f"features: {n} sample(s); a covariance needs at least 2 (and more than D={d} "
                         "to be full rank)")
    if n <= d:
        warnings.warn(f"{n} samples for {d}-dimensional features: the covariance is rank deficient, "
                      "FID is biased and noisy; use more samples or a smaller feature layer", stacklevel=2)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _symmetric(m: np.ndarray) -> np.ndarray:
    return (m + np.swapaxes(m, -1, -2)) / 2


def frechet_distances(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> np.ndarray:
    """Fréchet distances of a stack of Gaussian pairs: mu (B, D), sigma (B, D, D) -> (B,) float64.

    tr((S1 S2)^{1/2}) is the sum of square roots of the eigenvalues of the symmetric PSD matrix
    S1^{1/2} S2 S1^{1/2} (same spectrum as S1 S2; S1^{1/2} with negative eigenvalues set to 0),
    which stays real and stable for singular covariances, unlike a general matrix square root.
    """
    vals, vecs = np.linalg.eigh(_symmetric(sigma1))
    root1 = (vecs * np.sqrt(np.clip(vals, 0, None))[..., None, :]) @ np.swapaxes(vecs, -1, -2)
    eig = np.clip(np.linalg.eigvalsh(_symmetric(root1 @ sigma2 @ root1)), 0, None)
    diff = mu1 - mu2
    return ((diff * diff).sum(-1) + np.trace(sigma1, axis1=-2, axis2=-1) + np.trace(sigma2, axis1=-2, axis2=-1)
            - 2 * np.sqrt(eig).sum(-1))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (see :func:`frechet_distances`)."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"statistics shapes differ: mu {mu1.shape} vs {mu2.shape}, "
                         f"sigma {sigma1.shape} vs {sigma2.shape}")
    return float(frechet_distances(mu1[None], sigma1[None], mu2[None], sigma2[None])[0])


def _resampled_statistics(features: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means (B, D) and unbiased covariances (B, D, D) of ``features[rows[b]]`` for each row b of (B, N) indices."""
    x = features[rows]
    mean = x.mean(axis=1)
    centred = x - mean[:, None, :]
    return mean, np.einsum("bni,bnj->bij", centred, centred) / (rows.shape[1] - 1)


def bootstrap_fids(real: np.ndarray, generated: np.ndarray, num_bootstrap: int,
                   rng: np.random.Generator) -> np.ndarray:
    """(num_bootstrap,) plug-in FIDs of both (N, D) sets resampled with replacement, in chunks."""
    n_r, n_g, d = len(real), len(generated), real.shape[1]
    chunk = max(1, BOOTSTRAP_CHUNK_ELEMENTS // (max(n_r, n_g) * d + d * d))
    values = []
    for start in range(0, num_bootstrap, chunk):
        b = min(chunk, num_bootstrap - start)
        stats_r = _resampled_statistics(real, rng.integers(0, n_r, (b, n_r)))
        stats_g = _resampled_statistics(generated, rng.integers(0, n_g, (b, n_g)))
        values.append(frechet_distances(*stats_r, *stats_g))
    return np.concatenate(values)


def fid_from_features(real: np.ndarray, generated: np.ndarray, *, num_bootstrap: int = 100,
                      confidence: float = 0.95, seed: int = 0) -> dict:
    """FID between two (N, D) feature sets: plug-in value, bias-corrected value and an interval.

    * ``fid``: the plug-in estimate, clamped at 0 (a negative value is rounding).
    * ``fid_corrected``: bootstrap bias correction 2 * fid - mean(fid*) (Efron & Tibshirani 1993,
      eq. 10.16), where fid* are plug-in FIDs of both sets resampled with replacement; it removes
      the O(1/N) part of the bias, may be negative near 0 and is reported unclipped.
    * ``ci_low``, ``ci_high``: the basic bootstrap interval [2 fid - q(1 - a/2), 2 fid - q(a/2)]
      of the true distance (q: quantiles of fid*, a = 1 - confidence; Davison & Hinkley 1997,
      eq. 5.6). It takes the law of fid* - fid as that of fid - FID_true, bias included, so it
      holds the nominal coverage as long as the bias is O(1/N), i.e. N well above D; the plain
      percentile interval of fid* sits around fid + bias and misses the truth
      (tests/test_eval_fid.py checks coverage on Gaussians with a known distance). Measured on
      Gaussians, 500 points per set: coverage 0.93 at D = 64, 0.30 at D = 128 (the O(D^2 / N^2)
      bias is left); hence a warning below N = 8 D.
    * ``se``: the standard deviation of fid*.
    Intervals and ``fid_corrected`` are None with ``num_bootstrap=0``. Also returns
    ``confidence``, ``num_bootstrap``, ``n_real``, ``n_generated``, ``feature_dim``.
    """
    if real.ndim != 2 or generated.ndim != 2 or real.shape[1] != generated.shape[1]:
        raise ValueError(f"feature shapes real={real.shape} generated={generated.shape}: expected (N, D) with equal D")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r}: expected a value in (0, 1)")
    if num_bootstrap < 0 or num_bootstrap == 1:
        raise ValueError(f"num_bootstrap={num_bootstrap!r}: expected 0 (no interval) or at least 2")
    real, generated = np.asarray(real, dtype=np.float64), np.asarray(generated, dtype=np.float64)
    fid = frechet_distance(*feature_statistics(real), *feature_statistics(generated))
    report = {"fid": max(fid, 0.0), "fid_corrected": None, "se": None, "ci_low": None, "ci_high": None,
              "confidence": confidence, "num_bootstrap": num_bootstrap, "n_real": len(real),
              "n_generated": len(generated), "feature_dim": real.shape[1]}
    if num_bootstrap > 0:
        if min(len(real), len(generated)) < 8 * real.shape[1]:
            warnings.warn(f"{min(len(real), len(generated))} points for {real.shape[1]}-dimensional features: "
                          "under 8 D the FID interval under-covers (bias left after correction); use more samples "
                          "or fewer features", stacklevel=2)
        values = bootstrap_fids(real, generated, num_bootstrap, np.random.default_rng(seed))
        alpha = (1 - confidence) / 2
        q_low, q_high = np.quantile(values, [alpha, 1 - alpha])
        report.update(fid_corrected=float(2 * fid - values.mean()), se=float(values.std(ddof=1)),
                      ci_low=float(2 * fid - q_high), ci_high=float(2 * fid - q_low))
    return report
