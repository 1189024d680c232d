"""Example: chain a low-res model and a super-res model (SAR 128 -> 256 px, as the original examples):
sample low-res images, then condition the super-res model on them. Labels of the low-res samples are
passed on (saved as arr_1 of the low-res .npz) when the super-res model is class-conditional."""
from pathlib import Path

import example_train_lowres
import example_train_superres
from example_sample import require_checkpoint, samples_folder
from example_train import default_ema_checkpoint
from sample import main_sample
from utils.cli import run_cli

BUILTIN_LOWRES = default_ema_checkpoint(example_train_lowres.TARGETS, "sar_synthetic",
                                        example_train_lowres.FOLDER_SUFFIX)
BUILTIN_SUPERRES = default_ema_checkpoint(example_train_superres.TARGETS, "sar_synthetic",
                                          example_train_superres.FOLDER_SUFFIX)
HINT = ("put the published models there (README), or train the built-in pair (python example_train_lowres.py; "
        f"python example_train_superres.py; about 5 min each) and pass --lowres_model_path {BUILTIN_LOWRES} "
        f"--superres_model_path {BUILTIN_SUPERRES} --sample_class 1 (built-in data: 4 classes, 0-3)")


def main(
    lowres_model_path: str = "./models_data/SAR_lowres_128_cond_sigma_2000/ema_rate=0.99_78.pt",  # low-res checkpoint
    superres_model_path: str = "./models_data/SAR_superres_128_to_256_cond_sigma_2000/ema_rate=0.99_33.pt",  # super-res
    num_samples: int = 8,  # images to produce
    sample_class: int | None = 5,  # class of the low-res samples (None: unconditional model or random classes)
    batch_size: int = 8,  # samples per network call
    sampling_steps: int = 100,  # network evaluations of each stage
    use_ddim: bool = True,  # DDIM (True) or ancestral sampling
    shift_to_lr_mean: bool = False,  # shift each super-res sample to its low-res image's mean (original post-hoc step)
    url_save_path: str | None = None,  # output folder, lowres/ and superres/ inside (None: ./samples/<run>/<ckpt>/)
    seed: int = 0,  # random seed of both stages
    device: str = "auto",  # "auto", "cpu", "cuda", ...
    overwrite: bool = False,  # replace existing outputs
) -> Path:
    """Returns the super-res .npz path (samples_{N}x256x256x1.npz under url_save_path/superres/)."""
    require_checkpoint(lowres_model_path, "lowres_model_path", HINT)
    require_checkpoint(superres_model_path, "superres_model_path", HINT)
    url_save_path = url_save_path or str(samples_folder(superres_model_path))
    common = dict(batch_size=batch_size, sampling_steps=sampling_steps, use_ddim=use_ddim, seed=seed,
                  device=device, overwrite=overwrite)
    lowres = main_sample(model_path=lowres_model_path, num_samples=num_samples, sample_class=sample_class,
                         url_save_path=str(Path(url_save_path) / "lowres"), **common)
    return main_sample(model_path=superres_model_path, url_lr_data=str(lowres), num_samples=num_samples,
                       shift_to_lr_mean=shift_to_lr_mean, url_save_path=str(Path(url_save_path) / "superres"),
                       **common)


if __name__ == "__main__":
    run_cli(main)
