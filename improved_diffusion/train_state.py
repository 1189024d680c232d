"""Checkpoint sets of a training run: what is written, how it is found again, and exact-resume state.

A checkpoint set is the original's files (docs/original.md#checkpoint-files: plain state_dicts named
`model_epoch=E_iter=I[_vb=V_mse=M].pt` or `model_epoch=E_step=S.pt`, `ema_rate=R_E[...].pt` per
EMA rate, `opt{E}[...].pt`) plus one file of ours, `train_state_<same suffix>.pt`, holding what an
exact resume needs (step, epoch, RNG states, schedule-sampler history, grad scaler, world size).
Every file is written atomically and the model file last, so a model file implies a complete set.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .checkpoint import CHECKPOINT_PATTERNS, CheckpointName, parse_checkpoint_name
from .file_io import atomic_torch_save, safe_torch_load

STATE_FORMAT = 1
RESUMABLE_PATTERNS = [p for p in CHECKPOINT_PATTERNS if p.startswith("model_epoch=")]


def parse_resume_name(path: str | os.PathLike) -> CheckpointName:
    """The set a model checkpoint belongs to; ValueError naming the accepted patterns otherwise."""
    try:
        parsed = parse_checkpoint_name(path)
    except ValueError:
        parsed = None
    if parsed is None or parsed.kind != "model" or parsed.epoch is None or (
            parsed.iteration is None and parsed.step is None):
        raise ValueError(f"resume_checkpoint: got {str(path)!r}, expected a model checkpoint named "
                         + " or ".join(RESUMABLE_PATTERNS) + " (EMA and optimizer files are found beside it)")
    return parsed


@dataclass
class TrainState:
    """Counters and random state of a run at a checkpoint (saved as `train_state_*.pt`)."""
    epoch: int                      # epoch being trained (== CheckpointName.epoch of the set)
    step_total: int                 # optimizer steps done since the start of the run
    step_in_epoch: int | None    # steps done in `epoch` for a within-epoch set, None at epoch end
    world_size: int = 1
    seed: int = 0
    best_score: float | None = None       # best validation bits/dim so far (compute_val)
    rng: dict = field(default_factory=dict)  # name -> ByteTensor state
    sampler: dict = field(default_factory=dict)
    grad_scaler: dict | None = None
    metadata: dict = field(default_factory=dict)  # the run's metadata.json when the set was written ({}: unknown)

    def to_dict(self) -> dict:
        return {"format": STATE_FORMAT, **self.__dict__}

    @classmethod
    def from_dict(cls, data: dict) -> TrainState:
        if data.get("format") != STATE_FORMAT:
            raise ValueError(f"train state format {data.get('format')!r} is not {STATE_FORMAT}")
        return cls(**{k: v for k, v in data.items() if k != "format"})


def save_checkpoint_set(folder: str | os.PathLike, name: CheckpointName, model_state: dict, ema_states: dict,
                        opt_state: dict, train_state: TrainState) -> Path:
    """Write EMA files (rate -> state_dict), optimizer, train state, then the model file; return its path."""
    folder = Path(folder)
    for rate, state in ema_states.items():
        atomic_torch_save(state, folder / name.ema(rate))
    atomic_torch_save(opt_state, folder / name.opt())
    atomic_torch_save(train_state.to_dict(), folder / name.state())
    atomic_torch_save(model_state, folder / name.model())
    return folder / name.model()


@dataclass
class ResumeFiles:
    """The files of one set found on disk; None where the set lacks one (e.g. an original-code folder)."""
    name: CheckpointName
    model: Path
    ema: dict          # rate -> Path or None
    opt: Path | None
    state: Path | None


def find_set_files(model_path: str | os.PathLike, ema_rates: list[float]) -> ResumeFiles:
    """Locate the EMA / optimizer / train-state files that belong to a model checkpoint."""
    model_path = Path(model_path)
    name = parse_resume_name(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"resume_checkpoint: no file at {model_path}")
    folder = model_path.parent

    def existing(file_name: str) -> Path | None:
        return folder / file_name if (folder / file_name).is_file() else None
    return ResumeFiles(name, model_path, {rate: existing(name.ema(rate)) for rate in ema_rates},
                       existing(name.opt()), existing(name.state()))


def load_train_state(path: str | os.PathLike) -> TrainState:
    return TrainState.from_dict(safe_torch_load(path))


def list_sets(folder: str | os.PathLike) -> list[CheckpointName]:
    """Checkpoint sets in `folder` (one per resumable model file), oldest first."""
    names = []
    for path in Path(folder).glob("model_epoch=*.pt"):
        try:
            names.append(parse_resume_name(path))
        except ValueError:
            continue
    return sorted(names, key=CheckpointName.order)


def _companion_name(file_name: str) -> CheckpointName | None:
    """The set an EMA / optimizer / train-state file name belongs to (as a set name); None for other names."""
    if file_name.startswith("train_state_"):
        file_name = "model_" + file_name[len("train_state_"):]
    elif not file_name.startswith(("ema_rate=", "opt")):
        return None
    try:
        parsed = parse_checkpoint_name(file_name)
    except ValueError:
        return None
    if parsed.epoch is None:
        return None
    return CheckpointName("model", parsed.epoch, None, parsed.step, None, parsed.vb, parsed.mse)


def _set_key(name: CheckpointName) -> tuple:
    """What a model file and its companions share: (epoch, step, vb, mse) (EMA / optimizer names lack the iteration)."""
    return name.epoch, name.step, name.vb, name.mse


def set_files(folder: str | os.PathLike, name: CheckpointName) -> list[Path]:
    """The files of set `name` in `folder`: its model file first (if present), then every companion
    (EMA files of any rate, optimizer, train state)."""
    folder = Path(folder)
    companions = sorted(p for p in folder.iterdir() if (c := _companion_name(p.name)) is not None
                        and _set_key(c) == _set_key(name))
    model = folder / name.model()
    return ([model] if model.is_file() else []) + companions


def remove_set(folder: str | os.PathLike, name: CheckpointName) -> None:
    """Delete a set, model file first (so no model file is ever left without its companions)."""
    for path in set_files(folder, name):
        path.unlink(missing_ok=True)


# Temporary files of `file_io.atomic_write` (".<final name>.<random>.tmp") for the files of a run.
_TMP_PATTERN = re.compile(r"^\.(model_epoch=|ema_rate=|opt\d|train_state_|metadata\.json).*\.tmp$")


def leftover_files(folder: str | os.PathLike, older_than: CheckpointName | None = None) -> list[Path]:
    """Files an interrupted save or prune left in `folder`: temporary files of atomic writes, and companion
    files without their model file that are newer than the newest set (a save killed before its model file,
    which is written last) or, with `older_than`, older than that set (a prune killed after the model file).
    Companions without a model file between those (e.g. EMA files kept on purpose) are left alone."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    sets = list_sets(folder)
    present = {_set_key(s) for s in sets}
    newest = sets[-1].order() if sets else None
    found = []
    for path in folder.iterdir():
        if _TMP_PATTERN.match(path.name):
            found.append(path)
            continue
        owner = _companion_name(path.name)
        if owner is None or _set_key(owner) in present:
            continue
        if newest is None or owner.order() > newest or (
                older_than is not None and owner.order() < older_than.order()):
            found.append(path)
    return sorted(found)


def prune_sets(folder: str | os.PathLike, keep: int, protect: CheckpointName | None = None) -> list[CheckpointName]:
    """Delete all but the `keep` newest sets, never `protect` (the set a run resumed from), and the
    leftovers of interrupted saves and prunes; return the deleted sets.

    Only sets of the current timeline are in the folder (`train_setup.plan_resume` refuses or removes
    later sets of an abandoned one), so "newest" is chronological."""
    sets = list_sets(folder)
    old = [name for name in sets[:-keep] if name != protect] if keep > 0 else []
    for name in old:
        remove_set(folder, name)
    kept = [name for name in sets if name not in old]
    for path in leftover_files(folder, older_than=kept[0] if kept else None):
        path.unlink(missing_ok=True)
    return old


def parse_ema_rates(ema_rate: float | str | list) -> list[float]:
    """EMA rates from a float, a comma string ("0.9999,0.99") or a list; each in (0, 1)."""
    items = ema_rate.split(",") if isinstance(ema_rate, str) else ema_rate if isinstance(ema_rate, list) else [ema_rate]
    try:
        rates = [float(r) for r in items if str(r).strip()]
    except ValueError:
        rates = []
    if not rates or any(not 0.0 < r < 1.0 for r in rates):
        raise ValueError(f"ema_rate: got {ema_rate!r}, expected rates in (0, 1), e.g. 0.9999 or '0.9999,0.99'")
    return rates
