"""Evaluation videos: one deterministic episode rendered to RGB frames, encoded as a GIF.

Frames come from the env's `render_mode="rgb_array"`: classic-control envs draw with pygame,
Four Rooms with numpy, MuJoCo envs (Adroit, Meta-World) render offscreen through MUJOCO_GL
(EGL by default on machines without a display; `MUJOCO_GL=osmesa` for software rendering).
The GIF is written with Pillow, and TensorBoard shows it in its Images tab (torch's add_video
would need moviepy < 2).
"""

from __future__ import annotations

import io
import os
from typing import Callable

import gymnasium as gym
import numpy as np
import torch
from PIL import Image, ImageDraw

from rlrun.algos.base import Algorithm
from rlrun.data.online import play

MAX_FRAMES = 200
MAX_WIDTH = 192


def default_mujoco_backend() -> None:
    """Headless machines render MuJoCo through EGL unless the user chose MUJOCO_GL already."""
    if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "egl"


def probe(make_env: Callable[[], gym.Env]) -> str | None:
    """None when the env renders an RGB frame here, else why it does not."""
    try:
        env = make_env()
        env.reset(seed=0)
        frame = env.render()
        env.close()
    except Exception as error:  # GL back-ends fail in many ways (missing libraries, no device)
        return f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
    if not isinstance(frame, np.ndarray) or frame.ndim != 3:
        return f"render() returned {type(frame).__name__}, not an RGB frame"
    return None


def record(algo: Algorithm, env: gym.Env, seed: int, device: torch.device) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 of one deterministic episode, at most MAX_FRAMES (evenly thinned).
    With options (the policy state is the running option), each frame shows the option that acted."""
    obs, _ = env.reset(seed=seed)
    frames = [env.render()]
    for step in play(algo, env, obs, device):
        frame = env.render()
        frames.append(mark_option(frame, int(step.state[0])) if isinstance(step.state, torch.Tensor) else frame)
    keep = np.linspace(0, len(frames) - 1, min(len(frames), MAX_FRAMES)).round().astype(int)
    return np.stack([frames[i] for i in keep])


def mark_option(frame: np.ndarray, option: int) -> np.ndarray:
    """The frame with the running option in its top-left corner: its number on its timeline colour."""
    from rlrun.viz import option_colour  # matplotlib only for videos with options, not at every start

    image = Image.fromarray(frame)
    size = max(12, frame.shape[0] // 10)
    colour = tuple(int(255 * c) for c in option_colour(option)[:3])
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 2 * size, size), fill=colour)
    draw.text((3, 1), str(option), fill=(255, 255, 255))
    return np.asarray(image)


def gif(frames: np.ndarray, fps: float) -> tuple[bytes, tuple[int, int]]:
    """An endlessly looping GIF of the frames, downscaled to at most MAX_WIDTH pixels wide, and its
    (height, width)."""
    images = [Image.fromarray(f) for f in frames]
    if images[0].width > MAX_WIDTH:
        size = (MAX_WIDTH, round(images[0].height * MAX_WIDTH / images[0].width))
        images = [im.resize(size) for im in images]
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return out.getvalue(), (images[0].height, images[0].width)
