"""The algorithm contract: what build, trainer, checkpoints, video and viz use, and nothing more.

An algorithm knows nothing of Hydra, environments or files: tensors in, tensors out. It is a class
with the three class flags below, an `obs_norm` attribute and the three methods of `Algorithm`,
plus optionally `figures`. Its settings arrive as keyword-only arguments without defaults (each
default lives only in rlrun.schema), together with `obs_dim`, `act_dim`, `network` and `device`
(and `discrete` when `discrete_actions` is None). Every attribute with `state_dict` and
`load_state_dict` (modules, optimizers, LR schedulers) and every tensor attribute is its state:
`rlrun.checkpoint` collects those by walking the attributes, and restores them strictly.
`check_contract` runs when the algorithm is built; README "Adding an algorithm" walks through it.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Protocol

import torch
from torch import Tensor

from rlrun.nets import ObsNormalizer


class Batch(NamedTuple):
    """Transitions on the training device; `terminal` is 1 only for true terminations."""

    obs: Tensor  # (B, O)
    act: Tensor  # (B, A) in [-1, 1], or (B,) action indices
    rew: Tensor  # (B,)
    next_obs: Tensor  # (B, O)
    terminal: Tensor  # (B,)
    option: Tensor | None = None  # (B,) the option running when acting (option-critic); None offline
    next_act: Tensor | None = None  # (B, A) the data's next action (offline; its own action at an episode's end)
    mc_return: Tensor | None = None  # (B,) discounted return from s to the episode's end (datasets, for uses_mc_returns)


class Algorithm(Protocol):
    online_only: bool  # True: it cannot learn from a fixed dataset (needs env=...)
    offline_only: bool  # True: it learns from datasets only (needs dataset=...; e.g. it uses Batch.next_act)
    discrete_actions: bool | None  # True / False: only that kind of action space; None: both (takes `discrete`)
    learns_from_latest: bool  # True: update() also takes the transition just collected (on-policy part)
    obs_norm: ObsNormalizer  # observation normalizer; build sets the dataset's mean and std on offline runs

    def initial_state(self) -> Any:
        """Per-episode policy state (None for memoryless policies; the option for option-critic)."""

    def act(self, obs: Tensor, state: Any, deterministic: bool) -> tuple[Tensor, Any]:
        """Actions for raw observations (B, O), and the next policy state."""

    def update(self, batch: Batch, *latest: Batch) -> dict[str, Tensor]:
        """One gradient update on a sampled batch (and, when learns_from_latest, the newest
        transition as a batch of one); returns `train/...` scalars as tensors (no host sync)."""

    # Optional: figures(self, env, device) -> dict[str, matplotlib Figure], drawn after training
    # (option-critic: each option's termination map in a grid world). See `figures` below.
    # Optional: eval_metrics(self, env, device) -> dict[str, float], more eval/ scalars at each evaluation
    # (option-critic: mean β at a grid world's hallways and elsewhere). See `eval_metrics` below.
    # Optional: begin_online(self) -> None, called once when fine-tuning switches from the dataset to
    # the env (CQL: the online penalty weight); what it changes must be state that checkpoints collect.
    # Optional class flag: uses_mc_returns = True makes dataset batches carry Batch.mc_return (Cal-QL).
    # Optional class flag: parallel_seeds = False where update() cannot run under torch.func.vmap over
    # stacked members (the option-critics' running-option state): trainer.parallel_seeds refuses it.
    # Optional attribute n_options: the policy state is the running option (B,), and evaluations log
    # eval/option_duration_mean, eval/option_switches_per_episode and eval/option_usage/<k> (option-critics).


FLAGS = ("online_only", "offline_only", "discrete_actions", "learns_from_latest")
METHODS = ("initial_state", "act", "update")


class ContractError(TypeError):
    """An algorithm class or object that lacks part of the contract."""


def check_contract(algo: Any) -> None:
    """Raise ContractError naming every missing flag, method or the observation normalizer."""
    cls = type(algo)
    missing = [f"class flag {f}" for f in FLAGS if f not in dir(cls)]
    missing += [f"method {m}()" for m in METHODS if not callable(getattr(algo, m, None))]
    if not callable(getattr(getattr(algo, "obs_norm", None), "set", None)):
        missing.append("attribute obs_norm (an rlrun.nets.ObsNormalizer)")
    if missing:
        raise ContractError(
            f"{cls.__module__}.{cls.__qualname__} does not keep rlrun's algorithm contract: "
            f"it lacks {', '.join(missing)} (see rlrun/algos/base.py)."
        )


def memoryless(self: Any) -> None:
    """`initial_state` of a policy without per-episode state; a class takes it as `initial_state = memoryless`."""
    return None


@torch.no_grad()
def act_with_actor(self: Any, obs: Tensor, state: Any = None, deterministic: bool = False) -> tuple[Tensor, Any]:
    """`act` of an algorithm whose `actor` has `act(obs, deterministic)`: normalized observations in,
    actions in [-1, 1] out; a class takes it as `act = act_with_actor`."""
    return self.actor.act(self.obs_norm(obs), deterministic), state


def figures(algo: Any, env: Any, device: torch.device) -> dict[str, Any]:
    """The algorithm's optional figures hook; {} for algorithms without one."""
    hook = getattr(algo, "figures", None)
    return hook(env, device) if callable(hook) else {}


def eval_metrics(algo: Any, make_env: Callable[[], Any], device: torch.device) -> dict[str, float]:
    """The algorithm's optional eval_metrics hook on an eval env made for it; {} (and no env made) without one."""
    hook = getattr(algo, "eval_metrics", None)
    if not callable(hook):
        return {}
    env = make_env()
    try:
        return hook(env, device)
    finally:
        env.close()


def begin_online(algo: Any) -> None:
    """The algorithm's optional hook at the switch from offline updates to online fine-tuning."""
    hook = getattr(algo, "begin_online", None)
    if callable(hook):
        hook()


def adam(params: Any, **kwargs: Any) -> torch.optim.Adam:
    """Adam with PyTorch's fused kernel: one op per step for all parameters, on CPU and CUDA
    (on CPU the default per-tensor loop costs ≈ 10% of a small network's update)."""
    return torch.optim.Adam(params, fused=True, **kwargs)


class Cycle:
    """The update count as its position in a repeating cycle of `length` updates (a policy delay), kept
    as a Python int so that an update branches on it without reading a tensor: no host sync, and
    torch.compile traces one graph per branch. Checkpoints collect it through state_dict; it also
    loads the tensor update count that earlier rlrun versions saved."""

    def __init__(self, length: int) -> None:
        self.length, self.position = length, 0

    def advance(self) -> int:
        """Move one update on; returns the new position (0 starts each cycle again)."""
        self.position = (self.position + 1) % self.length
        return self.position

    def state_dict(self) -> dict[str, int]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, int] | Tensor) -> None:
        count = state if isinstance(state, Tensor) else state["position"]  # a tensor: the update count
        self.position = int(count) % self.length


def optimizer_step(optimizer: torch.optim.Optimizer, loss: Tensor) -> None:
    """zero_grad → backward → step for one loss and its optimizer."""
    joint_step((optimizer, loss))


class Deferred(NamedTuple):
    """What an update asked for while parallel seeds computed its losses under vmap
    (rlrun.members): the optimizers, their summed loss, and the calls that follow their step."""

    optimizers: list[torch.optim.Optimizer]
    loss: list[Tensor]
    then: list[Callable[[], Any]]


_deferred: list[Deferred] = []  # set by a parallel update in progress


def joint_step(*steps: tuple[torch.optim.Optimizer, Tensor]) -> None:
    """zero_grad → one backward of the summed losses → every optimizer steps.

    Each loss must reach only its own optimizer's parameters (detach or `frozen` everything else);
    then the gradients equal those of one backward per loss. One backward over one graph is what
    torch.compile needs: a second backward through a compiled forward finds its saved tensors freed.
    Under parallel seeds the step waits until the members' losses are out of vmap (`Deferred`).
    """
    if _deferred:
        _deferred[-1].optimizers.extend(optimizer for optimizer, _ in steps)
        _deferred[-1].loss.append(sum((loss for _, loss in steps[1:]), steps[0][1]))
        return
    for optimizer, _ in steps:
        optimizer.zero_grad(set_to_none=True)
    losses = [loss for _, loss in steps]
    sum(losses[1:], losses[0]).backward()
    for optimizer, _ in steps:
        optimizer.step()


def after_step(call: Callable[..., Any], *args: Any) -> None:
    """call(*args) once the update's optimizers have stepped: target syncs and LR schedules; an
    update makes them through this, so that under parallel seeds they follow the deferred step."""
    if _deferred:
        _deferred[-1].then.append(functools.partial(call, *args))
    else:
        call(*args)
