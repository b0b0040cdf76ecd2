"""The `rlrun` command: Hydra composes and validates the config, then build → train.

Nothing here reads settings; `rlrun.build` does. User errors (`rlrun.errors.UserError`) end with
their one-sentence message and exit status 2; signals end with a checkpoint and 128+signum.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from rlrun.errors import UserError
from rlrun.schema import register_configs

log = logging.getLogger("rlrun")
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


def source_name(env_choice: str | None, dataset_choice: str | None) -> str:
    """Name of what a run learns from: its env (online) or its dataset (offline)."""
    for choice in (env_choice, dataset_choice):
        if choice not in (None, "null", "None"):
            return str(choice)
    return "none"


def register_resolvers() -> None:
    for name, fn in (("rlrun_claim_dir", claim_dir), ("rlrun_run_dir", run_dir),
                     ("rlrun_source_name", source_name), ("rlrun_output_subdir", output_subdir)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn, use_cache=True)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    from rlrun.build import run
    from rlrun.trainer import NonFiniteError, SignalExit

    try:
        hc = HydraConfig.get()
        return run(cfg, Path(hc.runtime.output_dir), list(hc.overrides.task))
    except (UserError, NonFiniteError) as e:
        log.error("%s", e)
        print(f"rlrun: error: {e}", file=sys.stderr)
        sys.exit(2)
    except SignalExit as e:
        sys.exit(e.code)


def unwritable_output(argv: list[str]) -> str | None:
    """The output location named on the command line (default ./outputs) if it cannot be created."""
    target = "outputs"
    for arg in argv:
        key, _, value = arg.partition("=")
        if key in ("hydra.run.dir", "hydra.sweep.dir"):
            target = value
    path = Path(target).expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    if path.is_dir() and os.access(path, os.W_OK):
        return None
    return target


def main() -> None:
    if {"--cfg", "-c"} & set(sys.argv) and {"-m", "--multirun"} & set(sys.argv):
        # Hydra takes one mode; `rlrun -m ... --cfg hydra` shows the config each job would get
        sys.argv = [a for a in sys.argv if a not in ("-m", "--multirun")]
    bad_output = unwritable_output(sys.argv[1:])
    if bad_output is not None:
        print(f"rlrun: error: cannot create the output directory {bad_output}: its parent is not a writable "
              f"directory; run from a writable directory or set hydra.run.dir=... to one.", file=sys.stderr)
        sys.exit(2)
    register_resolvers()
    register_configs()
    hydra_main()


if __name__ == "__main__":
    main()
