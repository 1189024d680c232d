"""Sample images from a checkpoint with the ancestral sampler or DDIM (super-resolution too).

    python sample.py --model_path models_data/run/ema_rate=0.9999_3.pt --num_samples 16 --sampling_steps 20 --use_ddim

Writes `samples_{N}x{H}x{W}x{C}.npz` (arr_0 NHWC, arr_1 labels for class-conditional models), a PNG
grid, optionally HDF5, and a provenance JSON into `url_save_path`.
"""
from __future__ import annotations

from pathlib import Path

from improved_diffusion.sampler_choice import chain_sampler, sampling_grid
from utils.changed_defaults import notice_changed_default
from utils.cli import pick_alias, run_cli
from utils.sampling.gap_filling import run_gap_filling
from utils.sampling.options import SamplingOptions
from utils.sampling.run import run_sampling


def main_sample(
    model_path: str | None = None,  # model or EMA checkpoint (.pt) with its metadata.json beside it
    clip_denoised: bool | None = None,  # clamp x0 to +-max_clip_val each step; None: off if the data exceed +-1
    max_clip_val: float = 1,  # clamp bound (> 0)
    diffusion_steps: int | None = None,  # re-discretise the schedule with this T (original); None = the checkpoint's T
    num_samples: int = 10000,  # samples written (super-res: at most the number of low-res images)
    sample_class=None,  # int, list of ints (cycled), "balanced", "proportional" (training shares), None/"random"
    sampled_class=None,  # the same as sample_class (sample_DPM.py's spelling)
    batch_size: int = 16,  # samples per network call
    use_ddim: bool = False,  # DDIM instead of the ancestral sampler
    url_save_path: str = "images/",  # output folder (created)
    to_0_255: bool = False,  # save arr_0 as uint8 ((x + 1) * 127.5) instead of float32 in model units
    plot: bool = True,  # PNG of the first 64 samples of the run, colorbar in the data units
    seed: int = 0,  # random seed: the same seed gives the same samples, labels included
    device: str = "auto",  # "auto" (cuda if available), "cpu", "cuda", "cuda:1", ...
    eta: float = 0.0,  # DDIM noise scale (0 = deterministic ODE, 1 = ancestral-like)
    sampling_steps: int | None = None,  # network evaluations (trailing grid over the model's chain); None = every step
    timestep_respacing: str | None = None,  # explicit grid instead: "ddimN", "trailingN" or section counts "a,b,c"
    url_lr_data: str | None = None,  # super-res models: .npz of low-res images (arr_0 NHWC, optional arr_1 labels)
    shift_to_lr_mean: bool = False,  # super-res: shift each sample to its low-res image's mean (original post-hoc step)
    save_hdf5: bool = False,  # also write the samples as HDF5 (dataset "data", physical units when known)
    amp: str = "auto",  # network precision: "auto" (bf16 where computed natively), "none" (float32), "bf16", "fp16"
    channels_last: bool | str = "auto",  # NHWC weights: true, false or "auto" (where faster; never with amp="none")
    compile: bool = False,  # torch.compile the network (eager where unavailable; pays off for many samples)
    overwrite: bool = False,  # replace existing output files
    progress: bool = True,  # progress bars
    save_geotiff: bool = False,  # also write one GeoTIFF per sample with the training data's georeference
    observed_path: str | None = None,  # gap filling: .npz (arr_0) / HDF5 of fields with NaN gaps; None = sample
    samples_per_field: int = 8,  # gap filling: conditional samples per observed field
    gap_method: str = "repaint",  # gap filling: "repaint" (ancestral chain, sampling_steps) or "posterior" (ODE)
) -> Path:
    """Sample from a checkpoint; returns the path of the written `.npz`. With `observed_path`, fill the gaps
    of those fields instead (`utils.sampling.gap_filling`; the options of the unconditional run are unused)."""
    if not 0 <= eta < float("inf"):
        raise ValueError(f"eta: got {eta!r}; expected a finite number >= 0")
    if eta > 0 and not use_ddim:
        raise ValueError(f"eta={eta} only applies to DDIM; pass use_ddim=True")

    sample_class = pick_alias("sample_class", sample_class, "sampled_class", sampled_class)
    sampler = chain_sampler(use_ddim, eta, sampling_steps, timestep_respacing, progress)

    def check(T: int) -> None:
        sampling_grid(T, sampling_steps, timestep_respacing)
        if diffusion_steps is None and sampling_steps is None and timestep_respacing is None and T != 100:
            notice_changed_default("sample.diffusion_steps")
        if url_lr_data is not None and not shift_to_lr_mean:
            notice_changed_default("superres.shift_to_lr_mean")

    options = SamplingOptions.resolve(amp=amp, channels_last=channels_last, compile=compile, seed=seed,
                                      device=device, batch_size=batch_size, overwrite=overwrite, progress=progress)
    if observed_path is not None:
        return run_gap_filling(options, model_path=model_path, observed_path=observed_path,
                               url_save_path=url_save_path, samples_per_field=samples_per_field, method=gap_method,
                               steps=sampling_steps)
    return run_sampling(sampler, options, model_path=model_path, num_samples=num_samples,
                        url_save_path=url_save_path, sample_class=sample_class, clip_denoised=clip_denoised,
                        max_clip_val=max_clip_val, diffusion_steps=diffusion_steps, to_0_255=to_0_255, plot=plot,
                        save_hdf5=save_hdf5, url_lr_data=url_lr_data, shift_to_lr_mean=shift_to_lr_mean,
                        save_geotiff=save_geotiff, check=check)

if __name__ == "__main__":
    run_cli(main_sample)
