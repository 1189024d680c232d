"""tile_interferograms on bad or unusual rasters (issue 26): the GeoTIFF nodata tag, multi-band rasters, scenes
without a patch, unreadable files and the fill option. Each refusal exits with status 2 and one line naming the
file or option, writes nothing, and the corrected rerun is accepted without --overwrite."""
import subprocess
import sys

import h5py
import numpy as np
import pytest
import tifffile

from datasets import tile_interferograms
from tests.test_faults_sampling import cli
from utils.cli import run_cli
from utils.evaluation.array_io import load_image_set

P = 16
GDAL_NODATA = 42113


def tiler_args(inputs, out, *extra):
    return ["--inputs", ",".join(str(i) for i in inputs), "--out_dir", out, "--patch_size", P,
            "--frac_val", "0", "--frac_test", "0", *extra]


def refused(inputs, out, capsys, *extra) -> str:
    """The one error line of a refused run; nothing was written under `out`."""
    code, err = cli(tile_interferograms.main, tiler_args(inputs, out, *extra), capsys)
    assert code == 2, err
    assert not out.exists()
    return err


def accepted(inputs, out, *extra) -> dict:
    """tiles.json of a run through the command line that succeeds."""
    return run_cli(tile_interferograms.main, [str(a) for a in tiler_args(inputs, out, *extra)])


def patches(out):
    with h5py.File(out / "train" / "train_000.hdf5", "r") as f:
        return f["unwrap"][()], f["mask"][()], f["window"][()]


def field(rows=32, cols=48, seed=0):
    return np.random.default_rng(seed).normal(size=(rows, cols)).astype(np.float32)


def test_the_geotiff_nodata_tag_masks_its_pixels(tmp_path):
    a = field()
    a[:5] = -9999
    tifffile.imwrite(tmp_path / "ifg.tif", a, extratags=[(GDAL_NODATA, "s", 0, "-9999", True)])
    tiles = tile_interferograms.main(inputs=[str(tmp_path / "ifg.tif")], out_dir=str(tmp_path / "out"), patch_size=P,
                                     max_nan_fraction=0.5, frac_val=0, frac_test=0)
    data, mask, window = patches(tmp_path / "out")
    assert tiles["scenes"][0]["nodata"] == -9999
    for patch, m, (r0, c0, _, _) in zip(data, mask, window):
        expected = np.where(a == -9999, np.nan, a)[r0:r0 + P, c0:c0 + P]
        np.testing.assert_array_equal(patch, expected)
        np.testing.assert_array_equal(m, a[r0:r0 + P, c0:c0 + P] != -9999)
    assert (mask[window[:, 0] == 0] == 0).any()  # the -9999 rows are masked, not data


def test_a_nodata_contradicting_the_tag_is_refused_unless_overridden(tmp_path, capsys):
    a = field()
    a[0, :] = -9999
    a[1, :] = 0
    tifffile.imwrite(tmp_path / "ifg.tif", a, extratags=[(GDAL_NODATA, "s", 0, "-9999", True)])
    err = refused([tmp_path / "ifg.tif"], tmp_path / "out", capsys, "--nodata", "0")
    assert "nodata=0" in err and "GDAL_NODATA" in err and "ifg.tif" in err and "nodata_override" in err
    accepted([tmp_path / "ifg.tif"], tmp_path / "out", "--nodata", "0", "--nodata_override", "--max_nan_fraction", "0.5")
    data, mask, window = patches(tmp_path / "out")
    top = data[window[:, 0] == 0]
    assert (top[:, 0] == -9999).all() and np.isnan(top[:, 1]).all()  # the given nodata replaces the tag


@pytest.mark.parametrize("case", ["all NaN", "all nodata", "smaller than a patch", "too many masked"])
def test_a_scene_without_any_patch_is_refused_and_the_corrected_run_needs_no_overwrite(tmp_path, capsys, case):
    good = field()
    dotted = good.copy()
    dotted[::8, ::8] = np.nan  # a NaN in every window
    bad = {"all NaN": np.full((32, 48), np.nan, np.float32), "all nodata": np.zeros((32, 48), np.float32),
           "smaller than a patch": field(8, 48), "too many masked": dotted}[case]
    np.save(tmp_path / "good.npy", good)
    np.save(tmp_path / "bad.npy", bad)
    extra = ["--nodata", "0"] if case == "all nodata" else ["--max_nan_fraction", "0"] if "masked" in case else []
    err = refused([tmp_path / "good.npy", tmp_path / "bad.npy"], tmp_path / "out", capsys, *extra)
    assert "bad.npy" in err
    assert {"all NaN": "no valid pixel", "all nodata": "no valid pixel", "smaller than a patch": "patch_size=16",
            "too many masked": "max_nan_fraction=0.0"}[case] in err
    accepted([tmp_path / "good.npy"], tmp_path / "out", *extra)
    assert (tmp_path / "out" / "tiles.json").is_file()


@pytest.mark.parametrize("layout", ["band-last", "band-first"])
def test_multi_band_geotiffs_need_a_band(tmp_path, capsys, layout):
    bands = np.stack([field(seed=s) for s in range(3)])  # (3, 32, 48)
    array = np.moveaxis(bands, 0, -1) if layout == "band-last" else bands
    tifffile.imwrite(tmp_path / "rgb.tif", array, photometric="minisblack",
                     planarconfig="contig" if layout == "band-last" else "separate")
    err = refused([tmp_path / "rgb.tif"], tmp_path / "out", capsys)
    assert "rgb.tif" in err and "3 bands" in err and layout in err and "band=" in err
    tiles = tile_interferograms.main(inputs=[str(tmp_path / "rgb.tif")], out_dir=str(tmp_path / "out"), patch_size=P,
                                     band=1, frac_val=0, frac_test=0)
    data, _, window = patches(tmp_path / "out")
    assert len(tiles["scenes"]) == 1 and tiles["scenes"][0]["band"] == 1 and len(data) == 2 * 3
    for patch, (r0, c0, _, _) in zip(data, window):
        np.testing.assert_array_equal(patch, bands[1, r0:r0 + P, c0:c0 + P])
    each = tile_interferograms.main(inputs=[str(tmp_path / "rgb.tif")], out_dir=str(tmp_path / "each"), patch_size=P,
                                    band="each", frac_val=0, frac_test=0)
    assert [s["index"] for s in each["scenes"]] == [0, 1, 2] and each["splits"]["train"]["num_patches"] == 3 * 6
    tifffile.imwrite(tmp_path / "stack.tif", bands, photometric="minisblack")  # pages: a stack of 3 scenes
    stack = tile_interferograms.main(inputs=[str(tmp_path / "stack.tif")], out_dir=str(tmp_path / "stack"),
                                     patch_size=P, frac_val=0, frac_test=0)
    assert [s["index"] for s in stack["scenes"]] == [0, 1, 2] and stack["scenes"][0]["band"] is None


def test_band_last_npy_is_refused_with_the_band_options_and_read_with_them(tmp_path, capsys):
    bands = np.stack([field(seed=s) for s in range(3)], axis=-1)  # (32, 48, 3)
    np.save(tmp_path / "rgb.npy", bands)
    err = refused([tmp_path / "rgb.npy"], tmp_path / "out", capsys)
    assert "rgb.npy" in err and "band_axis='last'" in err
    accepted([tmp_path / "rgb.npy"], tmp_path / "out", "--band_axis", "last", "--band", "2")
    data, _, window = patches(tmp_path / "out")
    np.testing.assert_array_equal(data[-1], bands[16:32, 32:48, 2])
    err = refused([tmp_path / "rgb.npy"], tmp_path / "other", capsys, "--band", "2.5")
    assert "band=2.5" in err


@pytest.mark.parametrize("damage", ["corrupt npy", "object npy", "corrupt tiff", "empty tiff", "text npy"])
def test_unreadable_rasters_are_one_line_naming_the_file_and_leave_nothing(tmp_path, capsys, damage):
    np.save(tmp_path / "a_good.npy", field())
    bad = tmp_path / ("z_bad.tif" if "tiff" in damage else "z_bad.npy")
    if damage == "corrupt npy":
        bad.write_bytes(b"\x93NUMPY\x01\x00garbage")
    elif damage == "object npy":
        np.save(bad, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    elif damage == "text npy":
        np.save(bad, np.array([["a", "b"], ["c", "d"]]))
    elif damage == "corrupt tiff":
        bad.write_bytes(b"II*\x00" + b"\xff" * 64)
    else:
        bad.write_bytes(b"")
    err = refused([tmp_path], tmp_path / "out", capsys)  # the folder: the good file comes first
    assert "z_bad" in err


def test_fill_gives_finite_patches_with_the_mask_kept(tmp_path):
    a = field()
    a[2:6, 3:9] = np.nan
    np.save(tmp_path / "ifg.npy", a)
    for fill in ("zero", "mean"):
        out = tmp_path / fill
        tiles = tile_interferograms.main(inputs=[str(tmp_path / "ifg.npy")], out_dir=str(out), patch_size=P,
                                         max_nan_fraction=0.5, fill=fill, frac_val=0, frac_test=0)
        data, mask, window = patches(out)
        assert np.isfinite(data).all() and tiles["params"]["fill"] == fill
        for patch, m, (r0, c0, _, _) in zip(data, mask, window):
            source = a[r0:r0 + P, c0:c0 + P]
            np.testing.assert_array_equal(m, np.isfinite(source))
            valid = source[np.isfinite(source)]
            value = 0.0 if fill == "zero" else valid.sum(dtype=np.float64) / valid.size
            np.testing.assert_allclose(patch[~np.isfinite(source)], value, rtol=1e-5)
            np.testing.assert_array_equal(patch[np.isfinite(source)], valid)
        # the contrastive extractor (example_fine_tuning.py --unlabelled_data) reads it without NaN
        images = load_image_set(out / "train", key_data="unwrap").images
        assert images.shape == (6, P, P, 1) and np.isfinite(images).all()


def test_command_line_refusal_is_one_line_with_status_2(tmp_path):
    np.save(tmp_path / "nan.npy", np.full((32, 32), np.nan, np.float32))
    done = subprocess.run([sys.executable, tile_interferograms.__file__, "--inputs", str(tmp_path / "nan.npy"),
                           "--out_dir", str(tmp_path / "out"), "--patch_size", "16"], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "nan.npy" in done.stderr
    assert not (tmp_path / "out").exists()
