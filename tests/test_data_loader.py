"""Epoch reproducibility (with and without workers), distributed partition, drop_last, denormalize."""
import numpy as np
import pytest
import torch
from PIL import Image

from improved_diffusion.data_normalization import make_normalization, normalize
from improved_diffusion.dataloaders import EpochBatchSampler, create_dataloader, denormalize, set_loader_epoch


@pytest.fixture
def image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (12, 14), dtype=np.uint8)).save(tmp_path / f"{'ab'[i % 2]}_{i}.png")
    return tmp_path


def _batches(loader, epoch):
    set_loader_epoch(loader, epoch)
    return [(x.clone(), {k: v.clone() for k, v in c.items()}) for x, c in loader]


def _same(a, b):
    return len(a) == len(b) and all(torch.equal(x1, x2) and c1.keys() == c2.keys()
                                    and all(torch.equal(c1[k], c2[k]) for k in c1) for (x1, c1), (x2, c2) in zip(a, b))


def test_epoch_batches_depend_only_on_seed_and_epoch_with_or_without_workers(image_folder):
    kw = dict(image_size=8, num_channels=1, batch_size=3, class_cond=True, crop=True, seed=5)
    loader0, _ = create_dataloader(str(image_folder), **kw)
    loader2, _ = create_dataloader(str(image_folder), num_workers=2, **kw)
    e1 = _batches(loader0, 1)
    _batches(loader0, 0)
    torch.manual_seed(123)
    np.random.seed(123)
    assert _same(_batches(loader0, 1), e1)  # resume: epoch 1 again, other global RNG state
    assert _same(_batches(loader2, 1), e1)  # worker processes give the same batches
    assert not _same(_batches(loader0, 2), e1)
    loader_other_seed, _ = create_dataloader(str(image_folder), **(kw | dict(seed=6)))
    assert not _same(_batches(loader_other_seed, 1), e1)


def test_distributed_ranks_partition_each_epoch():
    ranks = [EpochBatchSampler(11, 2, seed=1, num_replicas=3, rank=r) for r in range(3)]
    for s in ranks:
        s.set_epoch(4)
    parts = [[i for b in s for i in b] for s in ranks]
    assert all(len(p) == 4 for p in parts) and all(len(s) == 2 for s in ranks)
    flat = sum(parts, [])
    assert set(flat) == set(range(11)) and len(flat) == 12  # padded to a multiple of 3 like DistributedSampler


def test_drop_last_and_batch_count(image_folder):
    kw = dict(image_size=8, num_channels=1, batch_size=4)
    assert [len(x) for x, _ in create_dataloader(str(image_folder), **kw)[0]] == [4, 4, 2]
    loader, _ = create_dataloader(str(image_folder), drop_last=True, **kw)
    assert len(loader) == 2 and [len(x) for x, _ in loader] == [4, 4]


def test_data_info_is_json_serialisable(image_folder):
    import json
    _, info = create_dataloader(str(image_folder), image_size=8, num_channels=3, batch_size=4, class_cond=True,
                                image_size_lr=4)
    assert json.loads(json.dumps(info)) == info
    assert info["class_names"] == ["a", "b"] and info["image_size_lr"] == 4


def test_denormalize_inverts_normalize_and_checks_its_input():
    v = np.array([[1.0, 2.0], [5.0, 9.0]], dtype=np.float32)
    norm = make_normalization("range", 1.0, 9.0)
    x = normalize(v, norm)
    np.testing.assert_allclose(x, [[-1, -0.75], [0, 1]])
    np.testing.assert_allclose(denormalize(x, norm), v, rtol=1e-6)
    with pytest.raises(ValueError, match="lacks the keys"):
        denormalize(x, {"kind": "range"})
    with pytest.raises(ValueError, match="low=2.0, high=1.0"):
        make_normalization("range", 2.0, 1.0)


def test_bad_loader_arguments(image_folder):
    with pytest.raises(ValueError, match="type_dataset='npz'"):
        create_dataloader(str(image_folder), type_dataset="npz", image_size=8, num_channels=1, batch_size=1)
    with pytest.raises(ValueError, match="batch_size=0"):
        create_dataloader(str(image_folder), image_size=8, num_channels=1, batch_size=0)
    with pytest.raises(ValueError, match="both given"):
        create_dataloader(str(image_folder), image_size=8, num_channels=1, batch_size=1, image_size_hr=16,
                          image_size_lr=4)
