"""Train a diffusion model: unconditional / class-conditional, low-res (`image_size_hr`) or
super-res (`image_size_lr`), on an image or HDF5 folder; one process or `torchrun --nproc_per_node=N`.

Every keyword of the original `train.py main()` keeps its name, meaning and default (docs/original.md#train-defaults).
Command line: `python train.py --data_train_dir data/train --num_epochs 2 --class_cond ...`; resume with
`python train.py --resume_checkpoint F/model_epoch=0_iter=4.pt --num_epochs 2`: every keyword not given takes the
value in F/metadata.json (docs/training.md#resume). `--preset demo` or `--config F/metadata.json` give the defaults
of a new run: a keyword not in the call takes the preset's or that run's value (docs/training.md#presets-and-configs).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from improved_diffusion.checkpoint import write_metadata
from improved_diffusion.data_normalization import Normalization
from improved_diffusion.dist_util import barrier, cleanup_dist, is_distributed, is_main_process, setup_dist
from improved_diffusion.run_config import RunConfig
from improved_diffusion.script_util import build_diffusion, build_model
from improved_diffusion.train_setup import (
    NotGiven,
    check_output_folder,
    clear_run_files,
    launch_defaults,
    plan_resume,
    resolve_run,
    run_metadata,
    split_call,
    start_resumed_run,
    undo_failed_start,
)
from improved_diffusion.train_util import EpochData, TrainLoop
from utils.changed_defaults import notice_changed_default
from utils.cli import run_cli


def main(
        type_dataset: str = NotGiven("image"),  # 'image' (PNG/JPG/TIFF folder) or 'hdf5' (folder of .hdf5 files)
        data_train_dir: str | None = NotGiven(None),  # training data folder
        data_val_dir: str | None = NotGiven(None),  # validation folder (read only when compute_val is true)
        num_epochs: int = NotGiven(1000),  # total epochs of the run, also when resuming
        schedule_sampler: str = NotGiven("uniform"),  # timestep sampling: 'uniform' or 'loss-second-moment'
        lr: float = NotGiven(1e-4),  # AdamW learning rate
        weight_decay: float = NotGiven(0.0),  # AdamW weight decay
        lr_anneal_steps: int = NotGiven(0),  # > 0: lr decays linearly to 0 at this total step, where training stops
        batch_size: int = NotGiven(4),  # batch size per process
        microbatch: int = NotGiven(-1),  # -1: whole batch at once; else micro-batch size (gradients averaged)
        ema_rate: str = NotGiven("0.9999"),  # EMA rate(s) of the weights, comma-separated
        ema_warmup: bool = NotGiven(True),  # EMA decay ramps up to ema_rate: min(rate, (1 + step) / (10 + step))
        save_interval: int | None = NotGiven(None),  # also save a checkpoint every N steps within an epoch
        resume_checkpoint: str | None = NotGiven(None),  # model_epoch=E_iter=I.pt or _step=S.pt to continue (see docs)
        use_fp16: bool = NotGiven(False),  # original fp16 switch: amp='fp16' (CUDA only; use amp='bf16' on CPU)
        fp16_scale_growth: float = NotGiven(1e-3),  # fp16 loss scale grows by 2**this per good step
        image_size: int = NotGiven(64),  # H = W of the model's images, 32/64/128/256/512
        num_input_channels: int = NotGiven(3),  # image channels
        num_model_channels: int = NotGiven(128),  # UNet base width (multiple of 32)
        num_res_blocks: int = NotGiven(2),  # residual blocks per resolution
        num_heads: int = NotGiven(4),  # attention heads
        num_heads_upsample: int = NotGiven(-1),  # attention heads in the decoder (-1: num_heads)
        attention_resolutions: str = NotGiven("16,8"),  # feature-map sizes with self-attention, comma-separated
        dropout: float = NotGiven(0.0),  # dropout in residual blocks
        learn_sigma: bool = NotGiven(False),  # learn the reverse-process variance (IDDPM)
        sigma_small: bool = NotGiven(False),  # fixed variance: posterior (True) or beta (False)
        class_cond: bool = NotGiven(False),  # class-conditional model
        num_class: int | None = NotGiven(None),  # number of classes (class_cond)
        diffusion_steps: int = NotGiven(1000),  # T, steps of the diffusion chain
        noise_schedule: str = NotGiven("linear"),  # 'linear' or 'cosine'
        timestep_respacing: str = NotGiven(""),  # train on a respaced chain ('' = all steps)
        loss_name: str = NotGiven("mse"),  # 'mse', 'rescaled_mse', 'kl' or 'rescaled_kl'
        output_type: str = NotGiven("epsilon"),  # network predicts 'epsilon', 'x_start', 'x_previous' or 'velocity'
        rescale_timesteps: bool = NotGiven(True),  # network sees t * 1000 / T
        use_checkpoint: bool = NotGiven(False),  # gradient checkpointing (less memory, more compute)
        use_scale_shift_norm: bool = NotGiven(True),  # FiLM-style time conditioning after GroupNorm
        url_folder_experiment: str = NotGiven("./models_data/first_try/"),  # output folder (resume: another = branch)
        list_keys_hdf5_original: list[str] = NotGiven(("wrap", "unwrap")),  # keys allowed in the HDF5 files
        key_data: str = NotGiven("unwrap"),  # HDF5 key of the data to model
        key_other: str | None = NotGiven(None),  # HDF5 key used to count examples cheaply
        compute_val: bool = NotGiven(False),  # validation bits/dim each epoch; then only improving epochs are saved
        subset_timesteps: int | None = NotGiven(None),  # validation bound over the k lowest-noise steps only
        crop: bool = NotGiven(False),  # random crop instead of resize (image folders)
        image_size_hr: int | None = NotGiven(None),  # low-res mode: read at this size, area-downscale to image_size
        image_size_lr: int | None = NotGiven(None),  # super-res mode: condition on the image area-downscaled to this
        key_class: str | None = NotGiven(None),  # HDF5 key of integer class labels (class_cond with HDF5)
        normalization: Normalization = NotGiven("none"),  # stored values (HDF5 or image folder) -> model units
        norm_range: list[float] | None = NotGiven(None),  # value range mapped to [-1, 1] ('range' normalization)
        nan_policy: str = NotGiven("error"),  # NaN pixels in HDF5 data: 'error', or 'fill' (0, masked out of the loss)
        phase_as_cos_sin: bool = NotGiven(False),  # HDF5 wrapped phase as (cos, sin) channels
        db: bool = NotGiven(False),  # SAR image values to decibels before normalisation (see db_quantity)
        db_quantity: Literal["power", "amplitude"] = NotGiven("power"),  # with db: power 10*log10, amplitude 20*log10
        seed: int = NotGiven(0),  # seed of weights, data order, timesteps and noise
        device: str = NotGiven("auto"),  # 'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1', ...
        num_workers: int = NotGiven(0),  # data-loading worker processes
        amp: str = NotGiven("auto"),  # 'auto' (bf16 where computed natively), 'none' (original fp32), 'bf16', 'fp16'
        grad_clip: float | None = NotGiven(None),  # max global gradient norm (None: no clipping)
        warmup_steps: int = NotGiven(0),  # linear lr warm-up over this many steps
        keep_checkpoints: int | None = NotGiven(3),  # keep the newest K sets (compute_val: K best by val); None: all
        log_interval: int = NotGiven(100),  # steps between tensorboard scalars
        grid_interval: int = NotGiven(1),  # epochs between tensorboard sample grids from the EMA model (0: never)
        compile: bool = NotGiven(False),  # torch.compile the model (falls back to eager where it fails)
        channels_last: bool | str = NotGiven("auto"),  # NHWC: true, false or 'auto' (where faster; never with amp=none)
        min_snr_gamma: float | None = NotGiven(None),  # Min-SNR-gamma weight of the MSE (Hang et al. 2023); None: off
        student_t_nu: float | None = NotGiven(None),  # Student-t noise of nu > 2 dof (t-EDM); None: Gaussian
        symmetry_augment: bool = NotGiven(False),  # random flips / 90-degree rotations (only for isotropic data)
        class_scale: list[float] | None = NotGiven(None),  # network input x / class_scale[y] (class_cond); None: off
        class_weights: list[float] | None = NotGiven(None),  # class k drawn with odds class_weights[k]; None: off
        overwrite: bool = NotGiven(False),  # new run in a non-empty folder; resume: delete later sets
        preset: str | None = NotGiven(None),  # named preset (e.g. 'demo'): the defaults of every keyword not given
        config: str | None = NotGiven(None),  # a run's metadata.json whose keywords are the defaults of a new run
        ) -> dict:
    """Train a diffusion model and write checkpoints, metadata.json and tensorboard logs.

    Returns {"checkpoint": last model file written (or None), "step_total", "epochs"}.
    """
    values, given = split_call(dict(locals()))
    device_ = setup_dist(values["device"])
    try:
        return _train(values, given, device_)
    finally:
        cleanup_dist()


def _loaders(config: RunConfig, device: torch.device) -> tuple[EpochData, EpochData | None, dict]:
    from improved_diffusion.dataloaders import create_run_loaders, set_loader_epoch
    train, val, info = create_run_loaders(config.data, distributed=is_distributed(), device=device)
    val_data = None if val is None else EpochData(val, lambda epoch: set_loader_epoch(val, epoch))
    return EpochData(train, lambda epoch: set_loader_epoch(train, epoch)), val_data, info


def _train(values: dict, given: set, device: torch.device) -> dict:
    # 1. Validate everything before any file is read heavily or written.
    plan = None
    values, read_from = launch_defaults(values, given)
    if values["resume_checkpoint"] is not None:
        plan = plan_resume(values, given)
        args, folder = plan.args, plan.folder
    else:
        args, folder = dict(values), Path(values["url_folder_experiment"])
        check_output_folder(folder, args["overwrite"], resuming=False)
    config = resolve_run(args, device, plan, given, read_from)
    if args["amp"] == "auto" and config.loop.amp != "none":
        notice_changed_default("amp.auto")

    # 2. Data, model and the loop (a resume is loaded and checked here, still before any write).
    train_data, val_data, data_info = _loaders(config, device)
    torch.manual_seed(config.loop.seed)
    loop = TrainLoop(model=build_model(config.model), diffusion=build_diffusion(config.diffusion), data=train_data,
                     val_data=val_data, folder=str(folder), config=config.loop, device=device,
                     class_scale=config.data.class_scale)
    notes = loop.resume(plan.checkpoint) if plan is not None else []

    # 3. Write: rank 0 prepares the folder and the metadata, then every process trains.
    barrier()
    created = not folder.exists()
    if is_main_process():
        if plan is not None:
            lines, loop.metadata = start_resumed_run(plan, data_info, loop.step_total)
            for line in notes + lines:
                print(f"[train] resume: {line}")
        else:
            if config.loop.ema_warmup:
                notice_changed_default("train.ema_warmup")
            if args["overwrite"] and folder.exists():
                clear_run_files(folder)
            folder.mkdir(parents=True, exist_ok=True)
            loop.metadata = run_metadata(config.args, data_info)
            write_metadata(folder, loop.metadata)
    barrier()
    try:
        return loop.run()
    except BaseException:
        # A new run that fails before its first checkpoint set (bad data found mid-epoch, NaN, Ctrl-C)
        # leaves no trace, so the corrected rerun needs no overwrite=True.
        if plan is None and is_main_process():
            if loop.last_checkpoint is None:
                undo_failed_start(folder, created)
            else:
                print(f"[train] stopped; {loop.last_checkpoint} is complete: resume from it once the cause is "
                      "fixed, or pass overwrite=True to start again")
        raise


if __name__ == "__main__":
    run_cli(main)
