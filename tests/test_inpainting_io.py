"""Gap filling with a (tiny, untrained) checkpoint: file reading, validation, outputs, figure, and the bench."""
import json

import h5py
import numpy as np
import pytest
import torch

from bench import gap_filling as bench_gap_filling
from datasets import insar_synthetic
from improved_diffusion.checkpoint import load_model, write_metadata
from improved_diffusion.data_normalization import make_normalization
from improved_diffusion.script_util import PRESETS, create_model_and_diffusion
from utils.sampling.gap_filling import OUTPUT_NAMES, fill_gaps, output_unit, read_observed, write_gap_filling

SIZE = 32


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """An untrained 32 px demo-preset model (random output layer), T=50, with the gaussian preset's range normalisation [-3, 3] rad."""
    folder = tmp_path_factory.mktemp("run")
    args = {**PRESETS["demo"], "image_size": SIZE, "diffusion_steps": 50,
            "attention_resolutions": "", "data_normalization": make_normalization("range", -3.0, 3.0)}
    torch.manual_seed(0)
    model, _ = create_model_and_diffusion(args)
    with torch.no_grad():  # the output layer starts at zero (x0_hat = 0 everywhere): give it weights
        for param in model.out.parameters():
            param.normal_(0.0, 0.05)
    torch.save(model.state_dict(), folder / "model_epoch=0_iter=1.pt")
    write_metadata(folder, args)
    return folder / "model_epoch=0_iter=1.pt"


def _fields(n=2, size=SIZE):
    rng = np.random.default_rng(0)
    fields = rng.normal(size=(n, size, size)).astype(np.float32)
    fields[:, 3:7, 4:9] = np.nan
    return fields


def test_fill_write_and_read_back(run, tmp_path):
    model, diffusion, args_dic = load_model(run, verbose=False)
    path = tmp_path / "observed.hdf5"
    with h5py.File(path, "w") as f:
        f["unwrap"] = _fields()
    fields = read_observed(path, "unwrap")
    result = fill_gaps(model, diffusion, args_dic, fields, 3, "posterior", seed=0, steps=3, cg_iters=1)
    assert result["samples"].shape == (2, 3, SIZE, SIZE, 1) and np.isfinite(result["samples"]).all()
    known = np.isfinite(fields)
    np.testing.assert_array_equal(result["samples"][:, 1][known], fields[known])
    np.testing.assert_allclose(result["mean"], result["samples"].mean(1), rtol=1e-6)
    assert (result["std"][known] <= 1e-6).all() and (result["std"][~known] > 0).all()
    paths = write_gap_filling(result, tmp_path / "out", {"method": "posterior"}, output_unit(args_dic, "unwrap"))
    assert sorted(p.name for p in paths.values()) == sorted(OUTPUT_NAMES)
    assert json.loads(paths["json"].read_text())["unit"] == "rad"
    with np.load(paths["npz"]) as f:
        np.testing.assert_array_equal(f["samples"], result["samples"])
    with pytest.raises(FileExistsError, match="overwrite"):
        write_gap_filling(result, tmp_path / "out", {}, "rad")


@pytest.mark.parametrize("fields, match", [
    (np.zeros((1, SIZE, SIZE), np.float32), "no NaN"),
    (np.full((1, SIZE, SIZE), np.nan, np.float32), "NaN everywhere"),
    (_fields(1, 8), "the model expects \\(32, 32, 1\\)"),
    (np.stack([_fields(1)] * 2, axis=-1), "the model expects \\(32, 32, 1\\)"),
])
def test_bad_observed_fields_name_the_file_and_write_nothing(run, tmp_path, fields, match):
    model, diffusion, args_dic = load_model(run, verbose=False)
    path = tmp_path / "observed.npz"
    np.savez(path, fields)
    with pytest.raises(ValueError, match=match) as err:
        fill_gaps(model, diffusion, args_dic, read_observed(path), 2, source=str(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["observed.npz"]


def test_unreadable_observed_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file"):
        read_observed(tmp_path / "none.npz")
    np.savez(tmp_path / "named.npz", fields=np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match="arr_0"):
        read_observed(tmp_path / "named.npz")
    with h5py.File(tmp_path / "f.hdf5", "w") as f:
        f["wrap"] = np.zeros((1, 4, 4))
    with pytest.raises(ValueError, match="no dataset 'unwrap'"):
        read_observed(tmp_path / "f.hdf5", "unwrap")


def test_bench_runs_at_toy_scale(run, tmp_path, capsys):
    insar_synthetic.main(out_dir=str(tmp_path / "data"), n_train=0, n_val=0, n_test=3, image_size=SIZE,
                         deformation_fraction=0.0, truth_monte_carlo_fields=0)
    figures = bench_gap_filling.main(model_path=str(run), data_dir=str(tmp_path / "data"), num_fields=2,
                                     num_samples=4, method="repaint", steps=4)
    assert 0 <= figures["coverage_90"] <= 1 and figures["rms_ratio"] > 0 and figures["num_fields"] == 2
    assert 0.2 <= figures["missing_fraction"] <= 0.4
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == figures


def test_bench_chunks_pool_into_the_run_over_all_fields(run, tmp_path):
    """Two chunks (first_field 0 and 2) pooled score fields 0-3 with the masks of one 4-field run; the pooled
    figures are those of the concatenated arrays; mixed methods or ensemble sizes are refused, and an existing
    save_path is kept."""
    insar_synthetic.main(out_dir=str(tmp_path / "data"), n_train=0, n_val=0, n_test=4, image_size=SIZE,
                         deformation_fraction=0.0, truth_monte_carlo_fields=0)
    common = dict(model_path=str(run), data_dir=str(tmp_path / "data"), num_fields=2, num_samples=3,
                  method="repaint", steps=3)
    for first in (0, 2):
        bench_gap_filling.main(**common, first_field=first, save_path=str(tmp_path / f"c{first}.npz"))
    chunks = [dict(np.load(tmp_path / f"c{first}.npz")) for first in (0, 2)]
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(np.concatenate([c["masks"] for c in chunks]),
                                  [bench_gap_filling.gap_mask(rng, SIZE, 0.3) for _ in range(4)])
    figures = bench_gap_filling.main(pool=f"{tmp_path / 'c0.npz'},{tmp_path / 'c2.npz'}")
    assert figures["num_fields"] == 4
    merged = {k: np.concatenate([c[k] for c in chunks]) for k in ("truth", "masks", "samples")}
    counts = merged["masks"].reshape(4, -1).sum(1)  # missing pixels per field: the length of its kriging vectors
    starts = np.concatenate([[0], np.cumsum(counts)])
    flat_means, flat_vars = (np.concatenate([c[k] for c in chunks]) for k in ("krig_means", "krig_vars"))
    means = [flat_means[a:a + n] for a, n in zip(starts, counts)]
    variances = [flat_vars[a:a + n] for a, n in zip(starts, counts)]
    direct = bench_gap_filling.score(merged["truth"], merged["masks"], merged["samples"], means, variances)
    assert {k: figures[k] for k in direct} == direct
    np.savez(tmp_path / "other.npz", **{**chunks[1], "method": "posterior"})
    with pytest.raises(ValueError, match="different methods"):
        bench_gap_filling.main(pool=f"{tmp_path / 'c0.npz'},{tmp_path / 'other.npz'}")
    np.savez(tmp_path / "fewer.npz", **{**chunks[1], "samples": chunks[1]["samples"][:, :2]})
    with pytest.raises(ValueError, match="numbers of samples"):
        bench_gap_filling.main(pool=f"{tmp_path / 'c0.npz'},{tmp_path / 'fewer.npz'}")
    before = (tmp_path / "c0.npz").read_bytes()
    with pytest.raises(FileExistsError, match="save_path"):
        bench_gap_filling.main(**common, save_path=str(tmp_path / "c0.npz"))
    assert (tmp_path / "c0.npz").read_bytes() == before


def _kriging_draws(rng, n: int, size: int, samples: int):
    """n Gaussian fields (exponential covariance + white noise), gap masks, and `samples` exact conditional draws
    per field: truth (n, size, size), masks, draws (n, samples, size, size), kriging means and variances."""
    from utils.radar.insar_truth import field_covariance, simple_kriging
    cov = field_covariance(size, "exponential", 1.0, 4.0, nugget=0.2 ** 2)
    chol = np.linalg.cholesky(cov)
    truth = (chol @ rng.standard_normal((size * size, n))).T.reshape(n, size, size)
    masks = np.stack([bench_gap_filling.gap_mask(rng, size, 0.3) for _ in range(n)])
    draws, means, variances = np.empty((n, samples, size, size)), [], []
    for i, (t, m) in enumerate(zip(truth, masks)):
        mean, c = simple_kriging(cov, np.zeros(size * size), t.ravel(), ~m.ravel())
        means.append(mean)
        variances.append(np.diag(c))
        draws[i] = t
        draws[i][:, m] = mean + rng.standard_normal((samples, len(mean))) @ np.linalg.cholesky(c).T
    return truth, masks, draws, means, variances


def test_bench_exact_coverage_of_a_small_ensemble():
    """With 16 exact samples the central 90 % interval covers 0.9 * 15 / 17 = 0.794 of the truths, not 0.9:
    the bench's reference figure matches what exact kriging samples score (about 1900 missing pixels)."""
    truth, masks, draws, means, variances = _kriging_draws(np.random.default_rng(3), 24, 16, 16)
    figures = bench_gap_filling.score(truth, masks, draws, means, variances)
    assert figures["coverage_90_exact_samples"] == pytest.approx(0.9 * 15 / 17)
    assert abs(figures["coverage_90"] - figures["coverage_90_exact_samples"]) < 0.04
    assert figures["coverage_90"] < 0.86  # clearly below the nominal 0.9 at this ensemble size


def test_bench_scores_exact_kriging_samples_as_calibrated():
    """Samples drawn from the exact conditional law (kriging mean and covariance) score coverage ~0.9, spread
    ratio ~1 (also on isolated pixels) and rms ratio sqrt(1 + 1/S); halving their spread is caught."""
    samples = 400
    truth, masks, draws, means, variances = _kriging_draws(np.random.default_rng(0), 6, 16, samples)
    good = bench_gap_filling.score(truth, masks, draws, means, variances)
    assert abs(good["coverage_90"] - 0.9) < 0.04 and abs(good["spread_ratio"] - 1) < 0.05
    assert abs(good["spread_ratio_isolated"] - 1) < 0.1
    assert abs(good["rms_ratio"] - np.sqrt(1 + 1 / samples)) < 0.02
    mean_field = draws.mean(1, keepdims=True)
    narrow = bench_gap_filling.score(truth, masks, mean_field + 0.5 * (draws - mean_field), means, variances)
    assert narrow["coverage_90"] < 0.7 and abs(narrow["spread_ratio"] - 0.25) < 0.02
