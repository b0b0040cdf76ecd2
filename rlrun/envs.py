"""Environment factory (gymnasium, gymnasium-robotics, Meta-World) and the Four Rooms grid."""

from __future__ import annotations

import difflib
import importlib
import os
import traceback
from typing import Any, Callable

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import RescaleAction

from rlrun.errors import UserError

EnvFn = Callable[[int], gym.Env]


def prepare(env: gym.Env, seed: int) -> gym.Env:
    """Box actions rescaled to [-1, 1] (what the policies emit); spaces seeded."""
    if isinstance(env.action_space, gym.spaces.Box):  # bounds in the space's dtype: no precision warning
        dtype = env.action_space.dtype.type
        env = RescaleAction(env, dtype(-1.0), dtype(1.0))
    env.action_space.seed(seed)
    env.observation_space.seed(seed)
    return env


def is_mujoco(env: gym.Env) -> bool:
    """MuJoCo envs: their physics state is not pickled, and they step in C long enough for async workers to pay off."""
    return hasattr(env.unwrapped, "mujoco_renderer") or hasattr(env.unwrapped, "data")


def check_env_id(env_id: str) -> None:
    """A UserError naming close matches when `env_id` (`module:Name` imports module first) is not registered."""
    module, _, name = env_id.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise UserError(f"env id {env_id}: cannot import {module} ({e}); install it or fix the module name.") from None
    if name in gym.registry:
        return
    close = difflib.get_close_matches(name, list(gym.registry), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "`rlrun-list` shows rlrun's envs."
    raise UserError(f"unknown env id {env_id}: gymnasium has no {name} registered; {hint}")


def make_env(env_id: str, kwargs: dict[str, Any], max_episode_steps: int | None, seed: int, render: bool = False) -> gym.Env:
    """gymnasium.make(`env_id`); an id `module:Name` imports `module` first (it registers Name).
    With `render`, the env renders RGB frames (render_mode="rgb_array")."""
    extra = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    if render:
        extra["render_mode"] = "rgb_array"
    try:
        return prepare(gym.make(env_id, **extra, **kwargs), seed)
    except (ImportError, AttributeError) as error:
        backend = os.environ.get("MUJOCO_GL")
        if backend is None or "OpenGL" not in "".join(traceback.format_exception(error)):
            raise
        raise UserError(
            f"creating {env_id} failed while loading the OpenGL library of MUJOCO_GL={backend} "
            f"({type(error).__name__}: {error}); install it, or set MUJOCO_GL=egl or glfw, "
            f"or unset MUJOCO_GL."
        ) from error


class FourRooms(gym.Env):
    """Sutton, Precup and Singh's Four Rooms (as in the option-critic paper): 13×13 grid, 4 moves.

    With probability 1/3 the move goes in a random other direction. Reward 1 on reaching the goal
    (which ends the episode), else 0. Observation: one-hot cell index (104 free cells).

    The paper's transfer experiment: with `goal_moves_after=1000` the goal moves, from the episode
    after the 1000th on, to `moved_goal` (None: a cell of the lower right room drawn from the seed
    of the env's first seeded reset, so two runs with one seed get the same goal). Episodes are
    counted by this instance; a new instance (an evaluation env) starts again with the first goal.
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
    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}
    CELL_PX = 12

    LOWER_RIGHT_ROOM = (range(8, 12), range(7, 12))

    def __init__(
        self, goal: int = 62, goal_moves_after: int = 0, moved_goal: int | None = None, render_mode: str | None = None
    ) -> None:
        self.render_mode = render_mode
        self.cells = [(r, c) for r, row in enumerate(self.LAYOUT) for c, ch in enumerate(row) if ch == " "]
        self.index = {cell: i for i, cell in enumerate(self.cells)}
        self.goal = goal
        self.goal_moves_after, self.moved_goal = goal_moves_after, moved_goal
        self.episodes, self.first_seed = 0, None
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
        return [(r, c) for r, c in self.cells if (wall(r - 1, c) and wall(r + 1, c)) or (wall(r, c - 1) and wall(r, c + 1))]

    def render(self) -> np.ndarray:
        """The grid as an RGB image: walls grey, goal green, agent red."""
        colour = {"w": (90, 90, 90), " ": (235, 235, 235)}
        image = np.array([[colour[ch] for ch in row] for row in self.LAYOUT], dtype=np.uint8)
        image[self.cells[self.goal]] = (40, 170, 60)
        image[self.cells[self.state]] = (210, 40, 40)
        return image.repeat(self.CELL_PX, 0).repeat(self.CELL_PX, 1)  # (13, 13, 3) -> (156, 156, 3)

    def _obs(self) -> np.ndarray:
        obs = np.zeros(len(self.cells), np.float32)
        obs[self.state] = 1.0
        return obs

    def _next_goal(self) -> int:
        """The goal after the move: `moved_goal`, or a lower-right-room cell drawn from the first seed."""
        if self.moved_goal is not None:
            return self.moved_goal
        rows, cols = self.LOWER_RIGHT_ROOM
        room = [i for i, (r, c) in enumerate(self.cells) if r in rows and c in cols]
        return int(np.random.default_rng(self.first_seed).choice(room))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None and self.first_seed is None:
            self.first_seed = seed
        if self.goal_moves_after and self.episodes == self.goal_moves_after:
            self.goal = self._next_goal()
        self.episodes += 1
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
