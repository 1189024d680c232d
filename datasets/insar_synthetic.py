"""Synthetic InSAR interferograms in the original HDF5 layout, with their exact ground truth.

Each field is a sum of independent, individually switchable components, in radians: an atmospheric
phase screen (stationary Gaussian random field with an analytic covariance, sampled exactly on the
output window by circulant embedding) + white noise + optional power-law turbulence (exact on the
periodic field, ``utils.radar.turbulence``) + optional orbital ramps (``utils.radar.ramps``) + optional
Mogi point sources projected to the line of sight in a fraction of fields, with log-uniform or
truncated-Pareto volumes (``utils.radar.deformation``); optional correlated NaN decorrelation masks
(``utils.radar.masks``) blank pixels of a fraction of fields in both products.

Output: ``{out_dir}/{train,val,test}/{split}_{k:03d}.hdf5`` with keys ``unwrap`` and ``wrap``
(float32 (n, H, W), radians) and, with ``write_labels``, ``label`` (int64 (n,), 1 = deformation);
``{out_dir}/sources_{split}.npz`` (per-field source parameters) and ``{out_dir}/ground_truth.json``
(the generating parameters, loader settings, the exact semivariogram and spectrum of every
component, and a Monte-Carlo reference with standard errors for the deformation part; schema and reader:
``utils/radar/ground_truth.py``).

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
from improved_diffusion.file_io import atomic_write, atomic_write_text  # noqa: E402
from utils.cli import run_cli  # noqa: E402
from utils.radar.deformation import MAGNITUDE_LAWS, draw_magnitudes, mogi_los_phase, okada_los_phase  # noqa: E402
from utils.radar.ground_truth import GROUND_TRUTH_NAME, SCHEMA_VERSION  # noqa: E402
from utils.radar.insar_truth import COVARIANCE_MODELS, covariance, semivariogram  # noqa: E402
from utils.radar.masks import correlated_masks  # noqa: E402
from utils.radar.ramps import ramp_fields, ramp_semivariogram  # noqa: E402
from utils.radar.spectral import axis_semivariogram_fields, spectral_fields  # noqa: E402
from utils.radar.turbulence import power_law_variances, turbulence_truth  # noqa: E402

SOURCES = ("mogi", "okada")
SOURCE_COLUMNS = {"mogi": ["x0_px", "y0_px", "depth_px", "volume_m3"],
                  "okada": ["x0_px", "y0_px", "top_depth_px", "length_px", "width_px", "strike_deg", "dip_deg",
                            "rake_deg", "slip_m"]}
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
        ratio = float(lam.min() / lam.max()) if lam.max() > 0 else 0.0  # sigma = 0: a zero screen, exact at once
        if ratio >= -1e-10:
            break
    report = {"torus_size": m, "padding_factor": k, "min_eigenvalue_ratio": ratio, "exact": ratio >= -1e-10}
    return np.sqrt(np.clip(lam, 0.0, None) / lam.size), report


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
    for name in ("mogi_depth_px", "mogi_volume_m3", "okada_size_px", "okada_top_depth_px", "okada_slip_m"):
        lo_hi = opts[name]
        if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1]:
            raise ValueError(f"{name}={lo_hi}; expected two values 0 < min <= max")


def _check_components(opts: dict) -> None:
    """Options of the v2 components (turbulence, ramps, heavy-tailed volumes, masks, Monte-Carlo truth)."""
    for name in ("turbulence_sigma_rad", "ramp_sigma_rad"):
        if opts[name] < 0:
            raise ValueError(f"{name}={opts[name]}; expected >= 0")
    for name in ("turbulence_break_px", "mask_length_px", "deformation_pareto_index"):
        if opts[name] <= 0:
            raise ValueError(f"{name}={opts[name]}; expected > 0")
    if len(opts["turbulence_slopes"]) != 2:
        raise ValueError(f"turbulence_slopes={opts['turbulence_slopes']}; expected two exponents (long, short)")
    if opts["deformation_source"] not in SOURCES:
        raise ValueError(f"deformation_source={opts['deformation_source']!r}; expected one of {SOURCES}")
    if len(opts["okada_dip_deg"]) != 2 or not 0 <= opts["okada_dip_deg"][0] <= opts["okada_dip_deg"][1] <= 90:
        raise ValueError(f"okada_dip_deg={opts['okada_dip_deg']}; expected two angles 0 <= min <= max <= 90")
    if opts["deformation_law"] not in MAGNITUDE_LAWS:
        raise ValueError(f"deformation_law={opts['deformation_law']!r}; "
                         f"expected one of {MAGNITUDE_LAWS}")
    for name in ("mask_fraction", "mask_coverage"):
        if not 0.0 <= opts[name] <= 1.0:
            raise ValueError(f"{name}={opts[name]}; expected in [0, 1]")
    if opts["truth_monte_carlo_fields"] < 0:
        raise ValueError(f"truth_monte_carlo_fields={opts['truth_monte_carlo_fields']}; expected >= 0")


def draw_sources(rng: np.random.Generator, count: int, opts: dict) -> np.ndarray:
    """Source parameters (count, len(SOURCE_COLUMNS[source])) from the stated laws: Mogi x0_px, y0_px,
    depth_px, signed volume_m3; Okada x0_px, y0_px, top_depth_px, length_px, width_px, strike_deg (uniform
    in [0, 360)), dip_deg, rake_deg (uniform in [0, 360)), slip_m."""
    n = opts["image_size"]
    if opts["deformation_source"] == "okada":
        return np.stack([rng.uniform(0.25 * n, 0.75 * n, count), rng.uniform(0.25 * n, 0.75 * n, count),
                         rng.uniform(*opts["okada_top_depth_px"], count), rng.uniform(*opts["okada_size_px"], count),
                         rng.uniform(*opts["okada_size_px"], count), rng.uniform(0.0, 360.0, count),
                         rng.uniform(*opts["okada_dip_deg"], count), rng.uniform(0.0, 360.0, count),
                         draw_magnitudes(rng, count, *opts["okada_slip_m"], opts["deformation_law"],
                                         opts["deformation_pareto_index"])], 1)
    src = np.stack([rng.uniform(0.25 * n, 0.75 * n, count), rng.uniform(0.25 * n, 0.75 * n, count),
                    rng.uniform(*opts["mogi_depth_px"], count),
                    draw_magnitudes(rng, count, *opts["mogi_volume_m3"], opts["deformation_law"],
                                 opts["deformation_pareto_index"])], 1)
    if opts["mogi_random_sign"]:
        src[:, 3] *= rng.choice([-1.0, 1.0], count)
    return src


def deformation_phase(src: np.ndarray, opts: dict) -> np.ndarray:
    """LOS phase (count, n, n) float32 (radians) of the sources ``src`` from ``draw_sources``."""
    geometry = {k: opts[k] for k in ("poisson_ratio", "pixel_size_m", "wavelength_m", "incidence_deg",
                                     "look_azimuth_deg")}
    if opts["deformation_source"] == "okada":
        return okada_los_phase(opts["image_size"], src, **geometry)
    return mogi_los_phase(opts["image_size"], *src.T, **geometry)


def _write_fields(path: str, unwrap: np.ndarray, labels: np.ndarray | None) -> None:
    """One HDF5 file of the generator: unwrapped and wrapped phase (rad), and the labels when asked for."""
    with h5py.File(path, "w") as f:
        f["unwrap"], f["wrap"] = unwrap, wrap_phase(unwrap)
        if labels is not None:
            f["label"] = labels


def _write_npz(path: str, **arrays: np.ndarray) -> None:
    """`np.savez` to an open file, so the name keeps no added '.npz' (atomic_write's temporary path)."""
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _generate_file(rng: np.random.Generator, streams: list[np.random.Generator], count: int, amplitude: np.ndarray,
                   opts: dict) -> tuple:
    """(unwrap (count, n, n) with NaN where masked, labels (count,), sources (count, k) as in SOURCE_COLUMNS,
    extra (count, 3): ramp gradients g_row, g_col (rad/px), masked fraction).

    ``rng`` drives the screen, noise and sources (as in v1); ``streams`` (turbulence, ramps, masks) the
    v2 components, each used only when its component is on.
    """
    n = opts["image_size"]
    unwrap = np.empty((count, n, n), np.float32)
    labels = (rng.random(count) < opts["deformation_fraction"]).astype(np.int64)
    sources = np.full((count, len(SOURCE_COLUMNS[opts["deformation_source"]])), np.nan)
    extra = np.zeros((count, 3))
    turbulence = np.sqrt(opts["turbulence_variances"])
    chunk = 2 * max(1, CHUNK_ELEMENTS // amplitude.size)
    for start in range(0, count, chunk):
        b = min(chunk, count - start)
        phi = spectral_fields(rng, b, amplitude, n)
        phi += opts["noise_sigma_rad"] * rng.standard_normal(phi.shape, dtype=np.float32)
        has = np.flatnonzero(labels[start:start + b])
        if has.size:
            src = draw_sources(rng, has.size, opts)
            phi[has] += deformation_phase(src, opts)
            sources[start + has] = src
        if opts["turbulence_sigma_rad"] > 0:
            phi += spectral_fields(streams[0], b, turbulence, n)
        if opts["ramp_sigma_rad"] > 0:
            ramps, extra[start:start + b, :2] = ramp_fields(streams[1], b, n, opts["ramp_sigma_rad"])
            phi += ramps
        unwrap[start:start + b] = phi
    if opts["mask_fraction"] > 0:
        masked = np.flatnonzero(streams[2].random(count) < opts["mask_fraction"])
        masks = correlated_masks(streams[2], masked.size, n, opts["mask_coverage"], opts["mask_length_px"])
        unwrap[masked] = np.where(masks, np.nan, unwrap[masked])
        extra[masked, 2] = masks.mean(axis=(1, 2))
    return unwrap, labels, sources, extra


def _monte_carlo_deformation(opts: dict) -> dict | None:
    """Deformation-only reference: per-field axis semivariogram and max |phase| of ``truth_monte_carlo_fields``
    fields with one source each (own seed stream), as means with standard errors (std / sqrt(N))."""
    count, n = opts["truth_monte_carlo_fields"], opts["image_size"]
    if count < 2 or opts["deformation_fraction"] == 0:
        return None
    rng = np.random.default_rng([opts["seed"], len(SPLITS)])
    gammas, peaks = [], []
    for start in range(0, count, 1000):
        phi = deformation_phase(draw_sources(rng, min(1000, count - start), opts), opts)
        gammas.append(axis_semivariogram_fields(phi, n - 1))
        peaks.append(np.abs(phi).max(axis=(1, 2)))
    gamma, peak = np.concatenate(gammas), np.concatenate(peaks).astype(np.float64)
    se = lambda a: a.std(axis=0, ddof=1) / math.sqrt(count)  # noqa: E731
    return {"num_fields": count, "seed_stream": [opts["seed"], len(SPLITS)],
            "gamma_mean": [0.0, *gamma.mean(axis=0).tolist()], "gamma_se": [0.0, *se(gamma).tolist()],
            "max_abs_rad_mean": float(peak.mean()), "max_abs_rad_se": float(se(peak)),
            "max_abs_rad_quantiles": {str(q): float(np.quantile(peak, q)) for q in (0.5, 0.9, 0.99)}}


def _semivariogram(opts: dict, low: float, high: float, monte_carlo: dict | None) -> dict:
    """Semivariogram of the unwrap key: exact for fields without deformation, plus the Monte-Carlo mixture."""
    lags = np.arange(opts["image_size"], dtype=np.float64)
    field = (opts["covariance_model"], opts["atmo_sigma_rad"], opts["atmo_length_px"])
    gamma = semivariogram(lags, *field)
    total = semivariogram(lags, *field, nugget=opts["noise_sigma_rad"] ** 2)
    turbulence = np.array(opts["turbulence_truth"]["gamma"])
    ramps = ramp_semivariogram(lags, opts["image_size"], opts["ramp_sigma_rad"])
    background = total + turbulence + ramps
    factor = (2.0 / (high - low)) ** 2
    out = {"key": "unwrap", "units": "rad^2", "applies_to": "fields without deformation (label 0)",
           "definition": "gamma(h) = 0.5 E[(phi(p + h) - phi(p))^2], h = lag in pixels along rows and columns "
                         "(the screen and the ramps are isotropic)",
           "covariance": {"model": opts["covariance_model"], "sigma_rad": opts["atmo_sigma_rad"],
                          "length_px": opts["atmo_length_px"]},
           "lags_px": lags.tolist(), "gamma_atmosphere": gamma.tolist(),
           "nugget_noise": opts["noise_sigma_rad"] ** 2, "gamma_atmosphere_plus_noise": total.tolist(),
           "model_units_factor": factor, "gamma_atmosphere_plus_noise_model_units": (total * factor).tolist(),
           "gamma_turbulence": turbulence.tolist(), "gamma_ramps": ramps.tolist(),
           "gamma_total": background.tolist(), "gamma_total_model_units": (background * factor).tolist()}
    if monte_carlo is not None:
        p = opts["deformation_fraction"]
        mixture = background + p * np.array(monte_carlo["gamma_mean"])
        out.update({"gamma_mixture": mixture.tolist(),
                    "gamma_mixture_se": (p * np.array(monte_carlo["gamma_se"])).tolist(),
                    "gamma_mixture_applies_to": "all fields (deformation in a fraction deformation_fraction), "
                                                "from the Monte-Carlo deformation reference"})
    return out


def _components(opts: dict, monte_carlo: dict | None) -> dict:
    """Per-component truth for ground_truth.json (radians, pixels)."""
    n = opts["image_size"]
    return {
        "turbulence": {"enabled": opts["turbulence_sigma_rad"] > 0, **opts["turbulence_truth"]},
        "ramps": {"enabled": opts["ramp_sigma_rad"] > 0, "sigma_rad": opts["ramp_sigma_rad"],
                  "gradient_sd_rad_per_px": opts["ramp_sigma_rad"] / n,
                  "law": "g_row, g_col ~ N(0, (sigma / n)^2) independent; plane through the field centre",
                  "gamma": "0.5 (sigma / n)^2 h^2"},
        "deformation": {"enabled": opts["deformation_fraction"] > 0, "fraction": opts["deformation_fraction"],
                        "source": opts["deformation_source"], "strength_law": opts["deformation_law"],
                        "pareto_index": opts["deformation_pareto_index"], "position_px_uniform": [0.25 * n, 0.75 * n],
                        **({"slip_m": opts["okada_slip_m"], "size_px_uniform": opts["okada_size_px"],
                            "top_depth_px_uniform": opts["okada_top_depth_px"],
                            "dip_deg_uniform": opts["okada_dip_deg"],
                            "strike_deg_uniform": [0.0, 360.0], "rake_deg_uniform": [0.0, 360.0]}
                           if opts["deformation_source"] == "okada" else
                           {"volume_m3": opts["mogi_volume_m3"], "depth_px_uniform": opts["mogi_depth_px"],
                            "random_sign": opts["mogi_random_sign"]}),
                        "monte_carlo": monte_carlo},
        "masks": {"enabled": opts["mask_fraction"] > 0, "fraction_fields": opts["mask_fraction"],
                  "coverage": opts["mask_coverage"], "length_px": opts["mask_length_px"],
                  "expected_masked_fraction": opts["mask_fraction"] * opts["mask_coverage"],
                  "law": "excursion set g > Phi^-1(1 - coverage) of a unit Gaussian field, covariance "
                         "exp(-r^2 / (2 L^2)), periodic"},
    }


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
        deformation_fraction: float = 0.5,  # probability that a field holds a deformation source
        deformation_source: str = "mogi",  # mogi (point source) or okada (rectangular fault, Okada 1985)
        mogi_depth_px: tuple[float, float] = (3.0, 8.0),  # min,max source depth (pixels), drawn uniformly
        mogi_volume_m3: tuple[float, float] = (1e3, 1e4),  # min,max volume change (m^3), law deformation_law
        okada_slip_m: tuple[float, float] = (0.005, 0.05),  # min,max fault slip (m), law deformation_law
        okada_size_px: tuple[float, float] = (2.0, 8.0),  # min,max fault length and width (pixels), uniform
        okada_top_depth_px: tuple[float, float] = (0.5, 4.0),  # min,max depth of the fault's top edge (pixels)
        okada_dip_deg: tuple[float, float] = (30.0, 90.0),  # min,max dip (degrees); strike and rake uniform
        deformation_law: str = "loguniform",  # law of the volume / slip: loguniform or pareto (truncated power law)
        deformation_pareto_index: float = 1.0,  # tail index alpha of the pareto law, P(V > v) ~ v^-alpha
        mogi_random_sign: bool = True,  # random inflation/deflation (else inflation only)
        poisson_ratio: float = 0.25,  # Poisson ratio of the elastic half-space
        pixel_size_m: float = 100.0,  # ground size of a pixel (m)
        wavelength_m: float = 0.0555,  # radar wavelength (m); 0.0555 = Sentinel-1 C band
        incidence_deg: float = 35.0,  # incidence angle of the line of sight (degrees)
        look_azimuth_deg: float = 260.0,  # azimuth of the ground-to-satellite direction, clockwise from north (degrees)
        turbulence_sigma_rad: float = 0.0,  # standard deviation of the power-law turbulence (radians); 0 = off
        turbulence_slopes: tuple[float, float] = (-5 / 3, -8 / 3),  # PSD exponents, wavelengths above,below break
        turbulence_break_px: float = 8.0,  # wavelength (pixels) where the turbulence spectrum changes slope
        ramp_sigma_rad: float = 0.0,  # std of the orbital ramp's phase change across the field per axis (radians)
        mask_fraction: float = 0.0,  # probability that a field gets a correlated NaN decorrelation mask
        mask_coverage: float = 0.2,  # probability that a pixel of a masked field is NaN
        mask_length_px: float = 3.0,  # correlation length of the mask blobs (pixels)
        truth_monte_carlo_fields: int = 10000,  # deformation-only fields of the Monte-Carlo truth reference
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
    opts["turbulence_slopes"] = list(turbulence_slopes)
    for name in ("okada_slip_m", "okada_size_px", "okada_top_depth_px", "okada_dip_deg"):
        opts[name] = list(opts[name])
    _check_options(opts)
    _check_components(opts)
    out = Path(out_dir)
    written = [out / s for s in SPLITS] + [out / GROUND_TRUTH_NAME] + [out / f"sources_{s}.npz" for s in SPLITS]
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
    law = (image_size, turbulence_sigma_rad, turbulence_slopes, turbulence_break_px)
    run = {**opts, "turbulence_variances": power_law_variances(*law),
           "turbulence_truth": turbulence_truth(*law) if turbulence_sigma_rad > 0 else {"gamma": [0.0] * image_size}}
    keys = ["unwrap", "wrap"] + (["label"] if write_labels else [])
    columns = ["file", "example", "label", *SOURCE_COLUMNS[deformation_source]]
    with_extra = ramp_sigma_rad > 0 or mask_fraction > 0
    columns += ["ramp_g_row_rad_per_px", "ramp_g_col_rad_per_px", "masked_fraction"] * with_extra
    peak, splits = 0.0, {}
    for split_id, (split, n) in enumerate(zip(SPLITS, (n_train, n_val, n_test))):
        (out / split).mkdir(parents=True)
        files, sources = [], []
        for k, start in enumerate(tqdm(range(0, n, fields_per_file), desc=f"insar {split}")):
            rng = np.random.default_rng([seed, split_id, k])
            streams = [np.random.default_rng([seed, split_id, k, component]) for component in (1, 2, 3)]
            unwrap, labels, src, extra = _generate_file(rng, streams, min(fields_per_file, n - start), amplitude, run)
            name = f"{split}_{k:03d}.hdf5"
            atomic_write(out / split / name, lambda tmp, unwrap=unwrap, labels=labels: _write_fields(
                tmp, unwrap, labels if write_labels else None))
            peak = max(peak, float(np.nanmax(np.abs(unwrap))))
            files.append(name)
            sources.append(np.column_stack([np.full(len(src), k), np.arange(len(src)), labels, src,
                                            *([extra] if with_extra else [])]))
        table = np.concatenate(sources) if sources else np.zeros((0, len(columns)))
        atomic_write(out / f"sources_{split}.npz", lambda tmp, table=table: _write_npz(
            tmp, columns=np.array(columns), sources=table))
        splits[split] = {"folder": split, "num_fields": n, "files": files}
    half = math.ceil(peak * 10) / 10 if peak > 0 else 1.0
    monte_carlo = _monte_carlo_deformation(opts)
    truth = {
        "schema_version": SCHEMA_VERSION, "generator": "datasets/insar_synthetic.py", "params": opts,
        "embedding": embedding, "splits": splits,
        "keys": {"unwrap": "unwrapped phase (radians), float32 (n, H, W)",
                 "wrap": "wrapped phase in [-pi, pi) (radians), float32 (n, H, W)",
                 **({"masks": "NaN in unwrap and wrap = decorrelated pixel"} if mask_fraction > 0 else {}),
                 **({"label": f"int64 (n,), 1 = {deformation_source.capitalize()} deformation source, 0 = none"}
                    if write_labels else {})},
        "class_names": ["none", "deformation"] if write_labels else None,
        "loader_kwargs": {"type_dataset": "hdf5", "image_size": image_size, "num_channels": 1,
                          "list_keys_hdf5_original": keys, "key_data": "unwrap",
                          "key_class": "label" if write_labels else None,
                          "normalization": "range", "norm_range": [-half, half],
                          **({"nan_policy": "fill"} if mask_fraction > 0 else {})},
        "norm_range_wrap": [-math.pi, math.pi],
        "semivariogram": _semivariogram(run, -half, half, monte_carlo),
        "components": _components(run, monte_carlo),
    }
    atomic_write_text(out / GROUND_TRUTH_NAME, json.dumps(truth, indent=1))
    return truth


if __name__ == "__main__":
    run_cli(main)
