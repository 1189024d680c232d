"""The scorecard of the demo model on the radar-like mixture (`main_job.py`'s default data): train from
scratch, sample, and print the scorecard against truth (`utils/evaluation/scorecard.py`): how many
statistics of the samples are within sampling noise of the real data and of the generator's truth.

    python bench/radar_scorecard.py                    # the main job's scale, about 15 minutes on 2 CPU cores
    python bench/radar_scorecard.py --n_train 1000 --num_epochs 2 --num_samples 128   # reduced scale
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import main_job  # noqa: E402
from utils.cli import run_cli  # noqa: E402
from utils.evaluation.scorecard import format_table  # noqa: E402


def main(work_dir: str = "",  # folder for the data, the fresh run and its results ('' = a temporary folder)
         n_train: int = 4000,  # synthetic training fields of the mixture
         num_epochs: int = 7,  # training epochs
         num_samples: int = 512,  # generated fields (and real test fields compared)
         sample_steps: int = 20,  # DPM-Solver++(3M) network evaluations
         seed: int = 0) -> dict:  # seed of data, training and sampling
    """Train -> sample -> scorecard on the mixture; print the table, the counts within noise and a JSON line."""
    start = time.time()
    work = Path(work_dir or tempfile.mkdtemp(prefix="radar_scorecard_"))
    results = main_job.main(data_preset="mixture", data_dir=str(work / "data"), run_dir=str(work / "run"),
                            results_root=str(work / "results"), n_train=n_train, num_epochs=num_epochs,
                            num_samples=num_samples, sample_steps=sample_steps, seed=seed)
    card = json.loads((results / "metrics.json").read_text())["scorecard"]
    print(format_table(card))
    failed = [row["statistic"] for row in card["rows"] if not row["within_noise"]]
    summary = {"bench": "radar_scorecard", "n_train": n_train, "num_epochs": num_epochs, "num_samples": num_samples,
               "sample_steps": sample_steps, **card["summary"], "not_within_noise": failed,
               "w1_within_noise": card["w1"]["within_noise"], "seconds": round(time.time() - start, 1),
               "results": str(results)}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    run_cli(main)
