"""`rlrun-list`: what can be chosen — algorithms, datasets (configs and local Minari datasets),
envs, networks, devices, launchers and sweepers."""

from __future__ import annotations

from pathlib import Path

import torch

from rlrun import presets
from rlrun.resolvers import CONF_DIR

CONF = Path(CONF_DIR)
GROUPS = ["algo", "dataset", "env", "network", "device", "hydra/launcher", "hydra/sweeper"]


def describe(path: Path) -> str:
    """The first comment line of a config file."""
    for line in path.read_text().splitlines():
        if line.startswith("#") and not line.startswith("# @package"):
            return line.lstrip("# ").strip()
    return ""


def catalog() -> str:
    lines = []
    for group in GROUPS:
        lines.append(f"{group}:")
        for path in sorted((CONF / group).glob("*.yaml")):
            lines.append(f"  {path.stem:<16} {describe(path)}")
    lines.append("hydra/launcher (plugins): basic, joblib, submitit_local, submitit_slurm; hydra/sweeper: basic, optuna")
    lines.append("presets (conf/presets, picked by algorithm and dataset.id; [fine-tuning]: when trainer.finetune_steps > 0):")
    for preset in presets.load_all():
        mode = " [fine-tuning]" if preset.finetune else ""
        lines.append(f"  {preset.algo:<6} {preset.name:<32} {', '.join(preset.ids)}{mode}")
    try:
        import minari

        local = sorted(minari.list_local_datasets())
    except Exception as e:  # a broken local store must not hide the rest
        local = [f"(cannot read the local Minari store: {e})"]
    lines.append("local Minari datasets (use dataset=<config> dataset.id=<id>):")
    lines += [f"  {d}" for d in local] or ["  (none)"]
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none visible"
    lines.append(f"CUDA GPU: {gpu}")
    return "\n".join(lines)


def main() -> None:
    print(catalog())


if __name__ == "__main__":
    main()
