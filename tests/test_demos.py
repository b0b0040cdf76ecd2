"""The human-demonstration importer, on a small pickle of the same format made here."""

from __future__ import annotations

import pickle

import gymnasium as gym
import gymnasium_robotics  # noqa: F401
import numpy as np
import pytest

from rlrun.data.demos import import_door_demos
from rlrun.errors import UserError


def make_demo_pickle(path, episodes=2, steps=(30, 45)):
    """Demos in DAPG's format: a start state from the env, actions partly outside [-1, 1]."""
    env = gym.make("AdroitHandDoor-v1")
    rng = np.random.default_rng(0)
    demos = []
    for i in range(episodes):
        env.reset(seed=i)
        state = env.unwrapped.get_env_state()
        demos.append(
            {
                "observations": np.zeros((steps[i], 39)),
                "rewards": np.zeros(steps[i]),
                "actions": rng.uniform(-1.2, 1.2, (steps[i], 28)),
                "init_state_dict": {k: np.asarray(state[k]) for k in ("qpos", "qvel", "door_body_pos")},
            }
        )
    with open(path, "wb") as f:
        pickle.dump(demos, f)
    return demos


def test_import_matches_demonstrations(tmp_path):
    demos = make_demo_pickle(tmp_path / "demos.pickle")
    dataset = import_door_demos("test/door/demos-v0", str(tmp_path / "demos.pickle"))
    assert dataset.total_episodes == 2 and dataset.total_steps == 75
    for episode, demo in zip(dataset.iterate_episodes(), demos):
        np.testing.assert_array_equal(episode.actions, demo["actions"].astype(np.float32))
        assert episode.observations.shape == (len(demo["actions"]) + 1, 39)
        assert episode.truncations[-1] and not episode.terminations.any()
    env = dataset.recover_environment()
    assert env.spec.id == "AdroitHandDoor-v1" and env.spec.max_episode_steps == 200
    assert dataset.storage.metadata["ref_max_score"] == pytest.approx(2880.5693)


def test_replay_starts_from_the_demo_state(tmp_path):
    demos = make_demo_pickle(tmp_path / "demos.pickle", episodes=1, steps=(5,))
    dataset = import_door_demos("test/door/demos-start-v0", str(tmp_path / "demos.pickle"))
    env = gym.make("AdroitHandDoor-v1")
    obs, _ = env.reset(options={"initial_state_dict": demos[0]["init_state_dict"]})
    np.testing.assert_allclose(next(dataset.iterate_episodes()).observations[0], obs)


def test_missing_pickle_is_a_clear_user_error(tmp_path):
    with pytest.raises(UserError, match="RLRUN_DOOR_DEMOS"):
        import_door_demos("test/door/none-v0", str(tmp_path / "missing.pickle"))
