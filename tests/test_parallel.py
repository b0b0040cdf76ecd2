"""Parallel seeds (trainer.parallel_seeds): each member learns exactly as its own run would, in a
multirun's layout, and stops and resumes exactly."""

from __future__ import annotations

import signal

import pytest
import torch
from conftest import make_cfg, rlrun
from hydra.utils import get_class
from omegaconf import OmegaConf
from test_cli import scalars
from test_reliability import OFFLINE, ONLINE, assert_identical, signal_when_running

from rlrun import checkpoint, report
from rlrun.build import make_algo, make_members, make_source, run, seed_everything
from rlrun.errors import UserError
from rlrun.members import member_tensors
from rlrun.rollout import read_checkpoint
from rlrun.schema import ALGO_SCHEMAS

OFFLINE_ALGOS = [name for name, schema in ALGO_SCHEMAS.items() if not get_class(schema._target_).online_only]
UPDATES, BATCH = 100, 64


@pytest.mark.parametrize("name", OFFLINE_ALGOS)
def test_each_member_learns_exactly_as_its_own_run(name, pendulum_dataset):
    """Two members (seeds 3 and 4) against two separate runs: every logged loss of the first 100
    updates, and every parameter after them, within floating-point tolerance."""
    torch.set_num_threads(1)
    cfg = make_cfg(*OFFLINE, f"algo={name}", "seed=3", "algo.actor_dropout=0.1" if name == "iql" else "seed=3")
    device = torch.device("cpu")
    source = make_source(cfg, device)
    members = make_members(cfg, source.spaces, device, seed=3, k=2)
    for shell in members.shells:
        shell.obs_norm.set(source.obs_mean, source.obs_std)
    members.gather()
    together = [members.update(members.sample([source, source], BATCH)) for _ in range(UPDATES)]
    members.scatter()
    for k in range(2):
        seed_everything(3 + k)
        alone = make_algo(cfg, source.spaces, device)
        alone.obs_norm.set(source.obs_mean, source.obs_std)
        for step in range(UPDATES):
            for key, value in alone.update(source.sample(BATCH)).items():
                torch.testing.assert_close(together[step][key][k], value, rtol=1e-3, atol=1e-4, msg=f"{key} at {step}")
        shell = member_tensors(members.shells[k])
        for path, value in member_tensors(alone).items():
            torch.testing.assert_close(shell[path], value, rtol=1e-4, atol=1e-5, msg=path)
    first, second = member_tensors(members.shells[0]), member_tensors(members.shells[1])
    assert not torch.equal(first["actor.net.0.weight"], second["actor.net.0.weight"])  # two seeds, two agents


def test_a_parallel_run_is_a_multirun_of_its_members(tmp_path, pendulum_dataset):
    """seed_<s>/ per member with its config, TensorBoard run and checkpoints; the report groups them as one
    configuration's seeds; the middle member's run equals the separate run with its seed."""
    torch.set_num_threads(1)
    args = [*OFFLINE, "algo=td3_bc", "trainer.total_steps=200", "trainer.eval_every=100"]
    run(make_cfg(*args, "seed=5", "trainer.parallel_seeds=3"), tmp_path / "sweep" / "parallel")
    run(make_cfg(*args, "seed=6"), tmp_path / "alone")
    parallel = tmp_path / "sweep" / "parallel"
    assert sorted(p.name for p in parallel.glob("seed_*")) == ["seed_5", "seed_6", "seed_7"]
    for seed in (5, 6, 7):
        member = parallel / f"seed_{seed}"
        assert OmegaConf.load(member / ".hydra" / "config.yaml").seed == seed
        assert list(member.glob("events.out.tfevents.*"))
        assert checkpoint.read(member / "checkpoints" / "last.pt")["config"]["seed"] == seed
    runs = report.find_runs(tmp_path / "sweep", ["eval/return_mean"])
    groups = report.group_runs(runs)
    assert len(runs) == 3 and len(groups) == 1
    together = checkpoint.read(parallel / "seed_6" / "checkpoints" / "last.pt")
    alone = checkpoint.read(tmp_path / "alone" / "checkpoints" / "last.pt")
    assert torch.equal(together["rng"]["torch"], alone["rng"]["torch"])
    for name in ("actor", "critic"):
        for key, value in alone["algo"][name].items():
            torch.testing.assert_close(together["algo"][name][key], value, rtol=1e-4, atol=1e-5)
    assert together["last_eval"]["eval/return_mean"] == pytest.approx(alone["last_eval"]["eval/return_mean"], rel=1e-3)


def test_online_members_each_collect_and_learn_as_their_own_run(tmp_path):
    """Online SAC, K=2: each member acts in its own env and learns from its own replay; member seed 1
    ends where a separate seed=1 run ends (random state, replay, parameters, episode returns)."""
    torch.set_num_threads(1)
    args = [*ONLINE, "trainer.total_steps=300", "trainer.eval_every=150"]
    run(make_cfg(*args, "seed=0", "trainer.parallel_seeds=2"), tmp_path / "parallel")
    run(make_cfg(*args, "seed=1"), tmp_path / "alone")
    together = checkpoint.read(tmp_path / "parallel" / "seed_1" / "checkpoints" / "last.pt")
    alone = checkpoint.read(tmp_path / "alone" / "checkpoints" / "last.pt")
    first = checkpoint.read(tmp_path / "parallel" / "seed_0" / "checkpoints" / "last.pt")
    assert torch.equal(together["rng"]["torch"], alone["rng"]["torch"])
    replay = together["source"]["replay"]
    torch.testing.assert_close(replay["data"]["obs"], alone["source"]["replay"]["data"]["obs"], rtol=1e-4, atol=1e-4)
    assert not torch.equal(replay["data"]["obs"], first["source"]["replay"]["data"]["obs"])  # two envs, two seeds
    for name in ("actor", "critic"):
        for key, value in alone["algo"][name].items():
            torch.testing.assert_close(together["algo"][name][key], value, rtol=1e-3, atol=1e-4)
    assert together["last_eval"]["eval/return_mean"] == pytest.approx(alone["last_eval"]["eval/return_mean"], rel=1e-2)
    returns = [e.value for e in scalars(tmp_path / "parallel" / "seed_1")["train/episode_return"]]
    assert returns == pytest.approx([e.value for e in scalars(tmp_path / "alone")["train/episode_return"]], rel=1e-3)


def test_online_parallel_resume_continues_every_members_episode(tmp_path):
    torch.set_num_threads(1)
    args = [*ONLINE, "trainer.parallel_seeds=2", "trainer.eval_every=150"]
    run(make_cfg(*args, "trainer.total_steps=300"), tmp_path / "straight")
    run(make_cfg(*args, "trainer.total_steps=150"), tmp_path / "split")
    run(make_cfg(f"resume={tmp_path / 'split'}"), tmp_path / "split", ["trainer.total_steps=300"])
    for seed in (0, 1):
        straight = checkpoint.read(tmp_path / "straight" / f"seed_{seed}" / "checkpoints" / "last.pt")
        split = checkpoint.read(tmp_path / "split" / f"seed_{seed}" / "checkpoints" / "last.pt")
        assert split["step"] == 300
        assert_identical(straight["algo"], split["algo"], f"seed_{seed}")
        assert torch.equal(straight["source"]["replay"]["data"]["obs"], split["source"]["replay"]["data"]["obs"])


def test_parallel_stop_and_resume_is_bit_identical(tmp_path, pendulum_dataset):
    torch.set_num_threads(1)
    args = [*OFFLINE, "algo=td3_bc", "trainer.parallel_seeds=3", "trainer.eval_every=100"]
    run(make_cfg(*args, "trainer.total_steps=200"), tmp_path / "straight")
    run(make_cfg(*args, "trainer.total_steps=100"), tmp_path / "split")
    run(make_cfg(f"resume={tmp_path / 'split'}"), tmp_path / "split", ["trainer.total_steps=200"])
    for seed in (0, 1, 2):
        straight = checkpoint.read(tmp_path / "straight" / f"seed_{seed}" / "checkpoints" / "last.pt")
        split = checkpoint.read(tmp_path / "split" / f"seed_{seed}" / "checkpoints" / "last.pt")
        assert split["step"] == 200
        assert_identical(straight["algo"], split["algo"], f"seed_{seed}")


def test_resume_takes_the_newest_step_that_every_member_holds(tmp_path, pendulum_dataset):
    """A kill between two members' checkpoints leaves them one step apart: the run resumes from the older."""
    torch.set_num_threads(1)
    run(make_cfg(*OFFLINE, "algo=bc", "trainer.parallel_seeds=2", "trainer.total_steps=200"), tmp_path / "run")
    newest = tmp_path / "run" / "seed_1" / "checkpoints"
    (newest / "step_200.pt").unlink()
    (newest / "last.pt").unlink()
    run(make_cfg(f"resume={tmp_path / 'run'}"), tmp_path / "run", ["trainer.total_steps=300"])
    for seed in (0, 1):
        assert checkpoint.read(tmp_path / "run" / f"seed_{seed}" / "checkpoints" / "last.pt")["step"] == 300


def test_sigterm_saves_every_member_at_one_step(tmp_path, pendulum_dataset):
    run_dir = tmp_path / "run"
    args = [*OFFLINE, "trainer.parallel_seeds=2", "trainer.total_steps=100000", "trainer.checkpoint_every=100000"]
    code, out = signal_when_running(args, run_dir, "seed_1/events.out.tfevents.*", signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, out[-2000:]
    steps = {checkpoint.read(run_dir / f"seed_{s}" / "checkpoints" / "last.pt")["step"] for s in (0, 1)}
    assert len(steps) == 1 and steps.pop() > 0
    assert "checkpoints of all members written" in out


@pytest.mark.parametrize(
    "args, message",
    [
        ([*OFFLINE, "trainer.parallel_seeds=0"], "trainer.parallel_seeds"),
        (["algo=option_critic", "env=cartpole", "trainer.parallel_seeds=2"], "OptionCritic here cannot"),
        (["algo=soft_option_critic", "env=pendulum", "trainer.parallel_seeds=2"], "SoftOptionCritic here cannot"),
        ([*OFFLINE, "trainer.finetune_steps=100", "trainer.parallel_seeds=2"], "no fine-tuning"),
        ([*ONLINE, "trainer.save_buffer=true", "trainer.parallel_seeds=2"], "trainer.save_buffer"),
        ([*OFFLINE, "device.compile=true", "trainer.parallel_seeds=2"], "device.compile"),
    ],
    ids=["below_one", "option_critic", "soft_option_critic", "finetune", "save_buffer", "compile"],
)
def test_unsupported_parallel_seeds_stop_with_one_sentence(tmp_path, args, message, pendulum_dataset):
    with pytest.raises(UserError, match=message) as e:
        run(make_cfg(*args, "trainer.total_steps=10"), tmp_path / "run")
    assert str(e.value).count(". ") == 0 and str(e.value).endswith(".")


def test_resuming_one_member_alone_names_the_whole_run(tmp_path, pendulum_dataset):
    run(make_cfg(*OFFLINE, "algo=bc", "trainer.parallel_seeds=2", "trainer.total_steps=100"), tmp_path / "run")
    with pytest.raises(UserError, match="one member of a parallel-seeds run"):
        run(make_cfg(f"resume={tmp_path / 'run' / 'seed_1'}"), tmp_path / "run" / "seed_1")


def test_a_sweep_of_parallel_runs_reports_every_agent_in_one_group(tmp_path, pendulum_dataset):
    """`rlrun -m seed=0,2 trainer.parallel_seeds=2`: 4 agents from 2 processes, one group in the report;
    the policy tools take an agent's directory and name it when given the run's."""
    args = [*OFFLINE, "algo=bc", "trainer.total_steps=50", "trainer.eval_every=50"]
    result = rlrun("-m", *args, "seed=0,2", "trainer.parallel_seeds=2", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = report.find_runs(tmp_path / "sweep", ["eval/return_mean"])
    assert sorted(r.path.relative_to(tmp_path / "sweep").as_posix() for r in runs) == [
        "0/seed_0",
        "0/seed_1",
        "1/seed_2",
        "1/seed_3",
    ]
    assert len(report.group_runs(runs)) == 1
    with pytest.raises(UserError, match="seed_<s>/ directories"):
        read_checkpoint(tmp_path / "sweep" / "0", None)
    assert read_checkpoint(tmp_path / "sweep" / "0" / "seed_1", None)[0]["config"]["seed"] == 1
