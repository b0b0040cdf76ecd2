"""Playing a saved run's policy, or uniform random actions, and writing the episodes as a Minari dataset.

Used by `rlrun-collect` and by the dataset recipes. A saved run is rebuilt from its checkpoint:
the config it saved, its algorithm with the saved weights (observation normalization included),
and its evaluation env (the dataset's eval env for offline runs).
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import minari
import numpy as np
import torch
from minari.data_collector import EpisodeBuffer
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from rlrun import checkpoint
from rlrun.build import make_algo
from rlrun.data import offline
from rlrun.data.online import as_obs, env_units, raw_env, spaces_of
from rlrun.envs import make_env
from rlrun.errors import UserError
from rlrun.schema import with_current_schema

log = logging.getLogger(__name__)
Act = Callable[[np.ndarray, Any], tuple[np.ndarray, Any]]  # (observation, policy state) -> (action in [-1, 1], state)


@dataclass
class SavedRun:
    """A run's policy at one checkpoint, and the env it is evaluated in."""

    path: Path  # the checkpoint file
    step: int
    config: DictConfig
    algo: Any
    make_env: Callable[[int], gym.Env]  # seed -> the eval env, Box actions in [-1, 1]
    device: torch.device

    def act(self, obs: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        """The deterministic policy's action for one raw observation."""
        action, state = self.algo.act(as_obs(obs, self.device), state, True)
        return action[0].cpu().numpy(), state


def read_checkpoint(run_dir: Path, step: int | None) -> tuple[dict[str, Any], Path]:
    """The checkpoint of `run_dir` at `step` (None: the newest good one); a UserError if there is none."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    try:
        if step is None:
            found = checkpoint.load_latest(ckpt_dir) if ckpt_dir.is_dir() else None
        else:
            found = checkpoint.read(ckpt_dir / f"step_{step}.pt"), ckpt_dir / f"step_{step}.pt"
    except (checkpoint.CheckpointError, OSError) as e:
        raise UserError(
            f"cannot read the step {step} checkpoint of {run_dir} ({e}); give a step that "
            f"`ls {ckpt_dir}` shows, or leave --step out for the newest."
        ) from None
    if found is None and any(Path(run_dir).glob("seed_*/checkpoints")):
        raise UserError(f"{run_dir} is a parallel-seeds run, one directory per agent: give one of its seed_<s>/ directories.")
    if found is None:
        raise UserError(f"{run_dir} holds no readable checkpoint ({ckpt_dir}); give the directory of an rlrun run.")
    return found


def eval_env_factory(cfg: DictConfig) -> Callable[[int], gym.Env]:
    """seed -> the env a run is evaluated in: its env (online) or its dataset's eval env (offline)."""
    if cfg.env is not None:
        kwargs = OmegaConf.to_container(cfg.env.kwargs, resolve=True)
        return partial(make_env, cfg.env.id, kwargs, cfg.env.max_episode_steps)
    dataset = offline.load(cfg.dataset.id, allow_download=False, builder=None)
    return partial(offline.make_eval_env, offline.eval_env_spec(dataset))


def load_run(run_dir: Path, step: int | None = None, device: str = "cpu") -> SavedRun:
    """The policy of `run_dir` at `step` (None: its newest good checkpoint), on `device`."""
    state, path = read_checkpoint(run_dir, step)
    cfg = with_current_schema(state["config"])
    cfg.device.compile = cfg.device.cuda_graphs = cfg.device.amp = False  # acting only: eager, fp32
    make = eval_env_factory(cfg)
    env = make(0)
    spaces = spaces_of(env.observation_space, env.action_space)
    env.close()
    algo = make_algo(cfg, spaces, torch.device(device))
    try:
        checkpoint.restore(algo, state["algo"])
    except checkpoint.CheckpointError as e:
        raise UserError(f"cannot load {path}: {e}; load it with the rlrun version that wrote it.") from None
    return SavedRun(path, state["step"], cfg, algo, make, torch.device(device))


def uniform_random(action_space: gym.Space, seed: int) -> Act:
    """Uniform actions in [-1, 1] (Box) or over the actions (Discrete)."""
    rng = np.random.default_rng(seed)
    if isinstance(action_space, gym.spaces.Discrete):
        return lambda obs, state: (np.asarray(rng.integers(action_space.n)), state)
    return lambda obs, state: (rng.uniform(-1.0, 1.0, action_space.shape).astype(np.float32), state)


def noisy(act: Act, action_space: gym.Space, noise: float, epsilon: float, seed: int) -> Act:
    """`act` with Gaussian noise of std `noise` (Box, in [-1, 1] units, clipped) and, with probability
    `epsilon`, a uniform random action instead."""
    rng, random_act = np.random.default_rng(seed), uniform_random(action_space, seed + 1)

    def noisy_act(obs: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        action, state = act(obs, state)
        if noise > 0 and isinstance(action_space, gym.spaces.Box):
            action = np.clip(action + noise * rng.standard_normal(action.shape), -1.0, 1.0).astype(np.float32)
        if epsilon > 0 and rng.random() < epsilon:
            action = random_act(obs, state)[0]
        return action, state

    return noisy_act


def play_episode(act: Act, initial_state: Any, env: gym.Env, obs: np.ndarray, max_steps: int) -> dict[str, list]:
    """One episode from `obs` (just reset), cut (as a truncation) after `max_steps` steps; actions in env units."""
    space = raw_env(env).action_space
    ep: dict[str, list] = {"observations": [obs], "actions": [], "rewards": [], "terminations": [], "truncations": []}
    state, done = initial_state, False
    while not done:
        action, state = act(obs, state)
        obs, reward, terminated, truncated, _ = env.step(action)
        truncated = truncated or len(ep["rewards"]) + 1 >= max_steps
        for key, value in zip(ep, (obs, env_units(space, action), reward, terminated, truncated)):
            ep[key].append(value)
        done = terminated or truncated
    return ep


def collect(
    act: Act,
    initial_state: Callable[[], Any],
    env: gym.Env,
    seed: int,
    episodes: int | None = None,
    steps: int | None = None,
    progress: bool = True,
) -> list[EpisodeBuffer]:
    """`episodes` episodes, or episodes until `steps` steps (the last one cut there), played by `act`."""
    total = episodes if episodes is not None else steps
    buffers, done_steps = [], 0
    with tqdm(total=total, unit="episode" if episodes is not None else "step", disable=not progress) as bar:
        obs, _ = env.reset(seed=seed)
        while (len(buffers) < episodes) if episodes is not None else (done_steps < steps):
            budget = steps - done_steps if steps is not None else np.inf
            ep = play_episode(act, initial_state(), env, obs, budget)
            buffers.append(EpisodeBuffer(id=len(buffers), **{k: np.asarray(v) for k, v in ep.items()}))
            done_steps += len(ep["rewards"])
            bar.update(1 if episodes is not None else len(ep["rewards"]))
            obs, _ = env.reset()
    return buffers


def check_new_dataset_id(dataset_id: str) -> None:
    """rlrun never overwrites a dataset."""
    if offline.dataset_exists(dataset_id):
        raise UserError(
            f"Minari dataset {dataset_id} exists already and is never overwritten: choose another "
            f"dataset id, or delete it first with `minari delete {dataset_id}`."
        )


def write_dataset(
    dataset_id: str,
    buffers: list[EpisodeBuffer],
    env: gym.Env,
    algorithm_name: str,
    ref_min_score: float | None = None,
    ref_max_score: float | None = None,
    description: str | None = None,
    config: dict | None = None,
) -> minari.MinariDataset:
    """The episodes as a local Minari dataset; `env` (as played) gives the env and eval env specs."""
    check_new_dataset_id(dataset_id)
    spec = raw_env(env).spec
    with warnings.catch_warnings():  # Minari's advice to add a code link and an author e-mail
        warnings.filterwarnings("ignore", message=".*(code_permalink|author_email)")
        dataset = minari.create_dataset_from_buffers(
            dataset_id,
            buffers,
            env=spec,
            eval_env=spec,
            algorithm_name=algorithm_name,
            author="rlrun",
            ref_min_score=ref_min_score,
            ref_max_score=ref_max_score,
            description=description,
        )
    if config is not None:
        dataset.storage.update_metadata({"rlrun_config": json.dumps(config)})
    log.info("wrote Minari dataset %s: %d episodes, %d steps", dataset_id, dataset.total_episodes, dataset.total_steps)
    return dataset


def mean_return(buffers: list[EpisodeBuffer]) -> float:
    return float(np.mean([np.sum(b.rewards) for b in buffers]))
