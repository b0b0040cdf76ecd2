"""Using what was trained: rlrun.load_policy and rlrun-eval on a small saved run."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import make_cfg

import rlrun
from rlrun.build import run
from rlrun.rollout import load_run

SMALL = [
    "dataset=pendulum",
    "dataset.id=test/pendulum/random-v0",
    "dataset.builder=null",
    "network.hidden_sizes=[32,32]",
    "trainer.total_steps=50",
    "trainer.eval_every=50",
    "trainer.eval_episodes=1",
    "trainer.progress=false",
    "device=cpu",
    "device.cpu_matmul=blas",
]


@pytest.fixture
def saved_run(tmp_path, pendulum_dataset):
    run(make_cfg("algo=td3_bc", *SMALL), tmp_path / "run")
    return tmp_path / "run"


def test_load_policy_acts_in_env_units_on_single_and_batched_observations(saved_run):
    policy = rlrun.load_policy(saved_run)
    obs = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    batch = policy(obs)
    assert batch.shape == (4, 1) and policy.step == 50
    np.testing.assert_allclose(policy(obs[0]), batch[0], rtol=1e-6)
    # the algorithm's own action in [-1, 1], scaled to Pendulum's [-2, 2]
    algo = load_run(saved_run).algo
    want = 2.0 * algo.act(torch.as_tensor(obs), None, True)[0].numpy()
    np.testing.assert_allclose(batch, want, rtol=1e-5, atol=1e-6)
    assert np.abs(batch).max() <= 2.0


FAMILIES = {
    "td3_bc": [*SMALL],
    "iql": [*SMALL],
    "cql": [*SMALL],
    "option_critic": [
        "env=four_rooms",
        "trainer.total_steps=50",
        "trainer.eval_every=50",
        "trainer.learning_starts=10",
        "trainer.eval_episodes=1",
        "trainer.progress=false",
        "device=cpu",
        "env.max_episode_steps=30",
    ],
}


@pytest.mark.parametrize("family", FAMILIES)
def test_rlrun_eval_prints_the_policys_scores(tmp_path, pendulum_dataset, family):
    run(make_cfg(f"algo={family}", *FAMILIES[family]), tmp_path / "run")
    out = subprocess.run(
        [sys.executable, "-m", "rlrun.evaluate", str(tmp_path / "run"), "--episodes", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "at step 50, 2 episodes from seed 0" in out.stdout
    length = "30.00" if family == "option_critic" else "200.00"
    assert "return_mean" in out.stdout and f"length_mean        {length}" in out.stdout


@pytest.mark.parametrize(
    "args,message", [(["--episodes", "0"], "--episodes must be positive"), ([], "holds no readable checkpoint")]
)
def test_rlrun_eval_bad_input_is_one_sentence_and_exit_2(tmp_path, args, message):
    out = subprocess.run(
        [sys.executable, "-m", "rlrun.evaluate", str(tmp_path), *args], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exported_file_gives_the_live_policys_actions(saved_run, fmt):
    out = subprocess.run(
        [sys.executable, "-m", "rlrun.export", str(saved_run), "--format", fmt], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    path = saved_run / "export" / f"policy_50.{'pt' if fmt == 'torchscript' else 'onnx'}"
    assert out.stdout.strip() == str(path)
    obs = np.random.default_rng(1).standard_normal((7, 3)).astype(np.float32)
    want = rlrun.load_policy(saved_run)(obs)
    if fmt == "torchscript":
        got = torch.jit.load(str(path))(torch.as_tensor(obs)).numpy()
    else:
        import onnxruntime

        got = onnxruntime.InferenceSession(str(path)).run(None, {"obs": obs})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "name,env,vector", [("td3_bc", "pendulum", "sync"), ("sac", "pendulum", "async"), ("option_critic", "four_rooms", "sync")]
)
def test_vector_evaluation_equals_serial_evaluation(name, env, vector):
    """trainer.eval_envs: the same seeds give the same episodes as one env played serially."""
    from functools import partial

    import gymnasium as gym

    from rlrun.build import make_algo, make_source
    from rlrun.trainer import evaluate, evaluate_vector

    torch.manual_seed(0)
    cfg = make_cfg(f"algo={name}", f"env={env}", "network.hidden_sizes=[32,32]", "env.max_episode_steps=60")
    source = make_source(cfg, torch.device("cpu"))
    algo = make_algo(cfg, source.spaces, torch.device("cpu"))
    serial = evaluate(algo, source.make_eval_env(7), 5, 7, torch.device("cpu"))
    kind = gym.vector.SyncVectorEnv if vector == "sync" else gym.vector.AsyncVectorEnv
    envs = kind([partial(source.make_eval_env, 7 + i) for i in range(3)])  # 5 episodes in waves of 3
    batched = evaluate_vector(algo, envs, 5, 7, torch.device("cpu"))
    envs.close()
    assert serial.keys() == batched.keys()
    assert ("eval/option_duration_mean" in serial) == (name == "option_critic")
    for key in serial:
        assert batched[key] == pytest.approx(serial[key], rel=1e-4, abs=1e-4), key


def test_option_statistics_by_hand():
    """Two episodes, options 0 0 1 1 1 and 2 2: stretches of 2, 3 and 2 steps, one change in the first."""
    from rlrun.trainer import option_stats

    stats = option_stats([[0, 0, 1, 1, 1], [2, 2]], 4)
    assert stats["eval/option_duration_mean"] == pytest.approx(7 / 3)
    assert stats["eval/option_switches_per_episode"] == pytest.approx(0.5)
    assert [stats[f"eval/option_usage/{k}"] for k in range(4)] == pytest.approx([2 / 7, 3 / 7, 2 / 7, 0.0])
    assert option_stats([[], []], 4) == {} and option_stats([[0, 1]], 0) == {}


def test_evaluation_videos_of_option_critics_show_the_running_option():
    """Each frame after the first carries the acting option's colour in its corner (the timeline's colours)."""
    import matplotlib

    from rlrun.build import make_algo, make_source
    from rlrun.video import record

    cfg = make_cfg("algo=option_critic", "env=four_rooms", "env.max_episode_steps=30")
    source = make_source(cfg, torch.device("cpu"))
    algo = make_algo(cfg, source.spaces, torch.device("cpu"))
    frames = record(algo, source.make_eval_env(0, render=True), 0, torch.device("cpu"))
    colours = {tuple(int(255 * c) for c in matplotlib.colormaps["tab10"](k)[:3]) for k in range(4)}
    assert len(frames) > 1 and all(tuple(int(v) for v in f[1, 1]) in colours for f in frames[1:])
    assert tuple(int(v) for v in frames[0][1, 1]) not in colours  # the frame before the first action: no option yet


def test_hallway_betas_by_hand():
    """β 0.9 at Four Rooms' hallway cells and 0.1 elsewhere for option 0; 0.5 everywhere for option 1."""
    import gymnasium as gym

    from rlrun.viz import hallway_betas

    env = gym.make("rlrun.envs:rlrun/FourRooms-v0")
    grid = env.unwrapped
    hall = torch.zeros(len(grid.cells), dtype=torch.bool)
    hall[[grid.index[c] for c in grid.hallways()]] = True
    assert int(hall.sum()) == 4  # the four doorways

    def beta(obs):
        on_hall = hall[obs.argmax(-1)].float()  # one-hot cells -> hallway or not
        return torch.stack([0.1 + 0.8 * on_hall, torch.full_like(on_hall, 0.5)], -1)

    stats = hallway_betas(beta, env, torch.device("cpu"))
    assert stats["eval/beta_hallways/0"] == pytest.approx(0.9) and stats["eval/beta_elsewhere/0"] == pytest.approx(0.1)
    assert stats["eval/beta_hallways/1"] == pytest.approx(0.5) and stats["eval/beta_elsewhere/1"] == pytest.approx(0.5)
    assert hallway_betas(beta, gym.make("CartPole-v1"), torch.device("cpu")) == {}
