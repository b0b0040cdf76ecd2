"""Environment factory (gymnasium, gymnasium-robotics, Meta-World) and the Four Rooms grid."""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import RescaleAction

EnvFn = Callable[[int], gym.Env]


def prepare(env: gym.Env, seed: int) -> gym.Env:
    """Box actions rescaled to [-1, 1] (what the policies emit); spaces seeded."""
    if isinstance(env.action_space, gym.spaces.Box):
        env = RescaleAction(env, -1.0, 1.0)
    env.action_space.seed(seed)
    env.observation_space.seed(seed)
    return env


def make_env(env_id: str, kwargs: dict[str, Any], max_episode_steps: int | None, seed: int) -> gym.Env:
    """gymnasium.make(`env_id`); an id `module:Name` imports `module` first (it registers Name)."""
    extra = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    return prepare(gym.make(env_id, **extra, **kwargs), seed)


class FourRooms(gym.Env):
    """Sutton, Precup and Singh's Four Rooms (as in the option-critic paper): 13×13 grid, 4 moves.

    With probability 1/3 the move goes in a random other direction. Reward 1 on reaching the goal
    (which ends the episode), else 0. Observation: one-hot cell index (104 free cells).
    """

    LAYOUT = (
        "wwwwwwwwwwwww",
        "w     w     w",
        "w     w     w",
        "w           w",
        "w     w     w",
        "w     w     w",
        "ww wwww     w",
        "w     www www",
        "w     w     w",
        "w     w     w",
        "w           w",
        "w     w     w",
        "wwwwwwwwwwwww",
    )
    MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))

    def __init__(self, goal: int = 62) -> None:
        self.cells = [(r, c) for r, row in enumerate(self.LAYOUT) for c, ch in enumerate(row) if ch == " "]
        self.index = {cell: i for i, cell in enumerate(self.cells)}
        self.goal = goal
        self.observation_space = gym.spaces.Box(0.0, 1.0, (len(self.cells),), np.float32)
        self.action_space = gym.spaces.Discrete(4)
        self.state = 0

    def all_observations(self) -> np.ndarray:
        """The observation of every free cell, in cell order: (cells, cells)."""
        return np.eye(len(self.cells), dtype=np.float32)

    def to_grid(self, values: np.ndarray) -> np.ndarray:
        """Per-cell values laid out on the 13×13 grid, walls NaN."""
        grid = np.full((len(self.LAYOUT), len(self.LAYOUT[0])), np.nan)
        for (r, c), v in zip(self.cells, values):
            grid[r, c] = v
        return grid

    def hallways(self) -> list[tuple[int, int]]:
        """Cells in a wall line with walls on two opposite sides (the doorways between rooms)."""
        wall = lambda r, c: self.LAYOUT[r][c] == "w"  # noqa: E731
        return [(r, c) for r, c in self.cells
                if (wall(r - 1, c) and wall(r + 1, c)) or (wall(r, c - 1) and wall(r, c + 1))]

    def _obs(self) -> np.ndarray:
        obs = np.zeros(len(self.cells), np.float32)
        obs[self.state] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        starts = [i for i in range(len(self.cells)) if i != self.goal]
        self.state = int(self.np_random.choice(starts))
        return self._obs(), {}

    def step(self, action):
        if self.np_random.uniform() < 1 / 3:
            action = int(self.np_random.choice([a for a in range(4) if a != int(action)]))
        r, c = self.cells[self.state]
        dr, dc = self.MOVES[int(action)]
        self.state = self.index.get((r + dr, c + dc), self.state)
        done = self.state == self.goal
        return self._obs(), float(done), done, False, {}


gym.register("rlrun/FourRooms-v0", entry_point=FourRooms, max_episode_steps=1000)
