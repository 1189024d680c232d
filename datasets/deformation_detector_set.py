"""Labelled training sets for deformation detectors: noise fields + a deformation source with known parameters.

Each field = a noise sample + (with probability ``deformation_fraction``) one Mogi or Okada source
(``utils.radar.deformation``) whose parameters are drawn from the laws of ``datasets/insar_synthetic.py``
(centre uniform in the middle half of the field, depth / size / dip uniform, volume or slip log-uniform or
truncated Pareto on the stated range, Mogi sign random, Okada strike and rake uniform); the other fields
hold no source ("none", label 0, parameters NaN, clean deformation 0).

The noise is either the trained model's samples (``noise_npz``: a ``samples_*.npz`` of sample.py, model
units, mapped to radians with the ``data_normalization`` of ``metadata_json``) or the built-in generator's
atmosphere (exponential / Matern covariance, exact circulant embedding, plus white noise).

Output: ``{out_dir}/{train,val}/{split}_000.hdf5`` with keys (the loaders read them: key_data ``unwrap``,
key_class ``label``): ``unwrap`` float32 (n, H, W) noise + deformation (radians), ``deformation`` float32
(n, H, W) the clean deformation phase, ``label`` int64 (n,) 1 = source, ``source_params`` float64 (n, k)
in the columns of ``detector_set.json`` (which also records every option). Run with ``--help``.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from datasets.insar_synthetic import SOURCE_COLUMNS, circulant_embedding, deformation_phase, draw_sources  # noqa: E402
from improved_diffusion.checkpoint import read_metadata  # noqa: E402
from improved_diffusion.data_normalization import denormalize  # noqa: E402
from improved_diffusion.file_io import atomic_write, atomic_write_text  # noqa: E402
from utils.cli import run_cli  # noqa: E402
from utils.radar.spectral import spectral_fields  # noqa: E402
from utils.sampling.sample_io import read_samples_npz  # noqa: E402

SPLITS = ("train", "val")
KEYS = ["unwrap", "deformation", "label", "source_params"]


def _write_split(path: str, unwrap: np.ndarray, clean: np.ndarray, labels: np.ndarray, params: np.ndarray) -> None:
    """One split's HDF5 file: the fields (rad), their clean deformation (rad), labels and source parameters."""
    with h5py.File(path, "w") as f:
        f["unwrap"], f["deformation"] = unwrap, clean
        f["label"], f["source_params"] = labels, params


def model_noise(noise_npz: str, metadata_json: str, count: int, offset: int) -> np.ndarray:
    """Fields offset..offset+count of a samples `.npz` (NHWC, model units, one channel) in radians, (count, H, W)."""
    images, _ = read_samples_npz(noise_npz, "noise_npz")
    if images.ndim != 4 or images.shape[-1] != 1:
        raise ValueError(f"noise_npz={noise_npz!r}: samples of shape {images.shape}; expected (N, H, W, 1)")
    if offset + count > len(images):
        raise ValueError(f"noise_npz={noise_npz!r} holds {len(images)} samples; the splits need {offset + count}")
    norm = read_metadata(metadata_json).get("data_normalization")
    if norm is None:
        raise ValueError(f"metadata_json={metadata_json!r} has no data_normalization; expected the training run's")
    return denormalize(images[offset:offset + count].astype(np.float32), norm)[..., 0]


def _check(opts: dict) -> None:
    if opts["deformation_source"] not in SOURCE_COLUMNS:
        raise ValueError(f"deformation_source={opts['deformation_source']!r}; expected one of {list(SOURCE_COLUMNS)}")
    if not 0.0 <= opts["deformation_fraction"] <= 1.0:
        raise ValueError(f"deformation_fraction={opts['deformation_fraction']}; expected in [0, 1]")
    if opts["n_train"] < 1 or opts["n_val"] < 0:
        raise ValueError(f"n_train={opts['n_train']}, n_val={opts['n_val']}; expected n_train >= 1, n_val >= 0")
    if bool(opts["noise_npz"]) != bool(opts["metadata_json"]):
        raise ValueError("noise_npz and metadata_json go together (the samples and the run that made them)")


def main(
        out_dir: str = "data/deformation_detector",  # output folder (train/, val/, detector_set.json)
        n_train: int = 1000,  # training fields
        n_val: int = 200,  # validation fields
        noise_npz: str = "",  # samples .npz of a trained noise model ('' = the built-in generator's atmosphere)
        metadata_json: str = "",  # metadata.json of that model's run (maps its samples to radians)
        image_size: int = 32,  # side of the built-in generator's fields (pixels; the samples set it otherwise)
        atmo_sigma_rad: float = 1.0,  # built-in generator: std of the atmospheric screen (radians)
        atmo_length_px: float = 6.0,  # built-in generator: correlation length (pixels), exponential covariance
        noise_sigma_rad: float = 0.2,  # built-in generator: std of the white noise (radians)
        deformation_fraction: float = 0.5,  # probability that a field holds a source (label 1)
        deformation_source: str = "mogi",  # mogi (point source) or okada (rectangular fault)
        mogi_depth_px: tuple[float, float] = (3.0, 8.0),  # min,max Mogi depth (pixels), uniform
        mogi_volume_m3: tuple[float, float] = (1e3, 1e4),  # min,max |volume change| (m^3), law deformation_law
        okada_slip_m: tuple[float, float] = (0.005, 0.05),  # min,max fault slip (m), law deformation_law
        okada_size_px: tuple[float, float] = (2.0, 8.0),  # min,max fault length and width (pixels), uniform
        okada_top_depth_px: tuple[float, float] = (0.5, 4.0),  # min,max depth of the fault's top edge (pixels)
        okada_dip_deg: tuple[float, float] = (30.0, 90.0),  # min,max dip (degrees)
        deformation_law: str = "loguniform",  # law of volume / slip: loguniform or pareto
        deformation_pareto_index: float = 1.0,  # tail index of the pareto law
        seed: int = 0,  # random seed; the output is a function of the options, the noise file and the seed
        overwrite: bool = False,  # replace an existing output in out_dir
) -> dict:
    """Write the labelled set; return the description also written to detector_set.json."""
    opts = {k: (list(v) if isinstance(v, tuple) else v) for k, v in locals().items()}
    _check(opts)
    out = Path(out_dir)
    written = [out / s for s in SPLITS] + [out / "detector_set.json"]
    if any(p.exists() for p in written) and not overwrite:
        raise FileExistsError(f"out_dir={out_dir!r} already holds a detector set; pass overwrite=True to replace it")
    geometry = dict(poisson_ratio=0.25, pixel_size_m=100.0, wavelength_m=0.0555, incidence_deg=35.0,
                    look_azimuth_deg=260.0)
    rng = np.random.default_rng(seed)
    if noise_npz:
        noise = model_noise(noise_npz, metadata_json, n_train + n_val, 0)
        image_size = noise.shape[-1]
    else:
        amplitude, _ = circulant_embedding(image_size, "exponential", atmo_sigma_rad, atmo_length_px)
        noise = spectral_fields(rng, n_train + n_val, amplitude, image_size).astype(np.float32)
        noise += noise_sigma_rad * rng.standard_normal(noise.shape, dtype=np.float32)
    run = {**opts, **geometry, "image_size": image_size, "mogi_random_sign": True}
    for p in written:
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    for split, start, n in (("train", 0, n_train), ("val", n_train, n_val)):
        labels = (rng.random(n) < deformation_fraction).astype(np.int64)
        params = np.full((n, len(SOURCE_COLUMNS[deformation_source])), np.nan)
        clean = np.zeros((n, image_size, image_size), np.float32)
        has = np.flatnonzero(labels)
        if has.size:
            params[has] = draw_sources(rng, has.size, run)
            clean[has] = deformation_phase(params[has], run)
        (out / split).mkdir(parents=True)
        fields = noise[start:start + n] + clean
        arrays = (fields, clean, labels, params)
        atomic_write(out / split / f"{split}_000.hdf5", lambda tmp, arrays=arrays: _write_split(tmp, *arrays))
    info = {"generator": "datasets/deformation_detector_set.py", "params": run, "keys": KEYS,
            "source_columns": SOURCE_COLUMNS[deformation_source], "class_names": ["none", "deformation"],
            "noise": "model samples" if noise_npz else "built-in atmosphere (exponential covariance) + white noise",
            "loader_kwargs": {"type_dataset": "hdf5", "image_size": image_size, "list_keys_hdf5_original": KEYS,
                              "key_data": "unwrap", "key_class": "label"}}
    atomic_write_text(out / "detector_set.json", json.dumps(info, indent=1))
    return info


if __name__ == "__main__":
    run_cli(main)
