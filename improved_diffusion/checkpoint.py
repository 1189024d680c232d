"""Checkpoint files: names (write and parse), metadata and the one `load_model`.
The file helpers every writer shares (atomic writes, the overwrite check, safe loading) live in `file_io.py`.

Checkpoints are plain UNet state_dicts named as the original trainer names them (docs/original.md#checkpoint-files);
the model is rebuilt from the single JSON beside them (`metadata.json`, or any one `*.json`).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .file_io import atomic_write, safe_torch_load
from .script_util import CHANNEL_MULT, ORIGINAL_DEFAULTS, create_model_and_diffusion, is_super_res

METADATA_NAME = "metadata.json"

_NUMBER = r"-?\d+(?:\.\d+)?(?:e-?\d+)?"
_VB = rf"(?:_vb=(?P<vb>{_NUMBER})_mse=(?P<mse>{_NUMBER}))?"
# Accepted checkpoint names; groups: epoch, iteration/step, rate, vb, mse.
CHECKPOINT_PATTERNS: dict[str, re.Pattern] = {
    "model_epoch=E_iter=I[_vb=V_mse=M].pt": re.compile(
        rf"^model_epoch=(?P<epoch>\d+)_iter=(?P<iteration>\d+){_VB}\.pt$"
    ),
    "model_epoch=E_step=S.pt": re.compile(r"^model_epoch=(?P<epoch>\d+)_step=(?P<step>\d+)\.pt$"),
    "ema_rate=R_E[_vb=V_mse=M].pt": re.compile(rf"^ema_rate=(?P<rate>[\d.]+)_(?P<epoch>\d+){_VB}\.pt$"),
    "ema_rate=R_E_step=S.pt": re.compile(r"^ema_rate=(?P<rate>[\d.]+)_(?P<epoch>\d+)_step=(?P<step>\d+)\.pt$"),
    "opt{E}[_vb=V_mse=M].pt": re.compile(rf"^opt(?P<epoch>\d+){_VB}\.pt$"),
    "opt{E}_step={S}.pt": re.compile(r"^opt(?P<epoch>\d+)_step=(?P<step>\d+)\.pt$"),
    # Older names of the published Zenodo models and openai/improved-diffusion names.
    "ema_R_E[_vb=V_mse=M].pt (older)": re.compile(rf"^ema_(?P<rate>0\.\d+)_(?P<epoch>\d+){_VB}\.pt$"),
    "model_E[_vb=V_mse=M].pt (older)": re.compile(rf"^model_?(?P<epoch>\d+){_VB}\.pt$"),
}


@dataclass(frozen=True)
class CheckpointName:
    """What a checkpoint file name says. kind: "model", "ema" or "opt"; None where the name is silent.

    A model name with its epoch also names a checkpoint set (end of epoch: `step` None, `iteration` =
    total steps; within epoch: `step`); `model()`, `ema(rate)`, `opt()`, `state()` give the set's file names.
    """
    kind: str
    epoch: int | None = None
    iteration: int | None = None
    step: int | None = None
    rate: str | None = None
    vb: float | None = None
    mse: float | None = None

    def model(self) -> str:
        return model_checkpoint_name(self.epoch, self.iteration or 0, self.vb, self.mse, self.step)

    def ema(self, rate: float) -> str:
        return ema_checkpoint_name(rate, self.epoch, self.vb, self.mse, self.step)

    def opt(self) -> str:
        return opt_checkpoint_name(self.epoch, self.vb, self.mse, self.step)

    def state(self) -> str:
        """`train_state_<model suffix>.pt`: the exact-resume state of the set (train_state.py)."""
        return "train_state_" + self.model()[len("model_"):]

    def order(self) -> tuple:
        """Chronological sort key of sets: the steps of epoch E, then the end of epoch E."""
        return (self.epoch, float("inf") if self.step is None else self.step)


def set_name(epoch: int, iteration: int | None = None, step: int | None = None, vb: float | None = None,
             mse: float | None = None) -> CheckpointName:
    """The name of a checkpoint set (its model file's name)."""
    return CheckpointName("model", epoch, iteration, step, None, vb, mse)


def parse_checkpoint_name(path: str | os.PathLike) -> CheckpointName:
    """Parse a checkpoint file name; ValueError listing the accepted patterns otherwise."""
    name = Path(path).name
    for pattern in CHECKPOINT_PATTERNS.values():
        match = pattern.match(name)
        if match:
            g = match.groupdict()
            vb, mse = g.get("vb"), g.get("mse")
            return CheckpointName(
                kind=next(kind for kind in ("model", "ema", "opt") if name.startswith(kind)),
                epoch=int(g["epoch"]) if g.get("epoch") is not None else None,
                iteration=int(g["iteration"]) if g.get("iteration") is not None else None,
                step=int(g["step"]) if g.get("step") is not None else None,
                rate=g.get("rate"),
                vb=float(vb) if vb is not None else None,
                mse=float(mse) if mse is not None else None,
            )
    raise ValueError(f"checkpoint file name {name!r} is not recognised; accepted patterns: "
                     + ", ".join(CHECKPOINT_PATTERNS))


def _suffix(vb: float | None, mse: float | None, step: int | None) -> str:
    if step is not None:
        return f"_step={step}"
    return f"_vb={vb}_mse={mse}" if vb is not None else ""


def model_checkpoint_name(epoch: int, iteration: int = 0, vb: float | None = None, mse: float | None = None,
                          step: int | None = None) -> str:
    """`model_epoch=E_iter=I.pt`, `..._vb=V_mse=M.pt` (validation) or `model_epoch=E_step=S.pt` (within epoch)."""
    if step is not None:
        return f"model_epoch={epoch}_step={step}.pt"
    return f"model_epoch={epoch}_iter={iteration}{_suffix(vb, mse, None)}.pt"


def ema_checkpoint_name(rate: float | str, epoch: int, vb: float | None = None, mse: float | None = None,
                        step: int | None = None) -> str:
    """`ema_rate=R_E[...].pt` with R = str(float(rate)) as the original writes it."""
    return f"ema_rate={float(rate)}_{epoch}{_suffix(vb, mse, step)}.pt"


def opt_checkpoint_name(epoch: int, vb: float | None = None, mse: float | None = None,
                        step: int | None = None) -> str:
    return f"opt{epoch}{_suffix(vb, mse, step)}.pt"


def write_metadata(folder: str | os.PathLike, args_dic: dict, name: str = METADATA_NAME) -> Path:
    """Write `folder/metadata.json` (or `folder/name`, the one JSON a folder has) atomically; return its path."""
    path = Path(folder) / name

    def dump(tmp):
        with open(tmp, "w") as f:
            json.dump(args_dic, f, indent=1)
    atomic_write(path, dump)
    return path


def read_metadata(path: str | os.PathLike) -> dict:
    """The JSON object of a metadata file; ValueError naming the file when it is not UTF-8 JSON holding an object."""
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"metadata file {path} is not valid JSON: {err}") from None
        except UnicodeDecodeError as err:
            raise ValueError(f"metadata file {path} is not UTF-8 text (byte {err.start}: "
                             f"{err.object[err.start:err.start + 1]!r}); expected a UTF-8 JSON file") from None
    if not isinstance(data, dict):
        raise ValueError(f"metadata file {path} must hold a JSON object, got {type(data).__name__}")
    return data


def find_metadata(folder: str | os.PathLike) -> Path:
    """`folder/metadata.json`, else the single `*.json` in `folder` (as the original); else ValueError."""
    folder = Path(folder)
    if (folder / METADATA_NAME).is_file():
        return folder / METADATA_NAME
    candidates = sorted(folder.glob("*.json"))
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise FileNotFoundError(f"no metadata JSON beside the checkpoint in {folder}: expected {METADATA_NAME} "
                                "(or exactly one *.json) written at training time; pass args_dic to give it yourself")
    raise ValueError(f"several JSON files in {folder} ({[c.name for c in candidates]}) and none named "
                     f"{METADATA_NAME}: cannot tell which describes the model")


def infer_architecture(state_dict: dict, super_res: bool = False) -> dict:
    """Architecture keys that can be read off a UNet state_dict's tensor shapes."""
    keys = set(state_dict)
    C = state_dict["time_embed.0.weight"].shape[1]
    in_ch = state_dict["input_blocks.0.0.weight"].shape[1]
    out_ch = state_dict["out.2.weight"].shape[0]
    levels = 1 + sum(1 for k in keys if re.fullmatch(r"input_blocks\.\d+\.0\.op\.weight", k))
    n_out = len({k.split(".")[1] for k in keys if k.startswith("output_blocks.")})
    n_res = n_out // levels - 1
    # Per-level widths from the first ResBlock of each level -> channel multipliers -> image size.
    mults, index = [], 1
    for _ in range(levels):
        mults.append(state_dict[f"input_blocks.{index}.0.in_layers.2.weight"].shape[0] / C)
        index += n_res + 1
    sizes = [s for s, m in CHANNEL_MULT.items() if tuple(float(v) for v in m) == tuple(mults)]
    info: dict = {"num_model_channels": C, "num_res_blocks": n_res}
    if sizes:
        size = sizes[0]
        info["image_size"] = size
        # Attention: which downsample factors have an AttentionBlock in the encoder.
        factors, index, ds = set(), 1, 1
        for _level in range(levels):
            for _ in range(n_res):
                if f"input_blocks.{index}.1.qkv.weight" in keys:
                    factors.add(ds)
                index += 1
            index += 1
            ds *= 2
        if factors:
            info["attention_resolutions"] = ",".join(str(size // f) for f in sorted(factors))
    data_ch = in_ch // 2 if super_res else in_ch  # a super-res model also sees the upsampled low-res image
    info["num_input_channels"] = data_ch
    info["learn_sigma"] = out_ch == 2 * data_ch
    info["class_cond"] = "label_emb.weight" in keys
    if info["class_cond"]:
        info["num_class"] = state_dict["label_emb.weight"].shape[0]
    emb_rows = state_dict["input_blocks.1.0.emb_layers.1.weight"].shape[0]
    info["use_scale_shift_norm"] = emb_rows == 2 * state_dict["input_blocks.1.0.in_layers.2.weight"].shape[0]
    return info


def complete_metadata(args_dic: dict, state_dict: dict) -> tuple[dict, dict]:
    """Fill keys missing from an older/shorter JSON: architecture from tensor shapes, the rest from
    the original defaults. Returns (completed dict, {key: value} of what was filled)."""
    inferred = infer_architecture(state_dict, super_res=is_super_res(args_dic))
    filled = {key: inferred.get(key, default) for key, default in ORIGINAL_DEFAULTS.items() if key not in args_dic}
    return {**args_dic, **filled}, filled


def _mismatch_message(model: torch.nn.Module, state_dict: dict, path: Path) -> str:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = sorted(k for k in set(expected) & set(state_dict) if expected[k].shape != state_dict[k].shape)
    hints = []
    if "out.2.weight" in shapes:
        got, want = state_dict["out.2.weight"].shape[0], expected["out.2.weight"].shape[0]
        hints.append(f"out.2.weight has {got} output channels, the metadata gives {want}: "
                     "learn_sigma or num_input_channels disagree with the checkpoint")
    if "label_emb.weight" in missing + unexpected + shapes:
        hints.append("label_emb.weight: class_cond / num_class disagree with the checkpoint")
    if "time_embed.0.weight" in shapes:
        hints.append(f"time_embed.0.weight: num_model_channels is {state_dict['time_embed.0.weight'].shape[1]} "
                     "in the checkpoint")
    if "input_blocks.0.0.weight" in shapes:
        hints.append("input_blocks.0.0.weight: input channels differ (num_input_channels, or a super-res "
                     "checkpoint without image_size_lr in its metadata)")
    if len(missing) + len(unexpected) > 10 and not hints:
        hints.append("many keys differ: image_size, num_res_blocks or attention_resolutions disagree")

    def head(items):
        return ", ".join(items[:6]) + (f" ... ({len(items)} in all)" if len(items) > 6 else "")
    parts = [f"checkpoint {path} does not match the model described by its metadata"]
    if missing:
        parts.append(f"missing keys: {head(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {head(unexpected)}")
    if shapes:
        parts.append("shape mismatches: " + head([f"{k} {tuple(state_dict[k].shape)} vs "
                                                  f"{tuple(expected[k].shape)}" for k in shapes]))
    if hints:
        parts.append("likely cause: " + "; ".join(hints))
    return ". ".join(parts)


def load_state_dict(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict:
    """A plain UNet state_dict from `path` (safe loading only: weights_only=True)."""
    state = safe_torch_load(path, device)
    if not isinstance(state, dict) or "time_embed.0.weight" not in state:
        raise ValueError(f"{path} is not a UNet state_dict (expected a mapping with keys like 'time_embed.0.weight')")
    return {k: v.detach() if isinstance(v, torch.nn.Parameter) else v for k, v in state.items()}


def checkpoint_path(path, key: str = "model_path") -> Path:
    """`path` of an existing checkpoint file; ValueError (not a path) or FileNotFoundError naming `key`."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(f"{key}: got {type(path).__name__} {path!r:.60}; expected the path of a .pt checkpoint")
    if not Path(path).is_file():
        raise FileNotFoundError(f"{key}: no checkpoint file at {path}")
    return Path(path)


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu", args_dic: dict | None = None,
               diffusion_steps: int | None = None, timestep_respacing: str | None = None, verbose: bool = True):
    """Rebuild the model and diffusion of a checkpoint and load its weights.

    path: a model or EMA `.pt` (any of the accepted names). args_dic: metadata to use instead of the
    JSON beside the checkpoint (e.g. for an openai/improved-diffusion state_dict, see
    `args_from_improved_diffusion`). diffusion_steps / timestep_respacing override the metadata
    (re-discretised or respaced chain). Returns (model in eval mode on `device`, diffusion, args_dic).
    """
    path = checkpoint_path(path)
    if args_dic is not None and not isinstance(args_dic, dict):
        raise ValueError(f"args_dic: got {type(args_dic).__name__} {args_dic!r:.60}; expected None (read the "
                         "metadata.json beside the checkpoint) or a dict of metadata keys")
    source = "args_dic"
    if args_dic is None:
        source = find_metadata(path.parent)
        args_dic = read_metadata(source)
    state_dict = load_state_dict(path, device)
    bad = next((k for k, v in state_dict.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise ValueError(f"checkpoint {path} has non-finite weights (NaN/Inf in {bad!r}); expected finite values "
                         "(use the last checkpoint saved before the loss diverged)")
    args_dic, filled = complete_metadata(dict(args_dic), state_dict)
    if filled and verbose:
        print(f"[load_model] metadata lacks {len(filled)} keys; assumed: "
              + ", ".join(f"{k}={v!r}" for k, v in filled.items()))
    args_dic["filled_metadata_keys"] = sorted(filled)
    overrides = {}
    if diffusion_steps is not None:
        overrides["diffusion_steps"] = int(diffusion_steps)
    if timestep_respacing is not None:
        overrides["timestep_respacing"] = timestep_respacing
    try:
        model, diffusion = create_model_and_diffusion({**args_dic, **overrides})
    except ValueError as err:
        raise ValueError(f"metadata of {path.name} ({source}): {err}") from None
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError:
        raise ValueError(_mismatch_message(model, state_dict, path)) from None
    model.to(device).eval()
    return model, diffusion, args_dic


def args_from_improved_diffusion(flags: dict, num_input_channels: int = 3) -> dict:
    """Translate openai/improved-diffusion script flags (num_channels, use_kl, predict_xstart, ...)
    into our metadata dict. Upstream models have 3 input channels and, when class-conditional, 1000 classes."""
    loss = "mse"
    if flags.get("use_kl"):
        loss = "rescaled_kl" if flags.get("rescale_learned_sigmas", True) else "kl"
    elif flags.get("rescale_learned_sigmas", True):
        loss = "rescaled_mse"
    out = {
        "image_size": flags.get("image_size", 64), "num_input_channels": num_input_channels,
        "num_model_channels": flags.get("num_channels", 128), "num_res_blocks": flags.get("num_res_blocks", 2),
        "num_heads": flags.get("num_heads", 4), "num_heads_upsample": flags.get("num_heads_upsample", -1),
        "attention_resolutions": str(flags.get("attention_resolutions", "16,8")),
        "dropout": flags.get("dropout", 0.0), "learn_sigma": flags.get("learn_sigma", False),
        "sigma_small": flags.get("sigma_small", False), "class_cond": flags.get("class_cond", False),
        "num_class": 1000 if flags.get("class_cond", False) else None,
        "diffusion_steps": flags.get("diffusion_steps", 1000), "noise_schedule": flags.get("noise_schedule", "linear"),
        "timestep_respacing": flags.get("timestep_respacing", ""), "loss_name": loss,
        "output_type": "x_start" if flags.get("predict_xstart", False) else "epsilon",
        "rescale_timesteps": flags.get("rescale_timesteps", True), "use_checkpoint": False,
        "use_scale_shift_norm": flags.get("use_scale_shift_norm", True),
    }
    if "large_size" in flags:  # super-resolution script flags
        out["image_size"], out["image_size_lr"] = flags["large_size"], flags["small_size"]
    return out


__all__ = [
    "CheckpointName", "set_name", "parse_checkpoint_name",
    "model_checkpoint_name", "ema_checkpoint_name", "opt_checkpoint_name", "write_metadata", "read_metadata",
    "find_metadata", "infer_architecture", "complete_metadata", "load_state_dict", "checkpoint_path", "load_model",
    "args_from_improved_diffusion", "is_super_res",
]
