"""Run comparison: the differing keys of two real runs, their final metrics and one figure of both loss curves."""
import subprocess
import sys

import pytest

import train
from utils.evaluation.run_comparison import compare_runs, read_run

from .conftest import REPO_ROOT
from .test_train_script import TINY, image_folder


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    data = image_folder(root / "data", n=8)
    for name, lr in (("a", 1e-4), ("b", 3e-4)):
        train.main(data_train_dir=data, url_folder_experiment=str(root / name), lr=lr, num_epochs=2, amp="none",
                   **{k: v for k, v in TINY.items() if k != "num_epochs"})
    return root


def test_table_lists_what_differs_and_the_last_logged_loss(two_runs, tmp_path, capsys):
    out = compare_runs([str(two_runs / "a"), str(two_runs / "b")], out_png=str(tmp_path / "runs.png"))
    assert set(out["differing"]) == {"lr"} and out["differing"]["lr"] == [1e-4, 3e-4]
    run = read_run(two_runs / "a")
    steps, losses = run.scalars["loss"]
    assert out["final"][0]["loss"] == pytest.approx(losses[-1]) and out["final"][0]["step"] == steps[-1] == 8
    assert (tmp_path / "runs.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "settings that differ" in printed and "lr" in printed and "0.0003" in printed


def test_command_line_refuses_one_run_and_an_existing_figure(two_runs, tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "utils.compare_runs", *args], capture_output=True, text=True,
                              cwd=REPO_ROOT, timeout=120)
    done = cli("--runs", str(two_runs / "a"))
    assert done.returncode == 2 and done.stderr.strip().startswith("error: runs:")
    (tmp_path / "runs.png").write_bytes(b"keep")
    done = cli("--runs", f"{two_runs / 'a'},{two_runs / 'b'}", "--out_png", str(tmp_path / "runs.png"))
    assert done.returncode == 2 and "--overwrite" in done.stderr and (tmp_path / "runs.png").read_bytes() == b"keep"
    done = cli("--runs", f"{two_runs / 'a'},{tmp_path}")
    assert done.returncode == 2 and "has no metadata.json" in done.stderr
