"""Train the low-resolution SAR model of the paper: 128 px images area-downscaled from 256 px reads
(first stage of the super-resolution pipeline; the second is example_train_superres.py)."""
from __future__ import annotations

from typing import Optional

from example_train import run_target
from improved_diffusion.script_util import PRESETS
from utils.cli import run_cli

TARGETS: dict[str, dict] = {
    "sar": {**PRESETS["sar_lowres_128"], "data_train_dir": "sar_tengeop/train", "data_val_dir": "sar_tengeop/val"},
}


def main(target_data: str = "sar",  # sar (TenGeoP-SARwv PNG folders)
         data_root: str = "./data",  # folder holding the dataset folders
         url_folder_experiment: Optional[str] = "./models_data/sar_lowres_try/",  # output folder
         num_epochs: int = 1000,  # total epochs of the run
         resume_checkpoint: Optional[str] = None,  # model_epoch=E_iter=I.pt to continue from
         compute_val: bool = False,  # validation bits/dim each epoch (best-only checkpoints)
         device: str = "auto",  # 'auto', 'cpu', 'cuda', ...
         num_workers: int = 0,  # data-loading worker processes
         amp: str = "none",  # 'none', 'bf16' or 'fp16' (CUDA)
         seed: int = 0,  # seed of weights, data order and noise
         ) -> dict:
    """Train the 256 -> 128 px low-resolution model of the original example_train_lowres.py."""
    return run_target(TARGETS, **locals())


if __name__ == "__main__":
    run_cli(main)
