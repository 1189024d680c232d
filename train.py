"""Train a diffusion model: unconditional / class-conditional, low-res (`image_size_hr`) or
super-res (`image_size_lr`), on an image or HDF5 folder; one process or `torchrun --nproc_per_node=N`.

Every keyword of the original `train.py main()` keeps its name, meaning and default (docs/original.md#train-defaults).
Command line: `python train.py --data_train_dir data/train --num_epochs 2 --class_cond ...`.
"""
from __future__ import annotations

from pathlib import Path

import torch

from improved_diffusion.checkpoint import write_metadata
from improved_diffusion.dist_util import barrier, cleanup_dist, is_distributed, is_main_process, setup_dist
from improved_diffusion.resample import create_named_schedule_sampler
from improved_diffusion.script_util import create_model_and_diffusion
from improved_diffusion.train_setup import (
    check_output_folder,
    clear_run_files,
    keyword_defaults,
    merge_resume,
    reuse_recorded_speed,
    run_metadata,
    validate_call,
)
from improved_diffusion.train_util import EpochData, TrainLoop
from utils.cli import run_cli


def main(
        type_dataset: str = "image",  # 'image' (PNG/JPG/TIFF folder) or 'hdf5' (folder of .hdf5 files)
        data_train_dir: str | None = None,  # training data folder
        data_val_dir: str | None = None,  # validation folder (read only when compute_val is true)
        num_epochs: int = 1000,  # total epochs of the run, also when resuming
        schedule_sampler: str = "uniform",  # timestep sampling: 'uniform' or 'loss-second-moment'
        lr: float = 1e-4,  # AdamW learning rate
        weight_decay: float = 0.0,  # AdamW weight decay
        lr_anneal_steps: int = 0,  # > 0: lr decays linearly to 0 at this total step, where training stops
        batch_size: int = 4,  # batch size per process
        microbatch: int = -1,  # -1: whole batch at once; else micro-batch size (gradients averaged)
        ema_rate: str = "0.9999",  # EMA rate(s) of the weights, comma-separated
        save_interval: int | None = None,  # also save a checkpoint every N steps within an epoch
        resume_checkpoint: str | None = None,  # model_epoch=E_iter=I.pt (or _step=S.pt) to continue from
        use_fp16: bool = False,  # original fp16 switch: amp='fp16' (CUDA only; use amp='bf16' on CPU)
        fp16_scale_growth: float = 1e-3,  # fp16 loss scale grows by 2**this per good step
        image_size: int = 64,  # H = W of the model's images, 32/64/128/256/512
        num_input_channels: int = 3,  # image channels
        num_model_channels: int = 128,  # UNet base width (multiple of 32)
        num_res_blocks: int = 2,  # residual blocks per resolution
        num_heads: int = 4,  # attention heads
        num_heads_upsample: int = -1,  # attention heads in the decoder (-1: num_heads)
        attention_resolutions: str = "16,8",  # feature-map sizes with self-attention, comma-separated
        dropout: float = 0.0,  # dropout in residual blocks
        learn_sigma: bool = False,  # learn the reverse-process variance (IDDPM)
        sigma_small: bool = False,  # fixed variance: posterior (True) or beta (False)
        class_cond: bool = False,  # class-conditional model
        num_class: int | None = None,  # number of classes (class_cond)
        diffusion_steps: int = 1000,  # T, steps of the diffusion chain
        noise_schedule: str = "linear",  # 'linear' or 'cosine'
        timestep_respacing: str = "",  # train on a respaced chain ('' = all steps)
        loss_name: str = "mse",  # 'mse', 'rescaled_mse', 'kl' or 'rescaled_kl'
        output_type: str = "epsilon",  # network predicts 'epsilon', 'x_start' or 'x_previous'
        rescale_timesteps: bool = True,  # network sees t * 1000 / T
        use_checkpoint: bool = False,  # gradient checkpointing (less memory, more compute)
        use_scale_shift_norm: bool = True,  # FiLM-style time conditioning after GroupNorm
        url_folder_experiment: str = "./models_data/first_try/",  # output folder: metadata, checkpoints, tensorboard
        list_keys_hdf5_original: list[str] = ("wrap", "unwrap"),  # keys allowed in the HDF5 files
        key_data: str = "unwrap",  # HDF5 key of the data to model
        key_other: str | None = None,  # HDF5 key used to count examples cheaply
        compute_val: bool = False,  # validation bits/dim each epoch; then only improving epochs are saved
        subset_timesteps: int | None = None,  # validation bound over the k lowest-noise steps only
        crop: bool = False,  # random crop instead of resize (image folders)
        image_size_hr: int | None = None,  # low-res mode: read at this size, area-downscale to image_size
        image_size_lr: int | None = None,  # super-res mode: condition on the image area-downscaled to this
        key_class: str | None = None,  # HDF5 key of integer class labels (class_cond with HDF5)
        normalization: str = "none",  # HDF5 value mapping to model units (see the data loaders)
        norm_range: list[float] | None = None,  # HDF5 value range mapped to [-1, 1] ('range' normalization)
        nan_policy: str = "error",  # NaN pixels in HDF5 data: 'error' or a fill policy (mask in the loss)
        phase_as_cos_sin: bool = False,  # HDF5 wrapped phase as (cos, sin) channels
        db: bool = False,  # SAR amplitude to decibels before normalisation
        seed: int = 0,  # seed of weights, data order, timesteps and noise
        device: str = "auto",  # 'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1', ...
        num_workers: int = 0,  # data-loading worker processes
        amp: str = "auto",  # 'auto' (bf16 where computed natively), 'none' (original fp32), 'bf16', 'fp16' (CUDA)
        grad_clip: float | None = None,  # max global gradient norm (None: no clipping)
        warmup_steps: int = 0,  # linear lr warm-up over this many steps
        keep_checkpoints: int | None = 3,  # keep the newest K sets (with compute_val: the K best by val); None: all
        log_interval: int = 100,  # steps between tensorboard scalars
        grid_interval: int = 1,  # epochs between tensorboard sample grids from the EMA model (0: never)
        compile: bool = False,  # torch.compile the model (falls back to eager where it fails)
        channels_last: bool | str = "auto",  # NHWC weights: true, false or 'auto' (where faster; never with amp=none)
        overwrite: bool = False,  # start a new run in a non-empty url_folder_experiment
        ) -> dict:
    """Train a diffusion model and write checkpoints, metadata.json and tensorboard logs.

    Returns {"checkpoint": last model file written (or None), "step_total", "epochs"}.
    """
    call = dict(locals())
    device_ = setup_dist(device)
    try:
        return _train(call, device_)
    finally:
        cleanup_dist()


def _loaders(args: dict, device: torch.device) -> tuple[EpochData, EpochData | None, dict]:
    from improved_diffusion.dataloaders import create_dataloader, set_loader_epoch
    common = dict(type_dataset=args["type_dataset"], image_size=args["image_size"],
                  num_channels=args["num_input_channels"], batch_size=args["batch_size"],
                  class_cond=args["class_cond"], num_class=args["num_class"], crop=args["crop"],
                  image_size_hr=args["image_size_hr"], image_size_lr=args["image_size_lr"],
                  list_keys_hdf5_original=tuple(args["list_keys_hdf5_original"]), key_data=args["key_data"],
                  key_other=args["key_other"], key_class=args["key_class"], normalization=args["normalization"],
                  norm_range=args["norm_range"], nan_policy=args["nan_policy"],
                  phase_as_cos_sin=args["phase_as_cos_sin"], db=args["db"], num_workers=args["num_workers"],
                  seed=args["seed"], distributed=is_distributed(), device=device)
    train, info = create_dataloader(args["data_train_dir"], class_names=args.get("class_names"),
                                    norm_stats=args.get("data_normalization"), **common)
    val = None
    if args["compute_val"]:
        loader, _ = create_dataloader(args["data_val_dir"], class_names=info.get("class_names"),
                                      norm_stats=info["data_normalization"], deterministic=True, **common)
        val = EpochData(loader, lambda epoch: set_loader_epoch(loader, epoch))
    return EpochData(train, lambda epoch: set_loader_epoch(train, epoch)), val, info


def _train(call: dict, device: torch.device) -> dict:
    # 1. Validate everything before any file is read heavily or written.
    resuming = call["resume_checkpoint"] is not None
    if resuming:
        args, folder = merge_resume(call, keyword_defaults(main))
    else:
        args, folder = dict(call), Path(call["url_folder_experiment"])
    if resuming:
        reuse_recorded_speed(args, folder)  # 'auto' takes the run's recorded choice: resume stays bit-identical
    options = validate_call(args, device)  # amp, memory format and EMA rates, resolved once for the run
    args["amp"], args["channels_last"] = options["amp"], options["channels_last"]
    check_output_folder(folder, call["overwrite"], resuming)
    for key in ("data_train_dir",) + (("data_val_dir",) if args["compute_val"] else ()):
        if not args[key] or not Path(args[key]).is_dir():
            raise FileNotFoundError(f"{key}: got {args[key]!r}, expected an existing data folder")

    # 2. Data, model and the loop (a resume is loaded and checked here, still before any write).
    train_data, val_data, data_info = _loaders(args, device)
    torch.manual_seed(args["seed"])
    model, diffusion = create_model_and_diffusion(args)
    loop = TrainLoop(
        model=model, diffusion=diffusion, data=train_data, val_data=val_data, folder=str(folder),
        num_epochs=args["num_epochs"], lr=args["lr"], ema_rate=options["ema_rates"], microbatch=args["microbatch"],
        schedule_sampler=create_named_schedule_sampler(args["schedule_sampler"], diffusion),
        weight_decay=args["weight_decay"], lr_anneal_steps=args["lr_anneal_steps"],
        warmup_steps=args["warmup_steps"], grad_clip=args["grad_clip"], save_interval=args["save_interval"],
        keep_checkpoints=args["keep_checkpoints"], log_interval=args["log_interval"], amp=args["amp"],
        fp16_scale_growth=args["fp16_scale_growth"], subset_timesteps=args["subset_timesteps"], seed=args["seed"],
        grid_interval=args["grid_interval"], compile=args["compile"],
        channels_last=args["channels_last"], device=device, options_resolved=True)
    notes = loop.resume(args["resume_checkpoint"]) if resuming else []

    # 3. Write: rank 0 prepares the folder and the metadata, then every process trains.
    barrier()
    if is_main_process():
        for note in notes:
            print(f"[train] resume: {note}")
        if call["overwrite"] and not resuming and folder.exists():
            clear_run_files(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_metadata(folder, run_metadata(args, data_info))
    barrier()
    return loop.run()


if __name__ == "__main__":
    run_cli(main)
