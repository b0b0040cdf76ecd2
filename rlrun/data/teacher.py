"""Builds the Pendulum buffer dataset on demand by running rlrun's own online SAC teacher."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

log = logging.getLogger(__name__)


def build_pendulum_buffer(dataset_id: str, total_steps: int = 20000, seed: int = 0,
                          output_root: str = "outputs/teachers") -> None:
    """Train SAC online on Pendulum-v1 for `total_steps` and write its replay as `dataset_id`."""
    from rlrun.build import run
    from rlrun.cli import CONF_DIR, claim_dir, register_resolvers
    from rlrun.schema import register_configs

    register_resolvers()
    register_configs()
    overrides = ["algo=sac", "env=pendulum", f"trainer.total_steps={total_steps}", f"seed={seed}",
                 "trainer.save_buffer=true", f"trainer.buffer_dataset_id={dataset_id}"]
    run_dir = Path(claim_dir(f"{output_root}/{dataset_id.replace('/', '_')}"))
    log.info("building %s: SAC teacher on Pendulum-v1 for %d steps, logs in %s", dataset_id, total_steps, run_dir)
    if GlobalHydra.instance().is_initialized():
        cfg = compose("config", overrides=overrides)
    else:
        with initialize_config_dir(CONF_DIR, version_base="1.3"):
            cfg = compose("config", overrides=overrides)
    teacher_return = run(cfg, run_dir)
    log.info("teacher finished with eval/return_mean %.1f; dataset %s written", teacher_return, dataset_id)
