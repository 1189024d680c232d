"""Sampler time vs quality on the demo model (the original's example_time_comparison_DPM_MNIST.py):
DDIM and DPM-Solver variants at several step counts, wall time per sample, FID / KID / precision /
recall against the real test fields, next to the noise floor of two real halves, in the features of
the contrastive domain extractor (`example_fine_tuning.py --unlabelled_data`; trained on the training
fields when `extractor_path` is missing, about 1 min on 2 cores), JSON + score-vs-time plots.

Run `make demo` first (it trains models_data/demo_mixture/ and writes data/insar_mixture/); for the
Gaussian case pass the models_data/demo_insar/ checkpoint, data/insar_synthetic/ folders and another
extractor_path.
"""
from pathlib import Path

import example_fine_tuning
from example_sample import require_checkpoint
from utils.cli import run_cli
from utils.evaluation.fine_tuning import BEST_NAME
from utils.sampling.comparison import main as compare

FULL_SIZE = {"num_samples": 1000, "step_counts": "5,10,20,50"}  # what a full-size comparison uses


def main(
    model_path: str = "./models_data/demo_mixture/ema_rate=0.99_6.pt",  # checkpoint to compare samplers on
    real: str = "./data/insar_mixture/test",  # reference data (image folder, HDF5 folder or .npz)
    train_data: str = "./data/insar_mixture/train",  # unlabelled fields the extractor is trained on when missing
    val_data: str | None = "./data/insar_mixture/val",  # validation fields of that training (None: none)
    key_data: str = "unwrap",  # HDF5 key of the data
    extractor_path: str = "./models_data/domain_cnn_insar_mixture/" + BEST_NAME,  # extractor (trained if missing)
    step_counts: list = (5, 10, 20),  # network evaluations to compare
    num_samples: int = 128,  # samples per (sampler, steps)
    batch_size: int = 128,  # samples per network call
    url_save_folder: str = "./results/time_comparison/",  # JSON and plots
    seed: int = 0,  # seed of x_T (shared by all samplers) and of the extractor's training
    overwrite: bool = False,  # replace an earlier comparison.json
) -> list:
    """Compare samplers on the demo model; returns the rows of comparison.json."""
    require_checkpoint(model_path, "model_path", "run `make demo` first, or pass a checkpoint of your own")
    metadata_json = str(Path(model_path).parent / "metadata.json")
    if not Path(extractor_path).is_file():
        if Path(extractor_path).name != BEST_NAME:
            raise FileNotFoundError(f"extractor_path: no file at {extractor_path!r}; expected an extractor file, or "
                                    f"a path ending in {BEST_NAME} to train one on train_data")
        print(f"[extractor] training the contrastive domain CNN on {train_data} -> {extractor_path}")
        example_fine_tuning.main(out_folder=str(Path(extractor_path).parent), unlabelled_data=train_data,
                                 data_val_dir=val_data, key_data=key_data, metadata_json=metadata_json, seed=seed)
    if num_samples < FULL_SIZE["num_samples"]:
        print(f"[compare] a short run ({num_samples} samples per sampler and step count); "
              f"a full-size comparison: --num_samples {FULL_SIZE['num_samples']} --step_counts "
              f"{FULL_SIZE['step_counts']} (FID intervals hold from 8 x 64 samples)")
    return compare(model_path=model_path, step_counts=step_counts, num_samples=num_samples, batch_size=batch_size,
                   seed=seed, url_save_folder=url_save_folder, real=real, extractor_path=extractor_path,
                   key_data=key_data, metadata_json=metadata_json, overwrite=overwrite)


if __name__ == "__main__":
    run_cli(main)
