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
from rlrun.resolvers import CONF_DIR, register_resolvers
from rlrun.schema import register_configs

log = logging.getLogger("rlrun")
_TASK_STARTED = False  # False while Hydra composes: its errors then are the command line's


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    from rlrun.build import run
    from rlrun.trainer import NonFiniteError, SignalExit

    global _TASK_STARTED
    _TASK_STARTED = True
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


def unknown_added_key(argv: list[str]) -> str | None:
    """A one-sentence error for `+key=value` naming a setting rlrun does not declare (None when all are fine).

    Every rlrun setting is declared in the schema, so `+` can only add what does not exist; Hydra's own
    message for it ("An item is already at ...") points the wrong way. `+hydra...` and `++` pass through.
    """
    added = [a[1:].partition("=")[0] for a in argv if a.startswith("+") and not a.startswith(("++", "+hydra"))]
    if not added:
        return None
    from rlrun import presets

    rest = [a for a in argv if not a.startswith("+") and "=" in a and not a.startswith("hydra")]
    try:
        cfg = presets.compose(rest)
    except Exception:  # the other overrides are wrong too: Hydra reports them
        return None
    key = added[0]
    section, _, _ = key.rpartition(".")
    node = OmegaConf.select(cfg, section) if section else cfg
    known = ", ".join(sorted(node.keys())) if isinstance(node, DictConfig) else "none"
    return (
        f"+{key} adds a setting rlrun does not declare; the keys of {section or 'the config'} are: {known}. "
        f"Drop the + to set one of them."
    )


def job_config_request(argv: list[str]) -> list[str] | None:
    """The overrides of `rlrun ... --cfg job` (None for any other command line)."""
    flags = {"--cfg", "-c"}
    at = next((i for i, a in enumerate(argv) if a in flags and i + 1 < len(argv) and argv[i + 1] == "job"), None)
    if at is None:
        return None
    rest = argv[:at] + argv[at + 2 :]
    return [a for a in rest if not a.startswith("-")]


def show_job_config(overrides: list[str], resolve: bool) -> None:
    """Print the job config as a run would use it: composed by Hydra, with the dataset's preset applied."""
    from hydra.errors import HydraException

    from rlrun import presets

    try:
        cfg = presets.compose(overrides)
    except (HydraException, ValueError) as e:
        print(f"rlrun: error: {str(e).splitlines()[0]}", file=sys.stderr)
        sys.exit(2)
    print(OmegaConf.to_yaml(cfg, resolve=resolve), end="")


def main() -> None:
    register_resolvers()
    register_configs()
    job_overrides = job_config_request(sys.argv[1:])
    if job_overrides is not None:  # presets are applied after Hydra composes, so Hydra's own --cfg job would miss them
        show_job_config(job_overrides, "--resolve" in sys.argv)
        return
    if {"--cfg", "-c"} & set(sys.argv) and {"-m", "--multirun"} & set(sys.argv):
        # Hydra takes one mode; `rlrun -m ... --cfg hydra` shows the config each job would get
        sys.argv = [a for a in sys.argv if a not in ("-m", "--multirun")]
    unknown = unknown_added_key(sys.argv[1:])
    if unknown is not None:
        print(f"rlrun: error: {unknown}", file=sys.stderr)
        sys.exit(2)
    bad_output = unwritable_output(sys.argv[1:])
    if bad_output is not None:
        print(
            f"rlrun: error: cannot create the output directory {bad_output}: its parent is not a writable "
            f"directory; run from a writable directory or set hydra.run.dir=... to one.",
            file=sys.stderr,
        )
        sys.exit(2)
    try:
        hydra_main()
    except SystemExit as e:
        if e.code == 1 and not _TASK_STARTED:  # Hydra could not compose the command line: a user error
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
