"""One-call evaluation of generated samples against a real dataset.

:func:`evaluate_samples` writes ``metrics.json`` and comparison plots (semivariogram, power
spectrum, closest memorisation pairs, the scorecard against truth of ``utils.evaluation.scorecard``)
into a results folder, never into a checkpoint folder. Feature metrics (FID, KID, precision/recall on
standardised features) come with the noise floor of two real halves at matched counts, printed as a
table (``summary``).
CLI: ``python -m utils.report --real ... --samples ... --results_dir ...``.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from improved_diffusion.checkpoint import read_metadata
from improved_diffusion.data_normalization import value_unit
from improved_diffusion.file_io import atomic_write, atomic_write_text, check_free
from utils.evaluation.array_io import ImageSet, check_compatible, load_image_set
from utils.evaluation.comparable import apply_nan_policy, check_same_units, resolve_metadata, training_geometry
from utils.evaluation.feature_scores import (
    feature_scores,
    format_scores,
    noise_floor,
    pixel_gaussian,
    warn_if_degenerate,
)
from utils.evaluation.features import FeatureExtractor, extract_cached, load_extractor
from utils.evaluation.memorisation import memorisation_check, plot_closest_pairs
from utils.evaluation.plots import curve_label, plot_mean_curves
from utils.evaluation.scorecard import PLOTS, format_table, plot_scorecard, scorecard
from utils.evaluation.semivariogram import ESTIMATOR, empirical_semivariogram, write_semivariogram_csv
from utils.evaluation.spectrum import radial_psd
from utils.radar.ground_truth import read_ground_truth

METRICS = ("fid", "kid", "precision_recall", "semivariogram", "spectrum", "memorisation", "scorecard")
FEATURE_METRICS = ("fid", "kid", "precision_recall")
UNITS = ("model", "physical")  # units of the semivariogram / spectrum fields


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
              data_normalization: dict | None = None, crop: bool = False) -> tuple[ImageSet, ImageSet]:
    """Load the real and generated sets with the training readers and check that sizes and channels match
    (``data_normalization``, see :func:`normalization_from`, maps folders to model units as in training)."""
    gen = load_image_set(generated, num_samples=num_samples, seed=seed, key_data=key_data,
                         data_normalization=data_normalization)
    channels = num_channels if num_channels is not None else (gen.num_channels if gen.num_channels in (1, 3) else None)
    real_set = load_image_set(real, num_samples=num_samples, seed=seed, key_data=key_data, num_channels=channels,
                              image_size=image_size, data_normalization=data_normalization, scale=real_scale,
                              offset=real_offset, crop=crop)
    check_compatible(real_set.images, gen.images)
    return real_set, gen


def feature_metrics(real: np.ndarray, generated: np.ndarray, extractor: FeatureExtractor, *,
                    metrics: list[str], nhood_size: int = 3, num_bootstrap: int = 100, num_subsets: int = 10,
                    batch_size: int = 64, cache_dir: str | None = None, device: str = "cpu", seed: int = 0) -> dict:
    """FID, KID and/or precision-recall of NHWC sets in the extractor's standardised feature space
    (:func:`utils.evaluation.feature_scores.feature_scores`), with the real-half noise floor at
    matched sample counts in ``noise_floor``, the precision / recall of per-pixel Gaussian noise in
    ``degenerate_baseline`` (with precision_recall) and all as a text table in ``summary``.

    Real features are cached under ``cache_dir`` (keyed by data, weights, layer, count)."""
    check_compatible(real, generated)
    real_f = extract_cached(extractor, real, cache_dir, batch_size, device)
    gen_f = extractor.extract(generated, batch_size, device)
    options = dict(scores=tuple(m for m in FEATURE_METRICS if m in metrics), nhood_size=nhood_size,
                   num_bootstrap=num_bootstrap, num_subsets=num_subsets, seed=seed)
    scores = feature_scores(real_f, gen_f, **options)
    floor = noise_floor(real_f, gen_f, **options)
    out = {"extractor": extractor.description(), **scores, "noise_floor": floor}
    baseline = None
    if "precision_recall" in scores:
        noise_f = extractor.extract(pixel_gaussian(real, len(generated), seed), batch_size, device)
        baseline = feature_scores(real_f, noise_f, **{**options, "scores": ("precision_recall",)})["precision_recall"]
        out["degenerate_baseline"] = {"what": "Gaussian noise with the real per-pixel mean and std",
                                      "n": len(generated), **baseline}
        warn_if_degenerate(scores["precision_recall"], baseline)
    return {**out, "summary": format_scores(scores, floor, baseline)}


def summary_lines(report: dict, results_dir: str) -> list[str]:
    """A few printable lines: each metric's headline number and where the files are."""
    lines = [f"{report['n_generated']} samples vs {report['n_real']} real images ({report['real']})"]
    if "fid" in report:
        lines.append(f"FID {report['fid']['fid']:.3g}")
    if "precision_recall" in report:
        pr = report["precision_recall"]
        lines.append(f"precision {pr['precision']:.3f}, recall {pr['recall']:.3f}")
    if "semivariogram" in report:
        gap = 100 * report["semivariogram"]["max_relative_difference"]
        lines.append(f"semivariogram: largest relative gap generated vs real {gap:.1f} % over the lags "
                     f"({report['field_unit']})")
    if "spectrum" in report:
        lines.append(f"spectrum: mean |log10 PSD ratio| {report['spectrum']['mean_abs_log10_ratio']:.3f}")
    if "memorisation" in report:
        mem = report["memorisation"]
        lines.append("memorisation vs " + mem["train_data"] + ": " + ", ".join(
            f"{k} {v}" for k, v in mem.items() if k != "train_data" and not isinstance(v, (list, dict))))
    lines.append(f"written: {Path(results_dir) / 'metrics.json'} and its figures")
    return lines


def _check_results_dir(results_dir: Path, overwrite: bool) -> None:
    if results_dir.is_dir():
        if (results_dir / "metadata.json").exists() or any(results_dir.glob("*.pt")):
            raise ValueError(f"results_dir={str(results_dir)!r} is a checkpoint folder (metadata.json / *.pt); "
                             "choose a separate results folder")
        check_free([results_dir / "metrics.json"], overwrite, key="results_dir")


# A report section: its summary for metrics.json, the files it writes and the writer of those files, called
# only once every section has been computed (so bad input never leaves files that block the corrected rerun).
Section = tuple[dict, list[Path], Callable[[], object]]


def semivariogram_section(real_fields: np.ndarray, gen_fields: np.ndarray, results_dir: Path, *,
                          max_lag: float | None, rescale: bool, overwrite: bool, unit: str = "model units") -> Section:
    """Semivariograms of (N, H, W) real and generated fields (values in `unit`): summary, CSVs and PNG."""
    res = {k: empirical_semivariogram(f, max_lag=max_lag, rescale=rescale)
           for k, f in (("real", real_fields), ("generated", gen_fields))}
    csv = {k: results_dir / f"semivariogram_{k}.csv" for k in res}
    png = results_dir / "semivariogram.png"
    sizes = {"real": len(real_fields), "generated": len(gen_fields)}

    def write() -> None:
        for k, r in res.items():
            write_semivariogram_csv(r, csv[k], overwrite=overwrite)
        plot_mean_curves({curve_label(k, sizes[k], ESTIMATOR): (r.mean_distance, r.gamma, r.gamma_se)
                          for k, r in res.items()}, png, xlabel="lag (px)", ylabel=f"semivariance ({unit}²)",
                         title="Semivariogram: real vs generated fields (mean ± 1.96 SE)", overwrite=overwrite)
    gap = np.abs(res["generated"].gamma - res["real"].gamma) / np.abs(res["real"].gamma)
    summary = {"estimator": ESTIMATOR, "n_real": sizes["real"], "n_generated": sizes["generated"],
               "lags_px": res["real"].lags.tolist(), "gamma_real": res["real"].gamma.tolist(),
               "gamma_generated": res["generated"].gamma.tolist(), "max_relative_difference": float(np.nanmax(gap))}
    return summary, [*csv.values(), png], write


def spectrum_section(real_fields: np.ndarray, gen_fields: np.ndarray, results_dir: Path, *,
                     rescale: bool, overwrite: bool, unit: str = "model units") -> Section:
    """Radially averaged PSDs of (N, H, W) real and generated fields (values in `unit`): summary, CSV and PNG."""
    res = {k: radial_psd(f, rescale=rescale) for k, f in (("real", real_fields), ("generated", gen_fields))}
    path, png = results_dir / "spectrum.csv", results_dir / "spectrum.png"

    def write() -> None:
        check_free([path], overwrite)
        table = np.column_stack([res["real"].frequency, res["real"].psd, res["real"].psd_se,
                                 res["generated"].psd, res["generated"].psd_se])
        atomic_write(path, lambda tmp: np.savetxt(tmp, table, delimiter=",", comments="", fmt="%.10g",
                                                  header="frequency,psd_real,psd_real_se,psd_generated,psd_generated_se"))
        plot_mean_curves({k: (r.frequency, r.psd, r.psd_se) for k, r in res.items()}, png,
                         xlabel="frequency (cycles / px)", ylabel=f"PSD ({unit}²)",
                         title="Radial PSD: real vs generated (mean ± 1.96 SE)",
                         log_x=True, log_y=True, overwrite=overwrite)
    log_ratio = np.log10(res["generated"].psd / res["real"].psd)
    summary = {"frequency": res["real"].frequency.tolist(), "mean_abs_log10_ratio": float(np.mean(np.abs(log_ratio)))}
    return summary, [path, png], write


def memorisation_section(gen_set: ImageSet, train: ImageSet, results_dir: Path, *, extractor: FeatureExtractor | None,
                         pixel_threshold: float, feature_threshold: float | None, device: str,
                         overwrite: bool) -> Section:
    """Nearest training image of every sample (``memorisation_check``): summary and the closest-pairs PNG."""
    mem = memorisation_check(gen_set.images, train.images, extractor=extractor, pixel_threshold=pixel_threshold,
                             feature_threshold=feature_threshold, device=device)
    png = results_dir / "memorisation_pairs.png"

    def write() -> None:
        plot_closest_pairs(gen_set.images, train.images, mem["pixel_distance"], mem["pixel_index"], png,
                           overwrite=overwrite)
    return {"train_data": train.source, **mem["summary"]}, [png], write


def read_truth(truth_json: str | None) -> dict | None:
    """The checked ``ground_truth.json`` (``read_ground_truth``), None without a file; errors name ``truth_json``."""
    if truth_json is None:
        return None
    try:
        return read_ground_truth(truth_json)
    except (FileNotFoundError, ValueError) as err:
        raise type(err)(f"truth_json: {err}") from None


def scorecard_inputs(real: str, gen_set: ImageSet, truth_json: str | None, *, num_samples: int | None,
                     key_data: str | None, seed: int) -> tuple[dict | None, ImageSet]:
    """The truth (``read_truth``) and the real set read with the labels the generator wrote (its
    ``loader_kwargs['key_class']``), mapped with the samples' ``data_normalization``."""
    truth = read_truth(truth_json)
    key_class = None if truth is None else truth["loader_kwargs"].get("key_class")
    real_set = load_image_set(real, num_samples=num_samples, seed=seed, key_data=key_data, key_class=key_class,
                              data_normalization=gen_set.data_normalization)
    for key, images in (("real", real_set), ("samples", gen_set)):
        if len(images.images) < 2:
            raise ValueError(f"{key}: {images.source} holds {len(images.images)} field(s); the scorecard's noise "
                             "bands need at least 2 real fields and 2 samples")
    return truth, real_set


def scorecard_section(real_set: ImageSet, gen_set: ImageSet, results_dir: Path, *, truth: dict | None,
                      truth_json: str | None, channel: int, seed: int, overwrite: bool) -> Section:
    """Scorecard (``utils.evaluation.scorecard``) of the samples against the real set in physical units, with the
    truth and the real data's labels (``scorecard_inputs``); prints the table."""
    units = "rad" if truth is not None else "physical units"
    samples, real_fields = gen_set.physical()[..., channel], real_set.physical()[..., channel]
    try:
        card = scorecard(samples, real_fields, truth=truth, real_labels=real_set.labels, units=units, seed=seed)
    except KeyError as err:
        raise ValueError(f"truth_json: {truth_json} has no key {err}; expected the ground_truth.json a generator "
                         "of datasets/ writes") from None
    print(format_table(card))
    return card, [results_dir / name for name in PLOTS], lambda: plot_scorecard(
        card, samples, real_fields, results_dir, overwrite=overwrite)


def evaluate_samples(
    real: str,                            # real data: image folder, HDF5 folder or .npz
    samples: str,                         # generated samples .npz (or folder)
    results_dir: str,                     # output folder for metrics.json and plots (not a checkpoint folder)
    metrics: str = "fid,kid,precision_recall,semivariogram,spectrum,memorisation",  # comma list; also scorecard
    extractor: str = "domain_cnn",        # feature network: domain_cnn, inception, vgg16
    extractor_path: str | None = None,    # local weights / checkpoint of the extractor (feature metrics)
    layer: int | None = None,             # inception block: 64, 192, 768 or 2048 (default)
    resize_to: int = 299,                 # inception input size in px
    train_data: str | None = None,        # training set for the memorisation check (default: real)
    key_data: str | None = None,          # HDF5 dataset name (HDF5 folders)
    num_channels: int | None = None,      # channels to read image folders with (default: as the samples)
    image_size: int | None = None,        # resize real image-folder images to this size in px (default: as training)
    crop: bool = False,                   # instead: seeded random image_size crops, as training with crop=True
    real_scale: float = 1.0,              # real values -> model units: x * real_scale + real_offset
    real_offset: float = 0.0,           # (see real_scale)
    metadata_json: str | None = None,   # training metadata.json (default: from the samples' provenance JSON)
    nan_policy: str = "error",            # NaN pixels for the feature metrics: 'error', 'fill' or 'drop'
    units: str = "model",                 # semivariogram/spectrum in "model" units or "physical" (metadata_json)
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
    truth_json: str | None = None,        # scorecard: the generator's ground_truth.json (truth column, labels)
    seed: int = 0,                        # subset and bootstrap seed
    device: str = "cpu",                  # torch device of the extractor
    overwrite: bool = False,              # replace existing report files
) -> dict:
    """Compute the requested metrics, write ``metrics.json`` + plots; return the metrics dict.

    Every input is read and every metric computed before the first file is written: a refused input
    (non-finite or undeclared integer samples, a truth file without ``loader_kwargs``, too few fields) leaves
    ``results_dir`` as it was."""
    names = parse_metrics(metrics)
    metadata_json, metadata_from = resolve_metadata(samples, metadata_json)
    _check_options(names, units, metadata_json, extractor_path)
    needs_features = any(m in FEATURE_METRICS for m in names)
    out = Path(results_dir)
    _check_results_dir(out, overwrite)
    ext = load_extractor(extractor, extractor_path, layer, resize_to) if extractor_path is not None else None
    norm = normalization_from(metadata_json)
    # sets in different units (an HDF5 folder in stored units against samples in model units) are refused
    check_same_units(real, samples, metadata_known=norm is not None,
                     real_scaled=(real_scale, real_offset) != (1.0, 0.0))
    image_size, crop = training_geometry(real, metadata_json, image_size, crop)
    real_set, gen_set = load_pair(real, samples, num_samples=num_samples, key_data=key_data, num_channels=num_channels,
                                  image_size=image_size, real_scale=real_scale, real_offset=real_offset, seed=seed,
                                  data_normalization=norm, crop=crop)
    real_values, gen_values = ((real_set.physical(), gen_set.physical()) if units == "physical"
                               else (real_set.images, gen_set.images))
    if not 0 <= channel < gen_values.shape[3]:
        raise ValueError(f"channel={channel!r}: the data have {gen_values.shape[3]} channel(s) in {units} units")
    train = real_set if train_data is None or "memorisation" not in names else load_image_set(
        train_data, key_data=key_data, num_channels=gen_set.num_channels, image_size=image_size,
        data_normalization=norm, scale=real_scale, offset=real_offset)
    truth, card_real = (scorecard_inputs(real, gen_set, truth_json, num_samples=num_samples, key_data=key_data,
                                         seed=seed) if "scorecard" in names else (None, None))
    report = {"real": real_set.source, "samples": gen_set.source, "n_real": len(real_set.images),
              "n_generated": len(gen_set.images), "image_shape_hwc": list(gen_set.images.shape[1:]),
              "metadata_json": metadata_json, "metadata_from": metadata_from}
    if needs_features:
        x_real, x_gen, masked = apply_nan_policy(real_set.images, gen_set.images, nan_policy, seed=seed)
        report.update(masked_pixels=masked, **feature_metrics(
            x_real, x_gen, ext, metrics=names, nhood_size=nhood_size, num_bootstrap=num_bootstrap,
            num_subsets=num_subsets, batch_size=batch_size, cache_dir=cache_dir, device=device, seed=seed))
        print(report["summary"])
    if units == "physical":
        report["field_units"] = "physical"
    real_fields, gen_fields = real_values[..., channel], gen_values[..., channel]
    unit = "min-max scaled to [-1, 1]" if rescale else value_unit(norm, units == "physical", key_data)
    report["field_unit"] = unit
    sections = {}
    if "semivariogram" in names:
        sections["semivariogram"] = semivariogram_section(real_fields, gen_fields, out, max_lag=max_lag,
                                                          rescale=rescale, overwrite=overwrite, unit=unit)
    if "spectrum" in names:
        sections["spectrum"] = spectrum_section(real_fields, gen_fields, out, rescale=rescale, overwrite=overwrite,
                                                unit=unit)
    if "memorisation" in names:
        sections["memorisation"] = memorisation_section(gen_set, train, out, extractor=ext, device=device,
                                                        pixel_threshold=pixel_threshold,
                                                        feature_threshold=feature_threshold, overwrite=overwrite)
    if "scorecard" in names:
        sections["scorecard"] = scorecard_section(card_real, gen_set, out, truth=truth, truth_json=truth_json,
                                                  channel=channel, seed=seed, overwrite=overwrite)
    return write_report(out, sections, report, overwrite)


def write_report(out: Path, sections: dict[str, Section], report: dict, overwrite: bool) -> dict:
    """Write every section's files, then ``metrics.json`` (``report`` plus each section's summary); the files
    of an interrupted report into ``out`` are replaced, any other existing file needs ``overwrite``."""
    files = [path for _, paths, _ in sections.values() for path in paths]
    left = files_of_interrupted_report(out)
    check_free([path for path in files if path not in left], overwrite, key="results_dir")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / INCOMPLETE, json.dumps([path.name for path in files]))
    for path in left:
        path.unlink(missing_ok=True)  # a file of the killed report, possibly cut short
    for name, (summary, _, write) in sections.items():
        write()
        report[name] = summary
    atomic_write_text(out / "metrics.json", json.dumps(report, indent=1))
    (out / INCOMPLETE).unlink()
    return report


# Written before a report's first file and removed after its metrics.json: where it is left, the report that
# wrote it was killed, and the files it lists may be replaced by the next report without overwrite=True.
INCOMPLETE = "report.incomplete.json"


def files_of_interrupted_report(results_dir: Path) -> set[Path]:
    """The files an interrupted report into `results_dir` was writing (empty when none was interrupted)."""
    record = results_dir / INCOMPLETE
    if not record.is_file():
        return set()
    try:
        names = json.loads(record.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"results_dir: cannot read {record} ({err}); it marks a report that was interrupted: "
                         "remove it and the files of that report, or pass overwrite=True") from None
    print(f"results_dir: replacing the files of a report that was interrupted ({record})")
    return {results_dir / Path(name).name for name in names}


def _check_options(names: list[str], units: str, metadata_json: str | None, extractor_path: str | None) -> None:
    """ValueError for an option combination the report cannot serve (checked before anything is read)."""
    if units not in UNITS:
        raise ValueError(f"units={units!r}; expected one of {UNITS}")
    if units == "physical" and metadata_json is None:
        raise ValueError("units='physical' needs metadata_json (the training metadata.json with data_normalization)")
    if "scorecard" in names and metadata_json is None:
        raise ValueError("metrics 'scorecard' needs metadata_json (the training metadata.json): it compares fields in "
                         "physical units")
    if any(m in FEATURE_METRICS for m in names) and extractor_path is None:
        raise ValueError(f"extractor_path=None: metrics {[m for m in names if m in FEATURE_METRICS]} need a "
                         "feature extractor file (train one with example_fine_tuning.py)")
