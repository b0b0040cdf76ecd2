"""Speed options around an algorithm's update(): bf16 autocast, torch.compile, CUDA graphs, and
the process-wide allocator setting `keep_freed_memory`.

The update itself stays plain PyTorch; these wrap it without changing its maths (parameters and
optimizer state stay fp32; autocast runs matmuls in bf16).
"""

from __future__ import annotations

import ctypes
import ctypes.util
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


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
MMAP_THRESHOLD = 32 * 2**20  # glibc's maximum: blocks up to 32 MiB come from the reusable heap
TRIM_THRESHOLD = 512 * 2**20  # free heap kept by the process before glibc returns it to the OS


def keep_freed_memory() -> bool:
    """Make glibc reuse freed blocks of up to 32 MiB instead of unmapping them.

    By default every activation of a few MiB is a fresh mmap, so each update pays page faults and
    kernel zeroing for all its temporaries (≈ 9% of a door-size CQL update on CPU). Returns False
    where the C library is not glibc (nothing changes there).
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError, TypeError):
        return False
