"""Shared fixtures: a private Minari store, composed configs, and small datasets built locally."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import minari
import numpy as np
import pytest
import torch
from minari.data_collector import EpisodeBuffer

from rlrun import onednn, presets
from rlrun.resolvers import register_resolvers
from rlrun.schema import register_configs

register_resolvers()
register_configs()


def pytest_configure(config):
    """Under pytest-xdist (make test runs one worker per core), each worker and the rlrun commands it
    starts use one thread: two workers of two threads each on two cores run several times slower."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def torch_threads():
    """A test that sets torch's thread count leaves the next test the count it found."""
    threads = torch.get_num_threads()
    yield threads
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def minari_store(tmp_path_factory, monkeypatch):
    """Every test gets the session's temporary Minari store; nothing touches ~/.minari."""
    root = tmp_path_factory.getbasetemp() / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


@pytest.fixture(autouse=True)
def blas_matmul(monkeypatch):
    """Tests start on torch's own CPU matmuls; a run built in-process (device.cpu_matmul) must not leak its choice.
    A test that turns oneDNN on gets its path at any size (the real size floor has its own test)."""
    monkeypatch.setattr(onednn, "MIN_LAYER_MACS", 0)
    onednn.use("blas")
    yield
    onednn.use("blas")


def make_cfg(*overrides: str):
    """The config a run with these overrides gets: composed by Hydra, then its dataset's preset."""
    return presets.compose(overrides)


def rlrun(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real `rlrun` command, as a user types it."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "rlrun.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env
    )


def write_random_dataset(
    dataset_id: str, env_id: str, episodes: int, max_steps: int, seed: int = 0, **make_kwargs
) -> minari.MinariDataset:
    """A Minari dataset of uniformly random actions, written with minari from numpy episodes."""
    if dataset_id in minari.list_local_datasets():
        return minari.load_dataset(dataset_id)
    env = gym.make(env_id, max_episode_steps=max_steps, **make_kwargs)
    env.action_space.seed(seed)
    buffers = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        observations, actions, rewards, terms, truncs = [obs], [], [], [], []
        done = False
        while not done:
            action = env.action_space.sample()
            obs, r, term, trunc, _ = env.step(action)
            observations.append(obs), actions.append(action), rewards.append(r), terms.append(term), truncs.append(trunc)
            done = term or trunc
        if isinstance(obs, dict):  # Dict observations: one array per key
            observations = {k: np.array([o[k] for o in observations]) for k in obs}
        buffers.append(
            EpisodeBuffer(
                id=i,
                observations=observations if isinstance(obs, dict) else np.array(observations),
                actions=np.array(actions),
                rewards=np.array(rewards),
                terminations=np.array(terms),
                truncations=np.array(truncs),
            )
        )
    return minari.create_dataset_from_buffers(dataset_id, buffers, env=env.spec, algorithm_name="random")


@pytest.fixture
def pendulum_dataset():
    """A short random Pendulum dataset: 5 episodes × 200 steps."""
    return write_random_dataset("test/pendulum/random-v0", "Pendulum-v1", episodes=5, max_steps=200)


@pytest.fixture
def door_dataset():
    """A door-shaped dataset: AdroitHandDoor-v1 with random actions, 3 episodes × 40 steps."""
    import gymnasium_robotics  # noqa: F401  (registers AdroitHandDoor-v1)

    return write_random_dataset("test/door/random-v0", "AdroitHandDoor-v1", episodes=3, max_steps=40)
