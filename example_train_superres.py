"""Train a super-resolution model: the network sees the image area-downscaled to `image_size_lr`
(upsampled and concatenated to x_t) and learns the full-resolution image."""
from __future__ import annotations

from typing import Optional

from example_train import run_target
from improved_diffusion.script_util import PRESETS
from utils.cli import run_cli

TARGETS: dict[str, dict] = {
    "mnist": {**PRESETS["mnist_32"], "image_size_lr": 16, "learn_sigma": True, "data_train_dir": "mnist_train",
              "data_val_dir": "mnist_test"},
    "sar": {**PRESETS["sar_superres_128_256"], "data_train_dir": "sar_tengeop/train",
            "data_val_dir": "sar_tengeop/test"},
}


def main(target_data: str = "mnist",  # mnist (32 px from 16 px) or sar (256 px from 128 px)
         data_root: str = "./data",  # folder holding the dataset folders
         url_folder_experiment: Optional[str] = None,  # output folder (default ./models_data/<target_data>_superres/)
         num_epochs: int = 100,  # total epochs of the run
         resume_checkpoint: Optional[str] = None,  # model_epoch=E_iter=I.pt to continue from
         compute_val: bool = False,  # validation bits/dim each epoch (best-only checkpoints)
         device: str = "auto",  # 'auto', 'cpu', 'cuda', ...
         num_workers: int = 0,  # data-loading worker processes
         amp: str = "none",  # 'none', 'bf16' or 'fp16' (CUDA)
         seed: int = 0,  # seed of weights, data order and noise
         ) -> dict:
    """Train the super-resolution model of the original example_train_superres.py (class-conditional,
    as the published SAR model and the super-resolution sampler expect)."""
    url_folder_experiment = url_folder_experiment or f"./models_data/{target_data}_superres/"
    return run_target(TARGETS, **locals())


if __name__ == "__main__":
    run_cli(main)
