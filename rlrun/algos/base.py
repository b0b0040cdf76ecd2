"""What every algorithm offers the trainer, and the optimizer-step helpers their update() methods share.

An algorithm knows nothing of Hydra, environments or files: tensors in, tensors out. Its
nn.Modules, optimizers and tensors are attributes, which `rlrun.checkpoint` collects by walking
them, so nothing is listed by hand.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor


class Batch(NamedTuple):
    """Transitions on the training device; `terminal` is 1 only for true terminations."""

    obs: Tensor  # (B, O)
    act: Tensor  # (B, A) in [-1, 1], or (B,) action indices
    rew: Tensor  # (B,)
    next_obs: Tensor  # (B, O)
    terminal: Tensor  # (B,)
    option: Tensor | None = None  # (B,) the option running when acting (option-critic); None offline


class Algorithm(Protocol):
    online_only: bool  # True when it cannot learn from a fixed dataset
    discrete_actions: bool | None  # True / False: only that kind of action space; None: both
    learns_from_latest: bool  # True: update() also takes the transition just collected (on-policy part)

    def initial_state(self) -> Any:
        """Per-episode policy state (None for memoryless policies; the option for option-critic)."""

    def act(self, obs: Tensor, state: Any, deterministic: bool) -> tuple[Tensor, Any]:
        """Actions for raw observations (B, O), and the next policy state."""

    def update(self, batch: Batch, *latest: Batch) -> dict[str, Tensor]:
        """One gradient update on a sampled batch (and, when learns_from_latest, the newest
        transition as a batch of one); returns `train/...` scalars as tensors (no host sync)."""


def adam(params: Any, **kwargs: Any) -> torch.optim.Adam:
    """Adam with PyTorch's fused kernel: one op per step for all parameters, on CPU and CUDA
    (on CPU the default per-tensor loop costs ≈ 10% of a small network's update)."""
    return torch.optim.Adam(params, fused=True, **kwargs)


def optimizer_step(optimizer: torch.optim.Optimizer, loss: Tensor) -> None:
    """zero_grad → backward → step for one loss and its optimizer."""
    joint_step((optimizer, loss))


def joint_step(*steps: tuple[torch.optim.Optimizer, Tensor]) -> None:
    """zero_grad → one backward of the summed losses → every optimizer steps.

    Each loss must reach only its own optimizer's parameters (detach or `frozen` everything else);
    then the gradients equal those of one backward per loss. One backward over one graph is what
    torch.compile needs: a second backward through a compiled forward finds its saved tensors freed.
    """
    for optimizer, _ in steps:
        optimizer.zero_grad(set_to_none=True)
    losses = [loss for _, loss in steps]
    sum(losses[1:], losses[0]).backward()
    for optimizer, _ in steps:
        optimizer.step()
