"""Checkpoint sets of a training run: what is written, how it is found again, and exact-resume state.

A checkpoint set is the original's files (docs/original.md#checkpoint-files: plain state_dicts named
`model_epoch=E_iter=I[_vb=V_mse=M].pt` or `model_epoch=E_step=S.pt`, `ema_rate=R_E[...].pt` per
EMA rate, `opt{E}[...].pt`) plus one file of ours, `train_state_<same suffix>.pt`, holding what an
exact resume needs (step, epoch, RNG states, schedule-sampler history, grad scaler, world size).
Every file is written atomically and the model file last, so a model file implies a complete set.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .checkpoint import CHECKPOINT_PATTERNS, CheckpointName, atomic_torch_save, parse_checkpoint_name, safe_torch_load

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


def prune_sets(folder: str | os.PathLike, keep: int, ema_rates: list[float]) -> list[CheckpointName]:
    """Delete all but the `keep` newest sets (model file first, so no model is left without its
    companions); return the deleted sets."""
    old = list_sets(folder)[:-keep] if keep > 0 else []
    for name in old:
        for file_name in [name.model(), name.opt(), name.state()] + [name.ema(r) for r in ema_rates]:
            (Path(folder) / file_name).unlink(missing_ok=True)
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


def derive_seed(*parts: int, bits: int = 63) -> int:
    """A seed that depends on every part (numpy SeedSequence hashing): the first 64-bit word of the state,
    shifted to 63 bits (`bits=63`, torch generators of training) or its low 32 bits (`bits=32`, sampling batches)."""
    word = int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0])
    if bits == 63:
        return word >> 1
    if bits == 32:
        return word & 0xFFFFFFFF
    raise ValueError(f"bits: got {bits!r}, expected 63 or 32")
