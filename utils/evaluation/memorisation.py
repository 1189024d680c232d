"""Memorisation check: how close is each generated sample to its nearest training image?

Pixel distance = root-mean-square difference over all pixels and channels (value units, so a
threshold of 2/255 is one 8-bit grey level in [-1, 1] units); feature distance = Euclidean
distance between extractor features. NaN pixels are compared as 0.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from improved_diffusion.file_io import check_free
from utils.evaluation.array_io import check_compatible
from utils.evaluation.features import FeatureExtractor
from utils.evaluation.plots import plt, save_figure
from utils.evaluation.precision_recall import distance_blocks


def nearest_neighbours(
    query: np.ndarray, reference: np.ndarray, batch_size: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """For each row of (N, D) ``query``: distance to and index of its nearest row of (M, D) ``reference``."""
    dist, index = np.empty(len(query)), np.empty(len(query), dtype=np.int64)
    for start, block in distance_blocks(query, reference, batch_size):
        idx = block.argmin(axis=1)
        index[start:start + len(block)] = idx
        dist[start:start + len(block)] = block[np.arange(len(block)), idx]
    return dist, index


def memorisation_check(generated: np.ndarray, train: np.ndarray, *, extractor: FeatureExtractor | None = None,
                       pixel_threshold: float = 2 / 255, feature_threshold: float | None = None,
                       batch_size: int = 256, device: str = "cpu") -> dict:
    """Nearest training image of each generated NHWC image, in pixel and (optionally) feature space.

    Returns a dict with per-sample arrays ``pixel_distance``, ``pixel_index`` (and
    ``feature_distance``, ``feature_index`` with an extractor) and a JSON-ready ``summary``:
    fraction of samples closer than each threshold, distance quantiles, sample counts.
    """
    check_compatible(train, generated)
    flat_gen = np.nan_to_num(generated.reshape(len(generated), -1).astype(np.float64))
    flat_train = np.nan_to_num(train.reshape(len(train), -1).astype(np.float64))
    dist, index = nearest_neighbours(flat_gen, flat_train, batch_size)
    dist /= np.sqrt(flat_gen.shape[1])
    out = {"pixel_distance": dist, "pixel_index": index}
    summary = {"n_generated": len(generated), "n_train": len(train), "pixel_threshold": pixel_threshold,
               "fraction_pixel_below_threshold": float((dist < pixel_threshold).mean()),
               "pixel_distance_quantiles": {q: float(np.quantile(dist, float(q))) for q in ("0.0", "0.01", "0.5")}}
    if extractor is not None:
        f_dist, f_index = nearest_neighbours(extractor.extract(np.nan_to_num(generated), device=device),
                                             extractor.extract(np.nan_to_num(train), device=device), batch_size)
        out.update(feature_distance=f_dist, feature_index=f_index)
        quantiles = ("0.0", "0.01", "0.5")
        summary["feature_distance_quantiles"] = {q: float(np.quantile(f_dist, float(q))) for q in quantiles}
        if feature_threshold is not None:
            summary["feature_threshold"] = feature_threshold
            summary["fraction_feature_below_threshold"] = float((f_dist < feature_threshold).mean())
    out["summary"] = summary
    return out


def plot_closest_pairs(generated: np.ndarray, train: np.ndarray, distance: np.ndarray, index: np.ndarray,
                       path: str | Path, num_pairs: int = 8, overwrite: bool = False) -> Path:
    """Save a PNG: the ``num_pairs`` generated samples closest to the training set (top row)
    above their nearest training images (bottom row), titled with the distance d (RMS over pixels, model
    units). Channel 0 shown, each pair on one grey scale."""
    path = Path(path)
    check_free([path], overwrite, key="path")
    order = np.argsort(distance)[:num_pairs]
    fig, axes = plt.subplots(2, len(order), figsize=(1.6 * len(order), 3.6), squeeze=False)
    for col, i in enumerate(order):
        pair = (generated[i, :, :, 0], train[index[i], :, :, 0])
        lo, hi = np.nanmin(pair), np.nanmax(pair)
        for row, img in enumerate(pair):
            axes[row, col].imshow(img, cmap="gray", vmin=lo, vmax=hi)
            axes[row, col].axis("off")
        axes[0, col].set_title(f"d={distance[i]:.3g}", fontsize=8)
    axes[0, 0].text(-0.1, 0.5, "generated", transform=axes[0, 0].transAxes, rotation=90, ha="right", va="center")
    axes[1, 0].text(-0.1, 0.5, "nearest train", transform=axes[1, 0].transAxes, rotation=90, ha="right", va="center")
    fig.suptitle("Generated samples closest to the training set; d = RMS pixel distance to the nearest "
                 "training image (model units, [-1, 1] scale; 0 = exact copy)", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=120)
    return path
