"""Speed options around an algorithm's update(): bf16 autocast, torch.compile, CUDA graphs.

The update itself stays plain PyTorch; these wrap it without changing its maths (parameters and
optimizer state stay fp32; autocast runs matmuls in bf16).
"""

from __future__ import annotations

import functools
from typing import Callable

import torch

from rlrun.errors import UserError

Update = Callable[..., dict]


def autocast(update: Update, device: torch.device) -> Update:
    @functools.wraps(update)
    def wrapped(*args, **kwargs):
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            return update(*args, **kwargs)

    return wrapped


def accelerate(update: Update, device: torch.device, amp: bool, compile: bool, cuda_graphs: bool) -> Update:
    """`update` with the chosen options; CUDA graphs come through torch.compile's reduce-overhead mode."""
    if cuda_graphs and device.type != "cuda":
        raise UserError("device.cuda_graphs=true needs a CUDA device; use device=cuda or set device.cuda_graphs=false.")
    if amp:
        update = autocast(update, device)
    if compile or cuda_graphs:
        update = torch.compile(update, mode="reduce-overhead" if cuda_graphs else "default")
    return update
