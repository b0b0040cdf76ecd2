"""Offline-to-online fine-tuning: the switch, the batch mix, exact resume across it, and bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import make_cfg, rlrun, write_random_dataset
from test_reliability import assert_identical, final_weights

from rlrun import checkpoint
from rlrun.algos.base import Batch
from rlrun.build import run
from rlrun.data.offline import FinetuneSource
from rlrun.trainer import SignalExit, Trainer

FINETUNE = [
    "algo=iql",
    "dataset=pendulum",
    "dataset.id=test/pendulum/random-v0",
    "dataset.builder=null",
    "network.hidden_sizes=[32,32]",
    "trainer.total_steps=200",
    "trainer.eval_every=100",
    "trainer.eval_episodes=1",
    "trainer.checkpoint_every=50",
    "trainer.log_every=50",
    "trainer.progress=false",
    "algo.lr_schedule_steps=200",
    "device=cpu",
    "device.cpu_matmul=blas",
]


def test_the_switch_comes_after_the_offline_updates_and_collects_one_transition_per_step(tmp_path, pendulum_dataset):
    run(make_cfg(*FINETUNE, "trainer.finetune_steps=250", "trainer.updates_per_step=2"), tmp_path / "run")
    state = checkpoint.read(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["step"] == 450 and state["source"]["online"]
    assert state["source"]["env"]["replay"]["size"] == 250  # env steps 201 ... 450
    assert int(state["algo"]["actor_schedule"]["last_epoch"]) == 200 + 2 * 250  # two updates per env step online


class Stub:
    """A source whose batches are all `value` (the dataset: 0, the replay: 1)."""

    def __init__(self, value: float) -> None:
        self.value = value
        self.replay = SimpleNamespace(size=0)  # transitions stored (the online side's replay)

    def sample(self, n: int) -> Batch:
        x = torch.full((n, 3), self.value)
        return Batch(x, x[:, :1], x[:, 0], x, x[:, 0])

    def as_learned(self, batch: Batch) -> Batch:
        return batch


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 0.9, 1.0])
def test_online_batches_mix_dataset_and_new_transitions_in_the_asked_ratio(ratio):
    data = Stub(0.0)
    data.spaces, data.size, data.obs_mean, data.obs_std = None, 10, 0.0, 1.0
    source = FinetuneSource(data, Stub(1.0), switch_step=10, offline_ratio=ratio, warmup=0)
    source.step(None, 10)
    assert (source.sample(256).obs[:, 0] == 0).all()  # offline phase: the dataset only
    source.env.step = lambda algo, step: {}
    source.step(None, 11)
    shares = [(source.sample(256).obs[:, 0] == 0).float().mean().item() for _ in range(50)]
    assert np.mean(shares) == pytest.approx(round(ratio * 256) / 256)


def test_batches_come_wholly_from_the_dataset_until_the_warmup_transitions_are_stored():
    data, online = Stub(0.0), Stub(1.0)
    data.spaces, data.size, data.obs_mean, data.obs_std = None, 10, 0.0, 1.0
    online.step = lambda algo, step: {}
    source = FinetuneSource(data, online, switch_step=10, offline_ratio=0.25, warmup=5)
    source.step(None, 11)
    online.replay.size = 4
    assert (source.sample(256).obs[:, 0] == 0).all()
    online.replay.size = 5
    assert (source.sample(256).obs[:, 0] == 1).sum() == 256 - 64


@pytest.mark.parametrize("stop", [150, 300], ids=["stopped_offline", "stopped_online"])
def test_stop_and_resume_on_either_side_of_the_switch_is_bit_identical(tmp_path, pendulum_dataset, monkeypatch, stop):
    """A SIGTERM at `stop` (checkpoint, exit), then `rlrun resume=...`, ends as the straight run does."""
    torch.set_num_threads(1)
    args = [*FINETUNE, "trainer.finetune_steps=200"]
    run(make_cfg(*args), tmp_path / "straight")
    iteration = Trainer._iteration

    def signalled_at_stop(self, metrics, timer):
        if self.step == stop:
            self._signal = signal.SIGTERM  # as the handler records it; the loop saves and exits
        return iteration(self, metrics, timer)

    monkeypatch.setattr(Trainer, "_iteration", signalled_at_stop)
    with pytest.raises(SignalExit):
        run(make_cfg(*args), tmp_path / "split")
    monkeypatch.setattr(Trainer, "_iteration", iteration)
    assert checkpoint.read(tmp_path / "split" / "checkpoints" / "last.pt")["step"] == stop
    run(make_cfg(*args, f"resume={tmp_path / 'split'}"), tmp_path / "split")
    assert_identical(final_weights(tmp_path / "straight"), final_weights(tmp_path / "split"))


def test_a_dataset_whose_env_cannot_be_made_stops_at_start(tmp_path, minari_store):
    """Fine-tuning (and evaluation) need the dataset's env: a run stops in one sentence when it cannot be made."""
    write_random_dataset("test/missing/env-v0", "Pendulum-v1", episodes=1, max_steps=20)
    broken = gym.envs.registration.EnvSpec("RlrunTestMissing-v0", entry_point="rlrun_no_such_module:Env", max_episode_steps=20)
    metadata_file = minari_store / "test" / "missing" / "env-v0" / "data" / "metadata.json"
    metadata = json.loads(metadata_file.read_text())
    metadata["env_spec"] = metadata["eval_env_spec"] = broken.to_json()  # as if written where that package exists
    metadata_file.write_text(json.dumps(metadata))
    result = rlrun("algo=iql", "dataset=minari", "dataset.id=test/missing/env-v0", "trainer.finetune_steps=10", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "records the env RlrunTestMissing-v0, which cannot be made here" in result.stderr
    assert "Traceback" not in result.stderr


def kill_after_checkpoint(run_args: list[str], cwd, ckpt_dir, at_least: int) -> int:
    """Start `rlrun` and kill -9 it once a checkpoint of step ≥ at_least is written; the newest step then."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlrun.cli", *run_args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        steps = [s for s, _ in checkpoint.step_files(ckpt_dir)] if ckpt_dir.is_dir() else []
        if steps and max(steps) >= at_least:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    return checkpoint.read(ckpt_dir / "last.pt")["step"]


@pytest.mark.slow
def test_sigkill_in_each_phase_then_resume_is_bit_identical(tmp_path, pendulum_dataset):
    """Cal-QL fine-tuning killed with -9 once offline and once online, resumed each time, ends as a straight run."""
    common = [
        *(a for a in FINETUNE if not a.startswith(("algo=", "algo.lr_schedule"))),
        "algo=cal_ql",
        "algo.n_actions=4",
        "trainer.total_steps=600",
        "trainer.finetune_steps=600",
        "trainer.checkpoint_every=100",
        "device.threads=1",
    ]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert rlrun(*common, f"hydra.run.dir={straight}", cwd=tmp_path).returncode == 0
    on_resume = [a for a in common if a.startswith(("trainer.", "device."))]  # resume refuses the others
    ckpts = killed / "checkpoints"
    offline_step = kill_after_checkpoint([*common, f"hydra.run.dir={killed}"], tmp_path, ckpts, 200)
    online_step = kill_after_checkpoint([*on_resume, f"resume={killed}"], tmp_path, ckpts, 800)
    assert offline_step < 600 < online_step < 1200  # one kill in each phase, before the end
    done = rlrun(*on_resume, f"resume={killed}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert_identical(final_weights(straight), final_weights(killed))
