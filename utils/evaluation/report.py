"""One-call evaluation of generated samples against a real dataset.

:func:`evaluate_samples` writes ``metrics.json`` and comparison plots (semivariogram, power
spectrum, closest memorisation pairs) into a results folder, never into a checkpoint folder.
Feature metrics (FID, KID, precision/recall on standardised features) come with the noise floor
of two real halves at matched counts, printed as a table (``summary``).
CLI: ``python -m utils.report --real ... --samples ... --results_dir ...``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from improved_diffusion.checkpoint import read_metadata
from utils.evaluation.array_io import ImageSet, check_compatible, load_image_set
from utils.evaluation.feature_scores import feature_scores, format_scores, noise_floor
from utils.evaluation.features import FeatureExtractor, extract_cached, load_extractor
from utils.evaluation.memorisation import memorisation_check, plot_closest_pairs
from utils.evaluation.plots import plot_mean_curves
from utils.evaluation.semivariogram import empirical_semivariogram, write_semivariogram_csv
from utils.evaluation.spectrum import radial_psd

METRICS = ("fid", "kid", "precision_recall", "semivariogram", "spectrum", "memorisation")
FEATURE_METRICS = ("fid", "kid", "precision_recall")


def parse_metrics(metrics: str | list[str] | tuple[str, ...]) -> list[str]:
    """Metric names from a comma string or a list; ValueError for unknown names."""
    names = [m.strip() for m in metrics.split(",")] if isinstance(metrics, str) else list(metrics)
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise ValueError(f"metrics={metrics!r}: unknown {unknown}, expected a subset of {METRICS}")
    return names


def normalization_from(metadata_json: str | None) -> dict | None:
    """The ``data_normalization`` entry of a training ``metadata.json`` (None without a file or entry)."""
    return None if metadata_json is None else read_metadata(metadata_json).get("data_normalization")


def load_pair(real: str, generated: str, *, num_samples: int | None, key_data: str | None, num_channels: int | None,
              image_size: int | None, real_scale: float, real_offset: float, seed: int,
              data_normalization: dict | None = None) -> tuple[ImageSet, ImageSet]:
    """Load the real and generated sets and check that sizes and channels match
    (``data_normalization`` maps a real HDF5 folder to model units, see :func:`normalization_from`)."""
    gen = load_image_set(generated, num_samples=num_samples, seed=seed, key_data=key_data)
    channels = num_channels if num_channels is not None else (gen.num_channels if gen.num_channels in (1, 3) else None)
    real_set = load_image_set(real, num_samples=num_samples, seed=seed, key_data=key_data, num_channels=channels,
                              image_size=image_size, data_normalization=data_normalization, scale=real_scale,
                              offset=real_offset)
    check_compatible(real_set.images, gen.images)
    return real_set, gen


def feature_metrics(real: np.ndarray, generated: np.ndarray, extractor: FeatureExtractor, *,
                    metrics: list[str], nhood_size: int = 3, num_bootstrap: int = 100, num_subsets: int = 10,
                    batch_size: int = 64, cache_dir: str | None = None, device: str = "cpu", seed: int = 0) -> dict:
    """FID, KID and/or precision-recall of NHWC sets in the extractor's standardised feature space
    (:func:`utils.evaluation.feature_scores.feature_scores`), with the real-half noise floor at
    matched sample counts in ``noise_floor`` and both as a text table in ``summary``.

    Real features are cached under ``cache_dir`` (keyed by data, weights, layer, count)."""
    check_compatible(real, generated)
    real_f = extract_cached(extractor, real, cache_dir, batch_size, device)
    gen_f = extractor.extract(generated, batch_size, device)
    options = dict(scores=tuple(m for m in FEATURE_METRICS if m in metrics), nhood_size=nhood_size,
                   num_bootstrap=num_bootstrap, num_subsets=num_subsets, seed=seed)
    scores = feature_scores(real_f, gen_f, **options)
    floor = noise_floor(real_f, gen_f, **options)
    return {"extractor": extractor.description(), **scores, "noise_floor": floor,
            "summary": format_scores(scores, floor)}


def _check_results_dir(results_dir: Path, overwrite: bool) -> None:
    if results_dir.is_dir():
        if (results_dir / "metadata.json").exists() or any(results_dir.glob("*.pt")):
            raise ValueError(f"results_dir={str(results_dir)!r} is a checkpoint folder (metadata.json / *.pt); "
                             "choose a separate results folder")
        if (results_dir / "metrics.json").exists() and not overwrite:
            raise FileExistsError(f"results_dir={str(results_dir)!r} already holds metrics.json; pass overwrite=True")


def semivariogram_section(real_fields: np.ndarray, gen_fields: np.ndarray, results_dir: Path, *,
                          max_lag: float | None, rescale: bool, overwrite: bool) -> dict:
    """Semivariograms of (N, H, W) real and generated fields: CSVs, PNG and a summary dict."""
    res = {k: empirical_semivariogram(f, max_lag=max_lag, rescale=rescale)
           for k, f in (("real", real_fields), ("generated", gen_fields))}
    for k, r in res.items():
        write_semivariogram_csv(r, results_dir / f"semivariogram_{k}.csv", overwrite=overwrite)
    plot_mean_curves({k: (r.mean_distance, r.gamma, r.gamma_se) for k, r in res.items()},
                     results_dir / "semivariogram.png", xlabel="lag (px)", ylabel="semivariance",
                     title="Semivariogram (mean ± 1.96 SE)", overwrite=overwrite)
    gap = np.abs(res["generated"].gamma - res["real"].gamma) / np.abs(res["real"].gamma)
    return {"lags_px": res["real"].lags.tolist(), "gamma_real": res["real"].gamma.tolist(),
            "gamma_generated": res["generated"].gamma.tolist(), "max_relative_difference": float(np.nanmax(gap))}


def spectrum_section(real_fields: np.ndarray, gen_fields: np.ndarray, results_dir: Path, *,
                     rescale: bool, overwrite: bool) -> dict:
    """Radially averaged PSDs of (N, H, W) real and generated fields: CSV, PNG and a summary dict."""
    res = {k: radial_psd(f, rescale=rescale) for k, f in (("real", real_fields), ("generated", gen_fields))}
    path = results_dir / "spectrum.csv"
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} exists; pass overwrite=True")
    table = np.column_stack([res["real"].frequency, res["real"].psd, res["real"].psd_se,
                             res["generated"].psd, res["generated"].psd_se])
    np.savetxt(path, table, delimiter=",", comments="", fmt="%.10g",
               header="frequency,psd_real,psd_real_se,psd_generated,psd_generated_se")
    plot_mean_curves({k: (r.frequency, r.psd, r.psd_se) for k, r in res.items()}, results_dir / "spectrum.png",
                     xlabel="frequency (cycles / px)", ylabel="PSD", title="Radially averaged PSD",
                     log_x=True, log_y=True, overwrite=overwrite)
    log_ratio = np.log10(res["generated"].psd / res["real"].psd)
    return {"frequency": res["real"].frequency.tolist(), "mean_abs_log10_ratio": float(np.mean(np.abs(log_ratio)))}


def evaluate_samples(
    real: str,                            # real data: image folder, HDF5 folder or .npz
    samples: str,                         # generated samples .npz (or folder)
    results_dir: str,                     # output folder for metrics.json and plots (not a checkpoint folder)
    metrics: str = "fid,kid,precision_recall,semivariogram,spectrum,memorisation",  # comma list, subset of METRICS
    extractor: str = "domain_cnn",        # feature network: domain_cnn, inception, vgg16
    extractor_path: str | None = None,    # local weights / checkpoint of the extractor (feature metrics)
    layer: int | None = None,             # inception block: 64, 192, 768 or 2048 (default)
    resize_to: int = 299,                 # inception input size in px
    train_data: str | None = None,        # training set for the memorisation check (default: real)
    key_data: str | None = None,          # HDF5 dataset name (HDF5 folders)
    num_channels: int | None = None,      # channels to read image folders with (default: as the samples)
    image_size: int | None = None,        # resize real image-folder images to this size in px
    real_scale: float = 1.0,              # real values -> model units: x * real_scale + real_offset
    real_offset: float = 0.0,           # (see real_scale)
    metadata_json: str | None = None,   # training metadata.json: its data_normalization maps real HDF5 data
    num_samples: int | None = None,       # random subset size of each set (all when None)
    channel: int = 0,                     # channel used for semivariogram and spectrum
    max_lag: float | None = None,         # semivariogram max lag in px (default half the image side)
    rescale: bool = False,                # per-image min-max to [-1, 1] before semivariogram/spectrum
    nhood_size: int = 3,                  # k of the k-NN manifolds (precision/recall)
    num_bootstrap: int = 100,             # bootstrap replicates of the FID interval (0: none)
    num_subsets: int = 10,                # disjoint subsets behind the KID standard error
    pixel_threshold: float = 2 / 255,     # memorisation: RMS pixel distance counted as a copy
    feature_threshold: float | None = None,  # memorisation: feature distance counted as a copy
    batch_size: int = 64,                 # feature extraction batch size
    cache_dir: str | None = None,         # cache of real features (None: no cache)
    seed: int = 0,                        # subset and bootstrap seed
    device: str = "cpu",                  # torch device of the extractor
    overwrite: bool = False,              # replace existing report files
) -> dict:
    """Compute the requested metrics, write ``metrics.json`` + plots; return the metrics dict."""
    names = parse_metrics(metrics)
    out = Path(results_dir)
    _check_results_dir(out, overwrite)
    needs_features = any(m in FEATURE_METRICS for m in names)
    if needs_features and extractor_path is None:
        raise ValueError(f"extractor_path=None: metrics {[m for m in names if m in FEATURE_METRICS]} need a "
                         "feature extractor file (train one with example_fine_tuning.py)")
    ext = load_extractor(extractor, extractor_path, layer, resize_to) if extractor_path is not None else None
    norm = normalization_from(metadata_json)
    real_set, gen_set = load_pair(real, samples, num_samples=num_samples, key_data=key_data, num_channels=num_channels,
                                  image_size=image_size, real_scale=real_scale, real_offset=real_offset, seed=seed,
                                  data_normalization=norm)
    if not 0 <= channel < gen_set.num_channels:
        raise ValueError(f"channel={channel!r}: the data have {gen_set.num_channels} channel(s)")
    out.mkdir(parents=True, exist_ok=True)
    report = {"real": real_set.source, "samples": gen_set.source, "n_real": len(real_set.images),
              "n_generated": len(gen_set.images), "image_shape_hwc": list(gen_set.images.shape[1:])}
    if needs_features:
        report.update(feature_metrics(real_set.images, gen_set.images, ext, metrics=names, nhood_size=nhood_size,
                                      num_bootstrap=num_bootstrap, num_subsets=num_subsets, batch_size=batch_size,
                                      cache_dir=cache_dir, device=device, seed=seed))
        print(report["summary"])
    real_fields, gen_fields = real_set.images[..., channel], gen_set.images[..., channel]
    if "semivariogram" in names:
        report["semivariogram"] = semivariogram_section(real_fields, gen_fields, out, max_lag=max_lag,
                                                        rescale=rescale, overwrite=overwrite)
    if "spectrum" in names:
        report["spectrum"] = spectrum_section(real_fields, gen_fields, out, rescale=rescale, overwrite=overwrite)
    if "memorisation" in names:
        train = real_set if train_data is None else load_image_set(
            train_data, key_data=key_data, num_channels=gen_set.num_channels, image_size=image_size,
            data_normalization=norm, scale=real_scale, offset=real_offset)
        mem = memorisation_check(gen_set.images, train.images, extractor=ext, pixel_threshold=pixel_threshold,
                                 feature_threshold=feature_threshold, device=device)
        plot_closest_pairs(gen_set.images, train.images, mem["pixel_distance"], mem["pixel_index"],
                           out / "memorisation_pairs.png", overwrite=overwrite)
        report["memorisation"] = {"train_data": train.source, **mem["summary"]}
    (out / "metrics.json").write_text(json.dumps(report, indent=1))
    return report
