"""Per-class options of class-conditional training: scales (improved_diffusion/class_scale.py: the scales
strength_labels reports, known answers in stored and robust model units; the loader's division, the samplers'
multiplication back) and class weights (the loader's draw frequencies); both round trip through metadata.json with
a bit-identical resume; the refusals."""
import json
import math
import shutil

import h5py
import numpy as np
import pytest
import torch

import model_likelihood
import sample_DPM
import train
from datasets import strength_labels
from improved_diffusion.checkpoint import load_state_dict
from improved_diffusion.data_normalization import ASINH_1, MAD_TO_SIGMA, ROBUST_SIGMAS
from improved_diffusion.dataloaders import EpochBatchSampler, create_dataloader, set_loader_epoch
from improved_diffusion.run_config import ConfigError
from tests.test_strength_labels import write
from tests.test_train_loss_weighting import first_epoch_copy
from utils.sampling.comparison import compare_samplers


def test_strength_labels_reports_the_median_std_ratios(tmp_path):
    # classes (quantile 0.5): stds {1, 2} and {4, 8}; medians 1.5 and 6
    write(tmp_path / "train" / "a.h5", [1, 2, 4, 8])
    summary = strength_labels.main(data_dir=str(tmp_path), quantiles=[0.5], normalization="none")
    assert summary["class_median_std"] == pytest.approx([1.5, 6.0])
    assert summary["class_scale"] == pytest.approx([1.0, 4.0])
    # robust: every value is +-s, so the median is 0 and the MAD is the median |v| = (2 + 4) / 2 = 3; a +-s field
    # maps to +-asinh(s / r) / asinh(1) with r = ROBUST_SIGMAS * MAD_TO_SIGMA * 3, which is its std
    r = ROBUST_SIGMAS * MAD_TO_SIGMA * 3.0
    model_std = {s: math.asinh(s / r) / ASINH_1 for s in (1, 2, 4, 8)}
    robust = strength_labels.main(data_dir=str(tmp_path), quantiles=[0.5], normalization="robust", overwrite=True)
    expected = np.median([model_std[4], model_std[8]]) / np.median([model_std[1], model_std[2]])
    assert robust["class_scale"] == pytest.approx([1.0, expected], rel=1e-5)
    assert expected < 4.0  # the tail compression makes the ratio smaller than in stored units


def test_bad_normalization_writes_nothing(tmp_path):
    write(tmp_path / "train" / "a.h5", [1, 2, 3, 4])
    with pytest.raises(ValueError, match="normalization='db'"):
        strength_labels.main(data_dir=str(tmp_path), quantiles=[0.5], normalization="db")
    with h5py.File(tmp_path / "train" / "a.h5") as f:
        assert list(f.keys()) == ["unwrap"]


SIZE = 32


def labelled_folder(path, n=8):
    """n fields: +-1 checkerboards (class 0) and +-6 ones (class 1), with a little noise so they are not all
    alike; HDF5 keys unwrap and strength."""
    path.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 2
    board = np.add.outer(np.arange(SIZE), np.arange(SIZE)) % 2 * 2.0 - 1
    fields = np.stack([(1 + 5 * k) * board + 0.1 * rng.standard_normal((SIZE, SIZE)) for k in labels])
    with h5py.File(path / "part0.hdf5", "w") as f:
        f["unwrap"] = fields.astype(np.float32)
        f["strength"] = labels.astype(np.int64)
    return str(path)


LOADER = dict(type_dataset="hdf5", image_size=SIZE, num_channels=1, batch_size=8, class_cond=True, num_class=2,
              key_class="strength", list_keys_hdf5_original=("unwrap", "strength"), normalization="robust",
              deterministic=True)


def test_loader_divides_each_item_by_its_class_scale(tmp_path):
    data = labelled_folder(tmp_path / "data")
    plain, info = create_dataloader(data, **LOADER)
    scaled, scaled_info = create_dataloader(data, class_scale=(1.0, 4.0), **LOADER)
    (x, cond), (xs, conds) = next(iter(plain)), next(iter(scaled))
    assert torch.equal(cond["y"], conds["y"]) and cond["y"].tolist() == [0, 1] * 4
    expected = x / torch.where(cond["y"] == 1, 4.0, 1.0).view(-1, 1, 1, 1)
    assert torch.equal(xs, expected)
    assert scaled_info["data_normalization"] == info["data_normalization"]  # model units are unchanged
    with pytest.raises(ValueError, match="one per class"):
        create_dataloader(data, class_scale=(1.0, 2.0, 3.0), **LOADER)


def test_class_weights_set_the_draw_frequencies(tmp_path):
    labels = np.arange(400) % 2  # equal classes; odds 1 : 3 -> class 1 drawn with probability 3/4
    sampler = EpochBatchSampler(400, 50, seed=7, item_weights=np.array([1.0, 3.0])[labels])
    drawn = []
    for epoch in range(10):
        sampler.set_epoch(epoch)
        epoch_items = [i for batch in sampler for i in batch]
        assert len(epoch_items) == 400  # an epoch keeps its length
        drawn += epoch_items
    n1 = labels[drawn].sum()
    assert abs(n1 - 3000) < 5 * np.sqrt(4000 * 0.75 * 0.25)  # binomial(4000, 3/4): within 5 standard deviations
    sampler.set_epoch(3)
    again = EpochBatchSampler(400, 50, seed=7, item_weights=np.array([1.0, 3.0])[labels])
    again.set_epoch(3)
    assert list(sampler) == list(again)  # a function of (seed, epoch)
    # through the loader: the class of each drawn item follows the weights, validation order is untouched
    data = labelled_folder(tmp_path / "data", n=64)
    loader, _ = create_dataloader(data, **{**LOADER, "deterministic": False, "batch_size": 64},
                                  class_weights=(1.0, 7.0))
    ys = []
    for epoch in range(10):
        set_loader_epoch(loader, epoch)
        ys += [int(y) for _, cond in loader for y in cond["y"]]
    assert abs(np.mean(ys) - 7 / 8) < 5 * np.sqrt(7 / 64 / 640)
    ordered, _ = create_dataloader(data, **LOADER, class_weights=(1.0, 7.0))  # deterministic: every item once
    assert next(iter(ordered))[1]["y"].tolist() == [0, 1] * 4


CONFIG = dict(image_size=SIZE, num_input_channels=1, num_model_channels=32, num_res_blocks=1, attention_resolutions="8",
              diffusion_steps=4, noise_schedule="cosine", batch_size=4, num_epochs=2, ema_rate="0.9", grid_interval=1,
              seed=3, keep_checkpoints=None, amp="none", type_dataset="hdf5", class_cond=True, num_class=2,
              key_class="strength", list_keys_hdf5_original=["unwrap", "strength"], normalization="robust")


@pytest.fixture(scope="module")
def scaled_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("class_scale")
    data = labelled_folder(root / "data")
    run = root / "straight"
    train.main(data_train_dir=data, url_folder_experiment=str(run), class_scale=[1.0, 3.0], **CONFIG)
    return data, run


@pytest.mark.parametrize("key, value", [("class_scale", [1.0, 3.0]), ("class_weights", [1.0, 4.0])])
def test_recorded_and_a_resume_without_the_keyword_is_bit_identical(scaled_run, tmp_path, key, value):
    data, _ = scaled_run
    straight = tmp_path / "straight"
    train.main(data_train_dir=data, url_folder_experiment=str(straight), **{key: value}, **CONFIG)
    assert json.loads((straight / "metadata.json").read_text())[key] == value
    resumed = first_epoch_copy(straight, tmp_path / "resumed")
    train.main(data_train_dir=data, resume_checkpoint=str(resumed / "model_epoch=0_iter=2.pt"), **CONFIG)
    plain = tmp_path / "plain"  # the same run without the option ends elsewhere: the option acts
    train.main(data_train_dir=data, url_folder_experiment=str(plain), **CONFIG)
    name = "model_epoch=1_iter=4.pt"
    a, b, c = (load_state_dict(folder / name) for folder in (straight, resumed, plain))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_samples_are_multiplied_back_by_their_class_scale(scaled_run, tmp_path):
    _, run = scaled_run
    unscaled = tmp_path / "unscaled"  # the same weights, read as a run without class scales
    unscaled.mkdir()
    shutil.copy(run / "ema_rate=0.9_1.pt", unscaled)
    meta = json.loads((run / "metadata.json").read_text())
    (unscaled / "metadata.json").write_text(json.dumps({**meta, "class_scale": None}))
    kw = dict(num_samples=6, batch_size=6, sample_steps=3, sampled_class=[0, 1], seed=5, plot=False, amp="none",
              device="cpu")
    out = {}
    for name, folder in (("scaled", run), ("unscaled", unscaled)):
        npz = sample_DPM.sample_from_ODE(model_path=str(folder / "ema_rate=0.9_1.pt"),
                                         url_save_path=str(tmp_path / f"samples_{name}"), **kw)
        with np.load(npz) as f:
            out[name], labels = f["arr_0"], f["arr_1"]
    assert labels.tolist() == [0, 1] * 3
    np.testing.assert_array_equal(out["scaled"][labels == 0], out["unscaled"][labels == 0])
    np.testing.assert_allclose(out["scaled"][labels == 1], 3.0 * out["unscaled"][labels == 1], rtol=1e-6)
    # the sampler comparison scores what the samplers write, in model units
    scored = {}

    def keeper(name):
        def score(images):
            scored[name] = images
            return {}
        return score
    for name, folder in (("scaled", run), ("unscaled", unscaled)):
        compare_samplers(str(folder / "ema_rate=0.9_1.pt"), [{"sampler": "ddim"}], [2], num_samples=4, batch_size=4,
                         device="cpu", sampled_class=[0, 1], score_fn=keeper(name))
    np.testing.assert_allclose(scored["scaled"][1::2], 3.0 * scored["unscaled"][1::2], rtol=1e-6)
    np.testing.assert_array_equal(scored["scaled"][0::2], scored["unscaled"][0::2])


@pytest.mark.parametrize("options, message", [
    (dict(class_scale=[1.0, 3.0], class_cond=False), "class_scale.*None unless class_cond"),
    (dict(class_scale=[1.0, 2.0, 3.0]), "one per class"),
    (dict(class_scale=[1.0, -2.0]), "finite numbers > 0"),
    (dict(class_weights=[1.0, 3.0], class_cond=False), "class_weights.*None unless class_cond"),
    (dict(class_weights=[1.0]), "class_weights.*one per class"),
])
def test_bad_class_scale_is_refused_before_anything_is_written(tmp_path, options, message):
    data = labelled_folder(tmp_path / "data")
    with pytest.raises(ConfigError, match=message):
        train.main(data_train_dir=data, url_folder_experiment=str(tmp_path / "run"), **{**CONFIG, **options})
    assert not (tmp_path / "run").exists()


def test_likelihood_refuses_a_class_scaled_model(scaled_run, tmp_path):
    data, run = scaled_run
    with pytest.raises(ValueError, match="class-scaled values"):
        model_likelihood.calc_model_loss(model_path=str(run / "ema_rate=0.9_1.pt"), url_dataset=data,
                                         key_data="unwrap", key_class="strength",
                                         out_json=str(tmp_path / "bpd.json"))
    assert not (tmp_path / "bpd.json").exists()
