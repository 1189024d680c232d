"""What makes a real and a generated set comparable: the same units and the same treatment of masked pixels.

Masked pixels (NaN, e.g. decorrelated InSAR phase) follow one ``nan_policy``, applied to both sets and
recorded in the report (:func:`apply_nan_policy`):

* ``"error"``: refuse sets with NaN (the default, as training's ``nan_policy='error'``);
* ``"fill"``: NaN -> 0 in model units, the value training's ``nan_policy='fill'`` gives masked pixels
  (the middle of the normalisation range). Generated samples have no holes, so each generated image
  also receives the NaN mask of a real image drawn at random (seeded) before the fill: both sets then
  hold the same holes and the scores compare the valid pixels, not the presence of holes;
* ``"drop"``: images with any NaN pixel are left out of their set.

Units (:func:`check_same_units`): an HDF5 folder read without the training ``data_normalization`` is in
stored units (e.g. rad), samples ``.npz`` and image folders are in model units; comparing the two is refused.
:func:`metadata_from_provenance` finds the training ``metadata.json`` through the samples' provenance JSON.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from improved_diffusion.checkpoint import METADATA_NAME, read_metadata
from improved_diffusion.hdf5_datasets import HDF5_EXTENSIONS

NAN_POLICIES = ("error", "fill", "drop")


def _nan_counts(images: np.ndarray) -> dict:
    per_image = np.isnan(images).reshape(len(images), -1).any(axis=1)
    return {"n_images": int(len(images)), "n_with_nan": int(per_image.sum()),
            "nan_fraction": float(np.isnan(images).mean()) if images.size else 0.0}


def _fill(images: np.ndarray, masks_from: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """NaN -> 0 (model units); with ``masks_from`` (NHWC with NaN) each image first takes a random one's NaN."""
    out = np.array(images, dtype=np.float32)
    if masks_from is not None and np.isnan(masks_from).any():
        holes = np.isnan(masks_from[rng.integers(0, len(masks_from), len(out))])
        out[holes] = np.nan
    return np.nan_to_num(out, nan=0.0)


def apply_nan_policy(real: np.ndarray, generated: np.ndarray | None, policy: str, *, seed: int = 0,
                     sources: tuple[str, str] = ("real", "generated")) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Apply ``policy`` (one of ``NAN_POLICIES``, see the module doc) to NHWC float32 sets in model units.

    ``generated`` may be None (one set, e.g. extractor training data); ``seed`` draws the real masks given to
    generated images ('fill'); ``sources`` name the two sets in errors. Returns the two arrays without NaN
    and the record ``{"nan_policy", "real": {...}, "generated": {...}}`` with, per set, ``n_images``,
    ``n_with_nan``, ``nan_fraction`` (before the policy) and ``n_kept``.
    """
    if policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy={policy!r}; expected one of {NAN_POLICIES}")
    sets = {k: v for k, v in (("real", real), ("generated", generated)) if v is not None}
    names = dict(zip(("real", "generated"), sources))
    record = {"nan_policy": policy, **{k: _nan_counts(v) for k, v in sets.items()}}
    for key in sets:
        counts = record[key]
        if policy == "error" and counts["n_with_nan"]:
            raise ValueError(f"{names[key]}: {counts['n_with_nan']} of {counts['n_images']} images hold NaN "
                             f"({counts['nan_fraction']:.2%} of the pixels); expected finite data, or "
                             "nan_policy='fill' (holes -> 0 in model units, as training) or 'drop'")
        if policy == "drop" and counts["n_with_nan"] == counts["n_images"]:
            raise ValueError(f"{names[key]}: every image holds NaN, nan_policy='drop' leaves none; "
                             "use nan_policy='fill'")
    rng = np.random.default_rng(seed)
    out = {"generated": None}
    for key, images in sets.items():
        if policy == "drop":
            out[key] = images[~np.isnan(images).reshape(len(images), -1).any(axis=1)]
        else:
            out[key] = _fill(images, real if key == "generated" else None, rng)
        record[key]["n_kept"] = int(len(out[key]))
    return out["real"], out["generated"], record


def is_hdf5_folder(source: str | Path) -> bool:
    """True for a folder holding ``*.hdf5`` / ``*.h5`` files."""
    path = Path(source)
    return path.is_dir() and any(p.suffix.lower() in HDF5_EXTENSIONS for p in path.iterdir())


def metadata_from_provenance(generated: str | Path) -> Path | None:
    """The training ``metadata.json`` beside the checkpoint named (``model_path``) by the provenance JSON of a
    samples ``.npz`` (same name, ``.json``), or None when there is no such file or checkpoint folder."""
    provenance = Path(generated).with_suffix(".json")
    if Path(generated).suffix != ".npz" or not provenance.is_file():
        return None
    try:
        model_path = json.loads(provenance.read_text()).get("model_path")
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None
    candidate = None if model_path is None else Path(model_path).parent / METADATA_NAME
    return candidate if candidate is not None and candidate.is_file() else None


def resolve_metadata(generated: str, metadata_json: str | None) -> tuple[str | None, str]:
    """The training metadata.json to use and where it came from: "given", "sample provenance"
    (:func:`metadata_from_provenance`) or "none"."""
    if metadata_json is not None:
        return metadata_json, "given"
    found = metadata_from_provenance(generated)
    return (None, "none") if found is None else (str(found), "sample provenance")


def training_geometry(real: str, metadata_json: str | None, image_size: int | None, crop: bool) -> tuple[int | None,
                                                                                                        bool]:
    """(image_size, crop) to read a real image folder with: the given ones, or, when ``image_size`` is None and
    the training ``metadata.json`` says the model was trained on an image folder, its ``image_size`` and ``crop``
    (the real scenes are then resized, or randomly cropped, exactly as training did)."""
    if image_size is not None or metadata_json is None or not Path(real).is_dir() or is_hdf5_folder(real):
        return image_size, crop
    args_dic = read_metadata(metadata_json)
    if args_dic.get("type_dataset", "image") != "image" or not args_dic.get("image_size"):
        return image_size, crop
    crop = bool(args_dic.get("crop", False))
    print(f"real={real!r}: read as in training ({metadata_json}): "
          f"{'random crops of' if crop else 'resized to'} {args_dic['image_size']} px")
    return int(args_dic["image_size"]), crop


def check_same_units(real: str, generated: str, *, metadata_known: bool, real_scaled: bool) -> None:
    """Refuse (ValueError) when one set is an HDF5 folder read in stored units (no training ``data_normalization``
    and, for the real set, no ``real_scale`` / ``real_offset``) and the other is in model units."""
    stored = {"real": is_hdf5_folder(real) and not (metadata_known or real_scaled),
              "generated": is_hdf5_folder(generated) and not metadata_known}
    if stored["real"] != stored["generated"]:
        which = "real" if stored["real"] else "generated"
        other = "generated" if stored["real"] else "real"
        raise ValueError(f"{which}={real if stored['real'] else generated!r} is an HDF5 folder read in stored units "
                         f"(e.g. rad) but {other} is in model units: the scores would compare different units; pass "
                         "metadata_json=<training metadata.json> (or real_scale / real_offset for the real set)")
