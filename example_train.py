"""Train one of the paper's models (or the small demo) with the settings of the original example script.

`python example_train.py --target_data mnist --num_epochs 10`; the data folders are those the dataset
scripts write under `data_root` (datasets/README.md). Every other hyperparameter is `train.main`'s.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import train
from datasets import insar_synthetic, sar_synthetic
from improved_diffusion.checkpoint import ema_checkpoint_name
from improved_diffusion.script_util import apply_preset
from utils.cli import run_cli


@dataclass(frozen=True)
class BuiltinData:
    """How a target makes its data when the folder is missing, and its short default run on that data."""
    make: Callable[[str], None]  # writes train/ and val/ into the folder given
    num_epochs: int  # default epochs on the built-in data (about 5 min on 2 CPU cores)
    full_size: str  # what a full-size run uses instead (printed)


# target -> train.main keywords (data folders relative to data_root)
TARGETS: dict[str, dict] = {
    "mnist": apply_preset("mnist_32", data_train_dir="mnist_train", data_val_dir="mnist_val"),
    "cifar10": apply_preset("mnist_32", num_input_channels=3, data_train_dir="cifar_train", data_val_dir="cifar_val"),
    "sar": apply_preset("mnist_32", image_size=128, crop=True, data_train_dir="sar_tengeop/train",
                        data_val_dir="sar_tengeop/val"),
    "insar_interfero": apply_preset("insar_128", list_keys_hdf5_original=["unwrap", "dates"], key_data="unwrap",
                                    key_other="dates", data_train_dir="insar_unwrap/train",
                                    data_val_dir="insar_unwrap/val"),
    "insar_noise": apply_preset("insar_noise_32", list_keys_hdf5_original=["real_data", "count"],
                                key_data="real_data", key_other="count", data_train_dir="insar_noise/train",
                                data_val_dir="insar_noise/val"),
    "demo": apply_preset("demo", list_keys_hdf5_original=["unwrap", "wrap", "label"], key_data="unwrap",
                         normalization="range", norm_range=[-3.0, 3.0], data_train_dir="insar_synthetic/train",
                         data_val_dir="insar_synthetic/val",
                         builtin_data=BuiltinData(lambda folder: insar_synthetic.main(out_dir=folder,
                                                                                      deformation_fraction=0.0),
                                                  3, "--num_epochs 10 (or `make demo`: 7 epochs, sampled and "
                                                     "evaluated)")),
}


def synthetic_sar(folder: str) -> None:
    """Built-in class-labelled SAR amplitude data (64 px speckled textures, 4 classes) in `folder`."""
    print(f"[example] generating the built-in synthetic SAR set (64 px speckled textures, 4 classes) in {folder}")
    sar_synthetic.main(out_dir=folder, image_size=64, n_train_per_class=250)


def sar_synthetic_target(num_epochs: int, full_size: str, **overrides) -> dict:
    """A small class-conditional model on the built-in synthetic SAR textures (4 classes), trained `num_epochs`
    by default. Its lr and EMA rate are these examples' own (the demo preset's are tuned for main_job.py)."""
    return apply_preset("demo", lr=2e-4, ema_rate="0.9999", type_dataset="image", class_cond=True, num_class=4,
                        data_train_dir="sar_synthetic/train", data_val_dir="sar_synthetic/val",
                        builtin_data=BuiltinData(synthetic_sar, num_epochs, full_size), **overrides)


def example_main(targets: dict[str, dict], default_target: str, default_epochs: int, folder_suffix: str,
                 doc: str) -> Callable[..., dict]:
    """The entry function of an example script: train.main with the settings of `targets[target_data]`,
    data folders under `data_root` and output in ./models_data/<target_data><folder_suffix>/ by default."""

    def main(
            target_data: str = default_target,  # configuration (demo, sar_synthetic: built-in data, no download)
            data_root: str = "./data",  # folder holding the dataset folders
            url_folder_experiment: str | None = None,  # output folder (default ./models_data/<target_data>.../)
            num_epochs: int | None = None,  # total epochs of the run (None: the target's; short on built-in data)
            resume_checkpoint: str | None = None,  # model_epoch=E_iter=I.pt to continue from
            compute_val: bool = False,  # validation bits/dim each epoch (best-only checkpoints)
            device: str = "auto",  # 'auto', 'cpu', 'cuda', ...
            num_workers: int = 0,  # data-loading worker processes
            amp: str = "auto",  # 'auto' (bf16 where computed natively), 'none' (original fp32), 'bf16', 'fp16'
            seed: int = 0,  # seed of weights, data order and noise
            ) -> dict:
        if target_data not in targets:
            raise ValueError(f"target_data: got {target_data!r}, expected one of {sorted(targets)}")
        settings = dict(targets[target_data])
        builtin = settings.pop("builtin_data", None)
        for key in ("data_train_dir", "data_val_dir"):
            settings[key] = os.path.join(data_root, settings[key])
        if not os.path.isdir(settings["data_train_dir"]):
            if builtin is None:
                raise FileNotFoundError(
                    f"data_train_dir: {settings['data_train_dir']!r} does not exist; prepare the {target_data} "
                    f"dataset with its script in datasets/ (datasets/README.md), or train on built-in data with "
                    f"--target_data {', '.join(sorted(k for k, v in targets.items() if 'builtin_data' in v))}")
            builtin.make(os.path.dirname(settings["data_train_dir"]))
        if num_epochs is None:
            num_epochs = builtin.num_epochs if builtin is not None else default_epochs
        if builtin is not None:
            print(f"[example] {target_data}: built-in data, {num_epochs} epochs by default (about 5 min on 2 CPU "
                  f"cores); a full-size run: {builtin.full_size}")
        settings["url_folder_experiment"] = url_folder_experiment or output_folder(target_data, folder_suffix)
        result = train.main(**settings, num_epochs=num_epochs, resume_checkpoint=resume_checkpoint,
                            compute_val=compute_val, device=device, num_workers=num_workers, amp=amp, seed=seed)
        print(f"[example] run folder {os.path.abspath(settings['url_folder_experiment'])}: checkpoints, metadata.json "
              f"and tensorboard logs (tensorboard --logdir {settings['url_folder_experiment']}); last checkpoint "
              f"{result['checkpoint']}")
        return result

    main.__doc__ = doc
    main.__annotations__["target_data"] = Literal[tuple(targets)]  # choices listed in --help
    return main


def output_folder(target_data: str, folder_suffix: str) -> str:
    """The default run folder of an example: ./models_data/<target_data><folder_suffix>/."""
    return f"./models_data/{target_data}{folder_suffix}/"


def default_ema_checkpoint(targets: dict[str, dict], target_data: str, folder_suffix: str) -> str:
    """The final EMA checkpoint a default run of `target_data` writes (first EMA rate, last default epoch)."""
    settings = targets[target_data]
    rate = str(settings["ema_rate"]).split(",")[0]
    epoch = settings["builtin_data"].num_epochs - 1
    return os.path.join(output_folder(target_data, folder_suffix).removeprefix("./"), ema_checkpoint_name(rate, epoch))


FOLDER_SUFFIX = ""
main = example_main(TARGETS, "demo", 10, FOLDER_SUFFIX,
                    "Train the model of the original example_train.py for target_data (mnist, cifar10, sar, "
                    "insar_interfero, insar_noise, or demo: built-in synthetic InSAR).")

if __name__ == "__main__":
    run_cli(main)
