"""Defaults that differ on purpose from the original code, and a one-line notice printed the first
time one of them changes a result in this process (docs/migrating.md#changed-defaults)."""
from __future__ import annotations

CHANGED_DEFAULTS: dict[str, str] = {
    "train.ema_warmup": "ema_warmup=True: the EMA decay ramps up as min(ema_rate, (1 + step) / (10 + step)); the "
                        "original used the constant ema_rate from step 0 (pass ema_warmup=False)",
    "amp.auto": "amp='auto' runs the network under bf16 autocast here (native bf16 hardware); the original computed "
                "in float32 (pass amp='none' for its numerics)",
    "sample.diffusion_steps": "diffusion_steps=None now samples the checkpoint's own T-step chain; the original "
                              "re-discretised it to 100 steps (pass diffusion_steps=100, or better sampling_steps=100)",
    "sample.clip_denoised": "clip_denoised=None: x0 is not clamped to [-1, 1] for this model, whose data exceed it "
                            "(metadata data_normalization); the original always clamped (pass clip_denoised=True)",
    "likelihood.diffusion_steps": "diffusion_steps=None now evaluates the bound on the checkpoint's own T-step chain; "
                                  "the original used a re-discretised 100-step chain (pass diffusion_steps=100)",
    "dpm.algorithm_type": "algorithm_type='dpmsolver++' is now the default (data prediction, stable with clipping); "
                          "the original default was 'dpmsolver'",
    "dpm.skip_type": "skip_type='logSNR' is now the default and is applied; the original ignored skip_type and "
                     "always used 'time-uniform'",
    "superres.shift_to_lr_mean": "shift_to_lr_mean=False: super-res samples are no longer shifted to the mean of "
                                 "their low-res image (the original always did; pass shift_to_lr_mean=True)",
    "semivariogram.rescale": "rescale=False: fields are no longer min-max rescaled to [-1, 1] one by one before the "
                             "semivariogram (the original always did; pass rescale=True)",
    "tengeop.split": "split='shuffled': each TenGeoP class is split at random (seeded) into train/val/test; the "
                     "original split in listing order (pass split='listing')",
}
_shown: set[str] = set()


def notice_changed_default(key: str) -> None:
    """Print the notice of ``CHANGED_DEFAULTS[key]`` once per process (later calls print nothing)."""
    if key not in _shown:
        _shown.add(key)
        print(f"[changed default] {CHANGED_DEFAULTS[key]}")
