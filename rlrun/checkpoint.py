"""Checkpoints: collected state, atomic writes with an integrity hash, rotation, fallback on load.

File layout: MAGIC (8 bytes) + sha256 of the payload (32 bytes) + payload (torch.save bytes).
A file whose hash does not match (truncated, corrupted) is skipped with a warning on load.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)
MAGIC = b"RLRUNCK1"
STEP_FILE = re.compile(r"step_(\d+)\.pt$")


class CheckpointError(Exception):
    """A checkpoint file that cannot be read back."""


def stateful(value: Any) -> bool:
    """Whether an attribute is checkpointed state: a tensor, or anything with state_dict and
    load_state_dict (modules, optimizers, LR schedulers)."""
    return isinstance(value, torch.Tensor) or (
        callable(getattr(value, "state_dict", None)) and callable(getattr(value, "load_state_dict", None))
    )


def collect(obj: Any) -> dict[str, Any]:
    """State of every stateful attribute of `obj` (see `stateful`), by attribute name."""
    state = {}
    for name, value in vars(obj).items():
        if isinstance(value, torch.Tensor):
            state[name] = value.detach().clone()
        elif stateful(value):
            state[name] = value.state_dict()
    return state


def restore(obj: Any, state: dict[str, Any]) -> None:
    """Inverse of `collect`, strictly: a saved entry without an attribute, or a stateful attribute
    without a saved entry, raises CheckpointError naming them before anything is loaded."""
    names = {name for name, value in vars(obj).items() if stateful(value)}
    missing, unexpected = sorted(names - state.keys()), sorted(state.keys() - names)
    if missing or unexpected:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(unexpected)}"] if unexpected else []
        )
        raise CheckpointError(f"the saved state does not match {type(obj).__name__}: {'; '.join(parts)}")
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, torch.Tensor):
            with torch.no_grad():
                value.copy_(state[name])
        else:
            value.load_state_dict(state[name])


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a partial file would only take the space a retry needs
        raise


def step_files(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """step_<N>.pt files, newest first."""
    found = [(int(m.group(1)), p) for p in ckpt_dir.glob("step_*.pt") if (m := STEP_FILE.search(p.name))]
    return sorted(found, reverse=True)


def save(ckpt_dir: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write last.pt, then step_<step>.pt, atomically; then drop all but the newest `keep` step files."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    data = MAGIC + hashlib.sha256(payload).digest() + payload
    path = ckpt_dir / f"step_{step}.pt"
    _write_atomic(ckpt_dir / "last.pt", data)  # first: if the second write fails, last.pt is still the newest
    _write_atomic(path, data)
    for _, old in step_files(ckpt_dir)[keep:]:
        old.unlink(missing_ok=True)
    # _write_atomic has renamed or removed its own temp files by now: any left came from a killed writer
    for stale in ckpt_dir.glob(".*.pt.tmp*"):
        stale.unlink(missing_ok=True)
    return path


def read(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    if len(data) < 40 or data[:8] != MAGIC:
        raise CheckpointError(f"{path} is not an rlrun checkpoint or is truncated")
    payload = data[40:]
    if hashlib.sha256(payload).digest() != data[8:40]:
        raise CheckpointError(f"{path} is damaged (its hash does not match)")
    return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=False)


def load_latest(ckpt_dir: Path) -> tuple[dict[str, Any], Path] | None:
    """The newest readable checkpoint: last.pt, else step files newest first; None if none."""
    candidates = [ckpt_dir / "last.pt"] + [p for _, p in step_files(ckpt_dir)]
    for path in candidates:
        if not path.exists():
            continue
        try:
            return read(path), path
        except (CheckpointError, OSError, RuntimeError, EOFError) as e:
            log.warning("skipping checkpoint %s: %s", path, e)
    return None


def load_common_step(ckpt_dirs: list[Path]) -> tuple[list[dict[str, Any]], Path] | None:
    """The checkpoints of several runs (parallel seeds' members) at the newest step all of them hold
    readable; the first one's path; None if there is no such step."""
    common = set.intersection(*({step for step, _ in step_files(d)} for d in ckpt_dirs))
    for step in sorted(common, reverse=True):
        try:
            return [read(d / f"step_{step}.pt") for d in ckpt_dirs], ckpt_dirs[0] / f"step_{step}.pt"
        except (CheckpointError, OSError, RuntimeError, EOFError) as e:
            log.warning("skipping step %d of the parallel seeds' checkpoints: %s", step, e)
    return None
