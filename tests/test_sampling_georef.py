"""Georeference of the input GeoTIFFs carried into written sample GeoTIFFs; the HDF5 export's attributes."""
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
import tifffile

from utils.sampling import sample_io
from utils.sampling.georef import read_georeference, write_geotiff_samples

# a UTM zone 33N (EPSG:32633) projected grid of 10 m pixels, as GDAL writes it
GEOKEYS = (1, 1, 0, 4, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32633, 3076, 0, 1, 9001)
PIXEL_SCALE = (10.0, 10.0, 0.0)
TIEPOINT = (0.0, 0.0, 0.0, 500000.0, 4649776.0, 0.0)


def _geotiff(path, values):
    tifffile.imwrite(path, values, extratags=[(34735, "H", len(GEOKEYS), GEOKEYS, True),
                                              (33550, "d", 3, PIXEL_SCALE, True),
                                              (33922, "d", 6, TIEPOINT, True),
                                              (34737, "s", 0, "WGS 84 / UTM zone 33N|", True)])


@pytest.fixture
def run(tmp_path):
    data = tmp_path / "sar"
    data.mkdir()
    for i in range(2):
        _geotiff(data / f"s_{i}.tif", np.full((8, 8), 100 * (i + 1), np.uint16))
    model = tmp_path / "models_data" / "run"
    model.mkdir(parents=True)
    norm = {"kind": "range", "low": 0.0, "high": 400.0, "db": False, "cos_sin": False}
    (model / "metadata.json").write_text(json.dumps({"data_train_dir": str(data), "data_normalization": norm,
                                                     "class_names": ["s"]}))
    samples = tmp_path / "results" / "samples_3x8x8x1.npz"
    samples.parent.mkdir()
    np.savez(samples, np.stack([np.full((8, 8, 1), v, np.float32) for v in (-1.0, 0.0, 0.5)]))
    return {"samples": samples, "metadata": model / "metadata.json", "data": data}


def test_geokeys_of_the_input_are_in_the_written_sample_geotiffs(run, repo_root):
    args = [sys.executable, "-m", "utils.sampling.georef", "--samples", str(run["samples"]),
            "--metadata_json", str(run["metadata"])]
    done = subprocess.run(args, cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = run["samples"].with_name("samples_3x8x8x1_geotiff")
    files = sorted(out.glob("*.tif"))
    assert [f.name for f in files] == ["sample_00000.tif", "sample_00001.tif", "sample_00002.tif"]
    with tifffile.TiffFile(files[2]) as tif:
        tags = tif.pages[0].tags
        assert tuple(tags[34735].value) == GEOKEYS
        assert tuple(tags[33550].value) == PIXEL_SCALE and tuple(tags[33922].value) == TIEPOINT
        assert tags[34737].value.startswith("WGS 84 / UTM zone 33N")
        description = json.loads(tif.pages[0].description)
        values = tif.asarray()
    # model 0.5 over the range [0, 400] -> (0.5 + 1) / 2 * 400 = 300 (physical units)
    assert values.shape == (8, 8) and values.dtype == np.float32 and np.allclose(values, 300.0)
    assert description["georeference_from"].endswith("s_0.tif") and description["class_names"] == ["s"]
    again = subprocess.run(args, cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "overwrite" in again.stderr and "Traceback" not in again.stderr


def test_no_georeference_is_a_clear_error_and_hdf5_attrs_are_read(run, tmp_path, repo_root):
    plain = tmp_path / "plain"
    plain.mkdir()
    tifffile.imwrite(plain / "p_0.tif", np.zeros((8, 8), np.uint16))
    done = subprocess.run([sys.executable, "-m", "utils.sampling.georef", "--samples", str(run["samples"]),
                           "--metadata_json", str(run["metadata"]), "--reference", str(plain)],
                          cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no GeoTIFF geo tags" in done.stderr
    with h5py.File(plain / "ifg.h5", "w") as f:
        f["unwrap"] = np.zeros((1, 8, 8), np.float32)
        f.attrs["dates"] = ["20200101_20200113"]
        f.attrs["crs"] = "EPSG:32633"
    georef = read_georeference(plain / "ifg.h5")
    assert georef["hdf5_attrs"] == {"dates": ["20200101_20200113"], "crs": "EPSG:32633"}


def test_hdf5_export_has_unit_class_names_and_dates(tmp_path):
    np.savez(tmp_path / "s.npz", np.zeros((2, 4, 4, 1), np.float32), np.array([0, 1]))
    norm = {"kind": "range", "low": -3.0, "high": 3.0, "db": False, "cos_sin": False}
    sample_io.save_hdf5(tmp_path / "s.npz", tmp_path / "s.hdf5", norm, class_names=["a", "b"], key_data="unwrap",
                        attrs={"dates": ["20200101_20200113"]})
    with h5py.File(tmp_path / "s.hdf5", "r") as f:
        assert f.attrs["units"] == "physical" and f.attrs["unit"] == "rad"
        assert list(f.attrs["class_names"]) == ["a", "b"] and list(f.attrs["dates"]) == ["20200101_20200113"]
        assert f.attrs["created_utc"][:2] == "20"


@pytest.mark.parametrize("crop, expected", [(False, 20.0), (True, 10.0)])
def test_samples_of_a_resized_folder_carry_the_pixel_size_of_the_training_pixels(run, tmp_path, crop, expected):
    # 8x8 px inputs of 10 m resized to image_size 4 (crop=False): a training pixel covers 20 m on the ground;
    # random 4 px crops keep the inputs' 10 m
    samples = tmp_path / "samples_2x4x4x1.npz"
    np.savez(samples, np.zeros((2, 4, 4, 1), np.float32))
    args_dic = {**json.loads(run["metadata"].read_text()), "image_size": 4, "type_dataset": "image", "crop": crop}
    out = write_geotiff_samples(samples, args_dic, out_folder=tmp_path / f"crop{crop}")
    with tifffile.TiffFile(out / "sample_00001.tif") as tif:
        scale = tuple(tif.pages[0].tags[33550].value)
        factor = json.loads(tif.pages[0].description)["pixel_spacing_factor"]
    assert scale == (expected, expected, 0.0) and factor == expected / 10.0
