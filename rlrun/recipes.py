"""Dataset recipes that train with rlrun itself: the Pendulum SAC buffer and the D4RL-style Pendulum family.

They orchestrate whole runs (compose a config, `build.run` it, roll out its checkpoints), so they sit
above `build.py`; `rlrun.data` keeps loading, flattening, replay and export. Each is a dataset
config's `builder`, called when its dataset is missing from the local Minari store.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch
from minari.data_collector import EpisodeBuffer

from rlrun import checkpoint, presets
from rlrun.data import offline
from rlrun.data.online import episode_buffers, raw_env
from rlrun.data.replay import ReplayBuffer
from rlrun.envs import make_env
from rlrun.resolvers import claim_dir, register_resolvers
from rlrun.rollout import collect, load_run, mean_return, noisy, uniform_random, write_dataset
from rlrun.schema import register_configs

log = logging.getLogger(__name__)
LEVELS = ("random", "medium", "medium-replay", "expert", "medium-expert")
PENDULUM = "Pendulum-v1"


def run_rlrun(overrides: Sequence[str], run_dir: Path) -> float:
    """`rlrun *overrides` in `run_dir`, in this process; returns its final eval/return_mean."""
    from rlrun.build import run

    register_resolvers()
    register_configs()
    return run(presets.compose(overrides), run_dir, overrides)


def build_pendulum_buffer(
    dataset_id: str, total_steps: int = 20000, seed: int = 0, output_root: str = "outputs/teachers"
) -> None:
    """Train SAC online on Pendulum-v1 for `total_steps` and write its replay as `dataset_id`."""
    overrides = [
        "algo=sac",
        "env=pendulum",
        f"trainer.total_steps={total_steps}",
        f"seed={seed}",
        "trainer.save_buffer=true",
        f"trainer.buffer_dataset_id={dataset_id}",
    ]
    run_dir = Path(claim_dir(f"{output_root}/{dataset_id.replace('/', '_')}"))
    log.info("building %s: SAC teacher on Pendulum-v1 for %d steps, logs in %s", dataset_id, total_steps, run_dir)
    teacher_return = run_rlrun(overrides, run_dir)
    log.info("teacher finished with eval/return_mean %.1f; dataset %s written", teacher_return, dataset_id)


def family_ids(dataset_id: str) -> dict[str, str]:
    """The ids of the five levels beside `dataset_id` (`rlrun/pendulum/medium-v0` → `rlrun/pendulum/<level>-v0`)."""
    prefix, name = dataset_id.rsplit("/", 1)
    version = name.rsplit("-v", 1)[1] if "-v" in name else "0"
    return {level: f"{prefix}/{level}-v{version}" for level in LEVELS}


def teacher_curve(run_dir: Path) -> dict[int, float]:
    """Step → eval/return_mean at each of the teacher's checkpoints."""
    return {
        step: checkpoint.read(path)["last_eval"]["eval/return_mean"]
        for step, path in checkpoint.step_files(run_dir / "checkpoints")
    }


def replay_episodes(run_dir: Path, step: int, action_space) -> list[EpisodeBuffer]:
    """The complete episodes in the teacher's replay at `step`, actions in env units."""
    saved = checkpoint.read(run_dir / "checkpoints" / f"step_{step}.pt")["source"]["replay"]
    obs_dim, act_dim = saved["data"]["obs"].shape[1], saved["data"]["act"].shape[1]
    replay = ReplayBuffer(saved["size"] + 1, obs_dim, (act_dim,), torch.float32, torch.device("cpu"))
    replay.load_state_dict(saved)
    return episode_buffers(replay, action_space)


def train_teacher(run_dir: Path, steps: int, eval_every: int, seed: int) -> None:
    """Online SAC on Pendulum with an evaluation and a checkpoint every `eval_every` steps; on one CPU
    thread with torch's own matmuls, so a seed gives the same teacher on every run of a machine."""
    run_rlrun(
        [
            "algo=sac",
            "env=pendulum",
            f"seed={seed}",
            f"trainer.total_steps={steps}",
            f"trainer.eval_every={eval_every}",
            f"trainer.checkpoint_every={eval_every}",
            f"trainer.keep_checkpoints={steps // eval_every + 1}",
            "trainer.progress=false",
            "device=cpu",
            "device.cpu_matmul=blas",
            "device.threads=1",
        ],
        run_dir,
    )


def build_pendulum_family(
    dataset_id: str,
    teacher_steps: int = 6000,
    eval_every: int = 250,
    episodes: int = 50,
    noise: float = 0.1,
    seed: int = 0,
    output_root: str = "outputs/teachers",
) -> None:
    """D4RL's recipe on Pendulum-v1, all five levels at once (the ids beside `dataset_id`).

    A SAC teacher trains online for `teacher_steps`. random: uniform actions. expert: the final policy.
    medium: the teacher's checkpoint whose evaluation return is closest to a third of the way from
    random to expert. Both play `episodes` episodes with Gaussian action noise `noise`.
    medium-replay: the teacher's replay up to the medium checkpoint. medium-expert: medium + expert.
    Reference scores: random's mean return and the final teacher's evaluation return.
    """
    ids = family_ids(dataset_id)
    with offline.store_lock(f"{dataset_id.rsplit('/', 1)[0]}/family"):
        missing = {level: i for level, i in ids.items() if not offline.dataset_exists(i)}
        if not missing:
            return
        run_dir = Path(claim_dir(f"{output_root}/{dataset_id.rsplit('/', 1)[0].replace('/', '_')}_family"))
        log.info(
            "building the Pendulum family %s: SAC teacher for %d steps, logs in %s",
            ", ".join(ids.values()),
            teacher_steps,
            run_dir,
        )
        train_teacher(run_dir, teacher_steps, eval_every, seed)
        write_family(run_dir, missing, episodes, noise, seed)


def write_family(run_dir: Path, ids: dict[str, str], episodes: int, noise: float, seed: int) -> None:
    """Roll out the trained teacher's checkpoints into the datasets `ids` (level → id)."""
    curve = teacher_curve(run_dir)
    env = make_env(PENDULUM, {}, None, seed)
    data = {"random": collect(uniform_random(env.action_space, seed), lambda: None, env, seed, episodes, progress=False)}
    random_return, expert_return = mean_return(data["random"]), curve[max(curve)]
    target = random_return + (expert_return - random_return) / 3
    medium_step = min((s for s in curve if s < max(curve)), key=lambda s: abs(curve[s] - target))
    for level, step in (("medium", medium_step), ("expert", max(curve))):
        policy = load_run(run_dir, step)
        act = noisy(policy.act, env.action_space, noise, 0.0, seed + step)
        data[level] = collect(act, policy.algo.initial_state, env, seed + step, episodes, progress=False)
    data["medium-replay"] = replay_episodes(run_dir, medium_step, raw_env(env).action_space)
    data["medium-expert"] = [replace(ep, id=i) for i, ep in enumerate(data["medium"] + data["expert"])]
    recipe = {
        "random": "uniform random actions",
        "expert": f"the SAC teacher after {max(curve)} steps",
        "medium": f"the SAC teacher at step {medium_step} (evaluation return {curve[medium_step]:.1f}, target {target:.1f})",
        "medium-replay": f"the SAC teacher's replay up to step {medium_step}",
        "medium-expert": "medium and expert together",
    }
    for level, dataset_id in ids.items():
        noise_text = f", Gaussian action noise {noise}" if level in ("medium", "expert", "medium-expert") else ""
        write_dataset(
            dataset_id,
            data[level],
            env,
            f"rlrun recipe: {recipe[level]}",
            random_return,
            expert_return,
            f"Pendulum-v1 {level} (D4RL's recipe): {recipe[level]}{noise_text}, seed {seed}",
        )
        log.info("%s: %d episodes, mean return %.1f", dataset_id, len(data[level]), mean_return(data[level]))
    env.close()
