"""How stored values (pixels, radians, mm, ...) map to model values in [-1, 1] and back.

One description covers every loader: an optional dB conversion of the stored value, an
affine map of ``[low, high]`` onto ``[-1, 1]``, and optionally the (cos, sin) representation
of a wrapped phase. The description is a JSON-serialisable dict stored in ``metadata.json``
under ``data_normalization``:

``{"kind": str, "low": float, "high": float, "db": bool, "cos_sin": bool}`` plus, where they apply,
``"asinh": true`` and ``"report"`` (below).

- ``kind``: how ``low``/``high`` were chosen: ``"none"`` (identity, low=-1, high=1),
  ``"minmax"`` (dataset-wide extremes), ``"range"`` (fixed by the user), ``"image_8bit"``
  (0..255), ``"image_range"`` (dataset-wide extremes of 16-bit / float images), ``"cos_sin"``,
  ``"robust"`` (median -+ ROBUST_SIGMAS robust standard deviations, 1.4826 x the median absolute
  deviation, so that heavy tails do not set the scale).
- ``asinh``: after the affine map, u -> asinh(u) / asinh(1): [-1, 1] stays [-1, 1] (gently
  stretched) and tails are compressed logarithmically, exactly invertible (used by ``robust``).
- ``db``: the stored value ``v`` was first turned into decibels, ``10 * log10(v)`` for a power
  quantity (e.g. SAR sigma0 intensity) or ``20 * log10(v)`` for an amplitude (``"db_quantity":
  "amplitude"``, stored only with ``db``; absent = power, the behaviour of older runs); ``low``/``high``
  are then in dB. ``robust`` with ``db``: the robust range in dB, values beyond it clipped (no asinh).
- ``cos_sin``: a wrapped phase ``phi`` (radians) with C channels is represented by the 2C
  channels ``(cos phi_1..C, sin phi_1..C)``; ``low``/``high`` are unused (-1, 1).
- ``report``: what the map does to the data it was chosen on, ``{"fraction_outside",
  "fraction_clipped", "values_checked", "max_abs_model", "std_model"}``: the fraction of finite stored values
  mapped outside [-1, 1] (kept; a sampler clamping x0 to [-1, 1] could not reproduce them), the
  fraction clipped (dB data below ``low``, e.g. zero power) and the std of the model values (the data scale
  DPM-Solver's "auto" half-log-SNR range follows; absent in older runs). ``warn_outside`` warns when either
  fraction exceeds NEGLIGIBLE_FRACTION; ``default_clip`` turns sampling's x0 clamp off when data lie outside.
"""
from __future__ import annotations

import math
import typing
import warnings

import numpy as np

# The `normalization=` choices of an HDF5 folder (train.py's flag, the loaders): how low / high are chosen.
Normalization = typing.Literal["none", "minmax", "range", "robust"]
NORMALIZATIONS: tuple[str, ...] = typing.get_args(Normalization)
# Every `kind` a stored data_normalization may have: the choices above and those the image loaders set.
KINDS = (*NORMALIZATIONS, "image_8bit", "image_range", "cos_sin")
ROBUST_SIGMAS = 4.0  # robust standard deviations from the median mapped to -+1
MAD_TO_SIGMA = 1.4826  # sigma / MAD of a normal distribution
NEGLIGIBLE_FRACTION = 1e-3  # fraction of values outside [-1, 1] (or clipped) tolerated without a warning
ASINH_1 = math.asinh(1.0)
DB_FACTORS = {"power": 10.0, "amplitude": 20.0}  # dB = factor * log10(v) of a power or an amplitude quantity


def check_db_quantity(db_quantity: str) -> float:
    """The dB factor of ``db_quantity`` ("power": 10, "amplitude": 20); ValueError for other values."""
    if db_quantity not in DB_FACTORS:
        raise ValueError(f"db_quantity={db_quantity!r}; expected one of {tuple(DB_FACTORS)}")
    return DB_FACTORS[db_quantity]


def make_normalization(kind: str, low: float = -1.0, high: float = 1.0, db: bool = False,
                       cos_sin: bool = False, asinh: bool = False, report: dict | None = None,
                       db_quantity: str = "power") -> dict:
    """Build a ``data_normalization`` dict after checking it; ``low < high`` (finite floats);
    ``db_quantity`` ("power" or "amplitude") is stored with ``db`` only."""
    check_db_quantity(db_quantity)
    if kind not in KINDS:
        raise ValueError(f"data_normalization kind={kind!r}; expected one of {KINDS}")
    low, high = float(low), float(high)
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"normalisation range low={low}, high={high}; expected finite low < high")
    if asinh and (db or cos_sin):
        raise ValueError("data_normalization asinh=True with db or cos_sin; expected asinh on linear values only")
    norm = {"kind": kind, "low": low, "high": high, "db": bool(db), "cos_sin": bool(cos_sin)}
    if db:
        norm["db_quantity"] = db_quantity
    if asinh:
        norm["asinh"] = True
    if report is not None:
        norm["report"] = dict(report)
    return norm


PHASE_KEYS = ("unwrap", "wrap", "phase")  # HDF5 dataset names (key_data) holding a phase in radians


def value_unit(norm: dict | None, physical: bool = True, key_data: str | None = None) -> str:
    """The unit of values mapped back with `denormalize(x, norm)` (physical) or of model values: 'linear power'
    or 'linear amplitude' (SAR trained in dB, mapped back), 'rad' (wrapped phase as cos/sin), '8-bit level'
    (image folders, e.g. SAR amplitude PNGs), 'stored units' (HDF5 values as stored: rad for InSAR phase), or
    'model units' (the network's [-1, 1] scale, or `norm` unknown)."""
    if not physical or norm is None:
        return "model units"
    if norm.get("db"):
        return f"linear {norm.get('db_quantity', 'power')}"
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
    return make_normalization(norm["kind"], norm["low"], norm["high"], norm["db"], norm["cos_sin"],
                              norm.get("asinh", False), norm.get("report"), norm.get("db_quantity", "power"))


def db_factor(norm: dict) -> float:
    """10 (power, also when ``db_quantity`` is absent) or 20 (amplitude): dB = factor * log10(v)."""
    return DB_FACTORS[norm.get("db_quantity", "power")]


def robust_normalization(values: np.ndarray, sigmas: float = ROBUST_SIGMAS, db: bool = False,
                         db_quantity: str = "power") -> dict:
    """``robust`` normalisation of stored values (any shape, NaN ignored): [median -+ sigmas * 1.4826 MAD]
    onto [-1, 1], then asinh tail compression; with ``db`` the range is taken in dB (``db_quantity``) and
    values beyond it are clipped instead; ``report`` filled from the same values."""
    raw = np.asarray(values, dtype=np.float64).ravel()
    v = to_db(raw, DB_FACTORS[db_quantity]).astype(np.float64) if db else raw
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError("normalization='robust' found no finite value; expected finite data")
    center = float(np.median(v))
    scale = sigmas * MAD_TO_SIGMA * float(np.median(np.abs(v - center)))
    if not scale > 0:
        raise ValueError(f"normalization='robust': the median absolute deviation is 0 (more than half the values "
                         f"equal {center}); expected spread data or normalization='minmax'")
    norm = make_normalization("robust", center - scale, center + scale, db=db, asinh=not db, db_quantity=db_quantity)
    norm["report"] = range_report(raw, norm)
    return norm


def range_report(values: np.ndarray, norm: dict) -> dict:
    """``report`` of ``norm`` on stored values (any shape; non-finite values count only as dB-clipped zeros)."""
    v = np.asarray(values, dtype=np.float32).ravel()
    if norm["db"]:
        v = to_db(v, db_factor(norm))
        clipped = (v < norm["low"]) | (v > norm["high"])  # -inf (zero power) included
        x = normalize(v[np.isfinite(v)], {**norm, "db": False})
        return {"fraction_outside": 0.0, "fraction_clipped": float(clipped.mean()) if v.size else 0.0,
                "values_checked": int(v.size), "max_abs_model": float(np.abs(x).max()) if x.size else 0.0,
                "std_model": _std(np.clip(x, -1.0, 1.0))}
    v = v[np.isfinite(v)]
    x = normalize(v, norm)
    return {"fraction_outside": float((np.abs(x) > 1.0).mean()) if v.size else 0.0, "fraction_clipped": 0.0,
            "values_checked": int(v.size), "max_abs_model": float(np.abs(x).max()) if v.size else 0.0,
            "std_model": _std(x)}


def _std(x: np.ndarray) -> float | None:
    """Std of model-unit values (float64 accumulation), None for none: the data scale sampling follows."""
    return float(np.std(x, dtype=np.float64)) if x.size else None


def warn_outside(norm: dict, source: str) -> None:
    """Warn (UserWarning) when ``norm["report"]`` shows a non-negligible fraction outside [-1, 1] or clipped."""
    report = norm.get("report")
    if report is None:
        return
    out, clipped = report["fraction_outside"], report["fraction_clipped"]
    if clipped > NEGLIGIBLE_FRACTION:
        warnings.warn(f"{source}: normalization {norm['kind']!r} (dB range [{norm['low']:.4g}, {norm['high']:.4g}]) "
                      f"clips {clipped:.2%} of {report['values_checked']} values; expected a range holding the data",
                      stacklevel=2)
    if out > NEGLIGIBLE_FRACTION:
        advice = ("sampling keeps them (clip_denoised defaults off)" if norm["kind"] == "robust" else
                  "a sampler clamping x0 to [-1, 1] cannot reproduce them; use normalization='robust' or a wider "
                  "norm_range")
        warnings.warn(f"{source}: normalization {norm['kind']!r} maps {out:.2%} of {report['values_checked']} "
                      f"values outside [-1, 1] (max |x| = {report['max_abs_model']:.3g}); {advice}", stacklevel=2)


def default_clip(norm: dict | None) -> tuple[bool, str]:
    """Whether sampling should clamp x0 to [-1, 1] for data normalised by ``norm``, and why (for provenance).

    Off for ``robust`` and whenever the report shows data outside [-1, 1]; on otherwise (the original default).
    """
    if norm is None:
        return True, "no data_normalization in the model's metadata: clamp (the original default)"
    if norm["kind"] == "robust":
        return False, "robust normalisation: tails lie beyond [-1, 1] by design"
    report = norm.get("report")
    if report is not None and report["fraction_outside"] > 0:
        return False, f"{report['fraction_outside']:.3g} of the training values lie outside [-1, 1]"
    return True, f"normalisation {norm['kind']!r} maps the training values into [-1, 1]"


def to_db(v: np.ndarray, factor: float = 10.0) -> np.ndarray:
    """``factor * log10(v)`` in float32 (10: power, 20: amplitude); non-positive values become ``-inf``."""
    v = np.asarray(v, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(v > 0, factor * np.log10(np.maximum(v, np.finfo(np.float32).tiny)), -np.inf
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
        v = np.clip(to_db(v, db_factor(norm)), norm["low"], norm["high"])
    elif (norm["low"], norm["high"]) == (-1.0, 1.0) and not norm.get("asinh"):
        return v
    scale = 2.0 / (norm["high"] - norm["low"])
    u = (v - norm["low"]) * scale - 1.0
    if norm.get("asinh"):
        u = np.arcsinh(u) / ASINH_1
    return u.astype(np.float32)


def denormalize(x: np.ndarray, data_normalization: dict, channel_axis: int = -1) -> np.ndarray:
    """Model values -> physical (stored) units, float32.

    x: array in model units (e.g. NHWC samples in [-1, 1]); ``channel_axis`` matters only for
    ``cos_sin`` data, whose 2C channels become C wrapped-phase channels in radians (-pi, pi].
    dB data are mapped back to linear power (``10 ** (dB / 10)``) or amplitude (``10 ** (dB / 20)``),
    asinh-compressed values through sinh.
    """
    norm = check_normalization(data_normalization)
    x = np.asarray(x, dtype=np.float32)
    if norm["cos_sin"]:
        cos, sin = np.split(x, 2, axis=channel_axis)
        return np.arctan2(sin, cos).astype(np.float32)
    if not norm["db"] and (norm["low"], norm["high"]) == (-1.0, 1.0) and not norm.get("asinh"):
        return x
    if norm.get("asinh"):
        x = np.sinh(x.astype(np.float64) * ASINH_1)
    v = (x + 1.0) * 0.5 * (norm["high"] - norm["low"]) + norm["low"]
    if norm["db"]:
        v = 10.0 ** (v / db_factor(norm))
    return v.astype(np.float32)
