"""The one training loop: epochs over a finite loader, EMA, checkpoints, validation, exact resume.

Randomness of epoch e is a function of (seed, e) only: the loader order (`set_epoch`), the
timesteps and noise (two generators shared by every process: each process draws the whole global
batch and keeps its own items, so N processes with batch B train like one with batch N B) and
dropout (global RNG, also seeded by rank). Within-epoch checkpoints also store the generator states.

Micro-batch losses are summed with weight n_micro / n_batch, so the gradient is the batch *mean*
(the original summed micro-batch gradients: same AdamW update up to epsilon, but gradient norms,
clipping thresholds and logged grad norms scaled with the number of micro-batches).

Metrics stay on the device and are read once per `log_interval` steps; the only per-step host copy is
the loss-second-moment sampler's (its next draw depends on this step's losses).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .acceleration import autocast, compile_model, enable_fast_matmul, memory_format
from .checkpoint import CheckpointName, load_state_dict, set_name
from .dist_util import all_gather_interleaved, all_reduce_sum, get_rank, get_world_size, is_distributed
from .file_io import derive_seed, safe_torch_load
from .nn import ema_decay, update_ema
from .resample import LossSecondMomentResampler, create_named_schedule_sampler
from .run_config import LoopConfig
from .train_logging import Logger, MetricAccumulator, ema_samples
from .train_state import (
    TrainState,
    find_set_files,
    load_train_state,
    prune_sets,
    save_checkpoint_set,
)

GRID_SAMPLES = 16


class TrainingDiverged(FloatingPointError, ValueError):
    """A NaN or inf loss or weight stopped training (also a ValueError: the command line prints one line)."""


def _host_copy(tensor: torch.Tensor) -> torch.Tensor:
    """A contiguous CPU copy (checkpoints keep the standard layout whatever the training memory format)."""
    return tensor.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)


@dataclass
class EpochData:
    """A finite iterable of (x (N, C, H, W) float32, cond dict) batches and how to fix an epoch's order."""
    loader: Iterable
    set_epoch: Callable[[int], None] = lambda epoch: None


class TrainLoop:
    """Train `model` on `data` for epochs `start_epoch .. config.num_epochs - 1`, writing checkpoint sets to
    `folder`; `config` is the run's loop group, resolved (`train_setup.loop_config`). `metadata`: the run's
    metadata.json, recorded with every checkpoint set (so a resume can recover what that file loses).
    `config.ema_warmup`: each EMA's decay ramps up to its rate with the step count (`nn.ema_decay`); off keeps
    the original constant decay. `class_scale`: the run's (its batches are in network units; the tensorboard
    sample grid is shown in model units).
    """

    def __init__(self, *, model: torch.nn.Module, diffusion, data: EpochData, folder: str, config: LoopConfig,
                 val_data: EpochData | None = None, device: torch.device | str = "cpu", metadata: dict | None = None,
                 class_scale: tuple[float, ...] | None = None):
        self.device, self.config, self.class_scale = torch.device(device), config, class_scale
        self.metadata = metadata or {}
        enable_fast_matmul(self.device, config.amp)
        # channels_last before the EMA copies and the optimizer state are made, so all share one layout
        self.memory_format = memory_format(config.channels_last)
        self.model = model.to(self.device, memory_format=self.memory_format)
        self.diffusion, self.data, self.val_data = diffusion, data, val_data
        self.folder = Path(folder)
        self.sampler = create_named_schedule_sampler(config.schedule_sampler, diffusion)
        # The original added fp16_scale_growth to log2(scale) per good step: doubling every 1/growth steps.
        self.scaler = (torch.amp.GradScaler("cuda", growth_interval=max(1, round(1 / config.fp16_scale_growth)))
                       if config.amp == "fp16" else None)
        self.params = list(self.model.parameters())
        self.ema_params = [[p.detach().clone() for p in self.params] for _ in self.config.ema_rates]
        # foreach: one multi-tensor update instead of a Python loop over parameters (torch only
        # defaults to it on CUDA)
        self.opt = torch.optim.AdamW(self.params, lr=config.lr, weight_decay=config.weight_decay, foreach=True)
        self.rank, self.world_size, self.is_main = get_rank(), get_world_size(), get_rank() == 0
        self.gen_t = torch.Generator()
        self.gen_noise = torch.Generator(self.device)
        self.start_epoch, self.step_total, self.skip_steps = 0, 0, 0
        self.best_score: float | None = None
        self.pending_rng: dict | None = None
        self.last_checkpoint: Path | None = None
        self.resumed_from: CheckpointName | None = None  # the set resume() loaded: never pruned
        self.resumed_path: Path | None = None
        self.metrics = MetricAccumulator(diffusion.num_timesteps, self.device)
        self.logger = Logger(None, enabled=False)  # opened by run(), so nothing is written before it
        self._bad_loss = torch.zeros((), device=self.device)
        self._batch, self._grid_shape, self._grid_cond = 0, None, {}
        self._bar = None  # the open progress bar: closed by run() also when training fails

    # ------------------------------------------------------------------ resume
    def resume(self, model_path: str | Path) -> list[str]:
        """Load a checkpoint set (model, EMA per rate, optimizer, train state); return notes on what was
        missing (folders written by the original code have no train state) and how it was replaced."""
        files = find_set_files(model_path, self.config.ema_rates)
        notes = []
        try:
            self.model.load_state_dict(load_state_dict(files.model, self.device), strict=True)
        except RuntimeError as err:
            raise ValueError(f"resume_checkpoint: {files.model} does not fit the model of this run: "
                             f"{str(err).splitlines()[0]} ...") from None
        for ema, rate in zip(self.ema_params, self.config.ema_rates):
            source = files.ema[rate]
            if source is None:
                notes.append(f"no EMA file {files.name.ema(rate)}: EMA rate {rate} restarts from the model weights")
                state = dict(self.model.named_parameters())
            else:
                state = load_state_dict(source, self.device)
            for target, (name, _) in zip(ema, self.model.named_parameters()):
                target.copy_(state[name].detach())
        if files.opt is None:
            notes.append(f"no optimizer file {files.name.opt()}: AdamW moments restart from zero")
        else:
            opt_state = safe_torch_load(files.opt, self.device)  # a damaged file stops the resume, naming it
            try:
                self.opt.load_state_dict(opt_state)
            except (ValueError, KeyError) as err:
                notes.append(f"optimizer file {files.opt.name} does not fit this model ({err}); AdamW restarts")
        name = files.name
        self.resumed_from, self.resumed_path = name, files.model
        if files.state is not None:
            state = load_train_state(files.state)
            self.step_total, self.best_score = state.step_total, state.best_score
            self.sampler.load_state_dict(state.sampler)
            if self.scaler is not None and state.grad_scaler:
                self.scaler.load_state_dict(state.grad_scaler)
            if state.world_size != self.world_size:
                notes.append(f"checkpoint written with {state.world_size} process(es), resumed with "
                             f"{self.world_size}: data order and noise differ from an uninterrupted run")
            elif state.seed != self.config.seed:
                notes.append(f"seed {self.config.seed} differs from the checkpoint's {state.seed}")
            elif name.step is not None:
                self.pending_rng = state.rng
        else:
            if name.step is not None:
                raise ValueError(f"resume_checkpoint: {files.model.name} is a within-epoch checkpoint without its "
                                 f"{name.state()}; resume from an end-of-epoch model_epoch=E_iter=I.pt instead")
            self.step_total, self.best_score = name.iteration, name.vb
            notes.append(f"no {name.state()} (folder written by the original code?): continuing at step "
                         f"{name.iteration} with a fresh timestep-sampler history and RNG states from the seed")
        self.start_epoch = name.epoch + (1 if name.step is None else 0)
        self.skip_steps = name.step or 0
        if self.start_epoch >= self.config.num_epochs:
            raise ValueError(f"num_epochs: got {self.config.num_epochs}, but the checkpoint has {self.start_epoch} "
                             f"epoch(s) done; num_epochs is the total of the run, expected > {self.start_epoch}")
        if self.annealed():
            raise ValueError(f"lr_anneal_steps: got {self.config.lr_anneal_steps}, the checkpoint is already at step "
                             f"{self.step_total}; nothing left to train")
        return notes

    # ------------------------------------------------------------------ random state
    def _seed_epoch(self, epoch: int) -> None:
        self.gen_t.manual_seed(derive_seed(self.config.seed, epoch, 0))
        self.gen_noise.manual_seed(derive_seed(self.config.seed, epoch, 1))
        torch.manual_seed(derive_seed(self.config.seed, epoch, 2, self.rank))

    def _rng_state(self) -> dict:
        """Generator states (shared by all processes) and every process's global RNG states."""
        local = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            local["cuda"] = torch.cuda.get_rng_state(self.device)
        per_rank = [local]
        if is_distributed():
            per_rank = [None] * self.world_size
            torch.distributed.all_gather_object(per_rank, local)
        return {"timesteps": self.gen_t.get_state(), "noise": self.gen_noise.get_state(), "per_rank": per_rank}

    def _restore_rng(self, rng: dict) -> None:
        self.gen_t.set_state(rng["timesteps"])
        self.gen_noise.set_state(rng["noise"])
        local = rng["per_rank"][self.rank]
        torch.set_rng_state(local["torch"])
        if "cuda" in local and self.device.type == "cuda":
            torch.cuda.set_rng_state(local["cuda"], self.device)

    # ------------------------------------------------------------------ one optimizer step
    def _current_lr(self) -> float:
        """lr with linear warm-up over `warmup_steps` and linear decay to 0 at `lr_anneal_steps` (never < 0)."""
        lr = self.config.lr
        if self.config.warmup_steps:
            lr *= min(1.0, (self.step_total + 1) / self.config.warmup_steps)
        if self.config.lr_anneal_steps:
            lr *= max(0.0, 1.0 - self.step_total / self.config.lr_anneal_steps)
        return lr

    def _forward_backward(self, x: torch.Tensor, cond: dict) -> None:
        n, n_global = x.shape[0], x.shape[0] * self.world_size
        t, weights = self.sampler.sample(n_global, self.device, generator=self.gen_t)
        noise = self.diffusion.noise((n_global, *x.shape[1:]), generator=self.gen_noise, device=self.device)
        t, weights, noise = (v[self.rank::self.world_size] for v in (t, weights, noise))
        mask = cond.pop("mask", None)
        size = n if self.config.microbatch in (-1, None) else self.config.microbatch
        starts = list(range(0, n, size))
        losses = []
        for i, start in enumerate(starts):
            part = slice(start, start + size)
            sync = self._ddp.no_sync() if self._ddp is not None and i < len(starts) - 1 else nullcontext()
            with sync:
                with autocast(self.device, self.config.amp):
                    terms = self.diffusion.training_losses(
                        self.ddp_model, x[part], t[part], {k: v[part] for k, v in cond.items()},
                        noise=noise[part], mask=None if mask is None else mask[part])
                    loss = (terms["loss"] * weights[part]).sum() / n  # mean over the batch (see module doc)
                (self.scaler.scale(loss) if self.scaler else loss).backward()
            self.metrics.add_terms(t[part], terms, weights[part])
            self._bad_loss += (~torch.isfinite(loss.detach())).float()
            losses.append(terms["loss"].detach().float())
        if isinstance(self.sampler, LossSecondMomentResampler):
            t_all = all_gather_interleaved(t)
            loss_all = all_gather_interleaved(torch.cat(losses))
            self.sampler.update_with_all_losses(t_all.cpu(), loss_all.cpu())

    def _optimize(self) -> None:
        lr = self._current_lr()
        for group in self.opt.param_groups:
            group["lr"] = lr
        if self.scaler is not None:
            self.scaler.unscale_(self.opt)
        if self.config.grad_clip:
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])
        self.metrics.add_scalar("grad_norm", norm)
        self.metrics.add_scalar("lr", torch.tensor(lr, device=self.device))
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        for ema, rate in zip(self.ema_params, self.config.ema_rates):
            update_ema(ema, self.params, ema_decay(rate, self.step_total, self.config.ema_warmup))
        self.step_total += 1

    # ------------------------------------------------------------------ checks, logging, saving
    def _check_finite(self, last_step: int, weights: bool = False) -> None:
        """TrainingDiverged if a loss since the start (or, with `weights`, a model or EMA weight) is not finite,
        naming the last checkpoint set saved, which was checked the same way before it was written."""
        bad = self._bad_loss.clone()
        if weights:
            tensors = self.params + [p for ema in self.ema_params for p in ema]
            bad += (~torch.stack([t.detach().isfinite().all() for t in tensors])).sum()
        if all_reduce_sum(bad).item() > 0:
            good = self.last_checkpoint or self.resumed_path
            raise TrainingDiverged(
                f"training loss or weights became NaN or inf at or before step {last_step}; training stopped. "
                f"Last good checkpoint: {good or 'none written yet'} (untouched). Try a lower lr, "
                "grad_clip, or amp='none'")

    def _log(self, epoch: int, bar) -> None:
        self._check_finite(self.step_total)
        values = self.metrics.flush()
        values["samples"] = self.step_total * self.world_size * self._batch
        self.logger.scalars(values, self.step_total)
        if bar is not None:
            bar.set_postfix(loss=f"{values.get('loss', float('nan')):.4g}", refresh=False)

    def _state_dicts(self) -> tuple[dict, dict]:
        model_state = {k: _host_copy(v) for k, v in self.model.state_dict().items()}
        names = [name for name, _ in self.model.named_parameters()]
        ema_states = {}
        for ema, rate in zip(self.ema_params, self.config.ema_rates):
            ema_states[rate] = {**model_state, **{n: _host_copy(p) for n, p in zip(names, ema)}}
        return model_state, ema_states

    def _save(self, name: CheckpointName, epoch: int, step_in_epoch: int | None) -> None:
        self._check_finite(self.step_total, weights=True)
        state = TrainState(epoch=epoch, step_total=self.step_total, step_in_epoch=step_in_epoch,
                           world_size=self.world_size, seed=self.config.seed, best_score=self.best_score,
                           rng=self._rng_state(), sampler=self.sampler.state_dict(),
                           grad_scaler=self.scaler.state_dict() if self.scaler else None, metadata=self.metadata)
        if self.is_main:
            model_state, ema_states = self._state_dicts()
            self.last_checkpoint = save_checkpoint_set(self.folder, name, model_state, ema_states,
                                                       self.opt.state_dict(), state)
            if self.config.keep_checkpoints:
                prune_sets(self.folder, self.config.keep_checkpoints, protect=self.resumed_from)

    @torch.no_grad()
    def validate(self, epoch: int) -> dict:
        """Bits/dim (`vb`) and x0-MSE (`mse`) of the validation set: eval mode, per-example mean over all
        processes; noise from (seed, epoch) so it does not disturb training randomness."""
        self.model.eval()
        self.val_data.set_epoch(0)
        generator = torch.Generator(self.device).manual_seed(derive_seed(self.config.seed, epoch, 3, self.rank))
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        for x, cond in self.val_data.loader:
            x = x.to(self.device)
            kwargs = {k: v.to(self.device) for k, v in cond.items() if k != "mask"}
            mask = cond["mask"].to(self.device) if "mask" in cond else None  # holes: as in the training loss
            with autocast(self.device, self.config.amp):
                out = self.diffusion.calc_bpd_loop(self.model, x, clip_denoised=True, model_kwargs=kwargs,
                                                   subset_timesteps=self.config.subset_timesteps, generator=generator,
                                                   progress=self.is_main, mask=mask)
            sums += torch.stack([out["total_bpd"].double().sum(), out["xstart_mse"].double().mean(1).sum(),
                                 sums.new_tensor(x.shape[0])])
        self.model.train()
        vb_sum, mse_sum, count = all_reduce_sum(sums).tolist()
        if count == 0:
            raise ValueError("data_val_dir: the validation loader yielded no batch")
        return {"vb": vb_sum / count, "mse": mse_sum / count}

    @torch.no_grad()
    def sample_grid(self, epoch: int) -> None:
        """DDIM samples from the first EMA model into tensorboard (`samples/ema_<rate>`)."""
        if not self.is_main or self._grid_shape is None:
            return
        images = ema_samples(self.model, self.ema_params[0], self.diffusion, self._grid_shape, self._grid_cond,
                             self.device, self.config.seed, self.class_scale)
        self.logger.image_grid(f"samples/ema_{self.config.ema_rates[0]}", images, self.step_total)

    # ------------------------------------------------------------------ the loop
    def _wrap_model(self) -> None:
        """`ddp_model`: the model the loss calls (DDP across processes, then torch.compile if asked)."""
        self._ddp = None
        if is_distributed():
            from torch.nn.parallel import DistributedDataParallel
            self._ddp = DistributedDataParallel(self.model, device_ids=[self.device] if self.device.type == "cuda"
                                                else None)
        model = self._ddp or self.model
        self.ddp_model = compile_model(model, "train") if self.config.compile else model

    def _run_epoch(self, epoch: int) -> bool:
        """Train one epoch; return False when lr_anneal_steps is reached inside it (a partial-epoch checkpoint)."""
        self._seed_epoch(epoch)
        self.data.set_epoch(epoch)
        batches = iter(self.data.loader)  # may draw worker seeds from the global RNG: before any restore
        total = len(self.data.loader) if hasattr(self.data.loader, "__len__") else None
        bar = tqdm(total=total, desc=f"epoch {epoch + 1}/{self.config.num_epochs}", disable=not self.is_main,
                   initial=self.skip_steps, dynamic_ncols=True)
        self._bar = bar
        step = 0
        for step, (x, cond) in enumerate(batches, start=1):
            if step <= self.skip_steps:
                if step == self.skip_steps and self.pending_rng is not None:
                    self._restore_rng(self.pending_rng)
                continue
            x = x.to(self.device, non_blocking=True, memory_format=self.memory_format)
            cond = {k: v.to(self.device, non_blocking=True) for k, v in cond.items()}
            if self._grid_shape is None:
                n = min(GRID_SAMPLES, x.shape[0])
                self._batch, self._grid_shape = x.shape[0], (n, *x.shape[1:])
                self._grid_cond = {k: v[:n] for k, v in cond.items() if k in ("y", "low_res")}
            self._forward_backward(x, cond)
            self._optimize()
            bar.update(1)
            if self.step_total % self.config.log_interval == 0:
                self._log(epoch, bar)
            stop_inside = self.annealed() and step != total  # at the epoch's last step it ends as any epoch
            if (self.config.save_interval and step % self.config.save_interval == 0) or stop_inside:
                self._save(set_name(epoch, step=step), epoch, step)
            if stop_inside:
                bar.close()
                return False
        bar.close()
        self.skip_steps, self.pending_rng = 0, None
        if step == 0:
            raise ValueError("data_train_dir: the training loader yielded no batch (fewer items than one batch "
                             "with drop_last?)")
        return True

    def annealed(self) -> bool:
        """Whether the lr has decayed to 0 (`lr_anneal_steps` reached): training stops there."""
        return bool(self.config.lr_anneal_steps) and self.step_total >= self.config.lr_anneal_steps

    def _end_of_epoch(self, epoch: int) -> None:
        self._log(epoch, None)
        vb = mse = None
        if self.val_data is not None:
            val = self.validate(epoch)
            self.logger.scalars(val, self.step_total, prefix="val/")
            vb, mse = round(val["vb"], 4), round(val["mse"], 4)
            if self.is_main:
                subset = self.config.subset_timesteps
                partial = f" (partial sum: {subset} lowest-noise terms)" if subset else ""
                print(f"[train] epoch {epoch}: val bits/dim{partial} {val['vb']:.4f} (uniform over 256 levels: 8), "
                      f"x0-mse {val['mse']:.4g}")
            if self.best_score is not None and not val["vb"] < self.best_score:
                return
            self.best_score = val["vb"]
        self._save(set_name(epoch, self.step_total, vb=vb, mse=mse), epoch, None)

    def run(self) -> dict:
        """Train to `num_epochs`; return {"checkpoint": last model file written, "step_total", "epochs"}."""
        self._wrap_model()
        self.logger = Logger(str(self.folder), enabled=self.is_main)
        self.model.train()
        epoch = self.start_epoch
        try:
            for epoch in range(self.start_epoch, self.config.num_epochs):
                if not self._run_epoch(epoch):
                    break
                self._end_of_epoch(epoch)
                if self.config.grid_interval and (epoch + 1) % self.config.grid_interval == 0:
                    self.sample_grid(epoch)
                if self.annealed():
                    break
        finally:
            if self._bar is not None:
                self._bar.close()  # an error message then starts on a line of its own
            self.logger.close()
        return {"checkpoint": self.last_checkpoint, "step_total": self.step_total, "epochs": epoch + 1}
