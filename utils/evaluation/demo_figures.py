"""Figures and checks of generated synthetic InSAR fields against the generator's analytic truth."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from utils.evaluation.array_io import load_image_set
from utils.evaluation.plots import curve_label, plt, save_figure
from utils.evaluation.semivariogram import ESTIMATOR, empirical_semivariogram
from utils.radar.ground_truth import expected_semivariogram, screen_only
from utils.radar.insar_truth import semivariogram

RELATIVE_TOLERANCE = 0.20  # the acceptance band drawn on the error panel


def analytic_semivariogram(distance_px: np.ndarray, truth: dict) -> np.ndarray:
    """gamma(h) = C(0) - C(h) + nugget (rad^2) of the generator's field + white noise, h > 0 in px; with v2
    components (turbulence, ramps, deformation) the truth's total (or Monte-Carlo mixture) axis semivariogram,
    interpolated linearly between its integer lags."""
    if not screen_only(truth):
        lags, gamma, _ = expected_semivariogram(truth)
        return np.interp(distance_px, lags, gamma)
    sv = truth["semivariogram"]
    cov = sv["covariance"]
    return semivariogram(distance_px, cov["model"], cov["sigma_rad"], cov["length_px"], nugget=sv["nugget_noise"])


def physical_samples(npz: str | Path, data_normalization: dict) -> np.ndarray:
    """Samples (N, H, W) float32 in physical units (radians) from a samples `.npz` in model units."""
    return load_image_set(npz, data_normalization=data_normalization).physical()[..., 0]


def analytic_comparison(npz: str | Path, real_dir: str | Path, truth: dict, data_normalization: dict,
                        results: Path, min_lag: float = 2.0) -> dict:
    """Semivariograms (rad^2) of samples and real fields vs the analytic one, both read as in training
    and compared in physical units through `data_normalization`; writes
    `semivariogram_vs_truth.png` and returns per-lag relative errors for lags in [min_lag, H/2]."""
    generated = physical_samples(npz, data_normalization)
    real = load_image_set(real_dir, key_data=truth["semivariogram"]["key"], data_normalization=data_normalization
                          ).physical()[..., 0].astype(np.float64)
    sv = {name: empirical_semivariogram(fields, progress=False) for name, fields in
          (("samples", generated), ("real", real))}
    lags = sv["samples"].mean_distance
    expected = analytic_semivariogram(lags, truth)
    keep = lags >= min_lag
    errors = {name: sv[name].gamma / expected - 1 for name in sv}

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 7), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    fine = np.linspace(0.5, lags.max(), 200)
    top.plot(fine, analytic_semivariogram(fine, truth), "k-", label="analytic (generator)")
    for name, colour in (("real", "tab:blue"), ("samples", "tab:red")):
        s = sv[name]
        top.errorbar(s.mean_distance, s.gamma, yerr=2 * s.gamma_se, fmt="o", ms=3, color=colour, capsize=2,
                     label=curve_label(name, len(generated if name == "samples" else real), f"{ESTIMATOR}, ±2 SE"))
        bottom.plot(lags[keep], 100 * errors[name][keep], "o-", ms=3, color=colour, label=name)
    top.set_ylabel("semivariance (rad²)")
    top.legend()
    top.set_title("Semivariogram of unwrapped phase")
    bottom.axhspan(-100 * RELATIVE_TOLERANCE, 100 * RELATIVE_TOLERANCE, color="0.9",
                   label=f"±{100 * RELATIVE_TOLERANCE:g} %: the demo's tolerance for a good model")
    bottom.axhline(0, color="k", lw=0.8)
    bottom.set_xlabel("lag (px)")
    bottom.set_ylabel("error vs analytic (%)")
    bottom.legend()
    fig.tight_layout()
    save_figure(fig, results / "semivariogram_vs_truth.png", dpi=120)
    return {"estimator": ESTIMATOR, "n_samples": len(generated), "n_real": len(real),
            "lags_checked_px": [round(float(v), 3) for v in lags[keep]],
            "gamma_analytic_rad2": expected[keep].tolist(),
            "gamma_samples_rad2": sv["samples"].gamma[keep].tolist(),
            "gamma_real_rad2": sv["real"].gamma[keep].tolist(),
            "rel_error_samples": errors["samples"][keep].tolist(),
            "rel_error_real": errors["real"][keep].tolist(),
            "max_abs_rel_error_samples": float(np.abs(errors["samples"][keep]).max()),
            "max_abs_rel_error_real": float(np.abs(errors["real"][keep]).max()),
            "std_samples_rad": float(generated.std()), "std_real_rad": float(real.std())}


def real_vs_generated_figure(npz: str | Path, real_dir: str | Path, data_normalization: dict, path: Path,
                             count: int = 8) -> None:
    """Two rows of `count` fields (real above, generated below) on one colour scale, in radians."""
    generated = physical_samples(npz, data_normalization)[:count]
    real = load_image_set(real_dir, key_data="unwrap", num_samples=count,
                          data_normalization=data_normalization).physical()[..., 0]
    limit = float(np.percentile(np.abs(np.concatenate([real.ravel(), generated.ravel()])), 99))
    fig, axes = plt.subplots(2, count, figsize=(1.6 * count, 3.6), layout="constrained")
    for row, (name, fields) in enumerate((("real", real), ("generated", generated))):
        for col in range(count):
            image = axes[row, col].imshow(fields[col], cmap="RdBu_r", vmin=-limit, vmax=limit)
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
        axes[row, 0].set_ylabel(name)
    fig.colorbar(image, ax=axes, shrink=0.8, label="unwrapped phase (rad)")
    save_figure(fig, path, dpi=110)
