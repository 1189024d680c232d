"""Timestep samplers for the training loss: uniform and loss-second-moment importance sampling."""
from __future__ import annotations

import numpy as np
import torch

SCHEDULE_SAMPLERS = ("uniform", "loss-second-moment")


class ScheduleSampler:
    """Draws timesteps t ~ p(t) and importance weights 1 / (T p(t)) so the weighted loss is unbiased."""

    def __init__(self, num_timesteps: int):
        self.num_timesteps = num_timesteps

    def weights(self) -> np.ndarray:
        """Unnormalised sampling weights (T,), float64."""
        return np.ones(self.num_timesteps, dtype=np.float64)

    def sample(self, batch_size: int, device, generator: torch.Generator | None = None):
        """Return (t (N,) int64, weights (N,) float32) on `device`; randomness from `generator` (CPU)."""
        w = self.weights()
        p = torch.from_numpy(w / w.sum())
        t = torch.multinomial(p, batch_size, replacement=True, generator=generator)
        weights = 1.0 / (len(p) * p[t])
        return t.to(device), weights.float().to(device)

    def update_with_all_losses(self, ts, losses) -> None:
        """Record per-example losses (no-op for non-adaptive samplers)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore the state written by `state_dict`."""


class UniformSampler(ScheduleSampler):
    """p(t) = 1 / T."""


class LossSecondMomentResampler(ScheduleSampler):
    """p(t) proportional to sqrt(E[L_t^2]) over the last `history_per_term` losses (IDDPM eq. 18),
    mixed with `uniform_prob` of uniform; uniform until every t has a full history."""

    def __init__(self, num_timesteps: int, history_per_term: int = 10, uniform_prob: float = 0.001):
        super().__init__(num_timesteps)
        self.history_per_term = history_per_term
        self.uniform_prob = uniform_prob
        self._loss_history = np.zeros([num_timesteps, history_per_term], dtype=np.float64)
        self._loss_counts = np.zeros([num_timesteps], dtype=np.int64)

    def warmed_up(self) -> bool:
        return bool((self._loss_counts == self.history_per_term).all())

    def weights(self) -> np.ndarray:
        if not self.warmed_up():
            return np.ones(self.num_timesteps, dtype=np.float64)
        w = np.sqrt(np.mean(self._loss_history ** 2, axis=-1))
        w /= w.sum()
        return w * (1 - self.uniform_prob) + self.uniform_prob / self.num_timesteps

    def update_with_all_losses(self, ts, losses) -> None:
        for t, loss in zip(np.asarray(ts).tolist(), np.asarray(losses, dtype=np.float64).tolist()):
            if self._loss_counts[t] == self.history_per_term:
                self._loss_history[t, :-1] = self._loss_history[t, 1:]
                self._loss_history[t, -1] = loss
            else:
                self._loss_history[t, self._loss_counts[t]] = loss
                self._loss_counts[t] += 1

    def state_dict(self) -> dict:
        return {"loss_history": torch.from_numpy(self._loss_history.copy()),
                "loss_counts": torch.from_numpy(self._loss_counts.copy())}

    def load_state_dict(self, state: dict) -> None:
        self._loss_history = state["loss_history"].numpy().astype(np.float64)
        self._loss_counts = state["loss_counts"].numpy().astype(np.int64)


def create_named_schedule_sampler(name: str, diffusion) -> ScheduleSampler:
    """`"uniform"` or `"loss-second-moment"` for `diffusion.num_timesteps` steps."""
    if name == "uniform":
        return UniformSampler(diffusion.num_timesteps)
    if name == "loss-second-moment":
        return LossSecondMomentResampler(diffusion.num_timesteps)
    raise ValueError(f"schedule_sampler must be one of {SCHEDULE_SAMPLERS}, got {name!r}")
