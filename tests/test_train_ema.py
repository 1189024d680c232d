"""EMA warm-up: the decay formula at chosen steps, its default for new runs (recorded in metadata.json) and
the original constant decay for resumed runs of the original trainer (metadata.json without the key)."""
import json

import pytest
import torch

import train
from improved_diffusion.checkpoint import load_state_dict
from improved_diffusion.nn import ema_decay
from improved_diffusion.train_setup import keyword_defaults
from tests.test_train_script import image_folder

TINY = dict(image_size=32, num_input_channels=1, num_model_channels=32, num_res_blocks=1, attention_resolutions="",
            diffusion_steps=4, noise_schedule="cosine", batch_size=2, ema_rate="0.9", grid_interval=0, lr=1e-3, seed=1)


def test_warmup_decay_at_chosen_steps():
    # (1 + t) / (10 + t) below the rate, the rate once the ramp passes it; no warm-up: the rate itself
    assert ema_decay(0.9999, 0, True) == pytest.approx(1 / 10)
    assert ema_decay(0.9999, 90, True) == pytest.approx(91 / 100)
    assert ema_decay(0.9999, 990, True) == pytest.approx(991 / 1000)
    assert ema_decay(0.9999, 10 ** 6, True) == 0.9999
    assert ema_decay(0.99, 890, True) == 0.99 and ema_decay(0.99, 889, True) == pytest.approx(890 / 899)
    assert ema_decay(0.9999, 5, False) == 0.9999


def test_default_rate_stays_and_new_runs_record_the_warmup(tmp_path):
    assert keyword_defaults(train.main)["ema_rate"] == "0.9999" and keyword_defaults(train.main)["ema_warmup"]
    data = image_folder(tmp_path / "data", n=2, size=32)
    train.main(data_train_dir=data, url_folder_experiment=str(tmp_path / "run"), num_epochs=1, **TINY)
    assert json.loads((tmp_path / "run" / "metadata.json").read_text())["ema_warmup"] is True


@pytest.mark.parametrize("original_run", [True, False])
def test_resume_uses_the_decay_of_the_run(tmp_path, original_run):
    """One step per epoch; the update at step_total=1 is EMA_1 = d * EMA_0 + (1 - d) * model_1 with d = 0.9
    (original run: no warm-up key) or d = (1 + 1) / (10 + 1) (warm-up)."""
    data = image_folder(tmp_path / "data", n=2, size=32)
    run = tmp_path / "run"
    train.main(data_train_dir=data, url_folder_experiment=str(run), num_epochs=1, **TINY)
    if original_run:
        meta = json.loads((run / "metadata.json").read_text())
        del meta["ema_warmup"]
        (run / "metadata.json").write_text(json.dumps(meta))
    ema0 = load_state_dict(run / "ema_rate=0.9_0.pt")
    train.main(data_train_dir=data, resume_checkpoint=str(run / "model_epoch=0_iter=1.pt"), num_epochs=2, **TINY)
    model1, ema1 = load_state_dict(run / "model_epoch=1_iter=2.pt"), load_state_dict(run / "ema_rate=0.9_1.pt")
    d = 0.9 if original_run else 2 / 11
    assert json.loads((run / "metadata.json").read_text())["ema_warmup"] is (not original_run)
    for name, value in model1.items():
        if value.is_floating_point():
            torch.testing.assert_close(ema1[name], d * ema0[name] + (1 - d) * value, rtol=1e-5, atol=1e-6)
