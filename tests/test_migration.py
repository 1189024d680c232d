"""Users of the original code: five scripts in the original's calling style run unchanged at toy scale
(train with validation and resume; DDIM with a class; DPM-Solver with the original's flag values;
likelihood reading vb_loss; super-resolution of low-res samples), the original FID / precision-recall /
semivariogram names, and the one-line notices of changed defaults (docs/migrating.md)."""
import runpy
import textwrap

import h5py
import numpy as np
import pytest
import torch

from tests.conftest import FIXTURES
from tests.test_train_script import TINY, hdf5_folder, image_folder
from utils import changed_defaults

ORIGINAL_CKPT = FIXTURES / "compat-a" / "model_epoch=3_iter=120.pt"  # written by the original trainer, T=100


def run_script(tmp_path, name, body, capsys):
    """Write `body` as an original-style script and run it as __main__; returns (its globals, stdout)."""
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    capsys.readouterr()
    result = runpy.run_path(str(path), run_name="__main__")
    return result, capsys.readouterr().out


@pytest.fixture(autouse=True)
def _fresh_notices(monkeypatch):
    monkeypatch.setattr(changed_defaults, "_shown", set())


def test_train_on_an_image_folder_with_validation_and_resume(tmp_path, capsys):
    train_dir, val_dir = image_folder(tmp_path / "train", n=2), image_folder(tmp_path / "val", n=2)
    run = tmp_path / "run"
    g, printed = run_script(tmp_path, "example_train", f"""
        import glob
        from train import main

        if __name__ == "__main__":
            kwargs = dict(type_dataset="image", data_train_dir="{train_dir}/", data_val_dir="{val_dir}/",
                          schedule_sampler="loss-second-moment", lr=1e-4, weight_decay=0.0, lr_anneal_steps=0,
                          batch_size=2, microbatch=-1, ema_rate="0.9", save_interval=None, use_fp16=False,
                          fp16_scale_growth=1e-3, image_size=32, num_input_channels=1, num_model_channels=32,
                          num_res_blocks=1, num_heads=4, num_heads_upsample=-1, attention_resolutions="8",
                          dropout=0.1, learn_sigma=False, sigma_small=False, class_cond=True, num_class=2,
                          diffusion_steps=10, noise_schedule="cosine", timestep_respacing="",
                          loss_name="rescaled_mse", output_type="epsilon", rescale_timesteps=True,
                          use_checkpoint=False, use_scale_shift_norm=True, url_folder_experiment="{run}/",
                          list_keys_hdf5_original=None, key_data=None, key_other=None, compute_val=True,
                          subset_timesteps=None, crop=False)
            main(num_epochs=1, resume_checkpoint=None, **kwargs)
            first = glob.glob("{run}/model_epoch=0_*.pt")[0]
            result = main(num_epochs=2, resume_checkpoint=first, **kwargs)
        """, capsys)
    assert len(g["first"].split("_vb=")) == 2  # validation named the set after its bits/dim
    assert printed.count("ema_warmup=True") == 1  # the new run, not its resume
    assert g["result"]["step_total"] == 2 and g["result"]["epochs"] == 2
    assert sorted(p.name.split("_iter=")[0] for p in run.glob("model_epoch=*.pt")) in (
        ["model_epoch=0", "model_epoch=1"], ["model_epoch=0"])  # epoch 1 is written only if validation improved


def test_hdf5_keys_none_allows_any_key(tmp_path):
    import train

    data = hdf5_folder(tmp_path / "data")
    with h5py.File(tmp_path / "data" / "part0.hdf5", "a") as f:
        f["dates"] = np.arange(2)  # a key outside the default list ("wrap", "unwrap")
    kw = dict(TINY, type_dataset="hdf5", data_train_dir=data, data_val_dir=data, key_data="unwrap")
    with pytest.raises(ValueError, match="list_keys_hdf5_original"):
        train.main(url_folder_experiment=str(tmp_path / "a"), **kw)
    result = train.main(url_folder_experiment=str(tmp_path / "b"), list_keys_hdf5_original=None, **kw)
    assert result["step_total"] == 1


def test_clip_notice_when_the_data_exceed_the_clamp(tmp_path, capsys):
    import train
    from sample import main_sample

    data = hdf5_folder(tmp_path / "data")
    with h5py.File(tmp_path / "data" / "part0.hdf5", "a") as f:
        f["unwrap"][...] = 3 * f["unwrap"][()]  # stored values in [-3, 3], no normalisation: beyond the clamp
    result = train.main(url_folder_experiment=str(tmp_path / "run"), type_dataset="hdf5", data_train_dir=data,
                        data_val_dir=data, **TINY)
    capsys.readouterr()
    main_sample(model_path=str(result["checkpoint"]), num_samples=1, sampling_steps=2, plot=False,
                url_save_path=str(tmp_path / "s"), progress=False)
    assert "the original always clamped" in capsys.readouterr().out


def test_sample_with_ddim_and_a_class_from_an_original_checkpoint(tmp_path, capsys):
    out = tmp_path / "samples"
    g, _ = run_script(tmp_path, "example_sample", f"""
        from sample import main_sample

        if __name__ == "__main__":
            path = main_sample(model_path="{ORIGINAL_CKPT}", clip_denoised=True, max_clip_val=1, diffusion_steps=10,
                               num_samples=3, sample_class=5, batch_size=2, use_ddim=True,
                               url_save_path="{out}/", to_0_255=False, plot=False)
        """, capsys)
    with np.load(out / "samples_3x32x32x1.npz") as f:
        assert f["arr_0"].shape == (3, 32, 32, 1) and f["arr_0"].dtype == np.float32
        assert np.abs(f["arr_0"]).max() <= 1 and f["arr_1"].tolist() == [5, 5, 5]
    assert g["path"] == out / "samples_3x32x32x1.npz"


def test_dpm_solver_with_the_original_flag_values(tmp_path, capsys):
    out = tmp_path / "dpm"
    _, printed = run_script(tmp_path, "example_dpm", f"""
        from sample_DPM import sample_from_ODE

        if __name__ == "__main__":
            sample_from_ODE(model_path="{ORIGINAL_CKPT}", clip_denoised=True, max_clip_val=1, sample_steps=6,
                            num_samples=2, batch_size=2, sampled_class=3, url_save_path="{out}/",
                            algorithm_type="dpmsolver", method_type="multistep", skip_type="time-uniform",
                            order=3, plot=False)
        """, capsys)
    with np.load(out / "samples_2x32x32x1.npz") as f:
        assert f["arr_0"].shape == (2, 32, 32, 1) and np.isfinite(f["arr_0"]).all()
        assert f["arr_1"].tolist() == [3, 3]
    assert "algorithm_type" not in printed and "skip_type" not in printed  # the original's values: no notice


def test_likelihood_reads_vb_loss(tmp_path, capsys):
    data = image_folder(tmp_path / "val", n=2, classes="04")
    g, _ = run_script(tmp_path, "example_likelihood", f"""
        from model_likelihood import calc_model_loss

        if __name__ == "__main__":
            # the original's parameters in its order: data_type, list_keys_hdf5_original, key_data, key_other,
            # diffusion_steps, batch_size, clip_denoised, subset_timesteps
            dic = calc_model_loss("{ORIGINAL_CKPT}", "{data}/", "image", [], None, None, 10, 32, True, None)
            vb, mse = dic["vb_loss"], dic["mse_xstart_loss"]
        """, capsys)
    vb, mse, report = g["vb"], g["mse"], g["dic"]
    assert np.isclose(vb, np.mean(report["per_example_bpd"])) and vb > 0  # mean total bits/dim
    assert 0 < mse <= 4  # x0 MSE of values in [-1, 1]
    assert report["diffusion_steps"] == 10 and report["trained_diffusion_steps"] == 100


def test_super_resolution_of_low_res_samples(tmp_path, capsys):
    hr = image_folder(tmp_path / "hr", n=2, size=64)
    sr_run, low = tmp_path / "sr_run", tmp_path / "low"
    g, printed = run_script(tmp_path, "example_superres", f"""
        import glob
        from sample import main_sample
        from train import main

        if __name__ == "__main__":
            main(data_train_dir="{hr}/", data_val_dir="{hr}/", num_epochs=1, batch_size=2, image_size=64,
                 image_size_lr=32, num_input_channels=1, num_model_channels=32, num_res_blocks=1,
                 attention_resolutions="8", learn_sigma=True, loss_name="rescaled_mse", diffusion_steps=10,
                 noise_schedule="cosine", ema_rate="0.9", url_folder_experiment="{sr_run}/",
                 list_keys_hdf5_original=None)
            low_res = main_sample(model_path="{ORIGINAL_CKPT}", diffusion_steps=10, num_samples=2,
                                  sample_class=1, batch_size=2, use_ddim=True, url_save_path="{low}/", plot=False)
            high_res = main_sample(model_path=glob.glob("{sr_run}/ema_rate=0.9_0.pt")[0], url_lr_data=str(low_res),
                                   diffusion_steps=None, num_samples=2, batch_size=2, use_ddim=False,
                                   url_save_path="{tmp_path}/high/", plot=True)
        """, capsys)
    with np.load(g["high_res"]) as f:
        assert f["arr_0"].shape == (2, 64, 64, 1) and np.isfinite(f["arr_0"]).all()
    # EMA warm-up of the new run, T=10 != 100 and no mean shift: each changed default says so once
    for line in ("ema_warmup=True", "the original re-discretised it to 100 steps", "shift_to_lr_mean=False"):
        assert printed.count(line) == 1


def test_amp_auto_notice_only_when_it_leaves_float32(tmp_path, capsys, monkeypatch):
    from sample import main_sample
    from utils.sampling import options

    kw = dict(model_path=str(ORIGINAL_CKPT), num_samples=1, sampling_steps=2, sample_class=0, plot=False,
              progress=False)
    monkeypatch.setattr(options, "resolve_amp", lambda amp, device: "none")  # a machine without native bf16
    main_sample(url_save_path=str(tmp_path / "a"), **kw)
    assert "amp='auto'" not in capsys.readouterr().out
    monkeypatch.setattr(options, "resolve_amp", lambda amp, device: "bf16")  # one with it
    main_sample(url_save_path=str(tmp_path / "b"), **kw)
    assert "amp='auto' runs the network under bf16" in capsys.readouterr().out


def test_notice_is_printed_once_per_process(capsys):
    changed_defaults.notice_changed_default("dpm.skip_type")
    changed_defaults.notice_changed_default("dpm.skip_type")
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "time-uniform" in lines[0]


def test_tengeop_split_notice(tmp_path, capsys):
    import tifffile

    from datasets import TenGeoP_SAR

    tif = tmp_path / "tif"
    for cls in "FG":
        (tif / cls).mkdir(parents=True)
        for i in range(3):
            tifffile.imwrite(tif / cls / f"s1a-wv_{i}.tiff", np.full((8, 8), 1.0 + i, dtype=np.float32))
    TenGeoP_SAR.main(url_folder_tif=str(tif), url_folder_png=str(tmp_path / "listing"), split="listing")
    assert "[changed default]" not in capsys.readouterr().out
    TenGeoP_SAR.main(url_folder_tif=str(tif), url_folder_png=str(tmp_path / "shuffled"))
    assert "split='listing'" in capsys.readouterr().out


def test_original_fid_names():
    from utils.utils_FID import get_fid, get_frechet_distance, get_mu_sigma

    mu1, mu2 = np.array([0.0, 1.0]), np.array([3.0, 1.0])
    s1, s2 = np.diag([1.0, 4.0]), np.diag([9.0, 1.0])
    # diagonal covariances: |mu1 - mu2|^2 + sum (s1 + s2 - 2 sqrt(s1 s2))
    assert np.isclose(get_frechet_distance(mu1, s1, mu2, s2), 9 + (1 + 9 - 6) + (4 + 1 - 4))
    rng = np.random.default_rng(0)
    batches = [torch.from_numpy(rng.normal(size=(4, 1, 2, 2)).astype(np.float32)) for _ in range(3)]
    loader = [(b, {}) for b in batches]
    flat = torch.nn.Flatten()
    mu, sigma = get_mu_sigma(loader, 1, flat, 10)
    first10 = torch.cat(batches).flatten(1)[:10].numpy().astype(np.float64)
    assert np.allclose(mu, first10.mean(0)) and np.allclose(sigma, np.cov(first10, rowvar=False))
    assert abs(get_fid(loader, batches, 1, flat, num_samples=12)) < 1e-9  # the same set twice
    with pytest.raises(ValueError, match=r"expected \(N, 3, H, W\)"):
        get_mu_sigma(loader, 3, flat, 4)


def test_original_precision_recall_names(tmp_path):
    from utils.utils_precision_and_recall import compute_precision_and_recall, knn_precision_recall_features

    real = np.array([[0.0], [1.0], [2.0], [3.0]])
    gen = np.array([[0.5], [10.0]])
    # k=1: real balls of radius 1 hold 0.5, not 10; generated balls of radius 9.5 around 0.5 hold all real points
    result = knn_precision_recall_features(real, gen, nhood_sizes=[1])
    assert result["precision"].tolist() == [0.5] and result["recall"].tolist() == [1.0]
    loader_real = [torch.tensor(real, dtype=torch.float32).reshape(4, 1, 1, 1)]
    loader_gen = [torch.tensor(gen, dtype=torch.float32).reshape(2, 1, 1, 1)]
    cache = tmp_path / "real_features.hdf5"
    first = compute_precision_and_recall(loader_real, loader_gen, 1, torch.nn.Flatten(), str(cache), [1], 2)
    with h5py.File(cache, "r") as f:
        assert f["features"][()].ravel().tolist() == [0.0, 1.0]
    # the cache is used: a different real loader gives the cached answer
    assert compute_precision_and_recall([loader_gen[0]], loader_gen, 1, torch.nn.Flatten(), str(cache), [1], 2) == first
    with pytest.raises(ValueError, match="num_samples=4"):
        compute_precision_and_recall(loader_real, loader_real, 1, torch.nn.Flatten(), str(cache), [1], 4)


def test_original_semivariogram_names(tmp_path, capsys):
    from utils.utils_semivariogram import comp_semivariogram, read_semivariogram

    rng = np.random.default_rng(0)
    fields = rng.normal(size=(3, 16, 16)).astype(np.float32)
    for name, scale in (("a", 1.0), ("b", 2.0)):
        (tmp_path / name).mkdir()
        with h5py.File(tmp_path / name / "part.hdf5", "w") as f:
            f["unwrap"] = fields * scale
    plain = comp_semivariogram(str(tmp_path / "a"), key_data="unwrap", N=16, url_save_csv=tmp_path / "a.csv")
    doubled = comp_semivariogram(str(tmp_path / "b"), key_data="unwrap", N=16)
    assert capsys.readouterr().out.count("rescale=False") == 1
    assert np.allclose(doubled.gamma, 4 * plain.gamma)  # units kept: semivariance scales with the square
    rescaled = [comp_semivariogram(str(tmp_path / n), key_data="unwrap", N=16, rescale=True).gamma for n in "ab"]
    assert np.allclose(*rescaled)  # the original's per-field rescale removes the scale
    table = read_semivariogram(tmp_path / "a.csv")
    assert np.allclose(table["gamma"], plain.gamma) and np.allclose(table["lags"], plain.lags)
