"""Imports the original DAPG human door demonstrations as a local Minari dataset.

Each demonstration's actions are replayed in gymnasium-robotics' AdroitHandDoor-v1 from its
`init_state_dict`; observations and rewards come from the env, actions are the pickle's own.
The dataset records the env spec of D4RL/door/human-v2 (AdroitHandDoor-v1, 200-step limit).

    rlrun-import-door-demos ../shared/data/door-v0_demos.pickle [--dataset-id rlrun/door/human-demos-v0]
"""

from __future__ import annotations

import argparse
import logging
import pickle
from pathlib import Path

import gymnasium as gym
import minari
import numpy as np
from minari.data_collector import EpisodeBuffer
from tqdm import tqdm

from rlrun.errors import UserError

log = logging.getLogger(__name__)
ENV_ID = "AdroitHandDoor-v1"


def replay(env: gym.Env, demo: dict, episode_id: int) -> EpisodeBuffer:
    """One demonstration replayed from its initial state; the last step is a truncation."""
    obs, _ = env.reset(seed=episode_id, options={"initial_state_dict": demo["init_state_dict"]})
    actions = np.asarray(demo["actions"], dtype=np.float32)
    observations, rewards = [obs], []
    for action in actions:
        obs, reward, terminated, _, _ = env.step(action)
        observations.append(obs)
        rewards.append(reward)
    truncations = np.zeros(len(actions), dtype=bool)
    truncations[-1] = True
    return EpisodeBuffer(
        id=episode_id,
        observations=np.asarray(observations),
        actions=actions,
        rewards=np.asarray(rewards),
        terminations=np.zeros(len(actions), dtype=bool),
        truncations=truncations,
    )


def import_door_demos(dataset_id: str, path: str) -> minari.MinariDataset:
    """Replay the pickle at `path` and write it as the local Minari dataset `dataset_id`."""
    import gymnasium_robotics  # noqa: F401  (registers AdroitHandDoor-v1)

    demo_path = Path(path).expanduser()
    if not demo_path.is_file():
        raise UserError(
            f"the door demonstrations file {demo_path} does not exist; point RLRUN_DOOR_DEMOS "
            f"(or dataset.builder.path) at DAPG's door-v0_demos.pickle."
        )
    with open(demo_path, "rb") as f:
        demos = pickle.load(f)
    env = gym.make(ENV_ID, max_episode_steps=10_000)  # demonstrations run up to 300 steps
    buffers = [replay(env, demo, i) for i, demo in enumerate(tqdm(demos, desc="replaying door demos"))]
    env.close()
    log.info("writing %d episodes, %d steps to %s", len(buffers), sum(len(b.actions) for b in buffers), dataset_id)
    return minari.create_dataset_from_buffers(
        dataset_id,
        buffers,
        env=gym.spec(ENV_ID),
        eval_env=gym.spec(ENV_ID),  # recorded, so neither Minari nor rlrun has to guess it
        algorithm_name="human demonstrations (DAPG)",
        author="rlrun importer",
        description=f"{demo_path.name} replayed in {ENV_ID}",
        ref_min_score=-56.512833,
        ref_max_score=2880.5693,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="DAPG door-v0_demos.pickle")
    parser.add_argument("--dataset-id", default="rlrun/door/human-demos-v0")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    try:
        dataset = import_door_demos(args.dataset_id, args.path)
    except UserError as e:
        raise SystemExit(f"rlrun-import-door-demos: error: {e}")
    print(f"{args.dataset_id}: {dataset.total_episodes} episodes, {dataset.total_steps} steps")
