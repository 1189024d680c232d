"""Example: 32 class-5 samples from the SAR low-res model (128 px, T = 2000) as in the original
`example_sample.py`, with 500 ancestral steps taken on the model's own chain (respacing)."""
from pathlib import Path

import example_train
from sample import main_sample
from utils.cli import run_cli

DEMO_CHECKPOINT = example_train.default_ema_checkpoint(example_train.TARGETS, "demo", example_train.FOLDER_SUFFIX)
HINT = ("put the published model there (README, 'Published checkpoints'), or sample the built-in demo model "
        f"(python example_train.py, about 5 min): --model_path {DEMO_CHECKPOINT} --sample_class None")


def samples_folder(model_path: str) -> Path:
    """Where an example writes the samples of `model_path`: ./samples/<run folder>/<checkpoint name>/."""
    path = Path(model_path)
    return Path("samples") / path.parent.resolve().name / path.stem


def require_checkpoint(path: str, keyword: str, hint: str) -> None:
    """A clear error, with what to do instead, when an example's checkpoint is not on disk."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{keyword}: no checkpoint at {path!r}; {hint}")


def main(
    model_path: str = "./models_data/SAR_lowres_128_cond_sigma_2000/ema_rate=0.99_78.pt",  # low-res checkpoint
    num_samples: int = 32,  # samples to draw
    sample_class: int | None = 5,  # class of every sample (None: unconditional model or random classes)
    batch_size: int = 4,  # samples per network call
    sampling_steps: int = 500,  # network evaluations (trailing grid over the 2000-step chain)
    use_ddim: bool = False,  # DDIM instead of ancestral sampling
    url_save_path: str | None = None,  # output folder (None: ./samples/<run folder>/<checkpoint name>/)
    seed: int = 0,  # random seed
    device: str = "auto",  # "auto", "cpu", "cuda", ...
    overwrite: bool = False,  # replace existing outputs
) -> Path:
    """Writes samples_32x128x128x1.npz (+ PNG grid, provenance JSON) into url_save_path; returns its path."""
    require_checkpoint(model_path, "model_path", HINT)
    return main_sample(model_path=model_path, num_samples=num_samples, sample_class=sample_class,
                       batch_size=batch_size, sampling_steps=sampling_steps, use_ddim=use_ddim,
                       url_save_path=url_save_path or str(samples_folder(model_path)),
                       seed=seed, device=device, overwrite=overwrite)


if __name__ == "__main__":
    run_cli(main)
