"""`rlrun.load_policy`: a trained run's policy as a plain function of numpy observations.

    import rlrun
    policy = rlrun.load_policy("outputs/cql/door_demos/2026-11-30_10-00-00")
    action = policy(obs)            # one observation (O,) -> one action in the env's units
    actions = policy(batch_of_obs)  # (B, O) -> (B, A)
    policy.reset()                  # a new episode (option-critic: the running options end)

Observation normalization, the scaling of actions from [-1, 1] to the env's bounds, and
option-critic's running option are handled inside.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlrun.data.online import env_units, raw_env


class Policy:
    """The deterministic policy of one checkpoint. `step` is the checkpoint's step, `config` the run's config."""

    def __init__(self, algo: Any, action_space: gym.Space, device: torch.device, step: int, config: Any) -> None:
        self.algo, self.action_space, self.device = algo, action_space, device
        self.step, self.config = step, config
        self.state: Any = algo.initial_state()

    def reset(self) -> None:
        """Start a new episode: per-episode policy state (option-critic's running options) is dropped."""
        self.state = self.algo.initial_state()

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device)
        single = x.dim() == 1
        with torch.no_grad():
            action, self.state = self.algo.act(x.unsqueeze(0) if single else x, self.state, True)  # (O,) -> (1, O)
        out = env_units(self.action_space, action.cpu().numpy())
        return out[0] if single else out


def load_policy(run_dir: str | Path, step: int | None = None, device: str = "cpu") -> Policy:
    """The policy of `run_dir` at checkpoint `step` (None: the newest good one), acting on `device`."""
    from rlrun.rollout import load_run

    saved = load_run(Path(run_dir), step, device)
    env = saved.make_env(0)
    space = raw_env(env).action_space
    env.close()
    return Policy(saved.algo, space, saved.device, saved.step, saved.config)
