"""Layer 1: every config composes and validates; user mistakes fail at start with one clear message."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_cfg, rlrun
from hydra.errors import ConfigCompositionException
from hydra.utils import get_class
from omegaconf.errors import ValidationError

from rlrun.build import check_config
from rlrun.errors import UserError
from rlrun.schema import ALGO_SCHEMAS

CONF = Path(__file__).resolve().parent.parent / "conf"


def choices(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


OFFLINE_ALGOS = [n for n, schema in ALGO_SCHEMAS.items() if not get_class(schema._target_).online_only]


@pytest.mark.parametrize("algo,dataset", itertools.product(OFFLINE_ALGOS, choices("dataset")))
def test_offline_configs_compose(algo, dataset):
    some_id = ["dataset.id=mujoco/hopper/medium-v0"] if dataset == "minari" else []
    cfg = make_cfg(f"algo={algo}", f"dataset={dataset}", *some_id)
    assert cfg.env is None and cfg.dataset.id
    check_config(cfg)


@pytest.mark.parametrize("algo,env", itertools.product(choices("algo"), choices("env")))
def test_online_configs_compose_without_dataset(algo, env):
    cfg = make_cfg(f"algo={algo}", f"env={env}")
    assert cfg.dataset is None, "choosing env= must drop the default dataset"
    assert cfg.env.id


@pytest.mark.parametrize("group", ["network", "device"])
def test_every_option_of_small_groups_composes(group):
    for option in choices(group):
        assert make_cfg(f"{group}={option}")[group]


def test_default_is_offline_cql_on_pendulum_buffer():
    cfg = make_cfg()
    assert cfg.algo._target_ == "rlrun.algos.cql.CQL"
    assert cfg.dataset.id == "rlrun/pendulum/sac-v0" and cfg.env is None


def test_door_uses_published_corl_settings():
    cfg = make_cfg("algo=cql", "dataset=door")
    a = cfg.algo
    assert (a.cql_alpha, a.lagrange, a.max_target_backup, a.n_actions) == (1.0, False, False, 10)
    assert (a.actor_lr, a.critic_lr, a.tau, a.backup_entropy) == (1e-4, 3e-4, 0.005, False)
    assert list(cfg.network.hidden_sizes) == [256, 256, 256] and cfg.network.orthogonal_init
    assert (cfg.trainer.total_steps, cfg.trainer.batch_size, cfg.trainer.eval_every, cfg.trainer.eval_episodes) == (
        1_000_000,
        256,
        5000,
        10,
    )
    assert cfg.dataset.normalize_obs


@pytest.mark.parametrize(
    "overrides,steps",
    [
        (["dataset=pendulum_medium", "trainer.total_steps=300"], 300),
        (["dataset=pendulum_medium", "trainer.total_steps=300", "trainer.finetune_steps=1000"], 300),
        (["env=pendulum", "trainer.total_steps=300", "trainer.updates_per_step=2"], 600),
    ],
)
def test_iql_schedule_spans_the_offline_updates_or_every_online_one(overrides, steps):
    """CORL's fine-tuning IQL anneals the actor's rate over the offline updates only (max_steps = offline_iterations)."""
    assert make_cfg("algo=iql", *overrides).algo.lr_schedule_steps == steps


def test_run_time_sizes_stay_missing_in_config():
    cfg = make_cfg("algo=sac", "env=pendulum")
    assert cfg.algo._get_node("obs_dim")._is_missing() and cfg.algo._get_node("act_dim")._is_missing()


def test_unknown_key_and_wrong_type_fail_at_compose():
    with pytest.raises(ConfigCompositionException):
        make_cfg("algo=sac", "env=pendulum", "foo=1")
    with pytest.raises((ValidationError, ConfigCompositionException)):
        make_cfg("trainer.total_steps=abc")
    with pytest.raises(ConfigCompositionException):
        make_cfg("algo.not_a_setting=3")


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["algo=sac", "env=pendulum", "dataset=pendulum"], "both env= and dataset="),
        (["trainer.total_steps=0"], "trainer.total_steps must be > 0, got 0"),
        (["trainer.eval_every=-5"], "trainer.eval_every must be > 0, got -5"),
        (["algo.gamma=1.5"], r"algo.gamma must be in \(0, 1\], got 1.5"),
        (["algo=iql", "algo.expectile=1.0"], r"algo.expectile must be in \(0, 1\), got 1.0"),
        (["network.hidden_sizes=[64,0]"], r"each of network.hidden_sizes must be > 0, got \[64, 0\]"),
        (["algo=option_critic", "env=four_rooms", "algo.n_options=0"], "algo.n_options must be ≥ 1, got 0"),
        (
            ["env=pendulum", "algo=sac", "env.max_episode_steps=0", "device.threads=-1"],
            "device.threads must be ≥ 0, got -1 \\(and 1 more: env.max_episode_steps must be > 0, got 0\\)",
        ),
        (["algo=option_critic", "dataset=door"], "OptionCritic learns online and needs an environment"),
        (["algo=rebrac", "env=pendulum"], "ReBRAC learns from datasets only: add dataset="),
        (["algo=sac", "env=pendulum", "env.id=Pendulm-v1"], "unknown env id Pendulm-v1: .* did you mean Pendulum-v1"),
        (["algo=sac", "env=pendulum", "env.id=nomodule:Foo-v0"], "cannot import nomodule"),
    ],
)
def test_preflight_errors(overrides, message):
    with pytest.raises(UserError, match=message):
        check_config(make_cfg(*overrides))


@pytest.mark.parametrize(
    "args,expected",
    [
        (["algo=sac", "env=pendulum", "foo=1"], "foo"),
        (["trainer.total_steps=abc"], "total_steps"),
        (["algo=nope"], "algo/nope"),
        (["algo=sac", "env=pendulum", "dataset=pendulum"], "both env= and dataset="),
        pytest.param(
            ["algo=sac", "env=pendulum", "device=cuda"],
            "no CUDA GPU",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present"),
        ),
        (["algo=sac", "env=pendulum", "trainer.total_steps=-1"], "trainer.total_steps must be > 0, got -1"),
        (["resume=/nonexistent/run"], "holds no readable checkpoint"),
        (["algo=sac", "env=cartpole"], "SAC does not support discrete actions"),
        (["algo=option_critic", "dataset=door"], "learns online and needs an environment: add env="),
        (["algo=soft_option_critic", "env=cartpole"], "SoftOptionCritic does not support discrete actions"),
        (["algo=sac", "env=pendulum", "device=cpu", "device.cpu_matmul=fast"], "unknown device.cpu_matmul='fast'"),
        (["+algo.foo=1"], "+algo.foo adds a setting rlrun does not declare; the keys of algo are: _target_, act_dim"),
        (["algo=sac", "env=pendulum", "network.activation=swish"], "unknown activation 'swish'"),
        (["algo=iql", "dataset=pendulum_medium", "algo.actor_lr=-0.1"], "algo.actor_lr must be > 0, got -0.1"),
        (["algo=sac", "env=pendulum", "env.id=Pendulm-v1"], "did you mean Pendulum-v1"),
        (["algo=sac", "env=pendulum", "env.max_episode_steps=0"], "env.max_episode_steps must be > 0, got 0"),
        # checked after the dataset loads, before any network is built
        (
            [
                "algo=bc",
                "dataset=pendulum",
                "dataset.id=test/pendulum/random-v0",
                "dataset.builder=null",
                "trainer.batch_size=5000",
            ],
            "trainer.batch_size=5000 is larger than dataset test/pendulum/random-v0 (1000 transitions)",
        ),
    ],
)
def test_cli_rejects_bad_input_with_clear_message(tmp_path, args, expected, pendulum_dataset):
    start = time.time()
    result = rlrun(*args, cwd=tmp_path, timeout=60)
    # start-up only (imports, composition, at most a small dataset's load): ≈ 5 s idle, up to ≈ 12 s on a
    # machine busy with two other runs; the runs these errors stop would take minutes
    assert time.time() - start < 25
    assert result.returncode == 2
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("checkpoints")), "left a run behind"
    assert expected in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_cfg_job_prints_door_settings(tmp_path):
    result = rlrun("algo=cql", "dataset=door", "--cfg", "job", cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "D4RL/door/human-v2" in result.stdout and "cql_alpha: 1.0" in result.stdout
    assert not (tmp_path / "outputs").exists()


def test_dataset_whose_spaces_do_not_match_its_env(tmp_path):
    import gymnasium as gym
    import minari
    import numpy as np
    from minari.data_collector import EpisodeBuffer

    obs = np.zeros((11, 4), np.float32)  # Pendulum observations have 3 numbers
    buffer = EpisodeBuffer(
        id=0,
        observations=obs,
        actions=np.zeros((10, 1), np.float32),
        rewards=np.zeros(10),
        terminations=np.zeros(10, bool),
        truncations=np.eye(10, dtype=bool)[-1],
    )
    minari.create_dataset_from_buffers(
        "test/mismatch/bad-v0",
        [buffer],
        env=gym.spec("Pendulum-v1"),
        observation_space=gym.spaces.Box(-1, 1, (4,)),
        action_space=gym.spaces.Box(-2, 2, (1,)),
    )
    result = rlrun(
        "algo=cql", "dataset=pendulum", "dataset.id=test/mismatch/bad-v0", "dataset.builder=null", cwd=tmp_path, timeout=60
    )
    assert result.returncode == 2
    assert "has observation space" in result.stderr and "rebuild the dataset" in result.stderr


def test_device_auto_falls_back_to_cpu_with_a_log_line(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    result = rlrun("algo=sac", "env=pendulum", "dry_run=true", cwd=tmp_path, timeout=60)
    assert result.returncode == 0 and "device=auto: using cpu" in result.stdout + result.stderr
    assert "CPU fp32 critic matmuls: " in result.stdout + result.stderr  # device.cpu_matmul=auto chose and said which


def saved_run(tmp_path: Path, edit) -> Path:
    """A run directory whose checkpoint holds the resolved config of an online SAC run, edited."""
    from omegaconf import OmegaConf

    from rlrun import checkpoint

    config = OmegaConf.to_container(make_cfg("algo=sac", "env=pendulum"), resolve=True)
    edit(config)
    checkpoint.save(tmp_path / "checkpoints", 5, {"config": config, "step": 5}, keep=1)
    return tmp_path


def test_resume_fills_settings_added_after_the_checkpoint_was_written(tmp_path):
    """A run saved by an older rlrun (no device.keep_freed_memory, no algo.backup_entropy) resumes
    with this version's defaults for them, and keeps what it saved."""
    from rlrun.build import load_resume

    def older(config):
        del config["device"]["keep_freed_memory"], config["algo"]["backup_entropy"]
        config["algo"]["tau"] = 0.01

    run_dir = saved_run(tmp_path, older)
    cfg, state = load_resume(make_cfg("algo=sac", "env=pendulum", f"resume={run_dir}"), run_dir, ["trainer.total_steps=77"])
    assert state["step"] == 5
    assert cfg.device.keep_freed_memory is True and cfg.algo.backup_entropy is True
    assert cfg.algo.tau == 0.01 and cfg.trainer.total_steps == 77 and cfg.env.id == "Pendulum-v1"


def test_resume_of_a_config_this_version_cannot_read_is_a_user_error(tmp_path):
    from rlrun.build import load_resume

    run_dir = saved_run(tmp_path, lambda config: config["algo"].update(old_setting=3))
    with pytest.raises(UserError, match="does not fit this rlrun version .*old_setting"):
        load_resume(make_cfg("algo=sac", "env=pendulum", f"resume={run_dir}"), run_dir, [])


def test_resume_checks_the_type_of_its_trainer_overrides(tmp_path):
    from rlrun.build import load_resume

    run_dir = saved_run(tmp_path, lambda config: None)
    with pytest.raises(UserError, match="bad override on resume: .*total_steps"):
        load_resume(make_cfg("algo=sac", "env=pendulum", f"resume={run_dir}"), run_dir, ["trainer.total_steps=many"])


def test_resume_takes_device_overrides_and_refuses_to_drop_the_others(tmp_path):
    """Where a run goes on (device.*) may change on resume; what it learns may not, and an
    override of it is an error rather than silently ignored."""
    from rlrun.build import load_resume

    run_dir = saved_run(tmp_path, lambda config: None)
    cfg = make_cfg("algo=sac", "env=pendulum", f"resume={run_dir}")
    resumed, _ = load_resume(cfg, run_dir, [f"resume={run_dir}", "device.threads=1", "device.name=cpu"])
    assert resumed.device.threads == 1 and resumed.device.name == "cpu" and resumed.algo.tau == 0.005
    with pytest.raises(UserError, match=r"algo.tau=0.01 cannot apply; only trainer.\* and device.\*"):
        load_resume(cfg, run_dir, [f"resume={run_dir}", "algo.tau=0.01", "trainer.total_steps=9"])
    requeued, _ = load_resume(make_cfg("algo=sac", "env=pendulum"), run_dir, ["algo=sac", "env=pendulum"])
    assert requeued.resume == str(run_dir)


def test_meta_world_evaluation_episodes_repeat_for_a_seed():
    """MT1's object/goal placements come from the run's seed: two eval envs of the same run,
    reset with the same seed, start from the same placement (else evaluations are incomparable)."""
    from rlrun.build import make_source

    cfg = make_cfg("algo=soft_option_critic", "env=pick_place", "seed=3", "trainer.replay_size=1000")
    starts = [make_source(cfg, torch.device("cpu")).make_eval_env(10003).reset(seed=10004)[0] for _ in range(2)]
    np.testing.assert_array_equal(starts[0], starts[1])
