"""Respacing: run a diffusion on a subset of the training chain's steps (IDDPM sec. 4)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from .gaussian_diffusion import GaussianDiffusion


def _count(text: str, spec) -> int:
    """A positive step count of a respacing spec; ValueError naming the spec and its accepted forms otherwise."""
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"timestep respacing: got {spec!r}; expected 'ddimN', 'trailingN' or comma-separated "
                         "section counts 'a,b,c' (N and the counts integers >= 1)")
    return count


def space_timesteps(num_timesteps: int, section_counts: str | Sequence[int]) -> set[int]:
    """The training-chain indices to keep when using fewer steps.

    `section_counts`:
    - ``"ddimN"``: the integer stride giving exactly N steps, range(0, T, stride) (DDIM's grid);
    - ``"trailingN"``: N steps ending at T-1, round(arange(T, 0, -T/N)) - 1 (the "trailing" grid of
      Lin et al. 2024, which starts sampling from the noisiest step);
    - a list or comma string of counts: the chain is cut into len(counts) equal sections and
      section i keeps counts[i] evenly strided steps (first and last of the section included).
    """
    if isinstance(section_counts, str):
        spec = section_counts.strip()
        if spec.startswith("ddim"):
            desired = _count(spec[len("ddim"):], section_counts)
            for stride in range(1, num_timesteps):
                if len(range(0, num_timesteps, stride)) == desired:
                    return set(range(0, num_timesteps, stride))
            raise ValueError(f"cannot take exactly {desired} steps with an integer stride from a {num_timesteps}-step "
                             f"chain (spec {section_counts!r}); use 'trailing{desired}' or a section list instead")
        if spec.startswith("trailing"):
            desired = _count(spec[len("trailing"):], section_counts)
            if not 1 <= desired <= num_timesteps:
                raise ValueError(f"trailing grid: need 1 <= N <= {num_timesteps}, got {desired}")
            return {int(i) for i in np.round(np.arange(num_timesteps, 0, -num_timesteps / desired)).astype(int) - 1}
        section_counts = [_count(x, section_counts) for x in spec.split(",")]
    size_per, extra = divmod(num_timesteps, len(section_counts))
    start, kept = 0, []
    for i, count in enumerate(section_counts):
        size = size_per + (1 if i < extra else 0)
        if size < count:
            raise ValueError(f"cannot take {count} steps from a section of {size} steps "
                             f"(T={num_timesteps}, sections {list(section_counts)})")
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        position = 0.0  # accumulated as in the original, so rounding ties fall the same way
        for _ in range(count):
            kept.append(start + round(position))
            position += stride
        start += size
    return set(kept)


class SpacedDiffusion(GaussianDiffusion):
    """A diffusion over the kept steps `use_timesteps` of a base chain built from `kwargs`.

    The kept alpha-bars are exactly the base chain's: beta'_i = 1 - alpha_bar[k_i] / alpha_bar[k_{i-1}].
    `timestep_map[i]` is the training-chain index of step i; `model_time` feeds the network the
    training-chain time, so a respaced chain needs no model wrapper.
    """

    def __init__(self, use_timesteps: Iterable[int], **kwargs):
        base = GaussianDiffusion(**kwargs)
        kept = sorted(set(int(t) for t in use_timesteps))
        if not kept or kept[0] < 0 or kept[-1] >= base.num_timesteps:
            raise ValueError(f"use_timesteps must lie in [0, {base.num_timesteps - 1}], got {kept[:3]}..{kept[-3:]}")
        alpha_bar = base.alphas_cumprod[kept]
        kwargs["betas"] = 1.0 - alpha_bar / np.append(1.0, alpha_bar[:-1])
        super().__init__(**kwargs)
        self.use_timesteps = set(kept)
        self.timestep_map = np.array(kept, dtype=np.int64)
        self.original_num_steps = base.num_timesteps
