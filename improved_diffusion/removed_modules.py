"""Modules of the original repository that are gone here: importing one fails with a ModuleNotFoundError that
names the replacement and docs/migrating.md, instead of Python's bare "No module named ...".

`install()` appends a finder to `sys.meta_path`; it is consulted only after every real finder failed, so it
never shadows a module that exists."""
from __future__ import annotations

import sys

GUIDE = "docs/migrating.md#files"
REPLACEMENTS = {
    "improved_diffusion.CONSTANTS": "the device='auto' keyword (dist_util.resolve_device) and acceleration.py",
    "improved_diffusion.datasets_image": "improved_diffusion.dataloaders.create_dataloader(type_dataset='image')",
    "improved_diffusion.datasets_image_lowres": "improved_diffusion.dataloaders.create_dataloader(image_size_hr=...)",
    "improved_diffusion.datasets_image_superres": "improved_diffusion.dataloaders.create_dataloader(image_size_lr=...)",
    "improved_diffusion.datasets_hdf5": "improved_diffusion.dataloaders.create_dataloader(type_dataset='hdf5')",
    "improved_diffusion.fp16_util": "improved_diffusion.acceleration (torch autocast: amp='bf16' or 'fp16')",
    "utils.utils": "improved_diffusion.checkpoint, dataloaders and utils.sampling.sample_io (functions table)",
    "utils.utils_sample_DPM": "improved_diffusion.noise_schedule, samplers and sampler_choice",
    "feature_extraction": "utils.evaluation.features and example_fine_tuning.py",
}


class RemovedModuleFinder:
    """A meta-path finder that turns the import of a removed original module into a pointer to its replacement."""

    def find_spec(self, fullname: str, path=None, target=None):
        top = fullname if fullname in REPLACEMENTS else fullname.split(".", 1)[0]
        if top in REPLACEMENTS and (top == fullname or top == "feature_extraction"):
            raise ModuleNotFoundError(f"No module named {fullname!r}: this module of the original code is gone; use "
                                      f"{REPLACEMENTS[top]} ({GUIDE})", name=fullname)
        return None


def install() -> None:
    """Add the finder once per process."""
    if not any(isinstance(finder, RemovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(RemovedModuleFinder())
