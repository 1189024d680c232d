"""Results quality of the demo on the Gaussian case (`main_job.py --data_preset gaussian`): train the demo model
from scratch, sample, and print the relative error of the samples' semivariogram against the analytic one at
each lag (and the real data's, for scale). The radar-like mixture: `bench/radar_scorecard.py`.

    python bench/results_quality.py                      # about 5 minutes on 2 CPU cores
    python bench/results_quality.py --num_epochs 20 --num_samples 1024
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import main_job  # noqa: E402
from utils.cli import run_cli  # noqa: E402


def main(data_dir: str = "data/insar_synthetic",  # synthetic data (generated when missing)
         work_dir: str = "",  # folder for the fresh run and its results ('' = a temporary folder)
         num_epochs: int = 7,  # training epochs
         num_samples: int = 512,  # generated fields
         sample_steps: int = 20,  # DPM-Solver++(3M) network evaluations
         seed: int = 0):  # seed of data, training and sampling
    """Train -> sample -> compare with the analytic semivariogram; print a per-lag table and a JSON line."""
    work = Path(work_dir or tempfile.mkdtemp(prefix="results_quality_"))
    results = main_job.main(data_preset="gaussian", data_dir=data_dir, run_dir=str(work / "run"),
                            results_root=str(work / "results"), num_epochs=num_epochs, num_samples=num_samples,
                            sample_steps=sample_steps, seed=seed)
    analytic = json.loads((results / "metrics.json").read_text())["analytic"]
    print(f"{'lag (px)':>9s} {'analytic':>9s} {'samples':>9s} {'error':>8s} {'real data error':>16s}")
    for lag, truth, gen, err, err_real in zip(analytic["lags_checked_px"], analytic["gamma_analytic_rad2"],
                                              analytic["gamma_samples_rad2"], analytic["rel_error_samples"],
                                              analytic["rel_error_real"]):
        print(f"{lag:9.2f} {truth:9.4f} {gen:9.4f} {100 * err:7.1f}% {100 * err_real:15.1f}%")
    summary = {"bench": "results_quality", "num_epochs": num_epochs, "num_samples": num_samples,
               "sample_steps": sample_steps, "max_abs_rel_error_samples": analytic["max_abs_rel_error_samples"],
               "max_abs_rel_error_real": analytic["max_abs_rel_error_real"], "results": str(results)}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    run_cli(main)
