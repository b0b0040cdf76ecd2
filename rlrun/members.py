"""Parallel seeds: K independent copies of one algorithm trained as one vectorized model.

Member k is exactly the algorithm a run with seed `seed + k` builds: it is built under that seed,
samples its batches and draws its update noise from its own generator (`MemberStreams`), and its
state is what that run's would be. `Members` keeps every floating-point tensor of the algorithm
(parameters, buffers, tensor attributes such as log α, Adam's moments) stacked along a leading
member dimension, and runs the algorithm's own `update()` under `torch.func.vmap` over it: each
member's losses are those of its own update, one backward of their sum gives each member its own
gradients (the members share no parameter), and the optimizers step every member at once
(Adam is elementwise, so one Adam over stacked parameters is K independent Adams).

The K algorithm objects that were built stay as the members' "shells": `scatter` copies member k's
slice of the stacked state into shell k, which evaluations and checkpoints then use like any
run's algorithm; `gather` does the reverse after a resume. Online, `acting(k)` lends shell k views
of member k's current slice (no copy) while it acts in its own env, drawing from its own stream.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn

from rlrun import checkpoint, noise, onednn
from rlrun.algos import base
from rlrun.algos.base import Batch


class MemberStreams:
    """One random stream per member: the CPU generator's state (and the CUDA one's on a GPU),
    swapped in while that member samples or draws."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.states: list[dict[str, Tensor]] = []
        self.index: Tensor | None = None  # the batched member index inside a parallel update

    def capture(self) -> dict[str, Tensor]:
        """The process's generator states now."""
        return {"cpu": torch.get_rng_state()} | ({"cuda": torch.cuda.get_rng_state()} if self.cuda else {})

    def _set(self, state: dict[str, Tensor]) -> None:
        torch.set_rng_state(state["cpu"])
        if self.cuda:
            torch.cuda.set_rng_state(state["cuda"])

    def run(self, k: int, fn: Callable[[], Any]) -> Any:
        """fn() with member k's generators in place of the process's; member k's stream advances."""
        outside = self.capture()
        self._set(self.states[k])
        try:
            return fn()
        finally:
            self.states[k] = self.capture()
            self._set(outside)

    def draw(self, sample: Callable[[], Tensor]) -> Tensor:
        """noise.Streams: `sample()` from every member's generator, each member seeing its own."""
        stacked = torch.stack([self.run(k, sample) for k in range(len(self.states))])  # K × (*S) -> (K, *S)
        return stacked[self.index]  # unbatched (K, *S) -> batched (*S), member k's row for member k


Slots = dict[str, tuple[dict[str, Any], str]]


def slots(algo: Any) -> Slots:
    """Where the per-member state lives, by path: the dict and key holding each floating-point parameter
    and buffer of every module ("critic.hidden.0.weight") and each floating-point tensor attribute
    ("log_alpha"). Integer tensors (update counters) are shared: every member is at the same update."""
    found: Slots = {}
    for name, value in vars(algo).items():
        if isinstance(value, nn.Module):
            for owner_path, owner in value.named_modules():
                for table in (owner._parameters, owner._buffers):
                    for leaf, t in table.items():
                        if t is not None and t.is_floating_point():
                            found[".".join(filter(None, (name, owner_path, leaf)))] = (table, leaf)
        elif isinstance(value, Tensor) and value.is_floating_point():
            found[name] = (vars(algo), name)
    return found


def member_tensors(algo: Any) -> dict[str, Tensor]:
    """The per-member state by path (see `slots`)."""
    return tensors_at(slots(algo))


def tensors_at(where: Slots) -> dict[str, Tensor]:
    """The tensors these slots hold now, by path."""
    return {path: table[key] for path, (table, key) in where.items()}


@contextlib.contextmanager
def swapped(where: Slots, tensors: dict[str, Tensor]) -> Iterator[None]:
    """Within the block, the tensors at these slots are the given ones."""
    saved = {path: value for path, value in tensors_at(where).items() if path in tensors}
    for path, value in tensors.items():
        table, key = where[path]
        table[key] = value
    try:
        yield
    finally:
        for path, value in saved.items():
            table, key = where[path]
            table[key] = value


def _optimizers(algo: Any) -> dict[str, torch.optim.Optimizer]:
    return {name: v for name, v in vars(algo).items() if isinstance(v, torch.optim.Optimizer)}


def _per_member(key: str, value: Any, member_shape: torch.Size) -> bool:
    """Whether an optimizer's per-parameter state entry is per member (Adam's moments; never its step count)."""
    return key != "step" and isinstance(value, Tensor) and value.shape == member_shape


class Members:
    """K algorithms (the shells, built with seeds seed … seed+K−1) trained as one stacked model."""

    def __init__(self, shells: list[Any], stacked: Any, streams: MemberStreams) -> None:
        """`stacked`: one more algorithm built like the shells; its state becomes the stacked state."""
        self.shells, self.stacked, self.streams, self.k = shells, stacked, streams, len(shells)
        self.update_fn = type(stacked).update  # the class's own: an instance's `update` may be an accelerate wrapper
        self.slots = slots(stacked)
        self.shell_slots = [slots(shell) for shell in shells]
        self.attributes = [name for name in self.slots if "." not in name]
        self.gather()

    # --- moving state between the shells and the stacked model -------------------------------
    def gather(self) -> None:
        """Stack the shells' state into the stacked model (at the start and after a resume)."""
        per_shell = [member_tensors(s) for s in self.shells]
        with torch.no_grad():
            for path, t in tensors_at(self.slots).items():
                t.data = torch.stack([m[path].detach() for m in per_shell])  # K × (*S) -> (K, *S)
        for name, optimizer in _optimizers(self.stacked).items():
            states = [getattr(s, name).state_dict() for s in self.shells]
            shapes = [p.shape for group in getattr(self.shells[0], name).param_groups for p in group["params"]]
            merged = {"param_groups": states[0]["param_groups"], "state": {}}
            for idx, entry in states[0]["state"].items():
                merged["state"][idx] = {
                    key: torch.stack([st["state"][idx][key] for st in states]) if _per_member(key, v, shapes[idx]) else v
                    for key, v in entry.items()
                }
            optimizer.load_state_dict(merged)
        self._copy_shared(self.shells[0], self.stacked)

    def scatter(self) -> None:
        """Copy each member's slice of the stacked state into its shell (before evaluations and checkpoints)."""
        stacked = tensors_at(self.slots)
        for k, shell in enumerate(self.shells):
            with torch.no_grad():
                for path, t in member_tensors(shell).items():
                    t.copy_(stacked[path][k])
            for name, optimizer in _optimizers(self.stacked).items():
                state = optimizer.state_dict()
                params = [p for group in optimizer.param_groups for p in group["params"]]
                sliced = {
                    idx: {key: v[k] if _per_member(key, v, params[idx].shape) else v for key, v in entry.items()}
                    for idx, entry in state["state"].items()
                }
                getattr(shell, name).load_state_dict({"param_groups": state["param_groups"], "state": sliced})
            self._copy_shared(self.stacked, shell)

    @staticmethod
    def _copy_shared(source: Any, target: Any) -> None:
        """What all members share: integer tensors (counters) and other state (LR schedules)."""
        for name, value in vars(source).items():
            if isinstance(value, Tensor) and not value.is_floating_point():
                getattr(target, name).copy_(value)
            elif checkpoint.stateful(value) and not isinstance(value, (nn.Module, torch.optim.Optimizer, Tensor)):
                getattr(target, name).load_state_dict(value.state_dict())

    def acting(self, k: int, fn: Callable[[Any], Any]) -> Any:
        """fn(shell k) with shell k holding views of member k's current state (no copy) and member k's
        random stream in place: what a separate run's algorithm would do now (e.g. act in its env)."""
        with torch.no_grad():
            views = {path: t[k] for path, t in tensors_at(self.slots).items()}  # (K, *S) -> (*S)
            with swapped(self.shell_slots[k], views):
                return self.streams.run(k, lambda: fn(self.shells[k]))

    # --- the update -----------------------------------------------------------------------------
    def sample(self, sources: list[Any], batch_size: int) -> Batch:
        """Member k's batch from sources[k] (one dataset for all, or each its own replay) and its own
        stream, stacked: fields (K, B, ...)."""
        batches = [self.streams.run(k, lambda: sources[k].sample(batch_size)) for k in range(self.k)]
        return Batch(*(None if f[0] is None else torch.stack(f) for f in zip(*batches)))

    def update(self, batch: Batch) -> dict[str, Tensor]:
        """Every member's update on its own batch (fields (K, B, ...)); metrics come back (K,)."""
        state = tensors_at(self.slots)
        deferred = base.Deferred([], [], [])

        def one(member: dict[str, Tensor], index: Tensor, batch: Batch) -> tuple[Tensor, dict, dict]:
            self.streams.index = index
            with swapped(self.slots, member), noise.active(self.streams):
                metrics = self.update_fn(self.stacked, batch)
                changed = {n: getattr(self.stacked, n) for n in self.attributes if getattr(self.stacked, n) is not member[n]}
            return sum(deferred.loss[1:], deferred.loss[0]), metrics, changed

        base._deferred.append(deferred)
        try:
            index = torch.arange(self.k, device=batch.obs.device)
            with onednn.suspended():
                dims = (0, 0, Batch(*(None if f is None else 0 for f in batch)))  # absent fields stay None
                loss, metrics, changed = torch.func.vmap(one, in_dims=dims, randomness="same")(state, index, batch)  # loss (K,)
        finally:
            base._deferred.pop()
            self.streams.index = None
        for name, value in changed.items():  # tensor attributes the update set (e.g. the latest actor loss)
            setattr(self.stacked, name, value)
        for optimizer in deferred.optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()  # the members share no parameter: each gets its own loss's gradient
        for optimizer in deferred.optimizers:
            optimizer.step()
        for call in deferred.then:
            call()
        return metrics
