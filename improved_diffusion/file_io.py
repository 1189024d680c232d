"""File and seed helpers shared by every writer and reader: the overwrite check, sha256 of a file, the code
version, atomic writes (temporary file + rename), the one safe `torch.load`, and derived seeds.

A leaf of the library: it imports nothing of the model (no unet, gaussian_diffusion or script_util), so
evaluation and data scripts can use it without loading the network code.
"""
from __future__ import annotations

import errno
import hashlib
import os
import pickle
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

# file name endings of each `type_dataset`, and a hint for a folder that holds the other kind
DATA_EXTENSIONS = {"image": (".png", ".jpg", ".jpeg", ".gif", ".tif", ".tiff"), "hdf5": (".hdf5", ".h5")}


def other_kind_hint(folder: str | os.PathLike, type_dataset: str) -> str:
    """'; it holds N <other> files: pass --type_dataset <other>' when `folder` holds files of the other
    `type_dataset` (searched recursively), else ''."""
    for other, endings in DATA_EXTENSIONS.items():
        found = 0 if other == type_dataset else sum(1 for p in Path(folder).rglob("*") if p.suffix.lower() in endings)
        if found:
            return f"; it holds {found} {other} file(s): pass --type_dataset {other}"
    return ""


def check_free(paths: Iterable[str | os.PathLike], overwrite: bool, key: str | None = None) -> None:
    """FileExistsError naming the first existing path (and the keyword `key` that gave it) unless `overwrite`."""
    for path in paths:
        if Path(path).exists() and not overwrite:
            where = f"{key}: " if key else ""
            raise FileExistsError(f"{where}{str(path)!r} already exists; pass overwrite=True to replace it")


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 hex digest of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def code_version() -> str:
    """The git commit of this code when run from a clone, else the installed package version, else "unknown"."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        if out.returncode == 0:
            return "git " + out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        from importlib.metadata import version
        return "pdm-radar " + version("pdm-radar")
    except Exception:  # package not installed and no git: say so rather than fail a run
        return "unknown"


def atomic_write(path: str | os.PathLike, write) -> None:
    """Write through `write(tmp_path)` into a temporary file beside `path`, then rename over it.

    A crash during the write leaves any previous `path` untouched. An OSError while writing (e.g. ENOSPC, a full
    disk) names `path` rather than the temporary file.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise _naming(err, path) from None
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes owner-only files; give the usual permissions
        os.replace(tmp, path)
    except OSError as err:
        _remove(tmp)
        if err.filename not in (None, tmp, str(path)):  # an error of another file `write` read: keep its name
            raise
        raise _naming(err, path) from None
    except BaseException:
        _remove(tmp)
        raise


def _naming(err: OSError, path: Path) -> OSError:
    """`err` as an OSError of the same errno (hence subclass) naming `path`, the file being written."""
    reason = err.strerror or str(err) or type(err).__name__
    expected = "free space on its disk" if err.errno == errno.ENOSPC else "an existing, writable folder and disk"
    return OSError(err.errno, f"{reason} while writing (expected {expected})", str(path))


def _remove(tmp: str) -> None:
    if os.path.exists(tmp):
        os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 `text` to `path` atomically (temporary file, fsync, rename)."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """torch.save(obj, path) atomically (temporary file, fsync, rename); a failed write names `path`."""
    def save(tmp):
        try:
            torch.save(obj, tmp)
        except RuntimeError as err:  # torch's zip writer reports a failed write (a full disk) without errno or file
            text = str(err)
            if "PytorchStreamWriter" not in text and "unexpected pos" not in text:
                raise
            raise OSError(errno.EIO, f"torch.save could not write the file ({text.splitlines()[0][:120]})") from None
    atomic_write(path, save)


ZIP_MAGIC = b"PK\x03\x04"  # the archive torch.save writes
PICKLE_MAGIC = b"\x80"  # a pickle of protocol >= 2 (torch's legacy format)


def safe_torch_load(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """torch.load(path, weights_only=True); a file that is not a torch file, a corrupt or truncated one, or one whose
    pickle holds objects that safe loading refuses raises a one-line ValueError naming the file."""
    with open(path, "rb") as f:
        head = f.read(len(ZIP_MAGIC))
    if not (head.startswith(ZIP_MAGIC) or head.startswith(PICKLE_MAGIC)):
        raise ValueError(_not_torch(path, "an empty file" if not head else f"a file starting with {head!r}"))
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except OSError:
        raise
    except Exception as err:  # zip / pickle errors of a corrupt, truncated or unsafe file (RuntimeError, EOFError, ...)
        text = str(err)
        if isinstance(err, pickle.UnpicklingError) and "Unsupported global" in text:  # a class or function to run
            raise ValueError(f"{path}: its pickle holds objects that safe loading (weights_only=True) refuses "
                             "(code or custom classes); expected tensors and plain containers as "
                             "torch.save(model.state_dict()) writes") from None
        if isinstance(err, pickle.UnpicklingError):
            raise ValueError(_not_torch(path, "pickle data torch.save does not write")) from None
        first = next((line.strip() for line in text.splitlines() if line.strip()), type(err).__name__)
        first = first.split(". ")[0].rstrip(".")  # torch's explanation after the first sentence is generic
        raise ValueError(f"{path}: not a readable torch file ({first}); expected a complete file written by "
                         "torch.save (is it corrupt or truncated?)") from None


def _not_torch(path: str | os.PathLike, found: str) -> str:
    return (f"{path}: not a PyTorch checkpoint ({found}); expected the zip archive (or legacy pickle) that "
            "torch.save writes")


def derive_seed(*parts: int, bits: int = 63) -> int:
    """A seed that depends on every part (numpy SeedSequence hashing): the first 64-bit word of the state,
    shifted to 63 bits (`bits=63`, torch generators of training) or its low 32 bits (`bits=32`, sampling batches)."""
    word = int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0])
    if bits == 63:
        return word >> 1
    if bits == 32:
        return word & 0xFFFFFFFF
    raise ValueError(f"bits: got {bits!r}, expected 63 or 32")
