"""Online data: one environment, acting with the current policy, filling a replay buffer."""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from typing import Any, Iterator, NamedTuple

import cloudpickle
import gymnasium as gym
import minari
import numpy as np
import torch
from minari.data_collector import EpisodeBuffer

from rlrun.algos.base import Algorithm, Batch
from rlrun.data.replay import ReplayBuffer
from rlrun.envs import EnvFn, is_mujoco

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Spaces:
    """What an algorithm must know of the data: sizes, and whether actions are discrete."""

    obs_dim: int
    act_dim: int  # action size (Box) or number of actions (Discrete)
    discrete: bool


def spaces_of(obs_space: gym.Space, act_space: gym.Space) -> Spaces:
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise ValueError(f"only flat Box observations are supported, not {obs_space}")
    if isinstance(act_space, gym.spaces.Discrete):
        return Spaces(obs_space.shape[0], int(act_space.n), True)
    return Spaces(obs_space.shape[0], int(np.prod(act_space.shape)), False)


def as_obs(obs: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(obs, dtype=np.float32), device=device).unsqueeze(0)  # (O,) -> (1, O)


class Step(NamedTuple):
    """One step of a played episode."""

    obs: torch.Tensor  # (1, O) the observation acted on
    action: torch.Tensor  # (1, A) or (1,)
    state: Any  # the policy state after acting (the running option for option-critics)
    reward: float
    next_obs: np.ndarray
    info: dict


def play(algo: Algorithm, env: gym.Env, obs: np.ndarray, device: torch.device, deterministic: bool = True) -> Iterator[Step]:
    """The policy (deterministic unless told) from `obs` (just reset) to the episode's end, one Step per step."""
    state, done = algo.initial_state(), False
    while not done:
        x = as_obs(obs, device)
        action, state = algo.act(x, state, deterministic)
        obs, reward, terminated, truncated, info = env.step(action[0].cpu().numpy())
        done = terminated or truncated
        yield Step(x, action, state, float(reward), obs, info)


def env_units(space: gym.Space, actions: np.ndarray) -> np.ndarray:
    """Policy actions in [-1, 1] → the env's own units ([low, high]) for a Box space; others as they are."""
    if not isinstance(space, gym.spaces.Box):
        return actions
    return (space.low + (actions + 1.0) * 0.5 * (space.high - space.low)).astype(space.dtype)


def episode_buffers(replay: ReplayBuffer, action_space: gym.Space) -> list[EpisodeBuffer]:
    """The replay's complete episodes as Minari episode buffers, actions in the env's units."""
    return [
        EpisodeBuffer(
            id=i,
            observations=ep["observations"],
            actions=env_units(action_space, ep["actions"]),
            rewards=ep["rewards"],
            terminations=ep["terminations"],
            truncations=ep["truncations"],
        )
        for i, ep in enumerate(replay.episodes())
    ]


def raw_env(env: gym.Env) -> gym.Env:
    """The env below rlrun's own [-1, 1] action rescaling (its spec and spaces are the env's own)."""
    return env.env if isinstance(env, gym.wrappers.RescaleAction) else env


def next_free_version(dataset_id: str) -> str:
    """`dataset_id` if unused, else the same name with the lowest unused version (never overwrite)."""
    from minari.storage import get_dataset_path

    name, _, version = dataset_id.rpartition("-v")
    candidates = [dataset_id] + (
        [f"{name}-v{v}" for v in range(int(version) + 1, int(version) + 1000)] if version.isdigit() else []
    )
    return next(c for c in candidates if not (get_dataset_path(c) / "data").is_dir())


class EnvSource:
    """Collects one transition per trainer step; random actions for the first `learning_starts`."""

    online = True

    def __init__(
        self, env_fn: EnvFn, seed: int, replay_size: int, learning_starts: int, device: torch.device, reward_scale: float = 1.0
    ) -> None:
        self.env_fn, self.device, self.learning_starts = env_fn, device, learning_starts
        self.env = env_fn(seed)
        self.spaces = spaces_of(self.env.observation_space, self.env.action_space)
        act_shape = () if self.spaces.discrete else (self.spaces.act_dim,)
        act_dtype = torch.long if self.spaces.discrete else torch.float32
        self.replay = ReplayBuffer(replay_size, self.spaces.obs_dim, act_shape, act_dtype, device, reward_scale)
        self.rng = np.random.default_rng(seed)
        self.obs, _ = self.env.reset(seed=seed)
        self.policy_state: Any = None
        self.episode_return, self.episode_length = 0.0, 0

    def make_eval_env(self, seed: int, render: bool = False) -> gym.Env:
        return self.env_fn(seed, render=render)

    def _random_action(self) -> np.ndarray:
        if self.spaces.discrete:
            return np.asarray(self.rng.integers(self.spaces.act_dim))
        return self.rng.uniform(-1.0, 1.0, self.spaces.act_dim).astype(np.float32)

    def step(self, algo: Algorithm, step: int) -> dict[str, float]:
        """Act once and store the transition; returns episode stats when an episode ends."""
        if self.policy_state is None:
            self.policy_state = algo.initial_state()
        action, self.policy_state = algo.act(as_obs(self.obs, self.device), self.policy_state, False)
        action = action[0].cpu().numpy()
        if step <= self.learning_starts:
            action = self._random_action()
        next_obs, reward, terminated, truncated, _ = self.env.step(action)
        option = -1 if self.policy_state is None else int(self.policy_state[0])
        self.replay.add(self.obs, action, reward, next_obs, terminated, truncated, option)
        self.obs = next_obs
        self.episode_return += float(reward)
        self.episode_length += 1
        if not (terminated or truncated):
            return {}
        stats = {"train/episode_return": self.episode_return, "train/episode_length": float(self.episode_length)}
        self.obs, _ = self.env.reset()
        self.policy_state, self.episode_return, self.episode_length = None, 0.0, 0
        return stats

    def ready(self, step: int) -> bool:
        return step > self.learning_starts

    def sample(self, batch_size: int) -> Batch:
        return self.replay.sample(batch_size)

    def latest(self) -> Batch:
        return self.replay.latest()

    def normalized_score(self, mean_return: float) -> float | None:
        return None

    def state_dict(self) -> dict:
        """Replay, RNG and the collector's place mid-episode (the env pickled, except MuJoCo envs,
        whose pickles do not carry the physics state: those restart their episode on resume)."""
        mujoco_env = is_mujoco(self.env)
        return {
            "replay": self.replay.state_dict(),
            "rng": self.rng.bit_generator.state,
            "env": None if mujoco_env else cloudpickle.dumps(self.env),
            "obs": self.obs,
            "policy_state": self.policy_state,
            "episode": (self.episode_return, self.episode_length),
        }

    def load_state_dict(self, state: dict) -> None:
        self.replay.load_state_dict(state["replay"])
        self.rng.bit_generator.state = state["rng"]
        if state["env"] is None:
            log.info("resume: this env's state is not checkpointed; the collector starts a new episode")
            self.obs, _ = self.env.reset()
            self.policy_state, self.episode_return, self.episode_length = None, 0.0, 0
            return
        self.env.close()
        self.env = pickle.loads(state["env"])
        self.obs, self.policy_state = state["obs"], state["policy_state"]
        self.episode_return, self.episode_length = state["episode"]

    def export(self, dataset_id: str, algorithm_name: str) -> minari.MinariDataset:
        """Write the replay's complete episodes as a local Minari dataset, actions in env units."""
        env = raw_env(self.env)
        buffers = episode_buffers(self.replay, env.action_space)
        free_id = next_free_version(dataset_id)
        if free_id != dataset_id:
            log.warning("Minari dataset %s exists already; writing this buffer as %s", dataset_id, free_id)
        log.info("writing %d episodes to Minari dataset %s", len(buffers), free_id)
        return minari.create_dataset_from_buffers(
            free_id, buffers, env=env.spec, eval_env=env.spec, algorithm_name=algorithm_name, author="rlrun"
        )
