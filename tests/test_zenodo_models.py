"""datasets/zenodo_models.py against a local HTTP server on 127.0.0.1 (no other address is contacted):
listing, a verified download that loads, and errors that leave no partial model folder."""
import errno
import hashlib
import http.server
import json
import shutil
import socket
import threading
import zipfile
from functools import partial

import pytest

from datasets import zenodo_models
from improved_diffusion.checkpoint import load_model
from tests.conftest import FIXTURES

NAME = "mnist_32_cond_sigma_100"
CHECKPOINT = "model_epoch=3_iter=120.pt"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """Serve a record JSON and <NAME>.zip (the compat-a checkpoint + metadata in a folder) from 127.0.0.1."""
    root = tmp_path / "served"
    root.mkdir()
    zip_path = root / f"{NAME}.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED) as zf:
        for file in (CHECKPOINT, "metadata.json"):
            zf.write(FIXTURES / "compat-a" / file, f"{NAME}/{file}")
    handler = partial(QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    base = f"http://127.0.0.1:{httpd.server_address[1]}"

    def write_record(checksum=None):
        digest = checksum or "md5:" + hashlib.md5(zip_path.read_bytes()).hexdigest()
        record = {"files": [{"key": f"{NAME}.zip", "size": zip_path.stat().st_size, "checksum": digest,
                             "links": {"self": f"{base}/{NAME}.zip"}}]}
        (root / "record.json").write_text(json.dumps(record))
        return f"{base}/record.json"

    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield write_record
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """Requests to 127.0.0.1 bypass a configured proxy: this one (loopback, nothing listening) fails if used."""
    for var in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
        monkeypatch.setenv(var.upper(), "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)


def leftovers(models_dir):
    return sorted(p.name for p in models_dir.iterdir()) if models_dir.exists() else []


def test_list_names_the_six_published_models_and_downloads_nothing(capsys, monkeypatch):
    monkeypatch.setattr(zenodo_models, "read_record", lambda *a: pytest.fail("no record may be read"))
    assert zenodo_models.main(list=True) == []
    out = capsys.readouterr().out
    for name in ("mnist_32_cond_sigma_100", "mnist_32_no_cond_sigma_100", "SAR_lowres_128_cond_sigma_2000",
                 "SAR_superres_128_to_256_cond_sigma_2000", "insar_phase_128_sigma_2000",
                 "insar_noise_32_sigma_1000"):
        assert name in out
    assert len(out.strip().splitlines()) == 6


def test_download_verifies_unzips_and_loads(tmp_path, server):
    models_dir = tmp_path / "models_data"
    folders = zenodo_models.main(models=[NAME], models_dir=str(models_dir), record_url=server())
    assert folders == [models_dir / NAME]
    assert leftovers(models_dir) == [NAME]  # no temporary folder left beside it
    assert {p.name for p in (models_dir / NAME).iterdir()} == {CHECKPOINT, "metadata.json"}
    assert (models_dir / NAME / CHECKPOINT).read_bytes() == (FIXTURES / "compat-a" / CHECKPOINT).read_bytes()
    _, diffusion, args_dic = load_model(models_dir / NAME / CHECKPOINT)
    assert diffusion.num_timesteps == 100 and args_dic["class_cond"]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        zenodo_models.main(models=[NAME], models_dir=str(models_dir), record_url=server())


def test_checksum_mismatch_keeps_nothing(tmp_path, server):
    models_dir = tmp_path / "models_data"
    with pytest.raises(ValueError, match="differs from the record"):
        zenodo_models.main(models=[NAME], models_dir=str(models_dir), record_url=server("md5:" + "0" * 32))
    assert leftovers(models_dir) == []


def test_no_network_is_one_clear_error(tmp_path):
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    models_dir = tmp_path / "models_data"
    with pytest.raises(ConnectionError, match="cannot read the Zenodo record"):
        zenodo_models.main(models=[NAME], models_dir=str(models_dir), record_url=f"http://127.0.0.1:{port}/r")
    assert leftovers(models_dir) == []


def test_disk_full_while_writing_keeps_nothing(tmp_path, server, monkeypatch):
    def full_disk(src, dst, hasher):
        dst.write(src.read(1000))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zenodo_models, "copy_stream", full_disk)
    models_dir = tmp_path / "models_data"
    with pytest.raises(OSError, match="disk full while fetching .*nothing kept"):
        zenodo_models.main(models=[NAME], models_dir=str(models_dir), record_url=server())
    assert leftovers(models_dir) == []


def test_too_little_free_space_is_refused_before_download(tmp_path, server, monkeypatch):
    monkeypatch.setattr(zenodo_models.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 0))
    models_dir = tmp_path / "models_data"
    with pytest.raises(OSError, match="less free space"):
        zenodo_models.main(models=[NAME], models_dir=str(models_dir), record_url=server())
    assert leftovers(models_dir) == []


def test_unknown_model_name_is_refused():
    with pytest.raises(ValueError, match="unknown"):
        zenodo_models.main(models=["mnist"])
