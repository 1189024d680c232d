"""Exact resume: 2 + 2 epochs (and a resume from a within-epoch checkpoint) give bit-identical model
and EMA weights to 4 straight epochs, with shuffling, random crops, a worker process, dropout, the
loss-second-moment sampler and an EMA (rate 0.9) that differs from the model."""
import shutil

import torch

import train
from improved_diffusion.checkpoint import load_state_dict
from improved_diffusion.train_state import load_train_state
from tests.test_train_script import image_folder

CONFIG = dict(image_size=32, num_input_channels=1, num_model_channels=32, num_res_blocks=1, attention_resolutions="8",
              diffusion_steps=2, noise_schedule="cosine", batch_size=4, num_epochs=4, ema_rate="0.9", dropout=0.1,
              schedule_sampler="loss-second-moment", crop=True, num_workers=1, class_cond=True, num_class=2,
              save_interval=1, grid_interval=0, seed=3, keep_checkpoints=None)  # every set: older ones are copied


def _copy_set(src, dst, names):
    dst.mkdir()
    for name in names + ["metadata.json"]:
        shutil.copy(src / name, dst)


def _assert_same_weights(a, b):
    for name in ("model_epoch=3_iter=8.pt", "ema_rate=0.9_3.pt"):
        sa, sb = load_state_dict(a / name), load_state_dict(b / name)
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), name


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    data = image_folder(tmp_path / "data", n=8, size=40)
    straight = tmp_path / "straight"
    train.main(data_train_dir=data, url_folder_experiment=str(straight), **CONFIG)
    sampler = load_train_state(straight / "train_state_epoch=3_iter=8.pt").sampler
    assert (sampler["loss_counts"] == 10).all()  # the sampler left its uniform warm-up: its history matters
    model, ema = load_state_dict(straight / "model_epoch=3_iter=8.pt"), load_state_dict(straight / "ema_rate=0.9_3.pt")
    assert not all(torch.equal(model[k], ema[k]) for k in model)

    resumed = tmp_path / "resumed"  # the folder as it was after epoch 1 (2 + 2 epochs)
    _copy_set(straight, resumed, ["model_epoch=1_iter=4.pt", "ema_rate=0.9_1.pt", "opt1.pt",
                                  "train_state_epoch=1_iter=4.pt"])
    train.main(data_train_dir=data, resume_checkpoint=str(resumed / "model_epoch=1_iter=4.pt"), **CONFIG)
    _assert_same_weights(straight, resumed)

    within = tmp_path / "within"  # interrupted after step 1 of epoch 2
    _copy_set(straight, within, ["model_epoch=2_step=1.pt", "ema_rate=0.9_2_step=1.pt", "opt2_step=1.pt",
                                 "train_state_epoch=2_step=1.pt"])
    train.main(data_train_dir=data, resume_checkpoint=str(within / "model_epoch=2_step=1.pt"), **CONFIG)
    _assert_same_weights(straight, within)
