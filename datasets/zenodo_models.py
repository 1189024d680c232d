"""The six trained models published with the original code (Zenodo record 8222779), fetched on request.

    python datasets/zenodo_models.py --list
    python datasets/zenodo_models.py --models mnist_32_cond_sigma_100,insar_noise_32_sigma_1000

Nothing is downloaded at import or by any other script. For each chosen model the record's API JSON
is read at download time (file URL, size and checksum: nothing is pinned here), the zip is streamed
to a hidden temporary folder inside ``models_dir`` and checked against the published checksum, then
unzipped; every model / EMA checkpoint in it must load with
``improved_diffusion.checkpoint.load_model`` (missing metadata keys take the original's defaults).
Only then does the folder appear as ``models_dir/<name>/``: an error (no network, checksum
mismatch, disk full, a checkpoint that does not load) leaves no partial model folder.
"""
from __future__ import annotations

import errno
import hashlib
import http.client
import json
import shutil
import stat
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from improved_diffusion.checkpoint import load_model  # noqa: E402
from improved_diffusion.file_io import check_free  # noqa: E402
from utils.cli import run_cli  # noqa: E402

RECORD_URL = "https://zenodo.org/api/records/8222779"
# name -> what it is (the original README's wording, shortened)
MODELS: dict[str, str] = {
    "mnist_32_cond_sigma_100": "class-conditional, learned variance, T=100, 32x32 MNIST",
    "mnist_32_no_cond_sigma_100": "unconditional, learned variance, T=100, 32x32 MNIST",
    "SAR_lowres_128_cond_sigma_2000": "class-conditional low-res (256 -> 128), T=2000, 128x128 TenGeoP-SARwv",
    "SAR_superres_128_to_256_cond_sigma_2000": "super-resolution 128 -> 256, T=2000, TenGeoP-SARwv",
    "insar_phase_128_sigma_2000": "unconditional, T=2000, 128x128 Sentinel-1 interferograms (New Mexico)",
    "insar_noise_32_sigma_1000": "unconditional, T=1000, 32x32 Sentinel-1 deformation scenes (New Mexico)",
}
CHUNK = 1 << 20  # bytes per read while streaming


def urlopen(url: str, timeout: float):
    """``urllib`` open of ``url``; loopback hosts are opened directly, never through a configured proxy."""
    host = urllib.parse.urlsplit(url).hostname or ""
    direct = host in ("localhost", "::1") or host.startswith("127.")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({})) if direct else urllib.request.build_opener()
    return opener.open(url, timeout=timeout)


def read_record(record_url: str = RECORD_URL, timeout: float = 30.0) -> dict:
    """The record's API JSON (a dict with a ``files`` list); ConnectionError with one line when unreachable."""
    try:
        with urlopen(record_url, timeout) as response:
            return json.loads(response.read().decode())
    except (urllib.error.URLError, OSError) as err:
        raise ConnectionError(f"record_url={record_url!r}: cannot read the Zenodo record ({err}); "
                              "check the network or pass record_url") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"record_url={record_url!r}: the answer is not JSON ({err})") from None


def published_file(record: dict, name: str) -> dict:
    """{"url", "algorithm", "checksum", "size"} of ``<name>.zip`` in a record JSON (current or legacy layout)."""
    for entry in record.get("files") or []:
        if (entry.get("key") or entry.get("filename")) == f"{name}.zip":
            links = entry.get("links") or {}
            url = links.get("content") or links.get("download") or links.get("self")
            algorithm, _, digest = str(entry.get("checksum", "")).rpartition(":")
            algorithm = algorithm or "md5"  # the legacy layout gave a bare md5
            if not url or not digest or algorithm not in hashlib.algorithms_available:
                raise ValueError(f"record entry {name}.zip: expected a download link and an '<algo>:<hex>' checksum, "
                                 f"got links={links!r} checksum={entry.get('checksum')!r}")
            return {"url": url, "algorithm": algorithm, "checksum": digest.lower(), "size": entry.get("size")}
    raise ValueError(f"model {name!r}: no file {name}.zip in the Zenodo record")


def copy_stream(src, dst, hasher) -> int:
    """Copy file object ``src`` to ``dst`` in chunks, updating ``hasher``; returns the byte count."""
    total = 0
    while chunk := src.read(CHUNK):
        dst.write(chunk)
        hasher.update(chunk)
        total += len(chunk)
    return total


def _safe_extract(zip_path: Path, into: Path) -> None:
    """Unzip into `into`; ValueError naming the archive for a damaged zip, a member outside the folder or a link."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for member in zf.infolist():
                if member.filename.startswith("/") or ".." in PurePosixPath(member.filename).parts:
                    raise ValueError(f"{zip_path.name}: member {member.filename!r} would be written outside the "
                                     "model folder; expected relative paths")
                if stat.S_ISLNK(member.external_attr >> 16):
                    raise ValueError(f"{zip_path.name}: member {member.filename!r} is a symbolic link; expected "
                                     "plain files and folders")
            zf.extractall(into)
    except (zipfile.BadZipFile, EOFError, zlib.error) as err:
        raise ValueError(f"{zip_path.name}: not a complete zip archive ({err}); expected the record's zip "
                         "(is the published file truncated?)") from None


def _model_root(extracted: Path) -> Path:
    """The folder holding the checkpoints: the zip's single top folder, or the extraction folder itself."""
    entries = [p for p in extracted.iterdir() if p.name != "__MACOSX"]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else extracted


def check_loads(folder: Path) -> list[str]:
    """Load every model / EMA checkpoint of ``folder`` with ``load_model``; returns their names."""
    checkpoints = sorted(p for p in folder.glob("*.pt") if not p.name.startswith("opt"))
    if not checkpoints:
        raise ValueError(f"{folder.name}: the archive holds no model checkpoint (*.pt)")
    for path in checkpoints:
        load_model(path)
    return [p.name for p in checkpoints]


def download_model(name: str, record: dict, models_dir: str | Path = "models_data", overwrite: bool = False,
                   timeout: float = 60.0) -> Path:
    """Download, verify, unzip and load-check one published model; returns ``models_dir/<name>``."""
    if name not in MODELS:
        raise ValueError(f"model {name!r}: expected one of {sorted(MODELS)}")
    models_dir = Path(models_dir)
    target = models_dir / name
    check_free([target], overwrite, key="models")
    info = published_file(record, name)
    models_dir.mkdir(parents=True, exist_ok=True)
    if info["size"] and shutil.disk_usage(models_dir).free < 2 * int(info["size"]):
        raise OSError(errno.ENOSPC, f"{models_dir}: less free space than twice the {info['size']} bytes of {name}.zip")
    work = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=models_dir))
    try:
        zip_path = work / f"{name}.zip"
        hasher = hashlib.new(info["algorithm"])
        try:
            with urlopen(info["url"], timeout) as response, open(zip_path, "wb") as out:
                copy_stream(response, out, hasher)
        except urllib.error.URLError as err:
            raise ConnectionError(f"{info['url']}: download of {name}.zip failed ({err.reason})") from None
        except (TimeoutError, ConnectionError, http.client.HTTPException) as err:
            raise ConnectionError(f"{info['url']}: download of {name}.zip stopped ({type(err).__name__}: {err}); "
                                  f"expected data at least every timeout={timeout} s until the end; retry") from None
        if hasher.hexdigest() != info["checksum"]:
            raise ValueError(f"{name}.zip: {info['algorithm']} {hasher.hexdigest()} differs from the record's "
                             f"{info['checksum']}; nothing kept")
        _safe_extract(zip_path, work / "unzipped")
        root = _model_root(work / "unzipped")
        checkpoints = check_loads(root)
        if target.exists():
            shutil.rmtree(target)
        root.replace(target)
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        raise OSError(errno.ENOSPC, f"{models_dir}: disk full while fetching {name} ({err.strerror}); "
                      "nothing kept, free space and retry") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"[zenodo] {name}: {', '.join(checkpoints)} -> {target}")
    return target


def main(
        list: bool = False,  # print the six published models and exit
        models: list[str] | None = None,  # comma list of model names to download (see --list)
        models_dir: str = "models_data",  # where each model gets its folder models_dir/<name>/
        record_url: str = RECORD_URL,  # Zenodo record API URL, read at download time
        overwrite: bool = False,  # fetch again a model whose folder exists
        timeout: float = 60.0,  # seconds before a silent connection is given up
        ) -> list[Path]:
    """List the published models, or download the chosen ones; returns the model folders written."""
    if list or not models:
        for name, what in MODELS.items():
            print(f"{name:42s} {what}")
        return []
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(f"models={','.join(models)}: unknown {unknown}; expected names from {sorted(MODELS)}")
    record = read_record(record_url, timeout)
    return [download_model(name, record, models_dir, overwrite, timeout) for name in models]


if __name__ == "__main__":
    run_cli(main)
