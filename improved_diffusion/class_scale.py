"""Per-class scales of a class-conditional run: the network models x / class_scale[y], samples are multiplied back.

Heavy-tailed sets split into strength classes (`datasets/strength_labels.py`) hold classes whose fields are several
times stronger than the rest (on the built-in mixture the median field std of the strongest 2 % is 6 times the
bulk's). With one data scale for all classes, the noise levels of the schedule that matter for the strong class
are few, and a briefly trained model draws its fields too weak. Dividing every field by its class's scale shows
the network each class at about the bulk's amplitude, as EDM scales the data to one sigma_data before the noise
is added (Karras et al. 2022, Table 1). Because the label is a function of the field, x -> x / s_y is invertible
given y: the samples, multiplied back by s_y, follow the same law in model units.

"Model units" are the normalised values every loader returns and every sampler writes; "network units" are
model units divided by the scale of the item's class (equal when `class_scale` is None).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch


def check_per_class(values: Sequence[float] | None, num_class: int | None,
                    name: str = "class_scale") -> tuple[float, ...] | None:
    """A per-class list (`class_scale` or `class_weights`, named `name`) as a tuple (None stays None); ValueError
    unless it holds finite numbers > 0, one per class."""
    if values is None:
        return None
    ok = isinstance(values, (list, tuple)) and len(values) > 0 and all(
        isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) and s > 0 for s in values)
    if not ok:
        raise ValueError(f"{name}={values!r}; expected None or a list of finite numbers > 0, one per class")
    if num_class is not None and len(values) != num_class:
        raise ValueError(f"{name}={list(values)} has {len(values)} entries; expected one per class "
                         f"(num_class={num_class})")
    return tuple(float(s) for s in values)


def item_scales(labels: torch.Tensor | np.ndarray, class_scale: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """(N, 1, 1, 1) scale of each item's class (labels int (N,)), on the device and dtype of `like`."""
    table = torch.as_tensor(class_scale, dtype=like.dtype, device=like.device)
    return table[torch.as_tensor(labels, device=like.device).long()].view(-1, *([1] * (like.dim() - 1)))


def to_model_units(x: torch.Tensor, labels, class_scale: Sequence[float] | None) -> torch.Tensor:
    """Samples x (N, C, H, W) in network units -> model units (x * s_y); unchanged without class_scale."""
    return x if class_scale is None else x * item_scales(labels, class_scale, x)


class ClassScaled(torch.utils.data.Dataset):
    """``dataset`` (batches ``dataset[indices] -> (x, cond)`` with cond["y"]) with each x divided by the scale of
    its class: the training batches in network units. A NaN-fill mask is unchanged (holes hold 0, still 0)."""

    def __init__(self, dataset: torch.utils.data.Dataset, class_scale: Sequence[float]):
        self.dataset, self.class_scale = dataset, tuple(class_scale)

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __getitem__(self, indices: list[int]) -> tuple[torch.Tensor, dict]:
        x, cond = self.dataset[indices]
        return x / item_scales(cond["y"], self.class_scale, x), cond
