"""Online replay buffer held on the training device, and its export as a Minari dataset."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from rlrun.algos.base import Batch

FIELDS = ("obs", "act", "rew", "next_obs", "terminated", "truncated", "option")


class ReplayBuffer:
    """A ring of transitions; `truncated` marks time-limit ends, kept apart from terminations;
    `option` is the option the policy ran (option-critic), −1 for flat policies. Rewards are stored
    as the env gave them and multiplied by `reward_scale` only in the batches handed to learning."""

    def __init__(
        self,
        capacity: int,
        obs_dim: int,
        act_shape: tuple[int, ...],
        act_dtype: torch.dtype,
        device: torch.device,
        reward_scale: float = 1.0,
    ) -> None:
        self.capacity, self.device, self.reward_scale = capacity, device, reward_scale
        self.ptr = self.size = 0
        self.data: dict[str, Tensor] = {
            "obs": torch.zeros(capacity, obs_dim, device=device),
            "act": torch.zeros(capacity, *act_shape, dtype=act_dtype, device=device),
            "rew": torch.zeros(capacity, device=device),
            "next_obs": torch.zeros(capacity, obs_dim, device=device),
            "terminated": torch.zeros(capacity, dtype=torch.bool, device=device),
            "truncated": torch.zeros(capacity, dtype=torch.bool, device=device),
            "option": torch.full((capacity,), -1, dtype=torch.long, device=device),
        }

    def add(self, obs, act, rew: float, next_obs, terminated: bool, truncated: bool, option: int = -1) -> None:
        for key, value in zip(FIELDS, (obs, act, rew, next_obs, terminated, truncated, option)):
            self.data[key][self.ptr] = torch.as_tensor(np.asarray(value), device=self.device)
        self.ptr = (self.ptr + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int) -> Batch:
        return self._gather(torch.randint(0, self.size, (batch_size,), device=self.device))

    def latest(self) -> Batch:
        """The newest transition, as a batch of one."""
        return self._gather(torch.tensor([(self.ptr - 1) % self.capacity], device=self.device))

    def _gather(self, idx: Tensor) -> Batch:
        d = self.data
        return Batch(
            d["obs"][idx],
            d["act"][idx],
            d["rew"][idx] * self.reward_scale,
            d["next_obs"][idx],
            d["terminated"][idx].float(),
            d["option"][idx],
        )

    def chronological(self) -> dict[str, Tensor]:
        """Stored transitions, oldest first."""
        order = torch.arange(self.ptr - self.size, self.ptr, device=self.device) % self.capacity
        return {k: v[order] for k, v in self.data.items()}

    def episodes(self) -> Iterator[dict[str, np.ndarray]]:
        """Complete episodes, oldest first: observations (T+1, O), actions (T, ...), rewards, flags."""
        data = {k: v.cpu().numpy() for k, v in self.chronological().items()}
        ends = np.flatnonzero(data["terminated"] | data["truncated"])
        start = 0
        if self.size == self.capacity and len(ends):  # the oldest episode may have lost its start
            start = ends[0] + 1
            ends = ends[1:]
        for end in ends:
            sl = slice(start, end + 1)
            yield {
                "observations": np.concatenate([data["obs"][sl], data["next_obs"][end : end + 1]]),
                "actions": data["act"][sl],
                "rewards": data["rew"][sl],
                "terminations": data["terminated"][sl],
                "truncations": data["truncated"][sl],
            }
            start = end + 1

    def state_dict(self) -> dict:
        # A copy of the stored rows only: torch.save of a view would write the whole preallocated storage.
        return {
            "ptr": self.ptr,
            "size": self.size,
            "data": {k: v[: self.size].to("cpu", copy=True) for k, v in self.data.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.ptr, self.size = state["ptr"], state["size"]
        for k, v in state["data"].items():
            self.data[k][: self.size] = v.to(self.device)
