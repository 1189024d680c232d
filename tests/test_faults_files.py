"""Faults of files (issue 26, items 4-6): every read goes through the one safe reader that names the file, every
failed write names its path, outputs are written atomically (a killed writer leaves a cache the next run rebuilds),
the Zenodo fetcher's library errors become one line, and the two Python-API tracebacks are one-line errors."""
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import warnings
import zipfile

import matplotlib.figure
import numpy as np
import pytest
import torch

import model_likelihood
import train
from datasets import zenodo_models
from improved_diffusion import file_io
from improved_diffusion.checkpoint import load_model
from improved_diffusion.file_io import atomic_torch_save, atomic_write, atomic_write_text, safe_torch_load
from tests.conftest import REPO_ROOT
from tests.test_faults_training import RUN
from tests.test_train_script import image_folder
from tests.test_zenodo_models import NAME, leftovers, server  # noqa: F401  (server: a fixture used below)
from utils.cli import run_cli
from utils.evaluation.features import DomainCNN, FeatureExtractor, extract_cached
from utils.evaluation.plots import plot_mean_curves
from utils.sampling import sample_io

DISK_FULL = "[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0"  # torch.save on a full disk


def cli(func, argv, capsys) -> tuple[int, str]:
    """(exit code, the error line) of run_cli(func, argv): the last stderr line (a progress bar may precede it),
    the only one saying error, no traceback."""
    with pytest.raises(SystemExit) as exit_info:
        run_cli(func, [str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    assert "Traceback" not in err and lines[-1].startswith("error: ") and err.count("error") == 1, err
    return exit_info.value.code, lines[-1]


class Opaque:
    """A custom class: its pickle needs code, which weights_only=True refuses."""


# --- the one safe reader ----------------------------------------------------------------------------------------

def test_random_bytes_are_not_a_pytorch_checkpoint(tmp_path):
    noise = np.random.default_rng(0).bytes(4096)
    (tmp_path / "noise.pt").write_bytes(noise.replace(b"\x80", b"\x00"))
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "pickle_like.pt").write_bytes(b"\x80\x02\xf7" + noise)  # a pickle header, then junk
    for name, found in (("noise.pt", "a file starting with"), ("empty.pt", "an empty file"),
                        ("pickle_like.pt", "pickle data torch.save does not write")):
        with pytest.raises(ValueError) as err:
            safe_torch_load(tmp_path / name)
        assert str(err.value).startswith(f"{tmp_path / name}: not a PyTorch checkpoint ({found}")
        assert "weights_only" not in str(err.value)


def test_truncated_and_unsafe_files_keep_their_own_messages(tmp_path):
    torch.save({"a": torch.ones(64)}, tmp_path / "whole.pt")
    data = (tmp_path / "whole.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[:len(data) // 2])
    torch.save({"a": Opaque()}, tmp_path / "code.pt")
    with pytest.raises(ValueError, match="cut.pt: not a readable torch file .* truncated"):
        safe_torch_load(tmp_path / "cut.pt")
    with pytest.raises(ValueError, match=r"code.pt: its pickle holds objects that safe loading \(weights_only=True\)"):
        safe_torch_load(tmp_path / "code.pt")


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A finished 2-epoch run of the training-fault tests' tiny model (read-only here)."""
    base = tmp_path_factory.mktemp("optrun")
    data = image_folder(base / "data", n=4)
    folder = base / "run"
    train.main(data_train_dir=data, url_folder_experiment=str(folder), num_epochs=2, **RUN)
    return folder


@pytest.mark.parametrize("damage", ["truncated", "noise", "code"])
def test_resume_with_a_damaged_optimizer_file_names_it(run_folder, tmp_path, capsys, damage):
    folder = tmp_path / "run"
    folder.mkdir()
    for path in run_folder.iterdir():
        if path.is_file():
            (folder / path.name).write_bytes(path.read_bytes())
    opt = folder / "opt1.pt"
    good = opt.read_bytes()
    if damage == "code":
        torch.save({"state": Opaque()}, opt)
    else:
        data = opt.read_bytes()
        opt.write_bytes(data[:len(data) // 2] if damage == "truncated" else b"junk" * 100)
    code, err = cli(train.main, ["--resume_checkpoint", folder / "model_epoch=1_iter=4.pt", "--num_epochs", 3], capsys)
    expected = {"truncated": "not a readable torch file", "noise": "not a PyTorch checkpoint",
                "code": "safe loading (weights_only=True) refuses"}[damage]
    assert code == 2 and f"{opt}:" in err and expected in err and "weights_only=False" not in err, err
    assert not any(folder.glob("*epoch=2*"))
    if damage == "truncated":  # the corrected file is accepted without overwrite
        opt.write_bytes(good)
        train.main(resume_checkpoint=str(folder / "model_epoch=1_iter=4.pt"), num_epochs=3)
        assert (folder / "model_epoch=2_iter=6.pt").is_file()


# --- failed writes name their path ------------------------------------------------------------------------------

def test_a_full_disk_during_torch_save_names_the_checkpoint_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "model.pt"
    atomic_torch_save({"a": torch.ones(3)}, target)

    def full(obj, f):
        raise RuntimeError(DISK_FULL)
    monkeypatch.setattr(file_io.torch, "save", full)
    with pytest.raises(OSError) as err:
        atomic_torch_save({"a": torch.zeros(3)}, target)
    assert err.value.filename == str(target) and "while writing" in str(err.value)
    assert torch.equal(torch.load(target, weights_only=True)["a"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_training_on_a_full_disk_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    data = image_folder(tmp_path / "data", n=4)

    def full(obj, f):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(file_io.torch, "save", full)
    folder = tmp_path / "run"
    argv = [f"--{k}={v}" for k, v in {**RUN, "keep_checkpoints": 3}.items()]
    code, err = cli(train.main, ["--data_train_dir", data, "--url_folder_experiment", folder, "--num_epochs", 1,
                                 *argv], capsys)
    assert code == 1 and "No space left on device" in err and f"'{folder}{os.sep}" in err and ".pt'" in err, err


def test_the_sample_merge_on_a_full_disk_names_the_output(tmp_path, monkeypatch):
    class Store:
        def read(self, index):
            return np.zeros((2, 4, 4, 1), np.float32), None

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(sample_io, "_write_npy_stream", full)
    out = tmp_path / "samples_2x4x4x1.npz"
    with pytest.raises(OSError) as err:
        sample_io.merge_shards(Store(), 1, 2, out)
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(out)
    assert list(tmp_path.iterdir()) == []


def test_an_error_reading_another_file_keeps_that_files_name(tmp_path):
    missing = tmp_path / "source.txt"
    with pytest.raises(FileNotFoundError) as err:
        atomic_write(tmp_path / "copy.txt", lambda tmp: open(missing).read())
    assert err.value.filename == str(missing)


# --- atomic outputs and the feature cache ------------------------------------------------------------------------

def _extractor():
    torch.manual_seed(0)
    return FeatureExtractor(DomainCNN(1, 2, width=4).eval(), "domain_cnn", None, 299, digest="test")


def test_a_cache_left_by_a_killed_writer_is_named_and_rebuilt(tmp_path):
    images = np.random.default_rng(1).uniform(-1, 1, (6, 16, 16, 1)).astype(np.float32)
    expected = _extractor().extract(images, batch_size=3, progress=False)
    cache = tmp_path / "cache"
    extract_cached(_extractor(), images, cache, batch_size=3, progress=False)
    (path,) = cache.glob("features_*.npz")
    whole = path.read_bytes()
    # what SIGKILL leaves behind: a temporary file of the atomic write and, from before atomic writes, a cut file
    (cache / f".{path.name}.abc123.tmp").write_bytes(whole[:100])
    path.write_bytes(whole[:len(whole) // 2])
    with pytest.warns(UserWarning, match=f"feature cache {path} is unreadable"):
        again = extract_cached(_extractor(), images, cache, batch_size=3, progress=False)
    np.testing.assert_allclose(again, expected, rtol=1e-6)
    with np.load(path) as saved:  # the rebuilt cache is whole and is used as is
        np.testing.assert_allclose(saved["features"], expected, rtol=1e-6)


KILLED_WRITER = """
import sys, time
import numpy as np
from tests.test_faults_files import _extractor
from utils.evaluation.features import extract_cached

def stalled(f, **arrays):  # half an archive on disk, then the process is killed
    f.write(b"PK\\x03\\x04partial")
    f.flush()
    print("writing", flush=True)
    time.sleep(120)
np.savez = stalled
images = np.random.default_rng(1).uniform(-1, 1, (6, 16, 16, 1)).astype(np.float32)
extract_cached(_extractor(), images, sys.argv[1], batch_size=3, progress=False)
"""


def test_a_cache_writer_killed_with_sigkill_leaves_no_cache_and_the_next_run_writes_one(tmp_path):
    cache = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(cache)], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert [p.name.endswith(".tmp") for p in cache.iterdir()] == [True]  # only the temporary file is left
    images = np.random.default_rng(1).uniform(-1, 1, (6, 16, 16, 1)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no cache file: nothing to warn about
        features = extract_cached(_extractor(), images, cache, batch_size=3, progress=False)
    np.testing.assert_allclose(features, _extractor().extract(images, batch_size=3, progress=False), rtol=1e-6)
    assert len(list(cache.glob("features_*.npz"))) == 1


def test_a_killed_atomic_writer_leaves_the_previous_file(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_text(target, json.dumps({"fid": 1.0}))

    def killed(tmp):
        with open(tmp, "w") as f:
            f.write('{"fid": 2')
        raise KeyboardInterrupt  # stands for the signal: the rename never happens
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, killed)
    assert json.loads(target.read_text()) == {"fid": 1.0} and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_failed_figure_write_names_it_and_keeps_the_previous_png(tmp_path, monkeypatch):
    path = tmp_path / "curve.png"
    curves = {"a": (np.arange(3.0), np.ones(3), np.zeros(3))}
    plot_mean_curves(curves, path, xlabel="x", ylabel="y")
    before = path.read_bytes()

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full)
    with pytest.raises(OSError) as err:
        plot_mean_curves(curves, path, xlabel="x", ylabel="y", overwrite=True)
    assert err.value.filename == str(path) and path.read_bytes() == before and list(tmp_path.iterdir()) == [path]


# --- the Zenodo fetcher --------------------------------------------------------------------------------------

def test_a_truncated_zip_is_one_line_and_keeps_nothing(tmp_path, server, capsys):  # noqa: F811
    served = tmp_path / "served" / f"{NAME}.zip"
    whole = served.read_bytes()
    served.write_bytes(whole[:len(whole) // 2])
    record_url = server()  # the record gives the checksum of the truncated file: only unzipping can tell
    models = tmp_path / "models"
    argv = ["--models", NAME, "--models_dir", models, "--record_url", record_url]
    code, err = cli(zenodo_models.main, argv, capsys)
    assert code == 2 and f"{NAME}.zip: not a complete zip archive" in err and leftovers(models) == []
    served.write_bytes(whole)  # the record fixed: fetched without overwrite
    assert zenodo_models.main(models=[NAME], models_dir=str(models), record_url=server()) == [models / NAME]


def test_a_symlinked_member_is_refused(tmp_path, server, capsys):  # noqa: F811
    link = zipfile.ZipInfo(f"{NAME}/link")
    link.external_attr = 0o120777 << 16  # S_IFLNK: a symbolic link to the path held as its content
    with zipfile.ZipFile(tmp_path / "served" / f"{NAME}.zip", "a") as zf:
        zf.writestr(link, b"/etc/passwd")
    record_url = server()
    models = tmp_path / "models"
    code, err = cli(zenodo_models.main, ["--models", NAME, "--models_dir", models, "--record_url", record_url], capsys)
    assert code == 2 and f"member '{NAME}/link' is a symbolic link" in err and leftovers(models) == []


def test_a_hung_server_is_one_line_and_keeps_nothing(tmp_path, capsys):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    done = threading.Event()

    def hang():
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nPK")  # then silence
            threading.Thread(target=lambda c=conn: (done.wait(), c.close()), daemon=True).start()
    threading.Thread(target=hang, daemon=True).start()
    record = {"files": [{"key": f"{NAME}.zip", "size": 100000, "checksum": "md5:" + "0" * 32,
                         "links": {"self": f"{base}/{NAME}.zip"}}]}
    models = tmp_path / "models"
    try:
        with pytest.raises(ConnectionError) as err:
            zenodo_models.download_model(NAME, record, models, timeout=0.5)
    finally:
        done.set()
        listener.close()
    assert f"{base}/{NAME}.zip: download of {NAME}.zip stopped (TimeoutError" in str(err.value)
    assert "timeout=0.5 s" in str(err.value) and leftovers(models) == []


# --- Python-API errors ------------------------------------------------------------------------------------------

def test_load_model_with_args_dic_not_a_dict_is_one_line(run_folder):
    with pytest.raises(ValueError, match=r"^args_dic: got list \[1, 2\]; expected None .* or a dict of metadata keys$"):
        load_model(run_folder / "model_epoch=1_iter=4.pt", args_dic=[1, 2])


def test_calc_model_loss_without_model_path_is_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"^model_path: got NoneType None; expected the path of a \.pt checkpoint$"):
        model_likelihood.calc_model_loss(model_path=None, url_dataset=str(tmp_path), out_json=str(tmp_path / "o.json"))
    assert list(tmp_path.iterdir()) == []
