"""Command-line entry of the run comparison: ``python -m utils.compare_runs --runs RUN_A,RUN_B --out_png runs.png``.

Prints the metadata.json keys that differ between the runs and their final logged metrics, and draws their loss
curves in one figure (`utils.evaluation.run_comparison.compare_runs`; every flag is one of its keywords).
"""
from utils.cli import run_cli
from utils.evaluation.run_comparison import compare_runs

if __name__ == "__main__":
    run_cli(compare_runs)
