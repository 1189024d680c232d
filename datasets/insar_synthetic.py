"""Synthetic InSAR interferograms in the original HDF5 layout, with their exact ground truth.

Each field = atmospheric phase screen (stationary Gaussian random field with an analytic
covariance, sampled exactly on the output window by circulant embedding) + optional Mogi
point-source deformation projected to the line of sight + white noise, in radians.

Output: ``{out_dir}/{train,val,test}/{split}_{k:03d}.hdf5`` with keys ``unwrap`` and ``wrap``
(float32 (n, H, W), radians) and, with ``write_labels``, ``label`` (int64 (n,), 1 = deformation);
``{out_dir}/sources_{split}.npz`` (per-field source parameters) and ``{out_dir}/ground_truth.json``
(the generating parameters, loader settings and the analytic semivariogram).

Run ``python datasets/insar_synthetic.py --help``.
"""
from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import scipy.fft
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from utils.cli import run_cli  # noqa: E402
from utils.radar.insar_truth import COVARIANCE_MODELS, covariance, semivariogram  # noqa: E402

SPLITS = ("train", "val", "test")
CHUNK_ELEMENTS = 2 ** 22  # complex torus values per FFT batch (bounds memory to ~100 MB)


def circulant_embedding(n: int, model: str, sigma: float, length: float,
                        max_padding_factor: int = 8) -> tuple[np.ndarray, dict]:
    """Spectral amplitudes ``sqrt(lambda / M)`` (m, m) of the covariance embedded on an m x m torus.

    m = 2n * k with the smallest k <= max_padding_factor whose eigenvalues are all >= 0 (then
    the covariance holds exactly on any n x n window: every in-window lag < m/2). Otherwise the
    negative eigenvalues are clipped and ``exact`` is False in the returned report.
    """
    for k in range(1, max_padding_factor + 1):
        m = 2 * n * k
        d = np.minimum(np.arange(m), m - np.arange(m)).astype(np.float64)
        lam = scipy.fft.fft2(covariance(np.hypot(d[:, None], d[None, :]), model, sigma, length)).real
        ratio = float(lam.min() / lam.max())
        if ratio >= -1e-10:
            break
    report = {"torus_size": m, "padding_factor": k, "min_eigenvalue_ratio": ratio, "exact": ratio >= -1e-10}
    return np.sqrt(np.clip(lam, 0.0, None) / lam.size), report


def gaussian_fields(rng: np.random.Generator, count: int, amplitude: np.ndarray, n: int) -> np.ndarray:
    """``count`` independent fields (count, n, n) float32 with the embedded covariance.

    y = FFT2(amplitude * xi), xi complex standard normal: Re y and Im y are independent with
    covariance C on the torus (Dietrich & Newsam 1997, circulant embedding).
    """
    pairs = (count + 1) // 2
    xi = rng.standard_normal((pairs, *amplitude.shape, 2), dtype=np.float32).view(np.complex64)[..., 0]
    y = scipy.fft.fft2(xi * amplitude.astype(np.float32), axes=(-2, -1), workers=-1)[:, :n, :n]
    return np.concatenate([y.real, y.imag])[:count].astype(np.float32)


def mogi_los_phase(n: int, x0: np.ndarray, y0: np.ndarray, depth: np.ndarray, volume: np.ndarray, *,
                   poisson_ratio: float, pixel_size_m: float, wavelength_m: float, incidence_deg: float,
                   look_azimuth_deg: float) -> np.ndarray:
    """Phase (count, n, n) float32 in radians of Mogi point sources (Mogi 1958; Segall 2010 eq. 7.14).

    u_z = (1 - nu) dV / pi * d / R^3, u_r = (1 - nu) dV / pi * r / R^3 (R^2 = r^2 + d^2), projected on
    the ground-to-satellite unit vector e = (sin th sin az, sin th cos az, cos th) (east, north, up);
    phase = -4 pi / wavelength * u_los. Positions/depths in pixels (column = east, row = south).
    """
    rows, cols = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    east = (cols[None] - x0[:, None, None]) * pixel_size_m
    north = -(rows[None] - y0[:, None, None]) * pixel_size_m
    d = (depth * pixel_size_m)[:, None, None]
    c = ((1.0 - poisson_ratio) * volume / math.pi)[:, None, None] / (east ** 2 + north ** 2 + d ** 2) ** 1.5
    th, az = math.radians(incidence_deg), math.radians(look_azimuth_deg)
    u_los = c * (east * math.sin(th) * math.sin(az) + north * math.sin(th) * math.cos(az) + d * math.cos(th))
    return (-4.0 * math.pi / wavelength_m * u_los).astype(np.float32)


def wrap_phase(phi: np.ndarray) -> np.ndarray:
    """Wrap radians into [-pi, pi)."""
    return (np.mod(phi + np.pi, 2 * np.pi) - np.pi).astype(np.float32)


def _check_options(opts: dict) -> None:
    for name in ("n_train", "n_val", "n_test"):
        if opts[name] < 0:
            raise ValueError(f"{name}={opts[name]}; expected >= 0")
    if opts["image_size"] < 4:
        raise ValueError(f"image_size={opts['image_size']}; expected >= 4")
    if opts["covariance_model"] not in COVARIANCE_MODELS:
        raise ValueError(f"covariance_model={opts['covariance_model']!r}; expected one of {COVARIANCE_MODELS}")
    for name in ("atmo_length_px", "pixel_size_m", "wavelength_m", "fields_per_file", "max_padding_factor"):
        if opts[name] <= 0:
            raise ValueError(f"{name}={opts[name]}; expected > 0")
    for name in ("atmo_sigma_rad", "noise_sigma_rad"):
        if opts[name] < 0:
            raise ValueError(f"{name}={opts[name]}; expected >= 0")
    if not 0.0 <= opts["deformation_fraction"] <= 1.0:
        raise ValueError(f"deformation_fraction={opts['deformation_fraction']}; expected in [0, 1]")
    for name in ("mogi_depth_px", "mogi_volume_m3"):
        lo_hi = opts[name]
        if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1]:
            raise ValueError(f"{name}={lo_hi}; expected two values 0 < min <= max")


def _generate_file(rng: np.random.Generator, count: int, amplitude: np.ndarray, opts: dict) -> tuple:
    """(unwrap (count, n, n), labels (count,), sources (count, 4): x0, y0, depth_px, volume_m3)."""
    n = opts["image_size"]
    unwrap = np.empty((count, n, n), np.float32)
    labels = (rng.random(count) < opts["deformation_fraction"]).astype(np.int64)
    sources = np.full((count, 4), np.nan)
    chunk = 2 * max(1, CHUNK_ELEMENTS // amplitude.size)
    for start in range(0, count, chunk):
        b = min(chunk, count - start)
        phi = gaussian_fields(rng, b, amplitude, n)
        phi += opts["noise_sigma_rad"] * rng.standard_normal(phi.shape, dtype=np.float32)
        has = np.flatnonzero(labels[start:start + b])
        if has.size:
            lo, hi = np.log(opts["mogi_volume_m3"][0]), np.log(opts["mogi_volume_m3"][1])
            src = np.stack([rng.uniform(0.25 * n, 0.75 * n, has.size), rng.uniform(0.25 * n, 0.75 * n, has.size),
                            rng.uniform(*opts["mogi_depth_px"], has.size), np.exp(rng.uniform(lo, hi, has.size))], 1)
            if opts["mogi_random_sign"]:
                src[:, 3] *= rng.choice([-1.0, 1.0], has.size)
            phi[has] += mogi_los_phase(n, *src.T, **{k: opts[k] for k in (
                "poisson_ratio", "pixel_size_m", "wavelength_m", "incidence_deg", "look_azimuth_deg")})
            sources[start + has] = src
        unwrap[start:start + b] = phi
    return unwrap, labels, sources


def _semivariogram(opts: dict, low: float, high: float) -> dict:
    """Analytic semivariogram of the unwrap key for fields without deformation."""
    lags = np.arange(opts["image_size"], dtype=np.float64)
    field = (opts["covariance_model"], opts["atmo_sigma_rad"], opts["atmo_length_px"])
    gamma = semivariogram(lags, *field)
    total = semivariogram(lags, *field, nugget=opts["noise_sigma_rad"] ** 2)
    factor = (2.0 / (high - low)) ** 2
    return {"key": "unwrap", "units": "rad^2", "applies_to": "fields without deformation (label 0)",
            "definition": "gamma(h) = 0.5 E[(phi(p + h) - phi(p))^2], h = lag in pixels (isotropic)",
            "covariance": {"model": opts["covariance_model"], "sigma_rad": opts["atmo_sigma_rad"],
                           "length_px": opts["atmo_length_px"]},
            "lags_px": lags.tolist(), "gamma_atmosphere": gamma.tolist(),
            "nugget_noise": opts["noise_sigma_rad"] ** 2, "gamma_atmosphere_plus_noise": total.tolist(),
            "model_units_factor": factor, "gamma_atmosphere_plus_noise_model_units": (total * factor).tolist()}


def main(
        out_dir: str = "data/insar_synthetic",  # output folder (train/, val/, test/, ground_truth.json, sources_*.npz)
        n_train: int = 4000,  # number of training fields
        n_val: int = 500,  # number of validation fields
        n_test: int = 500,  # number of test fields
        image_size: int = 32,  # side of each square field in pixels
        covariance_model: str = "exponential",  # atmospheric covariance, exponential or matern32
        atmo_sigma_rad: float = 1.0,  # standard deviation of the atmospheric phase screen (radians)
        atmo_length_px: float = 6.0,  # correlation length L of the covariance (pixels)
        noise_sigma_rad: float = 0.2,  # standard deviation of the white phase noise (radians)
        deformation_fraction: float = 0.5,  # probability that a field holds a Mogi deformation source
        mogi_depth_px: tuple[float, float] = (3.0, 8.0),  # min,max source depth (pixels), drawn uniformly
        mogi_volume_m3: tuple[float, float] = (1e3, 1e4),  # min,max volume change (m^3), drawn log-uniformly
        mogi_random_sign: bool = True,  # random inflation/deflation (else inflation only)
        poisson_ratio: float = 0.25,  # Poisson ratio of the elastic half-space
        pixel_size_m: float = 100.0,  # ground size of a pixel (m)
        wavelength_m: float = 0.0555,  # radar wavelength (m); 0.0555 = Sentinel-1 C band
        incidence_deg: float = 35.0,  # incidence angle of the line of sight (degrees)
        look_azimuth_deg: float = 260.0,  # azimuth of the ground-to-satellite direction, clockwise from north (degrees)
        write_labels: bool = False,  # write key 'label' (int64, 1 = deformation, 0 = none)
        fields_per_file: int = 1000,  # number of fields per HDF5 file
        max_padding_factor: int = 8,  # largest torus size, in multiples of 2 x image_size, tried for an exact embedding
        seed: int = 0,  # random seed; the output is a function of the options and the seed only
        overwrite: bool = False,  # replace an existing output of this script in out_dir
) -> dict:
    """Write synthetic InSAR interferograms (HDF5, original layout) and their ground truth JSON.

    Returns the ground-truth dict also written to ``{out_dir}/ground_truth.json``.
    """
    opts = dict(locals())
    opts["mogi_depth_px"], opts["mogi_volume_m3"] = list(mogi_depth_px), list(mogi_volume_m3)
    _check_options(opts)
    out = Path(out_dir)
    written = [out / s for s in SPLITS] + [out / "ground_truth.json"] + [out / f"sources_{s}.npz" for s in SPLITS]
    existing = [str(p) for p in written if p.exists()]
    if existing and not overwrite:
        raise ValueError(f"out_dir={out_dir!r} already holds {existing}; expected a fresh folder or overwrite=True")
    for p in written:
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)
    amplitude, embedding = circulant_embedding(image_size, covariance_model, atmo_sigma_rad, atmo_length_px,
                                               max_padding_factor)
    keys = ["unwrap", "wrap"] + (["label"] if write_labels else [])
    peak, splits = 0.0, {}
    for split_id, (split, n) in enumerate(zip(SPLITS, (n_train, n_val, n_test))):
        (out / split).mkdir(parents=True)
        files, sources = [], []
        for k, start in enumerate(tqdm(range(0, n, fields_per_file), desc=f"insar {split}")):
            rng = np.random.default_rng([seed, split_id, k])
            unwrap, labels, src = _generate_file(rng, min(fields_per_file, n - start), amplitude, opts)
            name = f"{split}_{k:03d}.hdf5"
            with h5py.File(out / split / name, "w") as f:
                f["unwrap"], f["wrap"] = unwrap, wrap_phase(unwrap)
                if write_labels:
                    f["label"] = labels
            peak = max(peak, float(np.abs(unwrap).max()))
            files.append(name)
            sources.append(np.column_stack([np.full(len(src), k), np.arange(len(src)), labels, src]))
        np.savez(out / f"sources_{split}.npz", columns=np.array(["file", "example", "label", "x0_px", "y0_px",
                                                                "depth_px", "volume_m3"]),
                 sources=np.concatenate(sources) if sources else np.zeros((0, 7)))
        splits[split] = {"folder": split, "num_fields": n, "files": files}
    half = math.ceil(peak * 10) / 10 if peak > 0 else 1.0
    truth = {
        "generator": "datasets/insar_synthetic.py", "params": opts, "embedding": embedding, "splits": splits,
        "keys": {"unwrap": "unwrapped phase (radians), float32 (n, H, W)",
                 "wrap": "wrapped phase in [-pi, pi) (radians), float32 (n, H, W)",
                 **({"label": "int64 (n,), 1 = Mogi deformation source, 0 = none"} if write_labels else {})},
        "class_names": ["none", "deformation"] if write_labels else None,
        "loader_kwargs": {"type_dataset": "hdf5", "image_size": image_size, "num_channels": 1,
                          "list_keys_hdf5_original": keys, "key_data": "unwrap",
                          "key_class": "label" if write_labels else None,
                          "normalization": "range", "norm_range": [-half, half]},
        "norm_range_wrap": [-math.pi, math.pi],
        "semivariogram": _semivariogram(opts, -half, half),
    }
    (out / "ground_truth.json").write_text(json.dumps(truth, indent=1))
    return truth


if __name__ == "__main__":
    run_cli(main)
