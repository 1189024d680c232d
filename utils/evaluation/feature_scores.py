"""Feature-space scores of generated samples against real data: FID, KID, precision/recall, noise floor.

All scores use features standardised with the real (reference) set's per-dimension mean and
standard deviation, so their scale does not depend on the extractor's arbitrary feature units:
FID values are O(1) per dimension and comparable between extractors of the same kind (the
classic FID of the raw features stays in ``fid_raw``). Dimensions constant on the real set keep
their raw scale (divided by 1); a dimension nearly constant on the real set magnifies any generated
variation along it, so a warning names how many there are (std < ``NEAR_CONSTANT`` x the median).

The noise floor is the same scores between two disjoint random halves of the real set, at the
same sample counts as a second, matched comparison of the samples: reference half A against the
other real half B and against as many generated samples as B holds. A samples' value within
the floor's interval is indistinguishable from real data at that sample count.

The degenerate baseline is the other end: precision / recall of Gaussian noise with the real set's
per-pixel mean and standard deviation (:func:`pixel_gaussian`), as many images as samples. In a
high-dimensional feature space with few points such noise can score a high precision; samples that
do not beat it by ``BASELINE_MARGIN`` are not shown to be better than noise (a warning says so).
"""
from __future__ import annotations

import warnings

import numpy as np

from utils.evaluation.fid import feature_statistics, fid_from_features, frechet_distance
from utils.evaluation.kid import kid_from_features
from utils.evaluation.precision_recall import precision_recall

SCORES = ("fid", "kid", "precision_recall")
NEAR_CONSTANT = 1e-3  # std of a feature dimension, as a fraction of the median over dimensions, flagged
BASELINE_MARGIN = 0.05  # precision or recall of samples must exceed the Gaussian-noise baseline's by this much


def standardise(reference: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Map (N, D) ``reference`` and each (M, D) array with the reference's per-dimension mean and
    std (std 0 -> 1; warns when a dimension's std is under ``NEAR_CONSTANT`` x the median std);
    returns float64 arrays, reference first."""
    reference = np.asarray(reference, dtype=np.float64)
    mean, std = reference.mean(axis=0), reference.std(axis=0)
    small = int((std < NEAR_CONSTANT * np.median(std)).sum())
    if small:
        warnings.warn(f"{small} of {std.size} feature dimensions are nearly constant on the real set (std < "
                      f"{NEAR_CONSTANT:g} x the median std): standardising magnifies generated variation along them, "
                      "which may dominate the scores (or those features are in much smaller units)", stacklevel=2)
    std = np.where(std > 0, std, 1.0)
    return [(np.asarray(x, dtype=np.float64) - mean) / std for x in (reference, *others)]


def feature_scores(real: np.ndarray, generated: np.ndarray, *, scores: tuple[str, ...] = SCORES,
                   nhood_size: int = 3, num_bootstrap: int = 100, num_subsets: int = 10, seed: int = 0) -> dict:
    """Scores of (N, D) real vs (M, D) generated features, computed on standardised features.

    Returns the requested sections: ``fid`` (see :func:`fid_from_features`, plus ``fid_raw``: the
    plug-in FID of the unstandardised features, clamped at 0), ``kid`` (see
    :func:`kid_from_features`; fewer subsets when a set has under ``2 * num_subsets`` points)
    and ``precision_recall`` (k = ``nhood_size``).
    """
    unknown = [s for s in scores if s not in SCORES]
    if unknown:
        raise ValueError(f"scores={scores!r}: unknown {unknown}, expected a subset of {SCORES}")
    real_s, gen_s = standardise(real, generated)
    out = {}
    if "fid" in scores:
        raw = frechet_distance(*feature_statistics(real), *feature_statistics(generated))
        out["fid"] = {**fid_from_features(real_s, gen_s, num_bootstrap=num_bootstrap, seed=seed),
                      "standardised": True, "fid_raw": max(raw, 0.0)}
    if "kid" in scores:
        subsets = max(2, min(num_subsets, len(real) // 2, len(generated) // 2))
        out["kid"] = kid_from_features(real_s, gen_s, num_subsets=subsets, seed=seed)
    if "precision_recall" in scores:
        out["precision_recall"] = precision_recall(real_s, gen_s, k=nhood_size, seed=seed)
    return out


def noise_floor(real: np.ndarray, generated: np.ndarray, *, seed: int = 0, **options) -> dict:
    """Scores of real half B and of generated samples against real half A, at equal counts.

    The (N, D) real features are split at random into halves A (N // 2) and B; B and the (M, D)
    generated features are cut to n = min(len(B), M) random rows each. ``options`` go to
    :func:`feature_scores` (standardised with A's statistics). Returns ``{"n_reference",
    "n_compared", "real_vs_real", "real_vs_generated"}``.
    """
    if len(real) < 8:
        raise ValueError(f"noise floor: {len(real)} real points; two halves need at least 8")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(real))
    half_a, half_b = real[order[:len(real) // 2]], real[order[len(real) // 2:]]
    n = min(len(half_b), len(generated))
    compared_gen = generated[rng.permutation(len(generated))[:n]]
    return {"n_reference": len(half_a), "n_compared": n,
            "real_vs_real": feature_scores(half_a, half_b[:n], seed=seed, **options),
            "real_vs_generated": feature_scores(half_a, compared_gen, seed=seed, **options)}


def pixel_gaussian(real: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` images of independent Gaussian noise with the per-pixel mean and std of the NHWC ``real`` set
    (NaN ignored; model units): (n, H, W, C) float32, the degenerate baseline of precision / recall."""
    mean, std = np.nanmean(real, axis=0), np.nanstd(real, axis=0)
    rng = np.random.default_rng(seed)
    return (mean + std * rng.standard_normal((n, *real.shape[1:]))).astype(np.float32)


def warn_if_degenerate(samples: dict, baseline: dict) -> None:
    """Warn when the samples' precision or recall does not exceed the Gaussian-noise baseline's by
    ``BASELINE_MARGIN`` (both dicts as :func:`utils.evaluation.precision_recall.precision_recall`)."""
    close = [k for k in ("precision", "recall") if samples[k] < baseline[k] + BASELINE_MARGIN]
    if close:
        warnings.warn(f"{' and '.join(close)} of the samples "
                      f"({', '.join(f'{samples[k]:.3f}' for k in close)}) not clearly above Gaussian noise with the "
                      f"real per-pixel mean and std ({', '.join(f'{baseline[k]:.3f}' for k in close)}): at this "
                      "sample count and feature dimension these scores do not tell the samples from noise",
                      stacklevel=2)


def _fid_text(fid: dict) -> str:
    if fid["ci_low"] is None:
        return f"{fid['fid']:.4g}"
    return f"{fid['fid']:.4g} (corrected {fid['fid_corrected']:.4g}, CI [{fid['ci_low']:.4g}, {fid['ci_high']:.4g}])"


def _kid_text(kid: dict) -> str:
    return f"{kid['kid']:.4g} +- {kid['se']:.2g}"


def _pr_text(pr: dict) -> str:
    return f"{pr['precision']:.3f} / {pr['recall']:.3f}"


def format_scores(scores: dict, floor: dict | None = None, baseline: dict | None = None) -> str:
    """Text table of :func:`feature_scores` output and, when given, its :func:`noise_floor`
    next to it: one line per score, samples (all points), samples at the floor's counts, floor;
    ``baseline`` (precision / recall of :func:`pixel_gaussian` noise) adds a last row."""
    rows = [("FID (standardised)", "fid", _fid_text), ("KID", "kid", _kid_text),
            ("precision / recall", "precision_recall", _pr_text)]
    lines = []
    if floor is not None:
        lines.append(f"{'':20s} samples (all points) | samples vs real half A | real half B vs A (noise floor); "
                     f"halves: {floor['n_reference']} vs {floor['n_compared']} points")
    for title, key, text in rows:
        if key not in scores:
            continue
        line = f"{title:20s} {text(scores[key])}"
        if floor is not None:
            line += f" | {text(floor['real_vs_generated'][key])} | {text(floor['real_vs_real'][key])}"
        lines.append(line)
    if baseline is not None:
        lines.append(f"{'degenerate baseline':20s} {_pr_text(baseline)} (precision / recall of Gaussian noise "
                     "with the real per-pixel mean and std, as many images as samples)")
    return "\n".join(lines)
