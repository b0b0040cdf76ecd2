"""Layer 4: CPU smoke runs of the real `rlrun` command; TensorBoard, checkpoints, resume, datasets."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import minari
import pytest
import torch
from conftest import make_cfg, rlrun
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlrun import checkpoint

REPO = Path(__file__).resolve().parents[1]

FAST = ["trainer.eval_episodes=2", "trainer.log_every=100", "trainer.progress=false", "network.hidden_sizes=[32,32]"]
ONLINE_TAGS = {
    "train/critic_loss",
    "train/actor_loss",
    "train/alpha",
    "train/q_mean",
    "eval/return_mean",
    "eval/return_std",
    "eval/length_mean",
    "perf/updates_per_s",
    "perf/env_steps_per_s",
}


def only_run_dir(root: Path) -> Path:
    runs = [p.parent for p in root.glob("outputs/**/events.out.tfevents.*")]
    assert len(set(runs)) == 1, runs
    return runs[0]


def completed_run(root: Path, args: list[str]) -> Path:
    """Run `rlrun *args` in `root`, check it succeeded, and return its run directory."""
    result = rlrun(*args, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return only_run_dir(root)


def scalars(run_dir: Path) -> dict[str, list]:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}


def test_online_sac_run_logs_checkpoints_exports_and_resumes(tmp_path, minari_store):
    args = [
        "algo=sac",
        "env=pendulum",
        "trainer.total_steps=600",
        "trainer.learning_starts=200",
        "trainer.eval_every=300",
        "trainer.checkpoint_every=200",
        "trainer.keep_checkpoints=2",
        "trainer.save_buffer=true",
        "trainer.buffer_dataset_id=test/pendulum/smoke-v0",
        *FAST,
    ]
    run_dir = completed_run(tmp_path, args)
    assert run_dir.relative_to(tmp_path).parts[:3] == ("outputs", "sac", "pendulum")
    tags = scalars(run_dir)
    assert ONLINE_TAGS <= set(tags), ONLINE_TAGS - set(tags)
    assert all(math.isfinite(e.value) for t in ONLINE_TAGS for e in tags[t])
    assert [e.step for e in tags["eval/return_mean"]] == [300, 600]
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert ckpts == ["last.pt", "step_400.pt", "step_600.pt"]
    state = checkpoint.read(run_dir / "checkpoints" / "last.pt")
    assert state["step"] == 600 and state["config"]["algo"]["_target_"] == "rlrun.algos.sac.SAC"
    assert state["source"]["replay"]["size"] == 600 and "version" in state

    # the written replay is a real Minari dataset with true episode boundaries
    dataset = minari.load_dataset("test/pendulum/smoke-v0")
    assert dataset.total_episodes == 3 and dataset.total_steps == 600
    episode = next(dataset.iterate_episodes())
    assert episode.truncations[-1] and not episode.terminations.any()
    assert abs(episode.actions).max() <= 2.0 and abs(episode.actions).max() > 1.0  # env units, not [-1, 1]
    assert dataset.recover_environment().spec.id == "Pendulum-v1"

    # resume continues at the saved step with the saved optimizer state
    resumed = rlrun(f"resume={run_dir}", "trainer.total_steps=800", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr + resumed.stdout and "at step 600" in resumed.stderr + resumed.stdout
    final = checkpoint.read(run_dir / "checkpoints" / "last.pt")
    assert final["step"] == 800
    assert final["algo"]["actor_opt"]["state"][0]["step"] == state["algo"]["actor_opt"]["state"][0]["step"] + 200
    steps = [e.step for e in scalars(run_dir)["eval/return_mean"]]
    assert steps == [300, 600, 800]  # no duplicated or missing points after resume
    assert (run_dir / ".hydra" / "config.yaml").read_text().count("rlrun.algos.sac.SAC") == 1


@pytest.mark.parametrize("env", ["door", "pick_place"])
def test_online_sac_in_mujoco_envs(tmp_path, env):
    args = [
        "algo=sac",
        f"env={env}",
        "trainer.total_steps=60",
        "trainer.learning_starts=30",
        "trainer.batch_size=16",
        "trainer.eval_every=60",
        "trainer.eval_episodes=1",
        "trainer.checkpoint_every=30",
        *FAST,
    ]
    run_dir = completed_run(tmp_path, args)
    assert math.isfinite(scalars(run_dir)["eval/return_mean"][-1].value)
    assert checkpoint.read(run_dir / "checkpoints" / "last.pt")["step"] == 60


def test_four_rooms_env_is_a_gymnasium_env():
    from gymnasium.utils.env_checker import check_env

    from rlrun.envs import make_env

    env = make_env("rlrun.envs:rlrun/FourRooms-v0", {}, None, 0)
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (104,) and obs.sum() == 1.0


def test_four_rooms_goal_moves_after_the_given_episodes_to_the_seeds_cell():
    import gymnasium as gym

    from rlrun.envs import FourRooms

    def goals(seed: int) -> list[int]:
        """The goal of each of the first five episodes."""
        env = gym.make("rlrun.envs:rlrun/FourRooms-v0", goal_moves_after=3).unwrapped
        seen = []
        for episode in range(5):
            env.reset(seed=seed if episode == 0 else None)
            seen.append(env.goal)
        return seen

    first, again, other = goals(0), goals(0), goals(1)
    assert first[:3] == [62, 62, 62] and first[3] == first[4] != 62  # episodes 4 and 5 have the new goal
    assert first == again
    env = FourRooms()
    rows, cols = FourRooms.LOWER_RIGHT_ROOM
    assert {first[3], other[3]} <= {i for i, (r, c) in enumerate(env.cells) if r in rows and c in cols}
    assert FourRooms(goal_moves_after=1, moved_goal=5)._next_goal() == 5


def test_offline_cql_run_on_local_dataset(tmp_path, pendulum_dataset):
    args = [
        "algo=cql",
        "dataset=pendulum",
        "dataset.id=test/pendulum/random-v0",
        "dataset.builder=null",
        "trainer.total_steps=300",
        "trainer.eval_every=150",
        "trainer.checkpoint_every=300",
        *FAST,
    ]
    run_dir = completed_run(tmp_path, args)
    tags = scalars(run_dir)
    assert {"train/cql_diff", "train/td_loss", "eval/return_mean", "perf/updates_per_s"} <= set(tags)
    state = checkpoint.read(run_dir / "checkpoints" / "last.pt")
    mean = state["algo"]["obs_norm"]["mean"]
    assert not torch.allclose(mean, torch.zeros_like(mean))  # dataset normalization is saved


def test_offline_door_run_logs_normalized_score(tmp_path, door_dataset):
    args = [
        "algo=cql",
        "dataset=door",
        "dataset.id=test/door/random-v0",
        "trainer.batch_size=64",  # the 120-transition test dataset
        "trainer.total_steps=20",
        "trainer.eval_every=20",
        "trainer.eval_episodes=1",
        "trainer.log_every=10",
        "trainer.progress=false",
        "network.hidden_sizes=[32,32]",
    ]
    tags = scalars(completed_run(tmp_path, args))
    assert "eval/normalized_score" in tags and math.isfinite(tags["eval/normalized_score"][-1].value)


def test_missing_dataset_without_network_fails_fast_with_ways_out(tmp_path):
    import time

    from rlrun.data.offline import network_reachable

    if network_reachable(timeout=2.0):
        pytest.skip("this machine reaches huggingface.co: the offline path cannot be exercised")

    start = time.time()
    result = rlrun("algo=cql", "dataset=door", cwd=tmp_path, timeout=60)
    assert time.time() - start < 30
    assert result.returncode == 2
    message = result.stderr
    assert "D4RL/door/human-v2" in message and "download failed" in message and "dataset=door_demos" in message
    assert "Traceback" not in message


def test_missing_pendulum_buffer_is_built_by_the_sac_teacher(tmp_path):
    args = [
        "algo=cql",
        "dataset=pendulum",
        "dataset.id=test/pendulum/teacher-v0",
        "dataset.builder.total_steps=400",
        "trainer.total_steps=50",
        "trainer.eval_every=50",
        *FAST,
    ]
    result = rlrun(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "dataset test/pendulum/teacher-v0 is missing locally: building it now" in log
    assert "SAC teacher on Pendulum-v1 for 400 steps" in log
    dataset = minari.load_dataset("test/pendulum/teacher-v0")
    assert dataset.total_steps == 400 and dataset.total_episodes == 2
    assert list((tmp_path / "outputs" / "teachers").glob("*/events.out.tfevents.*"))


OPTION_TAGS = {
    "train/termination_loss",
    "train/policy_loss",
    "train/critic_loss",
    "train/entropy",
    "train/epsilon",
    "train/option_duration_mean",
    "eval/return_mean",
    "perf/env_steps_per_s",
}


def test_option_critic_in_four_rooms_logs_options_and_termination_map(tmp_path):
    args = [
        "algo=option_critic",
        "env=four_rooms",
        "trainer.total_steps=600",
        "trainer.learning_starts=100",
        "trainer.eval_every=600",
        "trainer.checkpoint_every=300",
        "trainer.batch_size=32",
        *FAST,
    ]
    run_dir = completed_run(tmp_path, args)
    tags = set(scalars(run_dir))
    options = {f"train/{kind}/{k}" for kind in ("option_usage", "termination_prob") for k in range(4)}
    assert OPTION_TAGS | options <= tags, OPTION_TAGS | options - tags
    usage = [scalars(run_dir)[f"train/option_usage/{k}"][-1].value for k in range(4)]
    assert math.isclose(sum(usage), 1.0, abs_tol=1e-4)
    assert {"eval/option_duration_mean", "eval/option_switches_per_episode", "eval/option_usage/3"} <= tags
    assert scalars(run_dir)["eval/option_duration_mean"][-1].value >= 1.0
    assert (run_dir / "options" / "eval_step_600.png").stat().st_size > 5_000  # the option timeline
    assert {f"eval/{where}/{k}" for where in ("beta_hallways", "beta_elsewhere") for k in range(4)} <= tags
    assert (run_dir / "termination_probs.png").stat().st_size > 10_000
    acc = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    acc.Reload()
    assert {"eval/termination_probs", "eval/option_timeline"} <= set(acc.Tags()["images"])
    state = checkpoint.read(run_dir / "checkpoints" / "last.pt")
    assert state["step"] == 600 and int(state["algo"]["options"]["env_steps"]) == 600
    assert state["source"]["replay"]["data"]["option"].min() >= 0  # every stored transition knows its option


@pytest.mark.parametrize("algo", ["option_critic", pytest.param("soft_option_critic", marks=pytest.mark.slow)])  # ≈ 50 s
def test_option_critic_with_box_actions_in_meta_world(tmp_path, algo):
    args = [
        f"algo={algo}",
        "env=pick_place",
        "trainer.total_steps=80",
        "trainer.learning_starts=40",
        "trainer.batch_size=16",
        "trainer.eval_every=80",
        "trainer.eval_episodes=1",
        "trainer.checkpoint_every=80",
        *FAST,
    ]
    run_dir = completed_run(tmp_path, args)
    assert math.isfinite(scalars(run_dir)["eval/return_mean"][-1].value)
    assert scalars(run_dir)["eval/success_rate"][-1].value in (0.0, 1.0)  # one episode, Meta-World's info
    assert not (run_dir / "termination_probs.png").exists()  # not a grid world
    if algo == "soft_option_critic":  # bench/value_check.py reads the same run back: greedy, and sampled on placement 0
        for mode in (["--timeline", str(tmp_path / "timeline.png")], ["--sample", "--each-placement"]):
            check = subprocess.run(
                [sys.executable, str(REPO / "bench" / "value_check.py"), str(run_dir), "--episodes", "1", *mode],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert check.returncode == 0, check.stderr[-2000:]
            found = re.search(r"predicted value (\S+) vs realized discounted return (\S+) .*success (\d)", check.stdout)
            assert found and all(math.isfinite(float(x)) for x in found.groups()), check.stdout
            assert re.search(r"^1 episodes: mean return \S+, median .* success rate [01]\.00$", check.stdout, re.M), check.stdout
            assert re.search(r"^option_duration_mean \d", check.stdout, re.M), check.stdout
            assert re.search(r"^option 1: (never ran|\S+% of steps, mean hand-object distance)", check.stdout, re.M), check.stdout
        assert (tmp_path / "timeline.png").stat().st_size > 0


def test_eval_video_is_a_gif_in_tensorboard_and_the_run_dir(tmp_path):
    args = [
        "algo=option_critic",
        "env=four_rooms",
        "trainer.total_steps=200",
        "trainer.learning_starts=100",
        "trainer.eval_every=100",
        "trainer.eval_episodes=1",
        "trainer.eval_video=true",
        "trainer.batch_size=16",
        "env.max_episode_steps=50",
        *FAST,
    ]
    run_dir = completed_run(tmp_path, args)
    from PIL import Image

    gifs = sorted((run_dir / "videos").glob("*.gif"))
    assert [g.name for g in gifs] == ["eval_step_100.gif", "eval_step_200.gif"]
    with Image.open(gifs[-1]) as im:
        # reset frame + at most 50 steps (Pillow merges repeated frames), 13 cells × 12 px
        assert 1 < im.n_frames <= 51 and im.size == (156, 156)
    acc = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    acc.Reload()
    assert [e.step for e in acc.Images("eval/video")] == [100, 200]
    assert acc.Images("eval/video")[-1].encoded_image_string[:6] == b"GIF89a"


def test_eval_video_is_skipped_with_a_warning_where_the_env_cannot_render(caplog):
    from rlrun.build import videos_possible

    class NoDisplay:
        def make_eval_env(self, seed, render=False):
            raise RuntimeError("no OpenGL context")

    with caplog.at_level("WARNING"):
        assert not videos_possible(NoDisplay(), 0)
    assert "evaluation videos are skipped" in caplog.text and "no OpenGL context" in caplog.text


def load_value_check():
    import importlib.util

    spec = importlib.util.spec_from_file_location("value_check", REPO / "bench" / "value_check.py")
    value_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(value_check)
    return value_check


def test_value_check_discounts_the_rewards_that_follow_by_hand():
    import numpy as np

    # G_2 = 2, G_1 = 0 + 0.5·2 = 1, G_0 = 1 + 0.5·1 = 1.5
    np.testing.assert_allclose(load_value_check().discounted(np.array([1.0, 0.0, 2.0]), 0.5), [1.5, 1.0, 2.0])


def test_value_check_plays_each_of_the_runs_meta_world_placements():
    """--each-placement: placement i is the object's start whatever the reset seed; the 50 differ."""
    import numpy as np

    from rlrun.build import make_source

    env = make_source(
        make_cfg("algo=soft_option_critic", "env=pick_place", "seed=3", "trainer.replay_size=1000"), torch.device("cpu")
    ).make_eval_env(5)
    tasks = load_value_check().placements(env)
    starts = []
    for task in tasks:
        env.unwrapped.set_task(task)
        first, second = (env.reset(seed=s)[0][4:7] for s in (1, 2))  # object position
        np.testing.assert_array_equal(first, second)
        starts.append(tuple(first.round(4)))
    assert len(tasks) == 50 and len(set(starts)) == 50


def test_value_check_describes_each_options_share_and_where_it_acts():
    import numpy as np

    nan = np.nan
    played = [  # option 0 reaches (far, nothing lifted), option 1 carries (near, lifted 3 cm on one of its two steps)
        dict(option=np.array([0.0, 0.0, 1.0, 1.0]), hand_to_obj=np.array([0.3, 0.1, 0.02, 0.02]), lift=np.array([0, 0, 0, 0.03])),
        dict(option=np.array([0.0, 0.0]), hand_to_obj=np.array([0.2, nan]), lift=np.array([0.0, 0.0])),
    ]
    stats, first, second, third = load_value_check().describe_options(played, 3)
    # stretches: 2 + 1 over 6 steps -> duration 2, switches (1 + 0) / 2 = 0.5, usage 4/6 and 2/6
    assert stats == "option_duration_mean 2.000, option_switches_per_episode 0.500, " + (
        "option_usage/0 0.667, option_usage/1 0.333, option_usage/2 0.000"
    )
    assert first == "option 0: 66.7% of steps, mean hand-object distance 0.200 m, object lifted on 0.0% of them"
    assert second == "option 1: 33.3% of steps, mean hand-object distance 0.020 m, object lifted on 50.0% of them"
    assert third == "option 2: never ran"
    for ep in played:  # outside Meta-World: the share of steps alone
        ep["hand_to_obj"][:], ep["lift"][:] = nan, nan
    assert load_value_check().describe_options(played, 3)[1] == "option 0: 66.7% of steps"
