"""Command-line entry of the evaluation report: ``python -m utils.report --real ... --samples ...``.

The report itself is `utils.evaluation.report.evaluate_samples`; every flag is one of its keywords.
"""
import sys

from utils.cli import build_parser, run_cli
from utils.evaluation.report import evaluate_samples, summary_lines

if __name__ == "__main__":
    report = run_cli(evaluate_samples)
    for line in summary_lines(report, build_parser(evaluate_samples).parse_args(sys.argv[1:]).results_dir):
        print(f"[report] {line}")
