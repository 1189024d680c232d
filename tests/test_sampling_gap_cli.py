"""The sampling scripts' gap filling (`--observed_path`), sample GeoTIFFs (`--save_geotiff`), class names in
`sample_class` and the `skip_type` notice, on tiny models."""
import json
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import tifffile

from sample import main_sample
from sample_DPM import sample_from_ODE
from utils import changed_defaults
from utils.sampling.run import choose_labels, proportional_labels

from .conftest import FIXTURES, REPO_ROOT
from .test_inpainting_io import SIZE, _fields
from .test_inpainting_io import run as run  # noqa: F401  (the tiny 32 px demo model, T=50)
from .test_sampling_georef import GEOKEYS, PIXEL_SCALE, TIEPOINT, _geotiff

FAST = dict(device="cpu", amp="none", progress=False)
CKPT = "model_epoch=3_iter=120.pt"


def _cli(script, *args):
    return subprocess.run([sys.executable, str(REPO_ROOT / script), *map(str, args), "--device", "cpu", "--amp",
                           "none", "--no-progress"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)


@pytest.mark.parametrize("script, extra", [("sample_DPM.py", ["--sample_steps", "3"]),
                                           ("sample.py", ["--sampling_steps", "3", "--gap_method", "repaint"])])
def test_gap_filling_from_the_command_line_keeps_the_observed_pixels(run, tmp_path, script, extra):  # noqa: F811
    fields = _fields()
    np.savez(tmp_path / "observed.npz", fields)
    out = tmp_path / "out"
    done = _cli(script, "--model_path", run, "--observed_path", tmp_path / "observed.npz", "--samples_per_field", 2,
                "--url_save_path", out, *extra)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["gap_filling.json", "gap_filling.npz", "gap_filling.png"]
    with np.load(out / "gap_filling.npz") as f:
        samples = f["samples"]
    assert samples.shape == (2, 2, SIZE, SIZE, 1) and np.isfinite(samples).all()
    known = np.isfinite(fields)
    for k in range(2):
        np.testing.assert_array_equal(samples[:, k, ..., 0][known], fields[known])
    assert not np.allclose(samples[:, 0][~known[..., None]], samples[:, 1][~known[..., None]])  # gaps are sampled
    info = json.loads((out / "gap_filling.json").read_text())
    assert info["method"] == ("repaint" if script == "sample.py" else "posterior") and info["unit"] == "rad"
    assert info["samples_per_field"] == 2 and info["steps"] == 3


@pytest.mark.parametrize("observed, extra, match", [
    (np.zeros((1, SIZE, SIZE), np.float32), [], "no NaN"),
    (_fields(1, 8), [], "the model expects"),
    (_fields(1), ["--gap_method", "kriging"], "gap_method"),
    (_fields(1), ["--samples_per_field", "0"], "samples_per_field"),
])
def test_bad_gap_filling_input_is_one_line_and_writes_nothing(run, tmp_path, observed, extra, match):  # noqa: F811
    np.savez(tmp_path / "observed.npz", observed)
    done = _cli("sample_DPM.py", "--model_path", run, "--observed_path", tmp_path / "observed.npz",
                "--url_save_path", tmp_path / "out", *extra)
    assert done.returncode == 2 and match in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0 and done.stderr.startswith("error: ")
    assert not (tmp_path / "out").exists()


def test_gap_filling_refuses_existing_outputs_and_a_missing_file(run, tmp_path):  # noqa: F811
    np.savez(tmp_path / "observed.npz", _fields(1))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "gap_filling.png").write_bytes(b"old")
    with pytest.raises(FileExistsError, match="gap_filling.png"):
        sample_from_ODE(model_path=str(run), observed_path=str(tmp_path / "observed.npz"),
                        url_save_path=str(tmp_path / "out"), **FAST)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["gap_filling.png"]
    with pytest.raises(ValueError, match="url_save_path"):
        sample_from_ODE(model_path=str(run), observed_path=str(tmp_path / "observed.npz"),
                        url_save_path=str(run.parent), **FAST)
    with pytest.raises(FileNotFoundError, match="no file"):
        main_sample(model_path=str(run), observed_path=str(tmp_path / "none.npz"), url_save_path=str(tmp_path / "o"),
                    **FAST)


def test_sample_geotiffs_carry_the_inputs_geo_tags_and_hdf5_the_class_names(run, tmp_path):  # noqa: F811
    data = tmp_path / "sar"
    data.mkdir()
    _geotiff(data / "s_0.tif", np.zeros((SIZE, SIZE), np.float32))
    model = tmp_path / "model"
    shutil.copytree(run.parent, model)
    meta = json.loads((model / "metadata.json").read_text())
    meta.update(data_train_dir=str(data), class_names=["s"], hdf5_keys={"key_data": "unwrap"})
    (model / "metadata.json").write_text(json.dumps(meta))
    npz = main_sample(model_path=str(model / run.name), num_samples=2, batch_size=2, sampling_steps=2,
                      url_save_path=str(tmp_path / "out"), plot=False, save_hdf5=True, save_geotiff=True, **FAST)
    files = sorted(npz.with_name(f"{npz.stem}_geotiff").glob("*.tif"))
    assert [f.name for f in files] == ["sample_00000.tif", "sample_00001.tif"]
    with np.load(npz) as f:
        first = f["arr_0"][0, ..., 0]
    with tifffile.TiffFile(files[0]) as tif:
        tags = tif.pages[0].tags
        assert tuple(tags[34735].value) == GEOKEYS
        assert tuple(tags[33550].value) == PIXEL_SCALE and tuple(tags[33922].value) == TIEPOINT
        # range normalisation over [-3, 3] rad: physical = (x + 1) / 2 * 6 - 3 = 3 x
        np.testing.assert_allclose(tif.asarray(), 3.0 * first, rtol=1e-5, atol=1e-5)
    with h5py.File(npz.with_suffix(".hdf5"), "r") as f:
        assert list(f.attrs["class_names"]) == ["s"] and f.attrs["unit"] == "rad"
    assert f"{npz.stem}_geotiff" in json.loads(npz.with_suffix(".json").read_text())["outputs"]
    with pytest.raises(FileExistsError, match="_geotiff"):
        main_sample(model_path=str(model / run.name), num_samples=2, batch_size=2, sampling_steps=2,
                    url_save_path=str(tmp_path / "out"), plot=False, save_geotiff=True, **FAST)


def test_class_names_choose_labels():
    names = ["forest", "urban", "water"]
    assert choose_labels("urban", 3, 3, 0, names).tolist() == [1, 1, 1]
    assert choose_labels("water,forest", 4, 3, 0, names).tolist() == [2, 0, 2, 0]
    assert choose_labels(["urban", 2], 2, 3, 0, names).tolist() == [1, 2]
    assert choose_labels("1", 2, 3, 0, names).tolist() == [1, 1]
    with pytest.raises(ValueError, match=r"desert.*\['forest', 'urban', 'water'\]"):
        choose_labels("desert", 2, 3, 0, names)


def test_proportional_labels_follow_the_training_counts():
    # 512 * 2800 / 4000 = 358.4 and 153.6: the larger remainder (class 1) gets the last sample
    labels = proportional_labels([2800, 1200], 512, seed=0)
    assert len(labels) == 512 and np.bincount(labels).tolist() == [358, 154]
    assert labels != sorted(labels)  # shuffled, not blocks
    assert labels == proportional_labels([2800, 1200], 512, seed=0)
    assert np.bincount(proportional_labels([5, 0, 5], 3, seed=1), minlength=3).tolist() in ([2, 0, 1],
                                                                                                     [1, 0, 2])


def test_proportional_choose_labels_needs_the_class_counts():
    labels = choose_labels("proportional", 100, 3, 0, class_counts=[3600, 320, 80])
    assert np.bincount(labels, minlength=3).tolist() == [90, 8, 2]
    with pytest.raises(ValueError, match="class_counts.*'balanced'"):
        choose_labels("proportional", 100, 3, 0)
    with pytest.raises(ValueError, match="3 values"):
        choose_labels("proportional", 100, 3, 0, class_counts=[5, 5])


def test_sample_class_by_name_through_the_script(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    shutil.copy(FIXTURES / "compat-a" / CKPT, model / CKPT)
    meta = json.loads((FIXTURES / "compat-a" / "metadata.json").read_text())
    meta["class_names"] = [f"c{i}" for i in range(7)] + ["urban", "c8", "c9"]
    (model / "metadata.json").write_text(json.dumps(meta))
    npz = main_sample(model_path=str(model / CKPT), num_samples=2, batch_size=2, sampling_steps=1, sample_class="urban",
                      url_save_path=str(tmp_path / "out"), plot=False, **FAST)
    with np.load(npz) as f:
        assert f["arr_1"].tolist() == [7, 7]
    with pytest.raises(ValueError, match="urban"):
        main_sample(model_path=str(model / CKPT), num_samples=2, sample_class="rural", url_save_path=str(tmp_path / "x"),
                    **FAST)
    assert not (tmp_path / "x").exists()
    meta["class_counts"] = [0] * 9 + [4]  # the training proportions: every field of class 9
    (model / "metadata.json").write_text(json.dumps(meta))
    npz = main_sample(model_path=str(model / CKPT), num_samples=2, batch_size=2, sampling_steps=1,
                      sample_class="proportional", url_save_path=str(tmp_path / "prop"), plot=False, **FAST)
    with np.load(npz) as f:
        assert f["arr_1"].tolist() == [9, 9]


@pytest.mark.parametrize("skip_type, noticed", [(None, True), ("logSNR", False)])
def test_skip_type_notice_only_for_the_default(tmp_path, capsys, monkeypatch, skip_type, noticed):
    monkeypatch.setattr(changed_defaults, "_shown", set())
    kwargs = {} if skip_type is None else {"skip_type": skip_type}
    sample_from_ODE(model_path=str(FIXTURES / "compat-a" / CKPT), sample_steps=2, order=1, num_samples=1,
                    batch_size=1, url_save_path=str(tmp_path / "out"), plot=False, **kwargs, **FAST)
    assert ("[changed default] skip_type" in capsys.readouterr().out) == noticed
