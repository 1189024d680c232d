"""Scorecard of generated fields against real fields and the generator's truth, each with its sampling noise.

Every statistic is computed identically on the samples and on the real fields, in physical units (radians
for phase). Its noise band is a bootstrap over fields (the fields of a set are i.i.d.; Efron & Tibshirani
1993): the standard error SE is the standard deviation of the statistic over ``num_bootstrap`` resamples
of the fields with replacement. Samples and real data agree *within noise* when
|z| = |s - r| / sqrt(SE_s^2 + SE_r^2) <= 1.96 (two-sided 95 %); against the truth t (with its Monte-Carlo
SE_t where it has one) likewise. A per-lag curve passes when max_lag |z| <= Phi^-1(1 - 0.025 / L) over its
L lags (Bonferroni), so a whole curve fails by chance in <= 5 % of sets, as a single number does.
The Wasserstein-1 distance between the value distributions has a permutation null instead: fields of both
sets pooled and split at random (sizes kept) ``num_bootstrap`` times; within noise when the observed
distance is at most the null's 95th percentile. With heavy tails (a few fields holding most of the fourth
moment) the bootstrap bands of the kurtosis and of the top per-field quantiles are approximate: they
under-cover when single fields dominate, so read those flags with care.

Statistics: per-lag axis semivariogram (mean over fields, truth from ``ground_truth.json``; and the median
of the per-field semivariograms, robust to a few extreme fields), log-log slope of the radially averaged
power spectrum over ``slope_band``, quantiles 1/5/50/95/99 % and excess kurtosis of the pooled values,
W1 of the values, quantiles 50/90/99 % of the per-field std and of the per-field max |value| (tails), and
deformation detectability: the fraction of fields whose max |residual| after removing a least-squares plane
exceeds the 99th percentile of that statistic on deformation-free background fields (the truth's
atmospheric screen + white noise + turbulence, drawn from their exact covariance; ramps are planes and
removed exactly); on labelled real data its false- and true-positive rates are checked against the labels.

Masks (NaN pixels): semivariogram pairs with a NaN end are left out; the spectrum sets NaN to the field
mean (damping it by the valid fraction); values, per-field std and max, and the plane fit use valid pixels
only; the masked fraction of both sets is reported (samples hold no NaN). The detection threshold comes
from unmasked background fields, slightly conservative for masked ones (fewer pixels, smaller maxima).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import scipy.stats

from improved_diffusion.file_io import check_free
from utils.evaluation.plots import curve_label, plt, save_figure
from utils.evaluation.spectrum import radial_psd
from utils.radar.ground_truth import check_ground_truth, expected_semivariogram
from utils.radar.insar_truth import covariance
from utils.radar.spectral import axis_semivariogram_fields, covariance_map, log_log_slope
from utils.radar.turbulence import power_law_variances

Z_95 = float(scipy.stats.norm.ppf(0.975))
VALUE_QUANTILES = (0.01, 0.05, 0.5, 0.95, 0.99)
FIELD_QUANTILES = (0.5, 0.9, 0.99)
DETECTION_QUANTILE = 0.99  # background quantile of the plane-residual maximum taken as the detection threshold
PLOTS = ("scorecard_semivariogram.png", "scorecard_qq.png", "scorecard_field_max.png")


def plane_residual_max(fields: np.ndarray) -> np.ndarray:
    """max |z - plane| (N,) float64 per field of (N, H, W) fields, the plane a least-squares fit to the valid
    (finite) pixels; NaN for a field with fewer than 3 valid pixels."""
    n, h, w = fields.shape
    rows, cols = np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij")
    design = np.stack([np.ones(h * w), rows.ravel(), cols.ravel()], 1)
    flat = fields.reshape(n, -1).astype(np.float64)
    valid = np.isfinite(flat)
    z = np.where(valid, flat, 0.0)
    gram = np.einsum("np,pi,pj->nij", valid * 1.0, design, design)
    enough = valid.sum(axis=1) >= 3
    gram[~enough] = np.eye(3)
    coef = np.linalg.solve(gram, np.einsum("np,pi->ni", z, design)[..., None])[..., 0]
    residual = np.where(valid, z - coef @ design.T, 0.0)
    return np.where(enough, np.abs(residual).max(axis=1), np.nan)


def background_threshold(truth: dict, num_fields: int = 2000, quantile: float = DETECTION_QUANTILE,
                         seed: int = 0) -> dict:
    """Detection threshold (rad) from ``num_fields`` deformation-free background fields of the generator in
    ``truth`` (its ``ground_truth.json`` dict): exponential/Matern screen + white noise + power-law turbulence,
    drawn from their exact joint covariance (Cholesky of the n^2 x n^2 matrix), ramps left out (a plane)."""
    p = truth["params"]
    n = int(p["image_size"])
    rows, cols = np.divmod(np.arange(n * n), n)
    dy, dx = rows[:, None] - rows[None, :], cols[:, None] - cols[None, :]
    cov = covariance(np.hypot(dy, dx), p["covariance_model"], p["atmo_sigma_rad"], p["atmo_length_px"])
    cov += p["noise_sigma_rad"] ** 2 * np.eye(n * n)
    if p.get("turbulence_sigma_rad", 0.0) > 0:
        variances = power_law_variances(n, p["turbulence_sigma_rad"], p["turbulence_slopes"],
                                        p["turbulence_break_px"])
        cov += covariance_map(variances)[dy % n, dx % n]
    jitter = 1e-10 * max(float(np.trace(cov)) / (n * n), 1e-12)
    chol = np.linalg.cholesky(cov + jitter * np.eye(n * n))
    fields = np.random.default_rng(seed).standard_normal((num_fields, n * n)) @ chol.T
    peaks = plane_residual_max(fields.reshape(num_fields, n, n))
    return {"threshold_rad": float(np.quantile(peaks, quantile)), "quantile": quantile, "num_fields": num_fields,
            "false_positive_rate_se": math.sqrt(quantile * (1 - quantile) / num_fields)}


def _set_statistics(fields: np.ndarray, max_lag: int, slope_band: tuple[float, float], threshold: float | None,
                    idx: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{name: (estimate, bootstrap replicates (B, ...))} of one set of (N, H, W) fields; ``idx`` (B, N)."""
    n = len(fields)
    flat = fields.reshape(n, -1)
    valid = np.isfinite(flat)
    out = {}
    gamma = axis_semivariogram_fields(fields, max_lag)
    out["semivariogram_mean"] = np.nanmean(gamma, 0), np.nanmean(gamma[idx], 1)
    out["semivariogram_median"] = np.nanmedian(gamma, 0), np.nanmedian(gamma[idx], 1)
    spectrum = radial_psd(fields)
    slope = lambda psd: log_log_slope(spectrum.frequency, psd, slope_band)  # noqa: E731
    out["psd_slope"] = np.array(slope(spectrum.psd)), np.array([slope(p) for p in spectrum.per_field[idx].mean(1)])
    values, owner = _sorted_values(fields)
    weights = lambda i: np.bincount(i, minlength=n)[owner]  # noqa: E731  (copies of each value in a resample)
    out["value_quantiles"] = (_quantiles(values, np.ones(len(values))),
                              np.stack([_quantiles(values, weights(i)) for i in idx]))
    z = np.where(valid, flat, 0.0)
    sums = np.stack([valid.sum(1)] + [(z ** k).sum(1) for k in (1, 2, 3, 4)], 1).astype(np.float64)
    out["kurtosis"] = np.array(_excess_kurtosis(sums.sum(0))), np.array([_excess_kurtosis(s) for s in
                                                                          sums[idx].sum(1)])
    for name, per_field in (("field_std", np.nanstd(flat, 1)), ("field_max_abs", np.nanmax(np.abs(flat), 1))):
        out[name] = np.quantile(per_field, FIELD_QUANTILES), np.quantile(per_field[idx], FIELD_QUANTILES, 1).T
    if threshold is not None:
        detected = (plane_residual_max(fields) > threshold).astype(np.float64)
        out["detected_fraction"] = np.array(detected.mean()), detected[idx].mean(1)
    return out


def _excess_kurtosis(sums: np.ndarray) -> float:
    """Excess kurtosis m4 / m2^2 - 3 from (count, sum x, sum x^2, sum x^3, sum x^4)."""
    c, s1, s2, s3, s4 = sums
    m = s1 / c
    m2 = s2 / c - m ** 2
    m4 = s4 / c - 4 * m * s3 / c + 6 * m ** 2 * s2 / c - 3 * m ** 4
    return float(m4 / m2 ** 2 - 3.0)


def _z(a: np.ndarray, a_se: np.ndarray, b: np.ndarray, b_se: np.ndarray) -> np.ndarray:
    """(a - b) / sqrt(a_se^2 + b_se^2); 0 where both agree exactly with no noise, inf where they differ."""
    diff, noise = np.asarray(a - b, dtype=np.float64), np.hypot(a_se, b_se)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(noise > 0, diff / noise, np.where(diff == 0, 0.0, np.inf))


def _row(name: str, units: str, s: tuple, r: tuple, truth: tuple | None = None, lags: np.ndarray | None = None
         ) -> dict:
    """One scorecard row: estimates, SEs, z vs real (and truth) and the within-noise flags (module docstring)."""
    critical = Z_95 if lags is None else float(scipy.stats.norm.ppf(1 - 0.025 / len(lags)))
    value = (lambda a: a.tolist()) if lags is not None else float  # noqa: E731
    row = {"statistic": name, "units": units, "samples": value(s[0]), "samples_se": value(s[1]),
           "real": value(r[0]), "real_se": value(r[1]), "z_critical": critical}
    if lags is not None:
        row["lags_px"] = lags.tolist()
    z_real = _z(s[0], s[1], r[0], r[1])
    row["max_abs_z_vs_real"] = float(np.max(np.abs(z_real)))
    row["within_noise"] = bool(row["max_abs_z_vs_real"] <= critical)
    if truth is not None:
        row["truth"], row["truth_se"] = value(truth[0]), value(truth[1])
        for name_, est in (("samples", s), ("real", r)):
            row[f"max_abs_z_{name_}_vs_truth"] = float(np.max(np.abs(_z(est[0], est[1], truth[0], truth[1]))))
            row[f"{name_}_within_noise_of_truth"] = bool(row[f"max_abs_z_{name_}_vs_truth"] <= critical)
    return row


def _truth_semivariogram(truth: dict | None, max_lag: int) -> tuple | None:
    """(gamma (L,), SE (L,)) in rad^2 at lags 1..max_lag from ``ground_truth.json``: the mixture (Monte-Carlo
    deformation part with its SE) when the data hold deformation, else the exact total."""
    if truth is None:
        return None
    _, gamma, se = expected_semivariogram(truth)
    return gamma[1:max_lag + 1], se[1:max_lag + 1]


def _sorted_values(fields: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(finite values of (N, H, W) fields sorted ascending (T,), index of the field of each value (T,))."""
    flat = fields.reshape(len(fields), -1)
    valid = np.isfinite(flat)
    values, owner = flat[valid], np.broadcast_to(np.arange(len(fields))[:, None], flat.shape)[valid]
    order = np.argsort(values, kind="stable")
    return values[order], owner[order]


def _quantiles(values: np.ndarray, weights: np.ndarray, levels: tuple = VALUE_QUANTILES) -> np.ndarray:
    """Inverted-CDF quantiles (the smallest value whose weighted CDF reaches the level) of sorted ``values``."""
    cdf = np.cumsum(weights)
    return values[np.minimum(np.searchsorted(cdf, np.asarray(levels) * cdf[-1]), len(values) - 1)]


def _w1_row(samples: np.ndarray, real: np.ndarray, units: str, num_permutations: int,
            rng: np.random.Generator) -> dict:
    """Wasserstein-1 distance of the pooled finite values, W1 = integral |F_s(x) - F_r(x)| dx over the empirical
    CDFs (Vallender 1974), with its permutation null (module docstring): one sort of the pooled values, then
    each split of the fields only re-weights them."""
    values, owner = _sorted_values(np.concatenate([samples, real]))
    widths = np.diff(values)

    def w1(in_samples: np.ndarray) -> float:
        member = in_samples[owner]
        f_s, f_r = np.cumsum(member) / member.sum(), np.cumsum(~member) / (~member).sum()
        return float(np.abs(f_s - f_r)[:-1] @ widths)

    split = np.arange(len(samples) + len(real)) < len(samples)
    observed = w1(split)
    null = [w1(rng.permutation(split)) for _ in range(num_permutations)]
    limit = float(np.quantile(null, 0.95))
    return {"statistic": "W1 of values", "units": units, "value": observed, "null_mean": float(np.mean(null)),
            "null_95": limit, "num_permutations": num_permutations, "within_noise": bool(observed <= limit)}


def _label_check(real: np.ndarray, labels: np.ndarray, threshold: dict) -> dict:
    """False- and true-positive rates of the detection on labelled real fields (1 = deformation), with binomial
    SEs; the false-positive rate is within noise of the nominal 1 - quantile when |z| <= 1.96."""
    detected = plane_residual_max(real) > threshold["threshold_rad"]
    out = {"num_deformation": int((labels == 1).sum()), "num_background": int((labels == 0).sum())}
    for name, cls in (("true_positive_rate", 1), ("false_positive_rate", 0)):
        k = labels == cls
        rate = float(detected[k].mean()) if k.any() else float("nan")
        out[name], out[f"{name}_se"] = rate, math.sqrt(rate * (1 - rate) / max(k.sum(), 1))
    nominal = 1 - threshold["quantile"]
    noise = math.hypot(math.sqrt(nominal * (1 - nominal) / max(out["num_background"], 1)),
                       threshold["false_positive_rate_se"])
    out["false_positive_rate_nominal"] = nominal
    out["false_positive_rate_within_noise"] = bool(abs(out["false_positive_rate"] - nominal) <= Z_95 * noise)
    return out


def scorecard(samples: np.ndarray, real: np.ndarray, *, truth: dict | None = None,
              real_labels: np.ndarray | None = None, units: str = "rad", max_lag: int | None = None,
              slope_band: tuple[float, float] = (1 / 16, 1 / 4), num_bootstrap: int = 100,
              background_fields: int = 2000, seed: int = 0) -> dict:
    """The scorecard (JSON-ready dict) of (N, H, W) ``samples`` against (M, H, W) ``real`` fields (NaN = masked).

    ``truth``: the generator's ``ground_truth.json`` dict (schema: ``utils.radar.ground_truth``; truth
    semivariogram, detection background, masked fraction); ``real_labels``: (M,) int, 1 = deformation, for the
    detection check; ``units``: of the values (e.g. "rad"); ``max_lag``: largest semivariogram lag in px (default
    H // 2); ``slope_band``: frequencies (cycles/px) of the spectral slope fit. Keys: ``rows`` (per statistic, see
    :func:`_row`), ``w1``, ``detection``, ``masks``, ``summary`` (flags within noise of the real data / of the truth).
    """
    samples, real = np.asarray(samples, np.float64), np.asarray(real, np.float64)
    if samples.ndim != 3 or real.ndim != 3 or samples.shape[1:] != real.shape[1:]:
        raise ValueError(f"samples {samples.shape}, real {real.shape}; expected (N, H, W) fields of one size")
    if min(len(samples), len(real)) < 2:
        raise ValueError(f"{len(samples)} samples, {len(real)} real fields; expected at least 2 of each")
    max_lag = min(real.shape[1:]) // 2 if max_lag is None else int(max_lag)
    truth = None if truth is None else check_ground_truth(truth)
    rng = np.random.default_rng(seed)
    threshold = background_threshold(truth, background_fields, seed=seed) if truth is not None else None
    cut = None if threshold is None else threshold["threshold_rad"]
    stats = {}
    for name, fields in (("samples", samples), ("real", real)):
        est = _set_statistics(fields, max_lag, slope_band, cut, rng.integers(0, len(fields), (num_bootstrap,
                                                                                                len(fields))))
        stats[name] = {k: (e, b.std(axis=0, ddof=1)) for k, (e, b) in est.items()}
    s, r = stats["samples"], stats["real"]
    lags = np.arange(1, max_lag + 1, dtype=np.float64)
    rows = [_row("semivariogram mean", f"{units}^2", s["semivariogram_mean"], r["semivariogram_mean"],
                 _truth_semivariogram(truth, max_lag), lags),
            _row("semivariogram median of fields", f"{units}^2", s["semivariogram_median"],
                 r["semivariogram_median"], lags=lags),
            _row("PSD log-log slope", "1", s["psd_slope"], r["psd_slope"]),
            _row("value kurtosis (excess)", "1", s["kurtosis"], r["kurtosis"])]
    for key, label, levels in (("value_quantiles", "value q", VALUE_QUANTILES),
                               ("field_std", "field std q", FIELD_QUANTILES),
                               ("field_max_abs", "field max|v| q", FIELD_QUANTILES)):
        rows += [_row(f"{label}{100 * q:g}%", units, (s[key][0][j], s[key][1][j]), (r[key][0][j], r[key][1][j]))
                 for j, q in enumerate(levels)]
    detection = None
    if threshold is not None:
        rows.append(_row("detected fraction", "1", s["detected_fraction"], r["detected_fraction"]))
        detection = {**threshold, "statistic": "max |residual| after a least-squares plane > threshold_rad"}
        if real_labels is not None:
            detection["real_vs_labels"] = _label_check(real, np.asarray(real_labels), threshold)
    w1 = _w1_row(samples, real, units, num_bootstrap, rng)
    masks = {"real_masked_fraction": float(np.isnan(real).mean()),
             "samples_masked_fraction": float(np.isnan(samples).mean()),
             "truth_masked_fraction": (truth["components"]["masks"]["expected_masked_fraction"]
                                       if truth is not None else None),
             "treatment": "semivariogram: pairs with a NaN end left out; spectrum: NaN set to the field mean; "
                          "values, field std/max and plane fit: valid pixels only"}
    flags = [row["within_noise"] for row in rows] + [w1["within_noise"]]
    truth_flags = [row["samples_within_noise_of_truth"] for row in rows if "truth" in row]
    summary = {"within_noise_of_real": int(sum(flags)), "checked_against_real": len(flags),
               "within_noise_of_truth": int(sum(truth_flags)), "checked_against_truth": len(truth_flags)}
    return {"units": units, "n_samples": len(samples), "n_real": len(real), "num_bootstrap": num_bootstrap,
            "max_lag_px": max_lag, "slope_band_cycles_per_px": list(slope_band), "rows": rows, "w1": w1,
            "detection": detection, "masks": masks, "summary": summary}


def format_table(card: dict) -> str:
    """The scorecard as a short text table (curves shown at their largest lag, |z| the largest over lags)."""
    lines = [f"{'statistic':40s} {'samples':>10s} {'real':>10s} {'truth':>10s} {'|z| real':>9s} {'|z| truth':>9s}"
             f"  within noise", "-" * 100]
    last = lambda v: v[-1] if isinstance(v, list) else v  # noqa: E731
    for row in card["rows"]:
        name = f"{row['statistic']} ({row['units']})" + (f" @{row['lags_px'][-1]:g}px" if "lags_px" in row else "")
        truth = f"{last(row['truth']):10.4g}" if "truth" in row else f"{'-':>10s}"
        z_truth = f"{row['max_abs_z_samples_vs_truth']:9.2f}" if "truth" in row else f"{'-':>9s}"
        lines.append(f"{name:40.40s} {last(row['samples']):10.4g} {last(row['real']):10.4g} {truth} "
                     f"{row['max_abs_z_vs_real']:9.2f} {z_truth}  {'yes' if row['within_noise'] else 'NO'}")
    w1 = card["w1"]
    lines.append(f"{'W1 of values (' + w1['units'] + ')':40s} {w1['value']:10.4g} {'-':>10s} {'-':>10s} "
                 f"{'null95 ' + format(w1['null_95'], '.3g'):>19s}  {'yes' if w1['within_noise'] else 'NO'}")
    det = card["detection"]
    if det is not None and "real_vs_labels" in det:
        lab = det["real_vs_labels"]
        lines.append(f"detection on labelled real data: TPR {lab['true_positive_rate']:.3f}, FPR "
                     f"{lab['false_positive_rate']:.3f} (nominal {lab['false_positive_rate_nominal']:.2f}, "
                     f"{'within' if lab['false_positive_rate_within_noise'] else 'NOT within'} noise)")
    m = card["masks"]
    lines.append(f"masked fraction: real {m['real_masked_fraction']:.4f}, samples {m['samples_masked_fraction']:.4f}")
    sm = card["summary"]
    lines.append(f"within noise: {sm['within_noise_of_real']}/{sm['checked_against_real']} statistics vs real, "
                 f"{sm['within_noise_of_truth']}/{sm['checked_against_truth']} vs truth")
    return "\n".join(lines)


def plot_scorecard(card: dict, samples: np.ndarray, real: np.ndarray, results_dir: str | Path,
                   overwrite: bool = False) -> list[Path]:
    """Write ``PLOTS``: semivariogram with 95 % noise bands (and truth), Q-Q plot of values, histogram of
    per-field max |value|; (N, H, W) fields in ``card['units']``."""
    out = Path(results_dir)
    paths = [out / name for name in PLOTS]
    check_free(paths, overwrite, key="results_dir")
    out.mkdir(parents=True, exist_ok=True)
    units = card["units"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for row, style in ((card["rows"][0], "-"), (card["rows"][1], "--")):
        lags = np.array(row["lags_px"])
        for name, colour in (("samples", "tab:red"), ("real", "tab:blue"), ("truth", "k")):
            if name not in row:
                continue
            est, se = np.array(row[name]), np.array(row[f"{name}_se"])
            n = {"samples": len(samples), "real": len(real)}.get(name)
            what = f"axis lags, {row['statistic'].split(' ', 1)[1]}"
            ax.plot(lags, est, style, color=colour, label=what if n is None else curve_label(name, n, what))
            ax.fill_between(lags, est - Z_95 * se, est + Z_95 * se, color=colour, alpha=0.2)
    ax.set(xlabel="lag (px)", ylabel=f"semivariance ({units}²)", title="Semivariogram (95 % noise bands)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, paths[0], dpi=120)
    levels = np.linspace(0.001, 0.999, 200)
    qs, qr = (np.quantile(f[np.isfinite(f)], levels) for f in (samples, real))
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(qr, qs, ".", ms=3, color="tab:red")
    span = [min(qs.min(), qr.min()), max(qs.max(), qr.max())]
    ax.plot(span, span, "k-", lw=0.8)
    ax.set(xlabel=f"real quantile ({units})", ylabel=f"sample quantile ({units})",
           title="Q-Q plot of values (0.1-99.9 %)")
    fig.tight_layout()
    save_figure(fig, paths[1], dpi=120)
    peaks = {name: np.nanmax(np.abs(f.reshape(len(f), -1)), 1) for name, f in (("samples", samples), ("real", real))}
    top = max(float(p.max()) for p in peaks.values())
    low = max(min(float(p.min()) for p in peaks.values()), 1e-6 * top)
    bins = np.geomspace(low, top, 40)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, colour in (("real", "tab:blue"), ("samples", "tab:red")):
        ax.hist(peaks[name], bins=bins, density=True, histtype="step", color=colour, label=name)
    ax.set(xscale="log", yscale="log", xlabel=f"per-field max |value| ({units})", ylabel=f"density (1/{units})",
           title="Per-field maximum (tails)")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, paths[2], dpi=120)
    return paths
