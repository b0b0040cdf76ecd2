"""Reliability: exact resume, damaged checkpoints, the non-finite guard, signals, unique run dirs."""

from __future__ import annotations

import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import make_cfg, rlrun
from hydra.utils import get_class

from rlrun import checkpoint, onednn
from rlrun.build import make_algo, make_source, run
from rlrun.logger import Logger
from rlrun.resolvers import claim_dir
from rlrun.schema import ALGO_SCHEMAS
from rlrun.trainer import NonFiniteError, Schedule, Trainer

# one CPU matmul backend for every run: auto times the two at start, and two runs of a busy machine may choose apart
SMALL = [
    "network.hidden_sizes=[32,32]",
    "trainer.progress=false",
    "trainer.eval_episodes=1",
    "trainer.log_every=50",
    "device.cpu_matmul=blas",
]
ONLINE = [
    "algo=sac",
    "env=pendulum",
    "trainer.learning_starts=100",
    "trainer.eval_every=200",
    "trainer.checkpoint_every=100",
    *SMALL,
]
OFFLINE = [
    "algo=cql",
    "dataset=pendulum",
    "dataset.id=test/pendulum/random-v0",
    "dataset.builder=null",
    "trainer.batch_size=256",  # ReBRAC's Pendulum preset asks 1024, more than the test dataset holds
    "trainer.eval_every=200",
    "trainer.checkpoint_every=100",
    *SMALL,
]


def final_weights(run_dir: Path) -> dict:
    return checkpoint.read(run_dir / "checkpoints" / "last.pt")["algo"]


OPTIONS = [
    "algo=option_critic",
    "env=four_rooms",
    "trainer.learning_starts=100",
    "trainer.eval_every=200",
    "trainer.checkpoint_every=100",
    "trainer.batch_size=32",
    *SMALL,
]


def assert_identical(a, b, name: str = "algo") -> None:
    """Every tensor of two collected algorithm states (modules, optimizers, counters) is equal."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{name} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), name
        for key in a:
            assert_identical(a[key], b[key], f"{name}.{key}")


def resume_cases() -> dict[str, list[str]]:
    """Every registered algorithm on data it learns from; SAC online too."""
    cases = {"online_sac": ONLINE, "option_critic": OPTIONS, "soft_option_critic": [*ONLINE, "algo=soft_option_critic"]}
    for name, schema in ALGO_SCHEMAS.items():
        if not get_class(schema._target_).online_only:
            cases[f"offline_{name}"] = [*OFFLINE, f"algo={name}"]
    # the split run stops at 200 of 400 updates: IQL's schedule must span the 400 in both runs
    cases["offline_iql"].append("algo.lr_schedule_steps=400")
    return cases


RESUME_CASES = resume_cases()


@pytest.mark.parametrize("args", RESUME_CASES.values(), ids=RESUME_CASES.keys())
def test_stop_and_resume_is_bit_identical(tmp_path, args, pendulum_dataset):
    torch.set_num_threads(1)
    run(make_cfg(*args, "trainer.total_steps=400"), tmp_path / "straight")
    run(make_cfg(*args, "trainer.total_steps=200"), tmp_path / "split")
    resumed = make_cfg(*args, f"resume={tmp_path / 'split'}")
    run(resumed, tmp_path / "split", ["trainer.total_steps=400"])
    assert_identical(final_weights(tmp_path / "straight"), final_weights(tmp_path / "split"))


def test_resume_keeps_the_cpu_matmul_its_run_chose(tmp_path, pendulum_dataset):
    """A run started on torch's BLAS resumes on it although device.cpu_matmul=auto would time and pick afresh."""
    torch.set_num_threads(1)
    run(make_cfg(*OFFLINE, "trainer.total_steps=400", "device.cpu_matmul=blas"), tmp_path / "straight")
    run(make_cfg(*OFFLINE, "trainer.total_steps=200", "device.cpu_matmul=blas"), tmp_path / "split")
    assert checkpoint.read(tmp_path / "split" / "checkpoints" / "last.pt")["cpu_matmul"] == "blas"
    onednn.use("onednn" if onednn.available() else "blas")  # what auto may pick in a new process
    run(
        make_cfg(*OFFLINE, f"resume={tmp_path / 'split'}"),
        tmp_path / "split",
        ["trainer.total_steps=400", "device.cpu_matmul=auto"],
    )
    assert onednn.current() == "blas"
    assert_identical(final_weights(tmp_path / "straight"), final_weights(tmp_path / "split"))


@pytest.mark.slow
@pytest.mark.parametrize("args", [ONLINE, OFFLINE], ids=["online_sac", "offline_cql"])
def test_sigkill_at_random_steps_then_resume_is_bit_identical(tmp_path, args, pendulum_dataset):
    """Kill -9 three times at random moments; each time resume; final weights equal a straight run."""
    common = [*args, "trainer.total_steps=1500", "device.threads=1"]
    straight = tmp_path / "straight"
    assert rlrun(*common, f"hydra.run.dir={straight}", cwd=tmp_path).returncode == 0
    killed = tmp_path / "killed"
    on_resume = [a for a in common if a.startswith(("trainer.", "device."))]  # resume refuses the others
    rng = random.Random(0)
    for attempt in range(3):
        run_args = [*on_resume, f"resume={killed}"] if attempt else [*common, f"hydra.run.dir={killed}"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "rlrun.cli", *run_args], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(6, 12))
        proc.kill()
        proc.wait()
    done = rlrun(*on_resume, f"resume={killed}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert_identical(final_weights(straight), final_weights(killed))


def test_temp_files_of_a_killed_writer_are_removed_by_the_next_save(tmp_path):
    checkpoint.save(tmp_path, 1, {"step": 1}, keep=3)
    (tmp_path / ".step_2.pt.tmp999999").write_bytes(b"partial")  # what a kill -9 mid-write leaves
    checkpoint.save(tmp_path, 2, {"step": 2}, keep=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "step_1.pt", "step_2.pt"]


def test_damaged_checkpoints_fall_back_to_newest_good(tmp_path, caplog):
    for step in (1, 2, 3):
        checkpoint.save(tmp_path, step, {"step": step}, keep=3)
    (tmp_path / "last.pt").write_bytes((tmp_path / "last.pt").read_bytes()[:20])  # truncated inside the header
    damaged = bytearray((tmp_path / "step_3.pt").read_bytes())
    damaged[-10] ^= 0xFF  # one flipped byte
    (tmp_path / "step_3.pt").write_bytes(bytes(damaged))
    state, path = checkpoint.load_latest(tmp_path)
    assert state["step"] == 2 and path.name == "step_2.pt"
    assert "damaged" in caplog.text and "truncated" in caplog.text


def test_rotation_keeps_newest_and_never_leaves_none(tmp_path):
    for step in range(1, 6):
        checkpoint.save(tmp_path, step, {"step": step}, keep=1)
        assert checkpoint.load_latest(tmp_path)[0]["step"] == step
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "step_5.pt"]


def test_non_finite_loss_stops_with_step_and_term_and_keeps_good_checkpoint(tmp_path, pendulum_dataset):
    cfg = make_cfg(*OFFLINE, "trainer.total_steps=400", "trainer.checkpoint_every=100")
    device = torch.device("cpu")
    source = make_source(cfg, device)
    algo = make_algo(cfg, source.spaces, device)
    update = algo.update

    def poisoned(batch):
        metrics = update(batch)
        if trainer.step >= 130:
            with torch.no_grad():
                next(algo.critic.parameters()).fill_(float("nan"))
        return metrics

    algo.update = poisoned
    schedule = Schedule(400, 32, 200, 1, 50, 100, 3, False)
    trainer = Trainer(algo, source, Logger(tmp_path), tmp_path, schedule, 0, {}, device)
    with pytest.raises(NonFiniteError, match=r"step 150 in .*critic"):
        trainer.run()
    assert checkpoint.load_latest(tmp_path / "checkpoints")[0]["step"] == 100
    assert not (tmp_path / "checkpoints" / "step_200.pt").exists()


def test_cli_non_finite_message_and_exit(tmp_path, pendulum_dataset):
    result = rlrun(*OFFLINE, "trainer.total_steps=100", "dataset.reward_scale=nan", cwd=tmp_path)
    assert result.returncode == 2
    assert "non-finite values at step 50" in result.stderr and "Traceback" not in result.stderr


def signal_when_running(args: list[str], run_dir: Path, started: str, sig: int) -> tuple[int, str]:
    """Start `rlrun *args` in run_dir, send `sig` a few seconds after `started` (a glob in run_dir) exists;
    its exit status and its output (Hydra's console log handler writes to stdout)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlrun.cli", *args, f"hydra.run.dir={run_dir}"],
        cwd=run_dir.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while not list(run_dir.glob(started)) and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(3)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out + err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_checkpoint_and_exits_nonzero(tmp_path, sig):
    run_dir = tmp_path / "run"
    code, err = signal_when_running([*ONLINE, "trainer.total_steps=100000"], run_dir, "events.out.tfevents.*", sig)
    assert code == 128 + sig, err[-2000:]
    state = checkpoint.read(run_dir / "checkpoints" / "last.pt")
    assert state["step"] > 0
    assert f"signal {int(sig)}: checkpoint written at step {state['step']}" in err


def test_full_disk_at_a_checkpoint_is_a_clear_error_and_keeps_the_older_ones(tmp_path):
    """A file-size limit makes the OS refuse the write, as a full disk does: step 500's checkpoint
    (about 115 kB) fits under it, step 1000's (about 136 kB) does not."""
    run_dir = tmp_path / "run"
    args = [
        sys.executable,
        "-m",
        "rlrun.cli",
        *ONLINE,
        "trainer.eval_every=1000",
        "trainer.checkpoint_every=500",
        "trainer.total_steps=1500",
        f"hydra.run.dir={run_dir}",
    ]
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (125_000, 125_000))  # noqa: E731
    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300, preexec_fn=limit)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "cannot write the step 1000 checkpoint" in result.stderr and f"resume={run_dir}" in result.stderr
    assert "Traceback" not in result.stderr
    ckpt_dir = run_dir / "checkpoints"
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["last.pt", "step_500.pt"]  # no partial temp file
    assert checkpoint.load_latest(ckpt_dir)[0]["step"] == 500


def test_runs_in_the_same_second_get_distinct_directories(tmp_path):
    target = str(tmp_path / "outputs" / "sac" / "pendulum" / "2026-01-01_00-00-00")
    dirs = {claim_dir(target) for _ in range(3)}
    assert len(dirs) == 3 and all(Path(d).is_dir() for d in dirs)


def test_unwritable_output_directory_is_a_clear_error(tmp_path):
    (tmp_path / "a_file").write_text("not a directory")
    result = rlrun("algo=sac", "env=pendulum", "hydra.run.dir=a_file/run", cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert "cannot create the output directory a_file/run" in result.stderr and "Traceback" not in result.stderr
