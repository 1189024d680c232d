"""Sampler time vs quality on the demo model (the original's example_time_comparison_DPM_MNIST.py):
DDIM and DPM-Solver variants at several step counts, wall time per sample, FID / precision / recall
against the real test fields in the features of a local extractor, JSON + score-vs-time plots.

Run `make demo` first (it trains models_data/demo_insar/ and writes data/insar_synthetic/).
"""
from pathlib import Path

import example_fine_tuning
from example_sample import require_checkpoint
from utils.cli import run_cli
from utils.sampling.comparison import main as compare


def main(
    model_path: str = "./models_data/demo_insar/ema_rate=0.99_6.pt",  # checkpoint to compare samplers on
    real: str = "./data/insar_synthetic/test",  # reference data (image folder, HDF5 folder or .npz)
    key_data: str = "unwrap",  # HDF5 key of the reference data
    extractor_path: str = "./models_data/domain_cnn_random/classifier_best.pt",  # feature extractor (made if missing)
    step_counts: list = (5, 10, 20, 50),  # network evaluations to compare
    num_samples: int = 256,  # samples per (sampler, steps)
    batch_size: int = 128,  # samples per network call
    url_save_folder: str = "./results/time_comparison/",  # JSON and plots
    seed: int = 0,  # seed of x_T (shared by all samplers) and of the extractor
    overwrite: bool = False,  # replace an earlier comparison.json
) -> list:
    """Compare samplers on the demo model; returns the rows of comparison.json."""
    require_checkpoint(model_path, "model_path", "run `make demo` first, or pass a checkpoint of your own")
    if not Path(extractor_path).is_file():  # unlabelled InSAR: a seeded random-init domain CNN (texture features)
        example_fine_tuning.main(out_folder=str(Path(extractor_path).parent), arch="domain_cnn", random_init=True,
                                 seed=seed)
    return compare(model_path=model_path, step_counts=step_counts, num_samples=num_samples, batch_size=batch_size,
                   seed=seed, url_save_folder=url_save_folder, real=real, extractor_path=extractor_path,
                   key_data=key_data, metadata_json=str(Path(model_path).parent / "metadata.json"),
                   overwrite=overwrite)


if __name__ == "__main__":
    run_cli(main)
