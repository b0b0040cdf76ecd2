"""Pictures of what an algorithm learned, for TensorBoard and the run directory."""

from __future__ import annotations

from typing import Callable

import gymnasium as gym
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from torch import Tensor  # noqa: E402


def termination_figure(beta: Callable[[Tensor], Tensor], env: gym.Env, device: torch.device) -> plt.Figure | None:
    """β_ω of every option over a grid world's cells, one panel per option (hallways circled,
    the goal starred); None for envs that are not grids (no `all_observations`/`to_grid`)."""
    grid_env = env.unwrapped
    if not (hasattr(grid_env, "all_observations") and hasattr(grid_env, "to_grid")):
        return None
    with torch.no_grad():
        probs = beta(torch.as_tensor(grid_env.all_observations(), device=device)).cpu().numpy()  # (cells, K)
    k = probs.shape[1]
    fig, axes = plt.subplots(1, k, figsize=(3.2 * k, 3.4), squeeze=False)
    for option, ax in enumerate(axes[0]):
        image = ax.imshow(np.ma.masked_invalid(grid_env.to_grid(probs[:, option])), vmin=0, vmax=1, cmap="viridis")
        ax.set_facecolor("0.25")  # walls
        for r, c in getattr(grid_env, "hallways", lambda: [])():
            ax.add_patch(plt.Circle((c, r), 0.45, fill=False, color="red", lw=1.5))
        if hasattr(grid_env, "goal"):
            gr, gc = grid_env.cells[grid_env.goal]
            ax.plot(gc, gr, "w*", markersize=10)
        ax.set_title(f"option {option}: β")
        ax.set_xticks([]), ax.set_yticks([])
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8)
    return fig


def option_colour(option: int) -> tuple[float, float, float, float]:
    """An option's colour (RGBA in [0, 1]) on timelines and evaluation videos."""
    return matplotlib.colormaps["tab10"](option % 10)


def option_timeline(episodes: list[list[int]], n_options: int) -> plt.Figure:
    """Which option acted at each step: one row per evaluation episode, one colour per option."""
    length = max(len(ep) for ep in episodes)
    grid = np.full((len(episodes), length), np.nan)
    for row, ep in enumerate(episodes):
        grid[row, : len(ep)] = ep
    colours = ListedColormap([option_colour(k) for k in range(n_options)])
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(episodes) + 1.2))
    ax.imshow(np.ma.masked_invalid(grid), aspect="auto", interpolation="nearest", cmap=colours, vmin=-0.5, vmax=n_options - 0.5)
    ax.set_xlabel("step")
    ax.set_ylabel("episode")
    ax.set_yticks(range(len(episodes)))
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours(k)) for k in range(n_options)]
    ax.legend(handles, [f"option {k}" for k in range(n_options)], loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    return fig


def hallway_betas(beta: Callable[[Tensor], Tensor], env: gym.Env, device: torch.device) -> dict[str, float]:
    """Per option, mean β over the grid world's hallway cells and over all other cells (the option-critic
    paper's finding: options end at hallways); {} for envs without hallways."""
    grid_env = env.unwrapped
    if not (hasattr(grid_env, "all_observations") and hasattr(grid_env, "hallways")):
        return {}
    with torch.no_grad():
        probs = beta(torch.as_tensor(grid_env.all_observations(), device=device)).cpu().numpy()  # (cells, K)
    hall = np.zeros(len(probs), dtype=bool)
    hall[[grid_env.index[cell] for cell in grid_env.hallways()]] = True
    metrics = {}
    for k in range(probs.shape[1]):
        metrics[f"eval/beta_hallways/{k}"] = float(probs[hall, k].mean())
        metrics[f"eval/beta_elsewhere/{k}"] = float(probs[~hall, k].mean())
    return metrics
