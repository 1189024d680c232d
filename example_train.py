"""Train one of the paper's models (or the small demo) with the settings of the original example script.

`python example_train.py --target_data mnist --num_epochs 10`; the data folders are those the dataset
scripts write under `data_root` (datasets/README.md). Every other hyperparameter is `train.main`'s.
"""
from __future__ import annotations

import os
from collections.abc import Callable

import train
from datasets import insar_synthetic, sar_synthetic
from improved_diffusion.script_util import apply_preset
from utils.cli import run_cli

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
                         builtin_data=lambda folder: insar_synthetic.main(out_dir=folder, deformation_fraction=0.0)),
}


def synthetic_sar(folder: str) -> None:
    """Built-in class-labelled SAR amplitude data (64 px speckled textures, 4 classes) in `folder`."""
    sar_synthetic.main(out_dir=folder, image_size=64, n_train_per_class=250)


# A small class-conditional model on the built-in synthetic SAR textures (4 classes).
# Its lr and EMA rate are these examples' own (the demo preset's are tuned for main_job.py's short run).
SAR_SYNTHETIC = apply_preset("demo", lr=2e-4, ema_rate="0.9999", type_dataset="image", class_cond=True, num_class=4,
                             data_train_dir="sar_synthetic/train", data_val_dir="sar_synthetic/val",
                             builtin_data=synthetic_sar)


def example_main(targets: dict[str, dict], default_target: str, default_epochs: int, folder_suffix: str,
                 doc: str) -> Callable[..., dict]:
    """The entry function of an example script: train.main with the settings of `targets[target_data]`,
    data folders under `data_root` and output in ./models_data/<target_data><folder_suffix>/ by default."""

    def main(
            target_data: str = default_target,  # which configuration (see the script's TARGETS)
            data_root: str = "./data",  # folder holding the dataset folders
            url_folder_experiment: str | None = None,  # output folder (default ./models_data/<target_data>.../)
            num_epochs: int = default_epochs,  # total epochs of the run
            resume_checkpoint: str | None = None,  # model_epoch=E_iter=I.pt to continue from
            compute_val: bool = False,  # validation bits/dim each epoch (best-only checkpoints)
            device: str = "auto",  # 'auto', 'cpu', 'cuda', ...
            num_workers: int = 0,  # data-loading worker processes
            amp: str = "none",  # 'none', 'bf16' or 'fp16' (CUDA)
            seed: int = 0,  # seed of weights, data order and noise
            ) -> dict:
        if target_data not in targets:
            raise ValueError(f"target_data: got {target_data!r}, expected one of {sorted(targets)}")
        settings = dict(targets[target_data])
        make_builtin = settings.pop("builtin_data", None)
        for key in ("data_train_dir", "data_val_dir"):
            settings[key] = os.path.join(data_root, settings[key])
        if not os.path.isdir(settings["data_train_dir"]):
            if make_builtin is None:
                raise FileNotFoundError(
                    f"data_train_dir: {settings['data_train_dir']!r} does not exist; prepare the {target_data} "
                    f"dataset with its script in datasets/ (datasets/README.md), or train on built-in data with "
                    f"--target_data {', '.join(sorted(k for k, v in targets.items() if 'builtin_data' in v))}")
            make_builtin(os.path.dirname(settings["data_train_dir"]))
        settings["url_folder_experiment"] = url_folder_experiment or f"./models_data/{target_data}{folder_suffix}/"
        return train.main(**settings, num_epochs=num_epochs, resume_checkpoint=resume_checkpoint,
                          compute_val=compute_val, device=device, num_workers=num_workers, amp=amp, seed=seed)

    main.__doc__ = doc
    return main


main = example_main(TARGETS, "demo", 10, "", "Train the model of the original example_train.py for target_data "
                    "(mnist, cifar10, sar, insar_interfero, insar_noise, or demo: built-in synthetic InSAR).")

if __name__ == "__main__":
    run_cli(main)
