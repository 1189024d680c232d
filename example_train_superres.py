"""Train a super-resolution model: the network sees the image area-downscaled to `image_size_lr`
(upsampled and concatenated to x_t) and learns the full-resolution image."""
from __future__ import annotations

from example_train import example_main, sar_synthetic_target
from improved_diffusion.script_util import apply_preset
from utils.cli import run_cli

TARGETS: dict[str, dict] = {
    "mnist": apply_preset("mnist_32", image_size_lr=16, learn_sigma=True, data_train_dir="mnist_train",
                          data_val_dir="mnist_test"),
    "sar": apply_preset("sar_superres_128_256", data_train_dir="sar_tengeop/train", data_val_dir="sar_tengeop/test"),
    # built-in data: 64 px synthetic SAR from 32 px, the second stage after example_train_lowres.py (64 -> 32 px)
    "sar_synthetic": sar_synthetic_target(2, "--target_data sar (256 px from 128 px TenGeoP-SARwv images, "
                                             "datasets/README.md)", image_size=64, image_size_lr=32),
}


FOLDER_SUFFIX = "_superres"
main = example_main(TARGETS, "sar_synthetic", 5, FOLDER_SUFFIX,
                    "Train the super-resolution model of the original example_train_superres.py: mnist 32 px "
                    "from 16 px or sar 256 px from 128 px, class-conditional as the published SAR model.")

if __name__ == "__main__":
    run_cli(main)
