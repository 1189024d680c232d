"""Sample with DPM-Solver / DPM-Solver++ (Lu et al. 2022) on the checkpoint's own discrete schedule.

    python sample_DPM.py --model_path models_data/run/ema_rate=0.9999_3.pt --sample_steps 10 --order 3

`sample_steps` is the number of network evaluations. The trajectory is kept in float64 (only the
network input is cast). Outputs as `sample.py`.
"""
from __future__ import annotations

from pathlib import Path

from improved_diffusion.sampler_choice import ode_sampler
from utils.changed_defaults import notice_changed_default
from utils.cli import pick_alias, run_cli
from utils.sampling.gap_filling import run_gap_filling
from utils.sampling.options import SamplingOptions
from utils.sampling.run import run_sampling


def sample_from_ODE(
    model_path: str | None = None,  # model or EMA checkpoint (.pt) with its metadata.json beside it
    clip_denoised: bool | None = None,  # clamp x0 to +-max_clip_val each call; None: off if the data exceed +-1
    max_clip_val: float = 1,  # clamp bound (> 0)
    sample_steps: int = 10,  # network evaluations per sample (ignored by method_type="adaptive")
    num_samples: int = 16,  # samples written
    batch_size: int = 16,  # samples per network call (as sample.py; the original's default was 1)
    sampled_class=None,  # int, list of ints (cycled), "balanced", "proportional" (training shares), None/"random"
    sample_class=None,  # the same as sampled_class (sample.py's spelling)
    url_save_path: str = "images/",  # output folder (created)
    algorithm_type: str = "dpmsolver++",  # "dpmsolver" (noise prediction) or "dpmsolver++" (data prediction)
    method_type: str = "multistep",  # "singlestep", "singlestep_fixed", "multistep" or "adaptive"
    skip_type: str | None = None,  # time grid: "logSNR", "time-uniform" or "time-quadratic"; None = "logSNR"
    order: int = 3,  # solver order 1-3
    plot: bool = True,  # PNG of the first 64 samples of the run, colorbar in the data units
    lambda_min: float | str | None = "auto",  # spacing starts at this half-log-SNR; "auto": by sample_steps; None: T-1
    lambda_max: float | str | None = "auto",  # spacing ends at this half-log-SNR; "auto": by sample_steps; None: t=0
    denoise_to_zero: bool = True,  # last evaluation maps index 0 to clean data (else output the state at index 0)
    lower_order_final: bool = False,  # multistep: cap the order by the number of steps left
    dynamic_threshold_ratio: float | None = None,  # dynamic thresholding quantile (e.g. 0.995) instead of clipping
    atol: float = 0.0078,  # adaptive: absolute tolerance
    rtol: float = 0.05,  # adaptive: relative tolerance
    diffusion_steps: int | None = None,  # re-discretise the schedule with this T (original); None = the checkpoint's T
    url_lr_data: str | None = None,  # super-res models: .npz of low-res images (arr_0 NHWC, optional arr_1 labels)
    shift_to_lr_mean: bool = False,  # super-res: shift each sample to its low-res image's mean
    to_0_255: bool = False,  # save arr_0 as uint8 instead of float32 in model units
    save_hdf5: bool = False,  # also write the samples as HDF5 (dataset "data", physical units when known)
    seed: int = 0,  # random seed: the same seed gives the same samples, labels included
    device: str = "auto",  # "auto" (cuda if available), "cpu", "cuda", ...
    amp: str = "auto",  # network precision: "auto" (bf16 where computed natively), "none" (float32), "bf16", "fp16"
    channels_last: bool | str = "auto",  # NHWC weights: true, false or "auto" (where faster; never with amp="none")
    compile: bool = False,  # torch.compile the network (eager where unavailable; pays off for many samples)
    overwrite: bool = False,  # replace existing output files
    progress: bool = True,  # progress bars
    save_geotiff: bool = False,  # also write one GeoTIFF per sample with the training data's georeference
    observed_path: str | None = None,  # gap filling: .npz (arr_0) / HDF5 of fields with NaN gaps; None = sample
    samples_per_field: int = 8,  # gap filling: conditional samples per observed field
    gap_method: str = "posterior",  # gap filling: "posterior" (ODE, sample_steps) or "repaint" (ancestral chain)
) -> Path:
    """Sample from a checkpoint by solving the probability-flow ODE; returns the path of the `.npz`. With
    `observed_path`, fill the gaps of those fields instead (`utils.sampling.gap_filling`; the solver options
    other than sample_steps are unused)."""
    sampled_class = pick_alias("sampled_class", sampled_class, "sample_class", sample_class)
    if skip_type is None:  # the default: say that it changed (not when the user chose a grid)
        skip_type = "logSNR"
        notice_changed_default("dpm.skip_type")
    solver = dict(algorithm_type=algorithm_type, method_type=method_type, order=order, skip_type=skip_type,
                  lambda_min=lambda_min, lambda_max=lambda_max, denoise_to_zero=denoise_to_zero,
                  lower_order_final=lower_order_final, atol=atol, rtol=rtol)

    sampler = ode_sampler(sample_steps, progress, **solver)  # checks the options before loading
    for key, changed in (("dpm.algorithm_type", algorithm_type == "dpmsolver++"),
                         ("superres.shift_to_lr_mean", url_lr_data is not None and not shift_to_lr_mean)):
        if changed:
            notice_changed_default(key)
    options = SamplingOptions.resolve(amp=amp, channels_last=channels_last, compile=compile, seed=seed,
                                      device=device, batch_size=batch_size, overwrite=overwrite, progress=progress)
    if observed_path is not None:
        return run_gap_filling(options, model_path=model_path, observed_path=observed_path,
                               url_save_path=url_save_path, samples_per_field=samples_per_field, method=gap_method,
                               steps=sample_steps)
    return run_sampling(sampler, options, model_path=model_path, num_samples=num_samples,
                        url_save_path=url_save_path, sample_class=sampled_class, clip_denoised=clip_denoised,
                        max_clip_val=max_clip_val, threshold_ratio=dynamic_threshold_ratio,
                        diffusion_steps=diffusion_steps, to_0_255=to_0_255, plot=plot, save_hdf5=save_hdf5,
                        url_lr_data=url_lr_data, shift_to_lr_mean=shift_to_lr_mean, save_geotiff=save_geotiff)


if __name__ == "__main__":
    run_cli(sample_from_ODE)
