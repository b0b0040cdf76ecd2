"""The random draws of updates (policy samples, target smoothing, CQL's uniform actions, dropout).

Updates draw through these functions instead of calling torch.randn_like or F.dropout directly, so
that parallel seeds (rlrun.members) can give each member its draws from its own generator: the
numbers member k sees are those a run with seed `seed + k` alone would see. Outside parallel
seeds they are torch's own draws from the default generator.
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch
from torch import Tensor


class Streams(Protocol):
    """Per-member generators (rlrun.members.MemberStreams) while a parallel update runs."""

    def draw(self, sample: Callable[[], Tensor]) -> Tensor:
        """`sample()` once per member, each with that member's generator, as one batched tensor."""


_streams: list[Streams] = []  # the active parallel update's streams, innermost last


def _draw(sample: Callable[[], Tensor]) -> Tensor:
    return _streams[-1].draw(sample) if _streams else sample()


def randn_like(x: Tensor) -> Tensor:
    """Standard normal noise of x's shape, dtype and device."""
    shape, dtype, device = x.shape, x.dtype, x.device
    return _draw(lambda: torch.randn(shape, dtype=dtype, device=device))


def uniform(shape: tuple[int, ...], low: float, high: float, device: torch.device) -> Tensor:
    """Uniform noise in [low, high) of the given shape (float32)."""
    return _draw(lambda: torch.rand(shape, device=device)) * (high - low) + low


def dropout(x: Tensor, p: float) -> Tensor:
    """Inverted dropout while learning: each unit kept with probability 1 − p and scaled by 1 / (1 − p)."""
    shape, dtype, device = x.shape, x.dtype, x.device
    keep = _draw(lambda: torch.rand(shape, device=device)) >= p
    return x * keep.to(dtype) / (1.0 - p)


class active:
    """Context: draws go through `streams` (a parallel update in progress)."""

    def __init__(self, streams: Streams) -> None:
        self.streams = streams

    def __enter__(self) -> None:
        _streams.append(self.streams)

    def __exit__(self, *exc: object) -> None:
        _streams.pop()
