"""Example: chain a low-res model and a super-res model (SAR 128 -> 256 px, as the original examples):
sample low-res images, then condition the super-res model on them. Labels of the low-res samples are
passed on (saved as arr_1 of the low-res .npz) when the super-res model is class-conditional."""
from pathlib import Path

from example_sample import require_checkpoint
from sample import main_sample
from utils.cli import run_cli

HINT = ("put the published models there (README), or train the built-in pair (python example_train_lowres.py; "
        "python example_train_superres.py) and pass --lowres_model_path "
        "models_data/sar_synthetic_lowres/ema_rate=0.9999_4.pt --superres_model_path "
        "models_data/sar_synthetic_superres/ema_rate=0.9999_4.pt")


def main(
    lowres_model_path: str = "./models_data/SAR_lowres_128_cond_sigma_2000/ema_rate=0.99_78.pt",  # low-res checkpoint
    superres_model_path: str = "./models_data/SAR_superres_128_to_256_cond_sigma_2000/ema_rate=0.99_33.pt",  # super-res
    num_samples: int = 8,  # images to produce
    sample_class: int = 5,  # class of the low-res samples (ignored by unconditional models)
    batch_size: int = 8,  # samples per network call
    sampling_steps: int = 100,  # network evaluations of each stage
    use_ddim: bool = True,  # DDIM (True) or ancestral sampling
    shift_to_lr_mean: bool = False,  # shift each super-res sample to its low-res image's mean (original post-hoc step)
    url_save_path: str = "./images/samples_SAR_cond_superres/",  # output folder (lowres/ and superres/ inside)
    seed: int = 0,  # random seed of both stages
    device: str = "auto",  # "auto", "cpu", "cuda", ...
    overwrite: bool = False,  # replace existing outputs
) -> Path:
    """Returns the super-res .npz path (samples_{N}x256x256x1.npz under url_save_path/superres/)."""
    require_checkpoint(lowres_model_path, "lowres_model_path", HINT)
    require_checkpoint(superres_model_path, "superres_model_path", HINT)
    common = dict(batch_size=batch_size, sampling_steps=sampling_steps, use_ddim=use_ddim, seed=seed,
                  device=device, overwrite=overwrite)
    lowres = main_sample(model_path=lowres_model_path, num_samples=num_samples, sample_class=sample_class,
                         url_save_path=str(Path(url_save_path) / "lowres"), **common)
    return main_sample(model_path=superres_model_path, url_lr_data=str(lowres), num_samples=num_samples,
                       shift_to_lr_mean=shift_to_lr_mean, url_save_path=str(Path(url_save_path) / "superres"),
                       **common)


if __name__ == "__main__":
    run_cli(main)
