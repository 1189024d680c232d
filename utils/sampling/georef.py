"""Georeference of the input data carried to the samples: GeoTIFF tags and HDF5 attributes.

Read (:func:`read_georeference`) from the first GeoTIFF (tags ModelPixelScale 33550, ModelTiepoint
33922, ModelTransformation 34264, GeoKeyDirectory 34735, GeoDoubleParams 34736, GeoAsciiParams 34737,
GDAL_NODATA 42113, read with tifffile) or the first HDF5 file (its root attributes) of the training
folder. Written (:func:`write_geotiff_samples`) into one float32 GeoTIFF per sample, in physical
units when the model's ``data_normalization`` is known. A generated sample has no place on the
ground: the tags give it the input's coordinate system and the pixel spacing of the training pixels (the
input's, times min(H, W) / image_size where an image folder was resized to image_size), and the tie point of
the reference file (named in each file's ImageDescription), so GIS tools show it at the right scale.

Hook for a sampling run (``utils/sampling/run.py``), after the ``.npz`` is merged::

    georef.write_geotiff_samples(npz_path, args_dic)  # no-op (None) when the training data carry no georeference

Command line for existing samples: ``python -m utils.sampling.georef --samples ... --metadata_json ...``.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
import tifffile

from improved_diffusion.checkpoint import read_metadata
from improved_diffusion.data_normalization import denormalize, from_uint8, value_unit
from improved_diffusion.file_io import atomic_write, check_free
from improved_diffusion.hdf5_datasets import HDF5_EXTENSIONS
from improved_diffusion.image_datasets import TIFF_EXTENSIONS

# GeoTIFF tag code -> (tifffile dtype of extratags, name)
GEO_TAGS = {33550: ("d", "ModelPixelScale"), 33922: ("d", "ModelTiepoint"), 34264: ("d", "ModelTransformation"),
            34735: ("H", "GeoKeyDirectory"), 34736: ("d", "GeoDoubleParams"), 34737: ("s", "GeoAsciiParams"),
            42113: ("s", "GDAL_NODATA")}


def _first_file(source: Path, extensions: tuple[str, ...]) -> Path | None:
    if source.is_file():
        return source if source.suffix.lower() in extensions else None
    if not source.is_dir():
        return None
    return next(iter(sorted(p for p in source.rglob("*") if p.suffix.lower() in extensions)), None)


def _json_value(value):
    """A tag or attribute value as plain Python (lists, numbers, str)."""
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, bytes):
        return value.decode()
    return list(value) if isinstance(value, tuple) else value


def read_georeference(source: str | Path) -> dict | None:
    """``{"reference": file, "tiff_tags": {code: value}, "hdf5_attrs": {name: value}}`` from the first GeoTIFF
    (or, failing that, HDF5) file of ``source`` (a file or folder); None when it holds neither kind of metadata."""
    source = Path(source)
    tif = _first_file(source, TIFF_EXTENSIONS)
    if tif is not None:
        with tifffile.TiffFile(tif) as f:
            tags = {code: f.pages[0].tags[code].value for code in GEO_TAGS if code in f.pages[0].tags}
            shape = list(f.pages[0].shape[:2])  # (H, W) of a band-first or single-band page
        if tags:
            return {"reference": str(tif), "tiff_tags": {c: _json_value(v) for c, v in tags.items()},
                    "hdf5_attrs": {}, "shape_hw": shape}
    h5 = _first_file(source, HDF5_EXTENSIONS)
    if h5 is not None:
        with h5py.File(h5, "r") as f:
            attrs = {k: _json_value(v) for k, v in f.attrs.items()}
        if attrs:
            return {"reference": str(h5), "tiff_tags": {}, "hdf5_attrs": attrs}
    return None


def spacing_factor(georef: dict, args_dic: dict) -> float:
    """Ground size of a sample pixel over that of a reference pixel: an image folder trained without `crop` was
    resized so its short side is `image_size` (``image_datasets.resize_center_crop``), so each training pixel
    covers min(H, W) / image_size reference pixels; 1 for random crops, HDF5 data and non-image references."""
    shape, size = georef.get("shape_hw"), args_dic.get("image_size")
    if shape is None or not size or args_dic.get("crop") or args_dic.get("type_dataset", "image") != "image":
        return 1.0
    return min(shape) / size


def _extratags(georef: dict, factor: float = 1.0) -> list[tuple]:
    """tifffile extratags of the reference's geo tags, the pixel size multiplied by `factor`."""
    out = []
    for code, value in georef["tiff_tags"].items():
        if int(code) == 33550:  # ModelPixelScale (sx, sy, sz)
            value = [value[0] * factor, value[1] * factor, *value[2:]]
        elif int(code) == 34264:  # ModelTransformation: 4x4 row-major, pixel -> model; scale the pixel columns
            value = [v * factor if i in (0, 1, 4, 5, 8, 9) else v for i, v in enumerate(value)]
        dtype = GEO_TAGS[int(code)][0]
        count = 0 if dtype == "s" else len(value) if isinstance(value, (list, tuple)) else 1
        out.append((int(code), dtype, count, value, True))
    return out


def samples_in_physical_units(npz_path: Path, data_normalization: dict | None) -> tuple[np.ndarray, str]:
    """``arr_0`` of a samples ``.npz`` as NHWC float32 in physical units (model units when
    ``data_normalization`` is None) and the unit's name (``value_unit``)."""
    with np.load(npz_path) as data:
        images = data["arr_0"]
    x = from_uint8(images) if images.dtype == np.uint8 else images.astype(np.float32)
    if data_normalization:
        return denormalize(x, data_normalization, channel_axis=-1), value_unit(data_normalization)
    return x, value_unit(None)


def write_geotiff_samples(npz_path: str | Path, args_dic: dict, reference: str | None = None,
                          out_folder: str | Path | None = None, overwrite: bool = False) -> Path | None:
    """One GeoTIFF per sample (``{out_folder}/sample_{i:05d}.tif``, float32 (H, W) or (C, H, W), physical
    units) with the georeference of ``reference`` (default: the model's ``data_train_dir``).

    ``out_folder`` defaults to ``{npz stem}_geotiff`` beside the ``.npz``. Returns the folder, or None when
    the reference holds no georeference (nothing is written)."""
    npz_path = Path(npz_path)
    reference = reference if reference is not None else args_dic.get("data_train_dir")
    georef = None if reference is None else read_georeference(reference)
    if georef is None:
        return None
    out = Path(out_folder) if out_folder is not None else npz_path.with_name(f"{npz_path.stem}_geotiff")
    check_free([out], overwrite, key="out_folder")
    x, unit = samples_in_physical_units(npz_path, args_dic.get("data_normalization"))
    factor = spacing_factor(georef, args_dic)
    out.mkdir(parents=True, exist_ok=True)
    description = json.dumps({"unit": unit, "class_names": args_dic.get("class_names"), "samples": npz_path.name,
                              "georeference_from": georef["reference"], "hdf5_attrs": georef["hdf5_attrs"],
                              "pixel_spacing_factor": factor,
                              "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    for i, image in enumerate(x):
        planes = np.moveaxis(image, -1, 0)  # (C, H, W); one channel is written as (H, W)
        pixels = np.ascontiguousarray(planes[0] if len(planes) == 1 else planes)
        atomic_write(out / f"sample_{i:05d}.tif", lambda tmp, pixels=pixels: tifffile.imwrite(
            tmp, pixels, description=description, extratags=_extratags(georef, factor), metadata=None))
    return out


def export_geotiff(
    samples: str,                        # samples .npz (arr_0 NHWC in model units or uint8)
    metadata_json: str,                  # the model's training metadata.json (data_normalization, data_train_dir)
    reference: str | None = None,        # GeoTIFF / HDF5 file or folder to take the georeference from
    out_folder: str | None = None,       # output folder (default: {samples stem}_geotiff beside the .npz)
    overwrite: bool = False,             # replace an existing out_folder
) -> str:
    """Write the samples as georeferenced GeoTIFFs; returns the folder written."""
    if not Path(samples).is_file():
        raise FileNotFoundError(f"samples={samples!r}: no such file")
    args_dic = read_metadata(metadata_json)
    out = write_geotiff_samples(samples, args_dic, reference, out_folder, overwrite)
    if out is None:
        raise ValueError(f"reference={reference or args_dic.get('data_train_dir')!r}: no GeoTIFF geo tags nor HDF5 "
                         "attributes found; expected a GeoTIFF or HDF5 file or folder with a georeference")
    print(f"[georef] wrote {len(list(out.glob('*.tif')))} GeoTIFFs to {out}")
    return str(out)


if __name__ == "__main__":
    from utils.cli import run_cli

    run_cli(export_geotiff)
