"""Command-line entry of the evaluation report: ``python -m utils.report --real ... --samples ...``.

The report itself is `utils.evaluation.report.evaluate_samples`; every flag is one of its keywords.
"""
from utils.cli import run_cli
from utils.evaluation.report import evaluate_samples

if __name__ == "__main__":
    run_cli(evaluate_samples)
