"""A user's 16-bit GeoTIFF SAR folder: robust normalisation (through train.py), dB of power vs amplitude."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import torch

from improved_diffusion.data_normalization import denormalize, value_unit
from improved_diffusion.dataloaders import create_dataloader


def _sar_folder(folder, n=6, size=16, seed=0):
    """16-bit speckle-like amplitudes around 1000 with a few saturated pixels (65535)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    stored = []
    for i in range(n):
        a = np.clip(rng.gamma(4.0, 250.0, (size, size)), 1, 60000).astype(np.uint16)
        a[i % size, 3] = 65535
        tifffile.imwrite(folder / f"s_{i}.tif", a)
        stored.append(a)
    return np.stack(stored).astype(np.float64)


def _train_cli(repo_root, data, out, *flags):
    """A one-epoch tiny training run through train.py on a 32 px folder; the completed process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "train.py", "--data_train_dir", str(data), "--url_folder_experiment",
                           str(out), "--num_epochs", "1", "--image_size", "32", "--num_input_channels", "1",
                           "--num_model_channels", "32", "--num_res_blocks", "1", "--attention_resolutions", "8",
                           "--diffusion_steps", "10", "--noise_schedule", "cosine", "--batch_size", "6",
                           "--grid_interval", "0", "--amp", "none", *flags],
                          cwd=repo_root, capture_output=True, text=True, timeout=300, env=env)


def test_robust_image_normalisation_through_train_cli_round_trips(tmp_path, repo_root):
    stored = _sar_folder(tmp_path / "sar", size=32)
    out = tmp_path / "run"
    done = _train_cli(repo_root, tmp_path / "sar", out, "--normalization", "robust")
    assert done.returncode == 0, done.stderr[-2000:]
    norm = json.loads((out / "metadata.json").read_text())["data_normalization"]
    finite = stored.ravel()
    median = np.median(finite)
    sigma = 1.4826 * np.median(np.abs(finite - median))  # the robust standard deviation of all values
    assert norm["kind"] == "robust" and norm["asinh"]
    assert norm["low"] == pytest.approx(median - 4 * sigma, rel=1e-6)
    assert norm["high"] == pytest.approx(median + 4 * sigma, rel=1e-6)
    loader, _ = create_dataloader(str(tmp_path / "sar"), image_size=32, num_channels=1, batch_size=6,
                                  norm_stats=norm, deterministic=True)
    x = torch.cat([b[0] for b in loader]).numpy()
    assert np.median(np.abs(x)) > 0.1  # min-max would put typical pixels in a sliver near -1
    np.testing.assert_allclose(denormalize(x[:, 0], norm), stored, rtol=1e-4)


def test_db_of_amplitude_is_20_log10_and_labelled(tmp_path):
    tifffile.imwrite(tmp_path / "s_0.tif", np.array([[0.1, 1.0], [10.0, 100.0]], dtype=np.float32))
    loader, info = create_dataloader(str(tmp_path), image_size=2, num_channels=1, batch_size=1, db=True,
                                     db_quantity="amplitude")
    norm = info["data_normalization"]
    assert norm["db_quantity"] == "amplitude" and norm["low"] == pytest.approx(-20) and norm["high"] == pytest.approx(40)
    x = next(iter(loader))[0][0, 0].numpy()
    # 20 log10: -20, 0, 20, 40 dB over [-20, 40] -> -1, -1/3, 1/3, 1
    np.testing.assert_allclose(x, [[-1, -1 / 3], [1 / 3, 1]], atol=1e-5)
    np.testing.assert_allclose(denormalize(x, norm), [[0.1, 1], [10, 100]], rtol=1e-4)
    assert value_unit(norm) == "linear amplitude"
    old = {"kind": "image_range", "low": -20.0, "high": 10.0, "db": True, "cos_sin": False}  # a run before the option
    assert value_unit(old) == "linear power" and denormalize(np.array([1.0]), old)[0] == pytest.approx(10.0)
    with pytest.raises(ValueError, match="db_quantity='intensity'"):
        create_dataloader(str(tmp_path), image_size=2, num_channels=1, batch_size=1, db=True, db_quantity="intensity")


def test_train_cli_stores_the_amplitude_db_choice(tmp_path, repo_root):
    stored = _sar_folder(tmp_path / "sar", size=32)
    done = _train_cli(repo_root, tmp_path / "sar", tmp_path / "run", "--db", "--db_quantity", "amplitude")
    assert done.returncode == 0, done.stderr[-2000:]
    norm = json.loads((tmp_path / "run" / "metadata.json").read_text())["data_normalization"]
    assert norm["db_quantity"] == "amplitude"
    assert norm["low"] == pytest.approx(20 * np.log10(stored.min()), abs=1e-3)
    assert norm["high"] == pytest.approx(20 * np.log10(65535), abs=1e-3)
