"""Each run option of a training run is resolved once: amp, EMA rates and the device."""
import sys
from collections import Counter

import train
from improved_diffusion import acceleration, dist_util, train_state
from tests.test_train_script import TINY, image_folder

RESOLVERS = {"resolve_amp": acceleration.resolve_amp, "parse_ema_rates": train_state.parse_ema_rates,
             "resolve_device": dist_util.resolve_device}


def test_one_training_run_resolves_each_option_once(tmp_path, monkeypatch):
    calls = Counter()

    def counting(name, func):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return func(*args, **kwargs)
        return wrapper

    # every module that bound one of the resolvers by name gets the counting wrapper
    for module in list(sys.modules.values()):
        for name, func in RESOLVERS.items():
            if getattr(module, name, None) is func:
                monkeypatch.setattr(module, name, counting(name, func))
    args = {**TINY, "ema_rate": "0.9,0.99", "amp": "auto", "device": "cpu"}
    out = train.main(**args, data_train_dir=image_folder(tmp_path / "data"), url_folder_experiment=str(tmp_path / "run"))
    assert out["step_total"] == 1
    assert calls == {"resolve_amp": 1, "parse_ema_rates": 1, "resolve_device": 1}
    # the resolved EMA rates reached the loop: one EMA file per rate
    assert {p.name for p in (tmp_path / "run").glob("ema_rate=*")} == {"ema_rate=0.9_0.pt", "ema_rate=0.99_0.pt"}
