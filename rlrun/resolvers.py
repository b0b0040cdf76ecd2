"""Where runs go: the config directory and the resolvers that name and claim run directories.

Below every command and recipe, so that each of them can compose rlrun's config and claim a directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def claim_dir(path: str) -> str:
    """Create `path` (or `path-1`, `path-2`, ...) atomically so no two runs share a directory."""
    base, n = Path(path), 0
    base.parent.mkdir(parents=True, exist_ok=True)
    while True:
        candidate = base if n == 0 else base.with_name(f"{base.name}-{n}")
        try:
            candidate.mkdir()
            return str(candidate)
        except FileExistsError:
            n += 1


def run_dir(resume: str | None, new_dir: str) -> str:
    """The run directory: the resumed one (when it exists), or a freshly claimed one."""
    if resume and Path(resume).expanduser().is_dir():
        return str(Path(resume).expanduser())
    return claim_dir(new_dir)


def output_subdir(resume: str | None) -> str:
    """Where Hydra writes its .hydra files: a resumed run keeps its original ones."""
    return ".hydra" if not resume else f".hydra/resume-{os.getpid()}"


def _given(value: str | None) -> bool:
    """Whether a resolver's argument holds a value: Hydra passes an unset choice or key as None or "null"."""
    return value not in (None, "null", "None")


def source_name(env_choice: str | None, dataset_choice: str | None, dataset_id: str | None = None) -> str:
    """Name of what a run learns from: its env (online) or its dataset (offline; `dataset=minari` by its id)."""
    if dataset_choice == "minari" and _given(dataset_id):
        return str(dataset_id).replace("/", "_")
    for choice in (env_choice, dataset_choice):
        if _given(choice):
            return str(choice)
    return "none"


def schedule_updates(total_steps: int, updates_per_step: int, dataset_id: str | None) -> int:
    """Updates that a learning-rate schedule spans: a run with a dataset, the offline ones (fine-tuning
    runs on past them, as CORL's fine-tuning scripts do); an online run, its env steps × updates per
    step (an upper bound: no update comes before the first batch can be drawn)."""
    return int(total_steps) if _given(dataset_id) else int(total_steps) * int(updates_per_step)


def register_resolvers() -> None:
    for name, fn in (
        ("rlrun_claim_dir", claim_dir),
        ("rlrun_run_dir", run_dir),
        ("rlrun_source_name", source_name),
        ("rlrun_output_subdir", output_subdir),
        ("rlrun_schedule_updates", schedule_updates),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn, use_cache=True)
