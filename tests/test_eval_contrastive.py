"""Contrastive extractor: views only move pixels, NT-Xent against its closed form, training through
example_fine_tuning.py's unlabelled mode gives a loadable extractor that separates field textures."""
import json
import math

import numpy as np
import pytest
import torch

import example_fine_tuning
from improved_diffusion.file_io import file_sha256
from utils.evaluation.contrastive import nt_xent, random_views
from utils.evaluation.features import load_extractor


def test_views_keep_pixel_values_and_cover_the_eight_symmetries():
    x = torch.arange(2 * 36, dtype=torch.float32).reshape(2, 1, 6, 6)
    full = random_views(x.repeat(200, 1, 1, 1), 6, torch.Generator().manual_seed(0))
    for view, img in zip(full, x.repeat(200, 1, 1, 1)):
        assert torch.equal(view.flatten().sort().values, img.flatten().sort().values)
    symmetries = {tuple(v[0].flatten().tolist()) for v in full[::2]}
    assert len(symmetries) == 8  # rot90^k x flip of a generic square
    crops = random_views(x, 4, torch.Generator().manual_seed(1))
    assert crops.shape == (2, 1, 4, 4) and set(crops[0].flatten().tolist()) <= set(x[0].flatten().tolist())
    with pytest.raises(ValueError, match="crop=7"):
        random_views(x, 7, torch.Generator())


def test_nt_xent_of_orthogonal_matched_pairs():
    # z1 = z2 = basis vectors e_0..e_3: each view has similarity 1 with its positive, 0 with the other 6
    z = torch.eye(4)
    tau = 0.5
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 6))
    assert nt_xent(z, z, tau).item() == pytest.approx(expected, rel=1e-6)
    assert nt_xent(z, z.roll(1, dims=0), tau).item() > expected


def _fields(n, length, rng):
    """(n, 16, 16, 1) smooth random fields: white noise averaged over length x length boxes."""
    noise = rng.normal(size=(n, 16 + length, 16 + length))
    c = noise.cumsum(1).cumsum(2)
    box = c[:, length:, length:] - c[:, :-length, length:] - c[:, length:, :-length] + c[:, :-length, :-length]
    return (box[:, :16, :16] / length)[..., None].astype(np.float32) * 0.3


def _fisher_ratio(extractor, images_a, images_b):
    a, b = (extractor.extract(x, progress=False) for x in (images_a, images_b))
    direction = (a.mean(0) - b.mean(0)) / np.linalg.norm(a.mean(0) - b.mean(0))
    return ((a.mean(0) - b.mean(0)) @ direction) ** 2 / ((a @ direction).var() + (b @ direction).var())


def test_unlabelled_mode_trains_a_loadable_extractor(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "train.npz", np.concatenate([_fields(48, 1, rng), _fields(48, 4, rng)]))
    np.savez(tmp_path / "val.npz", np.concatenate([_fields(16, 1, rng), _fields(16, 4, rng)]))
    out = tmp_path / "simclr"
    result = example_fine_tuning.main(str(out), data_val_dir=str(tmp_path / "val.npz"),
                                      unlabelled_data=str(tmp_path / "train.npz"), width=4, batch_size=32,
                                      num_epochs=4, lr=3e-3)
    history = json.loads((out / "history.json").read_text())
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert result["best_epoch"] == min(range(4), key=lambda e: history[e]["val_loss"])
    saved = torch.load(out / "classifier_best.pt", weights_only=True)
    assert saved["training"].startswith("simclr(") and saved["epoch"] == result["best_epoch"]
    line = example_fine_tuning.summary_line(result)
    assert f"lowest validation NT-Xent {result['best_loss']:.3f} at epoch {result['best_epoch']}" in line
    assert "chance about 4.14" in line and "random-init" not in line  # ln(2 x 32 - 1)
    ext = load_extractor("domain_cnn", out / "classifier_best.pt")
    assert ext.dim == 32 and ext.description()["weights_sha256"] == file_sha256(out / "classifier_best.pt")
    # the two textures (white vs smooth) lie further apart than in the features of the same network
    # untrained: Fisher ratio along the difference of the class means
    example_fine_tuning.main(str(tmp_path / "random"), random_init=True, width=4)
    untrained = load_extractor("domain_cnn", tmp_path / "random" / "classifier_best.pt")
    test_sets = [_fields(64, n, rng) for n in (1, 4)]
    assert _fisher_ratio(ext, *test_sets) > 3 * _fisher_ratio(untrained, *test_sets)
    with pytest.raises(ValueError, match="choose one"):
        example_fine_tuning.main(str(tmp_path / "x"), unlabelled_data=str(tmp_path / "train.npz"), random_init=True)
