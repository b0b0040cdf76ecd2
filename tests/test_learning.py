"""Short "it learns" checks on small tasks (each about a minute or two on 2 CPU cores)."""

from __future__ import annotations

import torch

from rlrun.build import run

from conftest import make_cfg


def test_sac_learns_pendulum(tmp_path):
    """Random play scores about -1200 to -1500 on Pendulum-v1; 4k steps of SAC reach about -150."""
    torch.set_num_threads(2)
    cfg = make_cfg("algo=sac", "env=pendulum", "trainer.total_steps=4000", "trainer.eval_every=4000",
                   "trainer.eval_episodes=5", "trainer.checkpoint_every=4000", "trainer.progress=false", "seed=0")
    final_return = run(cfg, tmp_path)
    assert final_return > -400, final_return
