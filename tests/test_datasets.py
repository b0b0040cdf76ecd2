"""Datasets: rlrun-collect, the Pendulum family recipe, any Minari dataset by id, and presets keyed by id."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import minari
import numpy as np
import pytest
import torch
from conftest import make_cfg, rlrun, write_random_dataset
from minari.data_collector import EpisodeBuffer

from rlrun import collect, presets, recipes
from rlrun.build import check_config
from rlrun.data import offline
from rlrun.data.online import env_units
from rlrun.errors import UserError
from rlrun.rollout import load_run

TINY_SAC = [
    "algo=sac",
    "env=pendulum",
    "trainer.total_steps=300",
    "trainer.learning_starts=100",
    "trainer.eval_every=300",
    "trainer.eval_episodes=1",
    "trainer.checkpoint_every=150",
    "trainer.progress=false",
    "network.hidden_sizes=[16,16]",
]


@pytest.fixture(scope="module")
def sac_run(tmp_path_factory) -> Path:
    """A tiny online SAC run on Pendulum with checkpoints at steps 150 and 300."""
    root = tmp_path_factory.mktemp("sac_run")
    result = rlrun(*TINY_SAC, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return next(root.glob("outputs/sac/pendulum/*"))


def datasets_in(store: Path) -> set[str]:
    return {str(p.parent.relative_to(store)) for p in store.glob("**/data")} if store.exists() else set()


def test_collect_round_trip_writes_the_policys_actions_in_env_units(sac_run, tmp_path):
    out = subprocess.run(
        [
            str(Path(sys.executable).parent / "rlrun-collect"),
            str(sac_run),
            "--step",
            "150",
            "--episodes",
            "2",
            "--noise",
            "0",
            "--seed",
            "3",
            "--dataset-id",
            "test/collect/policy-v0",
            "--ref-min-score",
            "-1200",
            "--ref-max-score",
            "-150",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    dataset = minari.load_dataset("test/collect/policy-v0")
    assert dataset.total_episodes == 2 and dataset.total_steps == 400
    meta = dataset.storage.metadata
    assert (meta["ref_min_score"], meta["ref_max_score"]) == (-1200.0, -150.0)
    assert "SAC" in meta["algorithm_name"] and "step 150" in meta["algorithm_name"]
    assert json.loads(meta["rlrun_config"])["env"]["id"] == "Pendulum-v1"
    assert dataset.recover_environment().spec.id == "Pendulum-v1"
    assert dataset.recover_environment(eval_env=True).spec.max_episode_steps == 200
    policy = load_run(sac_run, 150)
    space = gym.make("Pendulum-v1").action_space
    for ep in dataset.iterate_episodes():
        assert not ep.terminations.any() and ep.truncations[-1] and not ep.truncations[:-1].any()
        expected = np.stack([env_units(space, policy.act(obs, None)[0]) for obs in ep.observations[:-1]])
        np.testing.assert_allclose(ep.actions, expected, atol=1e-5)  # env units: [-2, 2], not [-1, 1]


def test_collect_random_actions_keep_terminations_apart_from_truncations():
    collect.main(
        [
            "--random",
            "--env",
            "CartPole-v1",
            "--episodes",
            "4",
            "--seed",
            "1",
            "--dataset-id",
            "test/collect/cartpole-random-v0",
            "--no-progress",
        ]
    )
    dataset = minari.load_dataset("test/collect/cartpole-random-v0")
    assert dataset.total_episodes == 4
    for ep in dataset.iterate_episodes():  # random CartPole falls within 500 steps: true terminations
        assert ep.terminations[-1] and not ep.truncations.any() and not ep.terminations[:-1].any()


def test_collect_steps_cuts_the_last_episode_as_a_truncation():
    collect.main(["--random", "--env", "Pendulum-v1", "--steps", "450", "--dataset-id", "test/collect/steps-v0", "--no-progress"])
    dataset = minari.load_dataset("test/collect/steps-v0")
    assert dataset.total_steps == 450 and dataset.total_episodes == 3
    last = list(dataset.iterate_episodes())[-1]
    assert len(last.rewards) == 50 and last.truncations[-1]


@pytest.mark.parametrize(
    "args,message",
    [
        (["{empty}", "--episodes", "2"], "holds no readable checkpoint"),
        (["{run}", "--episodes", "2", "--dataset-id", "test/collect/existing-v0"], "exists already and is never overwritten"),
        (["{run}", "--episodes", "2", "--noise", "-0.1"], "--noise is a standard deviation and cannot be negative"),
        (["{run}", "--episodes", "0"], "--episodes must be positive"),
    ],
)
def test_collect_bad_input_is_one_sentence_and_writes_nothing(sac_run, tmp_path, minari_store, capsys, args, message):
    write_random_dataset("test/collect/existing-v0", "Pendulum-v1", episodes=1, max_steps=10)
    before = datasets_in(minari_store)
    argv = [a.format(run=sac_run, empty=tmp_path) for a in args]
    if "--dataset-id" not in argv:
        argv += ["--dataset-id", "test/collect/never-v0"]
    with pytest.raises(SystemExit) as exit_info:
        collect.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert datasets_in(minari_store) == before


@pytest.fixture(scope="module")
def tiny_family(tmp_path_factory, minari_store_module):
    """The Pendulum family recipe at a tiny size: a 600-step teacher, 2 episodes per level."""
    root = tmp_path_factory.mktemp("family")
    recipes.build_pendulum_family(
        "test/pendfam/medium-v0", teacher_steps=600, eval_every=150, episodes=2, output_root=str(root / "teachers")
    )
    return root


@pytest.fixture(scope="module")
def minari_store_module(tmp_path_factory):
    import os

    root = tmp_path_factory.getbasetemp() / "minari"
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    yield root
    if old is not None:
        os.environ["MINARI_DATASETS_PATH"] = old


def test_pendulum_family_follows_d4rls_recipe(tiny_family):
    ids = recipes.family_ids("test/pendfam/medium-v0")
    data = {level: minari.load_dataset(i) for level, i in ids.items()}
    for level in ("random", "medium", "expert"):
        assert data[level].total_episodes == 2 and data[level].total_steps == 400
    assert data["medium-expert"].total_episodes == 4
    medium_expert = [ep.actions for ep in data["medium-expert"].iterate_episodes()]
    expected = [ep.actions for ep in data["medium"].iterate_episodes()] + [ep.actions for ep in data["expert"].iterate_episodes()]
    assert all(np.array_equal(a, b) for a, b in zip(medium_expert, expected))
    replay_steps = data["medium-replay"].total_steps
    assert replay_steps % 200 == 0 and 0 < replay_steps < 600  # complete episodes collected before the medium step
    random_return = np.mean([ep.rewards.sum() for ep in data["random"].iterate_episodes()])
    for dataset in data.values():
        meta = dataset.storage.metadata
        assert meta["ref_min_score"] == pytest.approx(random_return)
        assert dataset.recover_environment(eval_env=True).spec.id == "Pendulum-v1"
    teachers = list((tiny_family / "teachers").iterdir())
    assert len(teachers) == 1  # and a second request reuses the family:
    recipes.build_pendulum_family(
        "test/pendfam/expert-v0", teacher_steps=600, eval_every=150, episodes=2, output_root=str(tiny_family / "teachers")
    )
    assert list((tiny_family / "teachers").iterdir()) == teachers


def test_pendulum_family_is_deterministic_for_a_seed(tiny_family):
    recipes.build_pendulum_family(
        "test/pendfam2/medium-v0", teacher_steps=600, eval_every=150, episodes=2, output_root=str(tiny_family / "teachers2")
    )
    for level in recipes.LEVELS:
        a = list(minari.load_dataset(f"test/pendfam/{level}-v0").iterate_episodes())
        b = list(minari.load_dataset(f"test/pendfam2/{level}-v0").iterate_episodes())
        assert len(a) == len(b)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x.actions, y.actions)
            np.testing.assert_array_equal(x.observations, y.observations)


def test_family_configs_name_the_recipe_and_carry_reference_scores():
    for level in ("random", "medium", "medium_replay", "expert", "medium_expert"):
        cfg = make_cfg("algo=cql", f"dataset=pendulum_{level}")
        assert cfg.dataset.builder._target_ == "rlrun.recipes.build_pendulum_family"
        assert cfg.dataset.ref_min_score < cfg.dataset.ref_max_score
        assert cfg.preset == "cql_pendulum" and cfg.algo.cql_alpha == 2.0


HOSTED = {  # Minari ids of the D4RL families and the preset each gets
    **{f"D4RL/door/{q}-v2": "cql_adroit_door" for q in ("human", "cloned", "expert")},
    **{
        f"D4RL/{t}/{q}-v2": "cql_adroit_pen_hammer_relocate"
        for t in ("pen", "hammer", "relocate")
        for q in ("human", "cloned", "expert")
    },
    **{
        f"D4RL/antmaze/{m}-v1": "cql_antmaze"
        for m in ("umaze", "umaze-diverse", "medium-play", "medium-diverse", "large-play", "large-diverse")
    },
    **{f"mujoco/{e}/{q}-v0": "cql_mujoco" for e in ("halfcheetah", "walker2d") for q in ("simple", "medium", "expert")},
    "mujoco/hopper/simple-v0": "cql_mujoco",
    "mujoco/hopper/expert-v0": "cql_mujoco",
    "mujoco/hopper/medium-v0": "cql_mujoco_hopper_medium",
    "rlrun/door/human-demos-v0": "cql_adroit_door",
    **{f"rlrun/pendulum/{level}-v0": "cql_pendulum" for level in recipes.LEVELS},
    "rlrun/pendulum/my-collection-v0": "cql_pendulum",
}


@pytest.mark.parametrize("dataset_id,expected", sorted(HOSTED.items()))
def test_each_hosted_family_gets_its_cql_preset_and_it_fits_the_schema(dataset_id, expected):
    assert presets.find("cql", dataset_id).name == expected
    cfg = make_cfg("algo=cql", "dataset=minari", f"dataset.id={dataset_id}")
    settings = presets.find("cql", dataset_id).settings
    assert cfg.algo.cql_alpha == settings["algo"].get("cql_alpha", 1.0)
    assert list(cfg.network.hidden_sizes) == settings["network"]["hidden_sizes"]


def test_presets_are_picked_by_id_as_by_config_name_and_overrides_win():
    by_name, by_id = make_cfg("algo=cql", "dataset=door"), make_cfg("algo=cql", "dataset=minari", "dataset.id=D4RL/door/human-v2")
    assert by_name.algo == by_id.algo and by_name.network == by_id.network and by_name.trainer == by_id.trainer
    cfg = make_cfg("algo=cql", "dataset=minari", "dataset.id=D4RL/antmaze/umaze-v1", "algo.cql_alpha=3", "dataset.reward_bias=-1")
    assert (cfg.algo.cql_alpha, cfg.algo.target_action_gap, cfg.dataset.reward_scale, cfg.dataset.reward_bias) == (
        3.0,
        0.8,
        10.0,
        -1.0,
    )
    assert presets.find("sac", "D4RL/door/human-v2") is None


def test_a_dataset_config_with_another_id_keeps_its_configs_preset_unless_the_id_has_one():
    local_copy = make_cfg("algo=cql", "dataset=door", "dataset.id=me/door/copy-v0")
    assert local_copy.algo.actor_lr == 1e-4 and list(local_copy.network.hidden_sizes) == [256, 256, 256]
    pen = make_cfg("algo=cql", "dataset=door", "dataset.id=D4RL/pen/human-v2")
    assert pen.algo.lagrange and pen.algo.actor_lr == 3e-5
    assert (
        make_cfg("algo=cql", "dataset=minari", "dataset.id=me/door/copy-v0").algo.actor_lr
        == make_cfg("algo=cql", "env=pendulum").algo.actor_lr
    )  # no preset: the algorithm's defaults


def test_no_two_presets_serve_the_same_algorithm_and_id():
    loaded = presets.load_all()
    for preset in loaded:
        for dataset_id in HOSTED:
            for finetune in (False, True):
                presets.find(preset.algo, dataset_id, presets=loaded, finetune=finetune)  # raises when two match


def test_a_preset_that_lists_the_id_beats_a_pattern_and_two_of_a_kind_are_a_defect():
    def preset(name: str, *ids: str) -> presets.Preset:
        return presets.Preset(Path(f"{name}.yaml"), "cql", ids, (), {})

    family, level, other = preset("family", "me/data/*"), preset("level", "me/data/b-v0"), preset("other", "me/*")
    assert presets.find("cql", "me/data/b-v0", presets=[family, level]).name == "level"
    assert presets.find("cql", "me/data/a-v0", presets=[family, level]).name == "family"
    with pytest.raises(ValueError, match="all serve cql on me/data/a-v0"):
        presets.find("cql", "me/data/a-v0", presets=[family, level, other])
    with pytest.raises(ValueError, match="all serve cql on me/data/b-v0"):
        presets.find("cql", "me/data/b-v0", presets=[level, preset("twin", "me/data/b-v0")])


def test_a_fine_tuning_run_takes_the_fine_tuning_preset_and_an_offline_run_the_offline_one():
    offline = make_cfg("algo=cql", "dataset=door")
    finetune = make_cfg("algo=cql", "dataset=door", "trainer.finetune_steps=1000")
    assert (offline.preset, finetune.preset) == ("cql_adroit_door", "cql_adroit_door_finetune")
    assert not offline.algo.max_target_backup and finetune.algo.max_target_backup
    # IQL has no fine-tuning preset: CORL's door fine-tuning config is its offline one
    assert make_cfg("algo=iql", "dataset=door", "trainer.finetune_steps=1000").preset == "iql_adroit_door"
    pendulum = make_cfg("algo=iql", "dataset=pendulum_medium", "trainer.finetune_steps=1000")
    assert pendulum.preset == "iql_pendulum_finetune" and pendulum.algo.expectile == 0.9
    assert pendulum.algo.min_explore_std == 1.0 and make_cfg("algo=iql", "dataset=pendulum_medium").algo.min_explore_std == 0.0
    awac = make_cfg("algo=awac", "dataset=pendulum_medium", "trainer.finetune_steps=1000")
    assert awac.preset == "awac_pendulum_finetune" and awac.algo.min_explore_std == 1.0
    assert make_cfg("algo=awac", "dataset=pendulum_medium").preset == "awac_pendulum"
    assert make_cfg("algo=iql", "dataset=pendulum_medium").algo.expectile == 0.7


def test_minari_dataset_without_an_id_is_a_user_error():
    with pytest.raises(UserError, match="dataset=minari needs the Minari id"):
        check_config(make_cfg("algo=cql", "dataset=minari"))


def hopper_dataset(dataset_id: str) -> minari.MinariDataset:
    return write_random_dataset(dataset_id, "Hopper-v5", episodes=2, max_steps=30)


def test_minari_dataset_by_id_runs_with_its_familys_preset(tmp_path):
    hopper_dataset("mujoco/hopper/medium-v0")
    result = rlrun(
        "algo=cql",
        "dataset=minari",
        "dataset.id=mujoco/hopper/medium-v0",
        "trainer.batch_size=32",  # the 56-transition test dataset
        "trainer.total_steps=20",
        "trainer.eval_every=20",
        "trainer.eval_episodes=1",
        "trainer.progress=false",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = next(tmp_path.glob("outputs/cql/mujoco_hopper_medium-v0/*"))
    saved = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "cql_alpha: 10.0" in saved and "return_range_scale: 1000.0" in saved and "actor_lr: 3.0e-05" in saved
    log = result.stdout + result.stderr
    assert "preset cql_mujoco_hopper_medium" in log and "no reference scores" in log


def test_return_range_normalization_scales_rewards_by_the_datas_return_range():
    dataset = hopper_dataset("test/hopper/returns-v0")
    raw = offline.DatasetSource(dataset, False, 1.0, 0.0, None, None, torch.device("cpu"))
    scaled = offline.DatasetSource(dataset, False, 2.0, -1.0, None, None, torch.device("cpu"), 1000.0)
    returns = [ep.rewards.sum() for ep in dataset.iterate_episodes()]
    factor = 1000.0 / (max(returns) - min(returns))
    torch.testing.assert_close(scaled.data.rew, raw.data.rew * factor * 2.0 - 1.0)


def test_dict_observations_are_flattened_in_the_spaces_key_order():
    import gymnasium_robotics  # noqa: F401  (registers PointMaze)

    dataset = write_random_dataset("test/pointmaze/dict-v0", "PointMaze_UMaze-v3", episodes=2, max_steps=20)
    source = offline.DatasetSource(dataset, False, 1.0, 0.0, None, None, torch.device("cpu"))
    assert list(dataset.observation_space.spaces) == ["achieved_goal", "desired_goal", "observation"]
    assert source.spaces.obs_dim == 8
    ep = next(dataset.iterate_episodes())
    first = np.concatenate([ep.observations[k][0] for k in ("achieved_goal", "desired_goal", "observation")])
    np.testing.assert_allclose(source.data.obs[0].numpy(), first.astype(np.float32))
    env = source.make_eval_env(0)
    assert env.observation_space.shape == (8,)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (8,)


def test_episodes_longer_than_the_eval_envs_limit_are_one_warning(caplog):
    env = gym.make("Pendulum-v1", max_episode_steps=300)
    rng = np.random.default_rng(0)
    obs = [env.reset(seed=0)[0]]
    for _ in range(300):
        obs.append(env.step(rng.uniform(-2, 2, 1).astype(np.float32))[0])
    buffer = EpisodeBuffer(
        id=0,
        observations=np.array(obs),
        actions=rng.uniform(-2, 2, (300, 1)).astype(np.float32),
        rewards=np.zeros(300),
        terminations=np.zeros(300, bool),
        truncations=np.r_[np.zeros(299, bool), True],
    )
    dataset = minari.create_dataset_from_buffers(
        "test/pendulum/long-v0", [buffer], env=env.spec, eval_env=gym.make("Pendulum-v1").spec
    )
    with caplog.at_level(logging.WARNING):
        offline.DatasetSource(dataset, True, 1.0, 0.0, None, None, torch.device("cpu"))
    warnings = [r.getMessage() for r in caplog.records if "episodes of up to" in r.getMessage()]
    assert warnings == [
        "dataset test/pendulum/long-v0 has episodes of up to 300 steps but its eval env Pendulum-v1 "
        "ends episodes after 200 steps; evaluations see only their first 200 steps"
    ]


def test_unknown_minari_id_without_network_fails_fast_in_one_sentence(tmp_path):
    if offline.network_reachable(timeout=2.0):
        pytest.skip("this machine reaches huggingface.co: the offline path cannot be exercised")
    start = time.time()
    result = rlrun("algo=cql", "dataset=minari", "dataset.id=mujoco/unknown/none-v0", cwd=tmp_path, timeout=60)
    assert time.time() - start < 30 and result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("rlrun: error:")]
    assert len(errors) == 1 and "mujoco/unknown/none-v0" in errors[0] and "Traceback" not in result.stderr


def test_a_config_that_took_its_preset_keeps_its_overrides_when_built_again():
    cfg = make_cfg("algo=cql", "dataset=pendulum_medium", "trainer.total_steps=123")
    assert cfg.preset == "cql_pendulum" and cfg.trainer.total_steps == 123
    assert presets.apply(cfg, ()).trainer.total_steps == 123  # build.run applies presets to what it is given
