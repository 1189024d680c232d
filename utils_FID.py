"""FID, KID and improved precision/recall between a real set and generated samples (also a CLI).

    python utils_FID.py --real data/mnist_val/ --generated results/samples_100x32x32x1.npz \
        --extractor_path models_data/mnist_domain_cnn/classifier_best.pt

Real data: image folder, HDF5 folder (``key_data``) or ``.npz``; generated: ``.npz`` or a
folder. The extractor is loaded from a local file only (see ``utils/evaluation/features.py``):
the default is the small domain CNN written by ``example_fine_tuning.py`` (for unlabelled data:
its contrastive mode, ``--unlabelled_data``). Scores use standardised features
(``utils/evaluation/feature_scores.py``); every report carries the sample counts, the FID's
bias-corrected value and interval, the KID's standard error, the noise floor (real half vs
real half at matched counts) and the degenerate baseline (precision / recall of per-pixel Gaussian
noise), printed as a table after the JSON.

Units: without ``metadata_json`` the training ``metadata.json`` is taken from the samples' provenance
JSON (the checkpoint it names); an HDF5 folder still in stored units (rad) against samples in model
units is refused. Masked pixels (NaN, e.g. InSAR holes): ``nan_policy`` 'error', 'fill' or 'drop'
(``utils/evaluation/comparable.py``), applied to both sets and recorded in the report.
"""
from __future__ import annotations

import json
from pathlib import Path

from improved_diffusion.file_io import atomic_write_text, check_free
from utils.evaluation.comparable import (
    NAN_POLICIES,
    apply_nan_policy,
    check_same_units,
    resolve_metadata,
    training_geometry,
)
from utils.evaluation.features import load_extractor
from utils.evaluation.report import FEATURE_METRICS, feature_metrics, load_pair, normalization_from, parse_metrics


def main(
    real: str,                          # real data: image folder, HDF5 folder or .npz
    generated: str,                     # generated samples: .npz (arr_0 NHWC) or folder
    extractor_path: str | None = None,  # local extractor weights / checkpoint (required)
    extractor: str = "domain_cnn",      # domain_cnn, inception or vgg16
    layer: int | None = None,           # inception block: 64, 192, 768 or 2048 (default)
    resize_to: int = 299,               # inception input size in px (>= 75)
    metrics: str = "fid,kid,precision_recall",  # comma list: fid, kid, precision_recall
    num_samples: int | None = None,     # random subset of each set (all when None)
    key_data: str | None = None,        # HDF5 dataset name
    num_channels: int | None = None,    # channels to read image folders with (default: as generated)
    image_size: int | None = None,      # resize real image-folder images to this size in px (default: as training)
    real_scale: float = 1.0,            # real values -> model units: x * real_scale + real_offset
    real_offset: float = 0.0,           # (see real_scale)
    metadata_json: str | None = None,   # training metadata.json (default: from the samples' provenance JSON)
    nan_policy: str = "error",          # NaN pixels: 'error', 'fill' (0 in model units, same holes) or 'drop'
    nhood_size: int = 3,                # k of the k-NN manifolds
    num_bootstrap: int = 100,           # FID bootstrap replicates (0: no interval)
    num_subsets: int = 10,              # disjoint subsets behind the KID standard error
    batch_size: int = 64,               # feature extraction batch size
    cache_dir: str | None = None,       # cache folder for real features (None: no cache)
    seed: int = 0,                      # subset / bootstrap seed
    device: str = "cpu",                # torch device
    out_json: str | None = None,        # also write the report here
    overwrite: bool = False,            # replace an existing out_json
) -> dict:
    """Compute the feature metrics; print and return the report dict."""
    names = parse_metrics(metrics)
    if any(m not in FEATURE_METRICS for m in names):
        raise ValueError(f"metrics={metrics!r}: this script computes {FEATURE_METRICS}; "
                         "use python -m utils.report for the others")
    if extractor_path is None:
        raise ValueError("extractor_path=None: give a local extractor file (e.g. classifier_best.pt "
                         "written by example_fine_tuning.py, or a torchvision weights file)")
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy={nan_policy!r}; expected one of {NAN_POLICIES}")
    if out_json is not None:
        check_free([out_json], overwrite, key="out_json")
    metadata_json, metadata_from = resolve_metadata(generated, metadata_json)
    norm = normalization_from(metadata_json)
    check_same_units(real, generated, metadata_known=norm is not None,
                     real_scaled=(real_scale, real_offset) != (1.0, 0.0))
    ext = load_extractor(extractor, extractor_path, layer, resize_to)
    image_size, crop = training_geometry(real, metadata_json, image_size, crop=False)
    real_set, gen_set = load_pair(real, generated, num_samples=num_samples, key_data=key_data,
                                  num_channels=num_channels, image_size=image_size, real_scale=real_scale,
                                  real_offset=real_offset, seed=seed, data_normalization=norm, crop=crop)
    real_images, gen_images, nan_record = apply_nan_policy(real_set.images, gen_set.images, nan_policy, seed=seed,
                                                           sources=(real_set.source, gen_set.source))
    report = {"real": real_set.source, "generated": gen_set.source,
              "metadata_json": metadata_json, "metadata_from": metadata_from, "masked_pixels": nan_record,
              **feature_metrics(real_images, gen_images, ext, metrics=names, nhood_size=nhood_size,
                                num_bootstrap=num_bootstrap, num_subsets=num_subsets, batch_size=batch_size,
                                cache_dir=cache_dir, device=device, seed=seed)}
    text = json.dumps(report, indent=1)
    print(text)
    print(report["summary"])
    if out_json is not None:
        Path(out_json).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_json, text)
    return report


if __name__ == "__main__":
    from utils.cli import run_cli

    run_cli(main)
