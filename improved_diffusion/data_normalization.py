"""How stored values (pixels, radians, mm, ...) map to model values in [-1, 1] and back.

One description covers every loader: an optional dB conversion of the stored value, an
affine map of ``[low, high]`` onto ``[-1, 1]``, and optionally the (cos, sin) representation
of a wrapped phase. The description is a JSON-serialisable dict stored in ``metadata.json``
under ``data_normalization``:

``{"kind": str, "low": float, "high": float, "db": bool, "cos_sin": bool}``

- ``kind``: how ``low``/``high`` were chosen: ``"none"`` (identity, low=-1, high=1),
  ``"minmax"`` (dataset-wide extremes), ``"range"`` (fixed by the user), ``"image_8bit"``
  (0..255), ``"image_range"`` (dataset-wide extremes of 16-bit / float images), ``"cos_sin"``.
- ``db``: the stored value ``v`` was first turned into ``10 * log10(v)`` (power quantity, e.g.
  SAR sigma0 intensity); ``low``/``high`` are then in dB.
- ``cos_sin``: a wrapped phase ``phi`` (radians) with C channels is represented by the 2C
  channels ``(cos phi_1..C, sin phi_1..C)``; ``low``/``high`` are unused (-1, 1).
"""
from __future__ import annotations

import numpy as np

KINDS = ("none", "minmax", "range", "image_8bit", "image_range", "cos_sin")


def make_normalization(kind: str, low: float = -1.0, high: float = 1.0, db: bool = False,
                       cos_sin: bool = False) -> dict:
    """Build a ``data_normalization`` dict after checking it; ``low < high`` (finite floats)."""
    if kind not in KINDS:
        raise ValueError(f"data_normalization kind={kind!r}; expected one of {KINDS}")
    low, high = float(low), float(high)
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"normalisation range low={low}, high={high}; expected finite low < high")
    return {"kind": kind, "low": low, "high": high, "db": bool(db), "cos_sin": bool(cos_sin)}


PHASE_KEYS = ("unwrap", "wrap", "phase")  # HDF5 dataset names (key_data) holding a phase in radians


def value_unit(norm: dict | None, physical: bool = True, key_data: str | None = None) -> str:
    """The unit of values mapped back with `denormalize(x, norm)` (physical) or of model values: 'linear power'
    (SAR trained in dB, mapped back to power), 'rad' (wrapped phase as cos/sin), '8-bit level' (image folders,
    e.g. SAR amplitude PNGs), 'stored units' (HDF5 values as stored: rad for InSAR phase), or 'model units'
    (the network's [-1, 1] scale, or `norm` unknown)."""
    if not physical or norm is None:
        return "model units"
    if norm.get("db"):
        return "linear power"
    if norm.get("cos_sin") or (key_data or "").lower() in PHASE_KEYS:
        return "rad"
    if norm.get("kind") == "image_8bit":
        return "8-bit level"
    return "image value" if norm.get("kind") == "image_range" else "stored units"


def check_normalization(norm: dict) -> dict:
    """Validate a ``data_normalization`` dict read back from metadata (returns a clean copy)."""
    missing = [k for k in ("kind", "low", "high", "db", "cos_sin") if k not in norm]
    if missing:
        raise ValueError(f"data_normalization {norm!r} lacks the keys {missing}")
    return make_normalization(norm["kind"], norm["low"], norm["high"], norm["db"], norm["cos_sin"])


def to_db(v: np.ndarray) -> np.ndarray:
    """``10 * log10(v)`` in float32; non-positive values become ``-inf``."""
    v = np.asarray(v, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(v > 0, 10.0 * np.log10(np.maximum(v, np.finfo(np.float32).tiny)), -np.inf
                        ).astype(np.float32)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Model units [-1, 1] -> uint8 as the original: (x + 1) * 127.5, clamped to [0, 255], truncated."""
    return np.clip((x.astype(np.float32) + 1) * 127.5, 0, 255).astype(np.uint8)


def from_uint8(a: np.ndarray) -> np.ndarray:
    """uint8 levels 0..255 (e.g. 8-bit samples) -> model units [-1, 1] as float32: a / 127.5 - 1."""
    return a.astype(np.float32) / 127.5 - 1


def normalize(v: np.ndarray, norm: dict, channel_axis: int = -1) -> np.ndarray:
    """Stored values -> model values (float32). With ``cos_sin`` the channel axis doubles."""
    v = np.asarray(v, dtype=np.float32)
    if norm["cos_sin"]:
        return np.concatenate([np.cos(v), np.sin(v)], axis=channel_axis).astype(np.float32)
    if norm["db"]:
        v = np.clip(to_db(v), norm["low"], norm["high"])
    elif (norm["low"], norm["high"]) == (-1.0, 1.0):
        return v
    scale = 2.0 / (norm["high"] - norm["low"])
    return ((v - norm["low"]) * scale - 1.0).astype(np.float32)


def denormalize(x: np.ndarray, data_normalization: dict, channel_axis: int = -1) -> np.ndarray:
    """Model values -> physical (stored) units, float32.

    x: array in model units (e.g. NHWC samples in [-1, 1]); ``channel_axis`` matters only for
    ``cos_sin`` data, whose 2C channels become C wrapped-phase channels in radians (-pi, pi].
    dB data are mapped back to linear power (``10 ** (dB / 10)``).
    """
    norm = check_normalization(data_normalization)
    x = np.asarray(x, dtype=np.float32)
    if norm["cos_sin"]:
        cos, sin = np.split(x, 2, axis=channel_axis)
        return np.arctan2(sin, cos).astype(np.float32)
    if not norm["db"] and (norm["low"], norm["high"]) == (-1.0, 1.0):
        return x
    v = (x + 1.0) * 0.5 * (norm["high"] - norm["low"]) + norm["low"]
    if norm["db"]:
        v = 10.0 ** (v / 10.0)
    return v.astype(np.float32)
