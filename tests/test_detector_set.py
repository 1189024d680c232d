"""datasets/deformation_detector_set.py: stored labels and source parameters reproduce the stored deformation,
model-sample noise maps to radians, and the files train through train.py unchanged."""
import json

import h5py
import numpy as np
import pytest

import train
from datasets.deformation_detector_set import main as detector_set
from improved_diffusion.checkpoint import write_metadata
from improved_diffusion.data_normalization import make_normalization
from utils.radar.deformation import mogi_los_phase, okada_los_phase

GEOMETRY = dict(poisson_ratio=0.25, pixel_size_m=100.0, wavelength_m=0.0555, incidence_deg=35.0,
                look_azimuth_deg=260.0)


def _read(path):
    with h5py.File(path) as f:
        return {k: f[k][()] for k in f}


@pytest.mark.parametrize("source", ["mogi", "okada"])
def test_labels_and_parameters_reproduce_the_clean_deformation(tmp_path, source):
    info = detector_set(out_dir=str(tmp_path / "set"), n_train=12, n_val=4, deformation_source=source,
                        deformation_fraction=0.5)
    d = _read(tmp_path / "set" / "train" / "train_000.hdf5")
    has = d["label"] == 1
    assert 0 < has.sum() < len(has) and np.isnan(d["source_params"][~has]).all()
    assert (d["deformation"][~has] == 0).all() and np.isfinite(d["source_params"][has]).all()
    p = d["source_params"][has]
    expected = (mogi_los_phase(32, p[:, 0], p[:, 1], p[:, 2], p[:, 3], **GEOMETRY) if source == "mogi"
                else okada_los_phase(32, p, **GEOMETRY))
    np.testing.assert_array_equal(d["deformation"][has], expected)
    assert info["source_columns"][0] == "x0_px" and len(info["source_columns"]) == p.shape[1]
    noise = d["unwrap"] - d["deformation"]
    assert 0.8 < noise.std() < 1.3  # atmosphere (1 rad) + white noise (0.2 rad)


def test_model_samples_as_noise(tmp_path):
    rng = np.random.default_rng(0)
    samples = rng.uniform(-1, 1, (6, 32, 32, 1)).astype(np.float32)
    np.savez(tmp_path / "samples_6x32x32x1.npz", samples)
    (tmp_path / "run").mkdir()
    write_metadata(tmp_path / "run", {"data_normalization": make_normalization("range", -3.0, 3.0)})
    detector_set(out_dir=str(tmp_path / "set"), n_train=4, n_val=2, noise_npz=str(tmp_path / "samples_6x32x32x1.npz"),
                 metadata_json=str(tmp_path / "run" / "metadata.json"))
    d = _read(tmp_path / "set" / "val" / "val_000.hdf5")
    np.testing.assert_allclose(d["unwrap"] - d["deformation"], 3.0 * samples[4:, ..., 0], atol=1e-5)
    with pytest.raises(ValueError, match="holds 6 samples"):
        detector_set(out_dir=str(tmp_path / "set2"), n_train=6, n_val=2,
                     noise_npz=str(tmp_path / "samples_6x32x32x1.npz"),
                     metadata_json=str(tmp_path / "run" / "metadata.json"))
    assert not (tmp_path / "set2").exists()
    with pytest.raises(FileExistsError, match="overwrite"):
        detector_set(out_dir=str(tmp_path / "set"), n_train=4, n_val=2)


def test_the_set_trains_through_train_py(tmp_path):
    info = detector_set(out_dir=str(tmp_path / "set"), n_train=4, n_val=2)
    loader = info["loader_kwargs"]
    train.main(data_train_dir=str(tmp_path / "set" / "train"), url_folder_experiment=str(tmp_path / "run"),
               type_dataset="hdf5", list_keys_hdf5_original=loader["list_keys_hdf5_original"],
               key_data="unwrap", normalization="range", norm_range=[-4.0, 4.0], image_size=32,
               num_input_channels=1, num_model_channels=32, num_res_blocks=1, attention_resolutions="",
               diffusion_steps=10, noise_schedule="cosine", batch_size=2, num_epochs=1, grid_interval=0, log_interval=1, save_interval=1,
               seed=0)
    assert list((tmp_path / "run").glob("model_epoch=0_iter=*.pt"))
    assert json.loads((tmp_path / "run" / "metadata.json").read_text())["hdf5_keys"]["key_data"] == "unwrap"
