"""The one reader of ``ground_truth.json``, the truth file that ``datasets/insar_synthetic.py`` writes beside its data.

Schema (version ``SCHEMA_VERSION``; a file without ``schema_version`` is one of the current generator's, version 1).
Readers may rely on the keys of ``REQUIRED`` (dotted paths into the JSON object, with their JSON types):
- ``params``: the generator's options (image_size in px, atmo_sigma_rad / noise_sigma_rad / turbulence_sigma_rad /
  ramp_sigma_rad in radians, atmo_length_px / turbulence_break_px in px, covariance_model, turbulence_slopes);
- ``loader_kwargs``: the training loader's keywords for the data (key_data, key_class, normalization, ...);
- ``semivariogram``: axis semivariograms in rad^2 per integer lag ``lags_px`` (0 .. image_size - 1): ``gamma_total``
  of fields without deformation (exact), ``covariance`` and ``nugget_noise`` of the screen, and, when the data
  hold deformation, ``gamma_mixture`` with its Monte-Carlo standard error ``gamma_mixture_se``;
- ``components.masks.expected_masked_fraction``: expected fraction of NaN pixels over all fields.
The writer adds further description (``keys``, ``splits``, ``embedding``, per-component laws) that no reader needs.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

GROUND_TRUTH_NAME = "ground_truth.json"
SCHEMA_VERSION = 1

_NUMBER = (int, float)
REQUIRED: dict[str, tuple] = {
    "params.image_size": (int,),
    "params.covariance_model": (str,),
    "params.atmo_sigma_rad": _NUMBER,
    "params.atmo_length_px": _NUMBER,
    "params.noise_sigma_rad": _NUMBER,
    "params.turbulence_sigma_rad": _NUMBER,
    "params.turbulence_slopes": (list,),
    "params.turbulence_break_px": _NUMBER,
    "params.ramp_sigma_rad": _NUMBER,
    "loader_kwargs.key_data": (str,),
    "loader_kwargs.key_class": (str, type(None)),
    "semivariogram.key": (str,),
    "semivariogram.lags_px": (list,),
    "semivariogram.gamma_total": (list,),
    "semivariogram.covariance": (dict,),
    "semivariogram.nugget_noise": _NUMBER,
    "components.masks.expected_masked_fraction": _NUMBER,
}


def _lookup(data: dict, dotted: str):
    """The value at a dotted key path; KeyError when a step is missing or not an object."""
    value = data
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(dotted)
        value = value[part]
    return value


def check_ground_truth(truth: dict, source: str = "ground truth") -> dict:
    """`truth` with ``schema_version`` set, after checking the schema; ValueError naming `source` and the key."""
    version = truth.get("schema_version", SCHEMA_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= SCHEMA_VERSION:
        raise ValueError(f"{source}: schema_version {version!r} is not supported; expected 1 .. {SCHEMA_VERSION} "
                         "(written by datasets/insar_synthetic.py of this code)")
    for dotted, types in REQUIRED.items():
        try:
            value = _lookup(truth, dotted)
        except KeyError:
            raise ValueError(f"{source}: key {dotted!r} is missing; expected the layout datasets/insar_synthetic.py "
                             "writes (regenerate the data)") from None
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            expected = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise ValueError(f"{source}: key {dotted!r} is {type(value).__name__} {value!r:.40}; expected {expected}")
    sv = truth["semivariogram"]
    if ("gamma_mixture" in sv) != ("gamma_mixture_se" in sv):
        raise ValueError(f"{source}: semivariogram holds only one of 'gamma_mixture' and 'gamma_mixture_se'; "
                         "expected both (data with deformation) or neither")
    return {**truth, "schema_version": version}


def read_ground_truth(path: str | os.PathLike) -> dict:
    """The checked truth dict of a ``ground_truth.json``; FileNotFoundError / ValueError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ground truth file at {path}; expected the {GROUND_TRUTH_NAME} written by "
                                "datasets/insar_synthetic.py beside its data")
    try:
        truth = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a UTF-8 JSON file ({err}); expected the {GROUND_TRUTH_NAME} written by "
                         "datasets/insar_synthetic.py") from None
    if not isinstance(truth, dict):
        raise ValueError(f"{path}: holds a JSON {type(truth).__name__}; expected an object")
    return check_ground_truth(truth, str(path))


def expected_semivariogram(truth: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lags (L,) px, gamma (L,) rad^2, SE (L,) rad^2) float64 that the data follow: the Monte-Carlo mixture with
    its SE when the data hold deformation, else the exact total of the deformation-free fields (SE 0)."""
    sv = truth["semivariogram"]
    lags = np.asarray(sv["lags_px"], dtype=np.float64)
    if "gamma_mixture" in sv:
        return lags, np.asarray(sv["gamma_mixture"], dtype=np.float64), np.asarray(sv["gamma_mixture_se"],
                                                                                    dtype=np.float64)
    gamma = np.asarray(sv["gamma_total"], dtype=np.float64)
    return lags, gamma, np.zeros_like(gamma)


def screen_only(truth: dict) -> bool:
    """True when the fields are the atmospheric screen plus white noise only (no deformation, turbulence or
    ramps): their semivariogram then has the closed form of ``utils.radar.insar_truth.semivariogram``."""
    p = truth["params"]
    return "gamma_mixture" not in truth["semivariogram"] and p["turbulence_sigma_rad"] <= 0 and p["ramp_sigma_rad"] <= 0
