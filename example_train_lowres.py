"""Train the low-resolution SAR model of the paper: 128 px images area-downscaled from 256 px reads
(first stage of the super-resolution pipeline; the second is example_train_superres.py)."""
from __future__ import annotations

from example_train import example_main, sar_synthetic_target
from improved_diffusion.script_util import apply_preset
from utils.cli import run_cli

TARGETS: dict[str, dict] = {
    "sar": apply_preset("sar_lowres_128", data_train_dir="sar_tengeop/train", data_val_dir="sar_tengeop/val"),
    # built-in data: 64 px synthetic SAR read, area-downscaled to 32 px
    "sar_synthetic": sar_synthetic_target(5, "--target_data sar (128 px from 256 px TenGeoP-SARwv reads, "
                                             "datasets/README.md)", image_size=32, image_size_hr=64),
}


FOLDER_SUFFIX = "_lowres"
main = example_main(TARGETS, "sar_synthetic", 5, FOLDER_SUFFIX,
                    "Train the 256 -> 128 px low-resolution model of the original example_train_lowres.py.")

if __name__ == "__main__":
    run_cli(main)
