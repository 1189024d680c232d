"""tile_interferograms: patch count, windows and masks on a 1000 x 1200 raster with NaN regions; split by scene."""
import inspect
import json
import shlex
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile

import train
from datasets import tile_interferograms
from improved_diffusion.dataloaders import create_dataloader

P, S = 64, 48


def _raster(seed):
    """1000 x 1200 float32 with a NaN rectangle, a NaN disc and scattered NaN pixels."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(1000, 1200)).astype(np.float32)
    a[100:400, 200:330] = np.nan
    rr, cc = np.mgrid[:1000, :1200]
    a[(rr - 700) ** 2 + (cc - 900) ** 2 < 120 ** 2] = np.nan
    a[rng.random(a.shape) < 0.02] = np.nan
    return a


def _expected(a, max_nan):
    """Kept windows by brute force: every origin on the stride grid whose patch fits and is NaN-light enough."""
    kept = []
    for r0 in range(0, a.shape[0] - P + 1, S):
        for c0 in range(0, a.shape[1] - P + 1, S):
            if np.isnan(a[r0:r0 + P, c0:c0 + P]).mean() <= max_nan:
                kept.append((r0, c0))
    return kept


def _read(folder):
    keys = ("unwrap", "mask", "scene", "window")
    parts = {k: [] for k in keys}
    for f in sorted(folder.glob("*.hdf5")):
        with h5py.File(f, "r") as h:
            for k in keys:
                parts[k].append(h[k][()])
    return {k: np.concatenate(v) for k, v in parts.items()}


def test_tiff_raster_patch_count_windows_and_masks(tmp_path):
    a = _raster(0)
    tifffile.imwrite(tmp_path / "scene.tif", a)
    tiles = tile_interferograms.main(inputs=[str(tmp_path / "scene.tif")], out_dir=str(tmp_path / "out"),
                                     patch_size=P, stride=S, max_nan_fraction=0.1, frac_val=0.0, frac_test=0.0,
                                     fields_per_file=100)
    expected = _expected(a, 0.1)
    assert 0 < len(expected) < 20 * 24  # 20 x 24 windows fit; the NaN regions remove some
    got = _read(tmp_path / "out" / "train")
    assert len(got["unwrap"]) == len(expected) == tiles["splits"]["train"]["num_patches"]
    assert [tuple(w[:2]) for w in got["window"]] == expected
    assert np.all(got["window"][:, 2:] == P) and np.all(got["scene"] == 0)
    for patch, mask, (r0, c0, _, _) in zip(got["unwrap"], got["mask"], got["window"]):
        np.testing.assert_array_equal(patch, a[r0:r0 + P, c0:c0 + P])  # NaN kept where the raster has NaN
        np.testing.assert_array_equal(mask, np.isfinite(a[r0:r0 + P, c0:c0 + P]))
    assert tiles["scenes"][0]["windows"] == 20 * 24 and tiles["scenes"][0]["patches"] == len(expected)
    assert len(tiles["splits"]["train"]["files"]) == -(-len(expected) // 100)
    kw = {k: v for k, v in tiles["loader_kwargs"].items() if k != "type_dataset"}
    loader, info = create_dataloader(str(tmp_path / "out" / "train"), type_dataset="hdf5", batch_size=64, **kw)
    x, cond = next(iter(loader))
    assert x.shape == (64, 1, P, P) and info["data_normalization"]["kind"] == "robust"
    assert 0 < float((cond["mask"] == 0).float().mean()) <= 0.1


def test_hdf5_stack_and_npy_split_by_scene_with_nodata(tmp_path):
    stack = np.stack([_raster(s) for s in range(1, 5)])
    with h5py.File(tmp_path / "stack.h5", "w") as f:
        f["unwrap"] = stack
    extra = _raster(9)
    extra[np.isnan(extra)] = 0.0  # exported with 0 as nodata
    np.save(tmp_path / "extra.npy", extra)
    tiles = tile_interferograms.main(inputs=[str(tmp_path)], out_dir=str(tmp_path / "out"), patch_size=P, stride=S,
                                     max_nan_fraction=0.05, nodata=0.0, frac_val=0.2, frac_test=0.2, split_seed=1)
    scenes = tiles["scenes"]
    assert [(s["source"].rsplit("/", 1)[1], s["index"]) for s in scenes] == [
        ("extra.npy", None), ("stack.h5", 0), ("stack.h5", 1), ("stack.h5", 2), ("stack.h5", 3)]
    assert sorted(s["split"] for s in scenes) == ["test", "train", "train", "train", "val"]
    rasters = [np.where(extra == 0, np.nan, extra), *stack]
    for split in ("train", "val", "test"):
        got = _read(tmp_path / "out" / split)
        members = {k for k, s in enumerate(scenes) if s["split"] == split}
        assert set(got["scene"].tolist()) == members  # no scene straddles two splits
        assert len(got["scene"]) == sum(len(_expected(rasters[k], 0.05)) for k in members)
        for patch, k, (r0, c0, _, _) in zip(got["unwrap"][::25], got["scene"][::25], got["window"][::25]):
            np.testing.assert_array_equal(patch, rasters[k][r0:r0 + P, c0:c0 + P])
    with h5py.File(tmp_path / "out" / "val" / "val_000.hdf5", "r") as f:
        assert json.loads(f.attrs["scenes_json"])[1] == {"source": str(tmp_path / "stack.h5"), "index": 0}
    with pytest.raises(FileExistsError, match="tiles.json. already exists"):
        tile_interferograms.main(inputs=[str(tmp_path / "extra.npy")], out_dir=str(tmp_path / "out"), patch_size=P)


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(inputs=["missing.tif"]), "'missing.tif' is neither a folder nor a file"),
    (dict(max_nan_fraction=1.5), "max_nan_fraction=1.5"),
    (dict(frac_val=0.7, frac_test=0.5), "frac_val=0.7, frac_test=0.5"),
    (dict(stride=0), "stride=0"),
])
def test_bad_options(tmp_path, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        tile_interferograms.main(out_dir=str(tmp_path / "out"), **{"inputs": [str(tmp_path)], **kwargs})


def test_command_line(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(40 * 50, dtype=np.float32).reshape(40, 50))
    np.save(tmp_path / "b.npy", np.ones((2, 40, 50), np.float32))
    script = Path(tile_interferograms.__file__)
    subprocess.run([sys.executable, str(script), "--inputs", f"{tmp_path / 'a.npy'},{tmp_path / 'b.npy'}",
                    "--out_dir", str(tmp_path / "out"), "--patch_size", "16", "--frac_val", "0", "--frac_test", "0"],
                   check=True, capture_output=True)
    tiles = json.loads((tmp_path / "out" / "tiles.json").read_text())
    assert len(tiles["scenes"]) == 3 and tiles["splits"]["train"]["num_patches"] == 3 * (40 // 16) * (50 // 16)


def test_the_printed_train_command_names_train_keywords_that_read_the_tiles(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "scene.tif", _raster(0))
    tile_interferograms.main(inputs=[str(tmp_path / "scene.tif")], out_dir=str(tmp_path / "out"), patch_size=P,
                             stride=S, max_nan_fraction=0.1, frac_val=0.0, frac_test=0.0)
    out = capsys.readouterr().out
    assert f"[tiles] 1 scene(s) -> {P} px patches" in out and "train" in out and "val" not in out
    command = shlex.split(out.split("train on them with: ")[1].splitlines()[0].replace("<run folder>", "run"))
    flags = dict(zip(command[2::2], command[3::2]))
    assert set(flags) <= {f"--{k}" for k in inspect.signature(train.main).parameters}
    assert flags["--data_train_dir"] == str(tmp_path / "out" / "train") and flags["--nan_policy"] == "fill"
