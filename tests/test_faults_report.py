"""The report's inputs (issue 26): non-finite or undeclared integer samples, too few real fields and a truth file
without loader_kwargs are refused with status 2 and one line naming the file or key, before the first file is
written; the corrected rerun then needs no --overwrite."""
import json
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from improved_diffusion.data_normalization import make_normalization
from tests.conftest import REPO_ROOT
from utils.cli import run_cli
from utils.evaluation.report import evaluate_samples
from utils.sampling.sample_io import read_samples_npz

METRICS = "semivariogram,spectrum,memorisation,scorecard"


@pytest.fixture
def real(tmp_path):
    """40 random 16 px grey PNGs and a training metadata.json (identity data_normalization)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "real"
    folder.mkdir()
    for i in range(40):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), mode="L").save(folder / f"{i:03d}.png")
    (tmp_path / "metadata.json").write_text(json.dumps({"data_normalization": make_normalization("none")}))
    return folder


def cli(func, argv, capsys):
    """(exit code, the error line) of run_cli(func, argv): one error line, after any cleared progress bar."""
    with pytest.raises(SystemExit) as exit_info:
        run_cli(func, [str(a) for a in argv])
    err = capsys.readouterr().err
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert "Traceback" not in err and err.count("error") == 1 and last.startswith("error: "), err
    return exit_info.value.code, last


def samples(path, values):
    np.savez(path, values)
    return path


def report_args(real, npz, out, *extra, metrics="semivariogram,spectrum,memorisation"):
    return ["--real", real, "--samples", npz, "--results_dir", out, "--metrics", metrics, *extra]


def finite(n=12):
    return np.random.default_rng(1).uniform(-1, 1, (n, 16, 16, 1)).astype(np.float32)


@pytest.mark.parametrize("case", ["nan", "inf", "int64 0..255", "int32"])
def test_non_finite_or_integer_samples_are_refused_before_any_file(real, tmp_path, capsys, case):
    values = finite()
    if case == "nan":
        values[3, 4, 5, 0] = np.nan
    elif case == "inf":
        values[0, 0, 0, 0] = -np.inf
    else:
        values = np.random.default_rng(2).integers(0, 256, values.shape).astype(case.split()[0])
    npz = samples(tmp_path / "samples_12x16x16x1.npz", values)
    out = tmp_path / "results"
    code, err = cli(evaluate_samples, report_args(real, npz, out), capsys)
    assert code == 2 and str(npz) in err
    assert ("non-finite" in err) if case in ("nan", "inf") else (f"dtype {case.split()[0]}" in err and "uint8" in err)
    assert not out.exists()
    samples(npz, finite())
    assert run_cli(evaluate_samples, [str(a) for a in report_args(real, npz, out)])["n_generated"] == 12


def test_uint8_samples_are_the_declared_0_255_path(real, tmp_path):
    values = np.random.default_rng(3).integers(0, 256, (12, 16, 16, 1)).astype(np.uint8)
    npz = samples(tmp_path / "samples_12x16x16x1.npz", values)
    report = evaluate_samples(str(real), str(npz), str(tmp_path / "out"), metrics="semivariogram")
    assert report["n_generated"] == 12
    images, _ = read_samples_npz(npz, "samples")
    assert images.dtype == np.uint8


def test_command_line_refuses_nan_samples_with_one_line(real, tmp_path, repo_root):
    values = finite()
    values[:, :2] = np.nan
    npz = samples(tmp_path / "samples_12x16x16x1.npz", values)
    done = subprocess.run([sys.executable, "-m", "utils.report", *map(str, report_args(real, npz, tmp_path / "r"))],
                          cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "non-finite" in done.stderr and str(npz) in done.stderr and "384" in done.stderr  # 12 * 2 * 16 * 1 values
    assert not (tmp_path / "r").exists()


def test_one_real_field_is_refused_before_the_first_file(real, tmp_path, capsys):
    single = tmp_path / "single"
    single.mkdir()
    (real / "000.png").rename(single / "000.png")
    npz = samples(tmp_path / "samples_12x16x16x1.npz", finite())
    out = tmp_path / "results"
    meta = ["--metadata_json", tmp_path / "metadata.json"]
    code, err = cli(evaluate_samples, report_args(single, npz, out, *meta, metrics=METRICS), capsys)
    assert code == 2 and "real" in err and str(single) in err and "1 field(s)" in err
    assert not out.exists()
    report = run_cli(evaluate_samples, [str(a) for a in report_args(real, npz, out, *meta, metrics=METRICS)])
    assert report["n_real"] == 39 and (out / "metrics.json").is_file()


@pytest.mark.parametrize("truth", ['{"params": {}}', "not json", None])
def test_a_truth_file_without_loader_kwargs_is_refused_before_the_first_file(real, tmp_path, capsys, truth):
    path = tmp_path / "ground_truth.json"
    if truth is not None:
        path.write_text(truth)
    npz = samples(tmp_path / "samples_12x16x16x1.npz", finite())
    out = tmp_path / "results"
    argv = report_args(real, npz, out, "--metadata_json", tmp_path / "metadata.json", "--truth_json", path,
                       metrics=METRICS)
    code, err = cli(evaluate_samples, argv, capsys)
    assert code == 2 and "truth_json" in err and str(path) in err
    assert {'{"params": {}}': "is missing", "not json": "not a UTF-8 JSON", None: "no ground truth file"}[truth] in err
    assert not out.exists()


KILLED_REPORT = """
import sys, time
import utils.evaluation.report as report
write = report.atomic_write_text
def stalled(path, text):
    if path.name == "metrics.json":  # every figure and CSV is written: the report dies before its metrics.json
        print("writing", flush=True)
        time.sleep(600)
    write(path, text)
report.atomic_write_text = stalled
report.evaluate_samples(sys.argv[1], sys.argv[2], sys.argv[3], metrics="semivariogram,spectrum")
"""


def test_a_report_killed_mid_write_is_replaced_by_the_next_run_without_overwrite(tmp_path):
    rng = np.random.default_rng(0)
    real, samples, out = tmp_path / "real.npz", tmp_path / "samples.npz", tmp_path / "results"
    np.savez(real, rng.uniform(-1, 1, (20, 16, 16, 1)).astype(np.float32))
    np.savez(samples, rng.uniform(-1, 1, (20, 16, 16, 1)).astype(np.float32))
    proc = subprocess.Popen([sys.executable, "-c", KILLED_REPORT, str(real), str(samples), str(out)], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    left = sorted(p.name for p in out.iterdir())
    assert "metrics.json" not in left and "report.incomplete.json" in left and len(left) > 2
    report = evaluate_samples(str(real), str(samples), str(out), metrics="semivariogram,spectrum")
    assert json.loads((out / "metrics.json").read_text())["n_generated"] == report["n_generated"] == 20
    assert "report.incomplete.json" not in {p.name for p in out.iterdir()}
    with pytest.raises(FileExistsError, match="overwrite"):  # a finished report is not replaced without overwrite
        evaluate_samples(str(real), str(samples), str(out), metrics="semivariogram,spectrum")
