"""Sweeps and results: multirun with the real launchers and sweeper, requeue → resume, the report,
the dry run and the catalogue."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import rlrun

from rlrun import checkpoint
from rlrun.report import iqm, iqm_with_ci

TINY = [
    "trainer.learning_starts=50",
    "trainer.eval_every=100",
    "trainer.eval_episodes=1",
    "trainer.log_every=50",
    "trainer.progress=false",
    "network.hidden_sizes=[16,16]",
]


def test_joblib_multirun_gives_separate_runs_and_report(tmp_path):
    result = rlrun(
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "algo=sac",
        "env=pendulum",
        "seed=0,1",
        "trainer.total_steps=200",
        *TINY,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweeps = list((tmp_path / "outputs" / "multirun").glob("*/*"))
    assert len(sweeps) == 1
    jobs = sorted(p.name for p in sweeps[0].iterdir() if p.is_dir())
    assert jobs == ["0", "1"]
    for job in jobs:
        assert list((sweeps[0] / job).glob("events.out.tfevents.*"))
        assert (sweeps[0] / job / "checkpoints" / "last.pt").exists()
    report = subprocess.run([sys.executable, "-m", "rlrun.report", str(sweeps[0])], capture_output=True, text=True)
    assert report.returncode == 0, report.stderr[-2000:]
    assert "| SAC on Pendulum-v1 | eval/return_mean | 2 |" in report.stdout
    out = sweeps[0] / "report"
    assert (out / "report.md").exists() and (out / "report.csv").exists()
    assert (out / "eval_return_mean.png").stat().st_size > 1000


def test_preempted_job_rerun_in_its_directory_resumes(tmp_path):
    """What a SLURM requeue does: the same job, in the same directory, after SIGTERM."""
    run_dir = tmp_path / "job"
    args = [
        sys.executable,
        "-m",
        "rlrun.cli",
        "algo=sac",
        "env=pendulum",
        "trainer.total_steps=100000",
        *TINY,
        f"hydra.run.dir={run_dir}",
    ]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not list(run_dir.glob("events.out.tfevents.*")) and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    stopped = checkpoint.read(run_dir / "checkpoints" / "last.pt")["step"]
    again = rlrun(
        "algo=sac", "env=pendulum", f"trainer.total_steps={stopped + 100}", *TINY, f"hydra.run.dir={run_dir}", cwd=tmp_path
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert "already holds checkpoints" in again.stdout + again.stderr
    final = checkpoint.read(run_dir / "checkpoints" / "last.pt")
    assert final["step"] == stopped + 100


def test_optuna_sweep_prints_best_parameters(tmp_path, pendulum_dataset):
    result = rlrun(
        "-m",
        "hydra/sweeper=cql_search",
        "hydra.sweeper.n_trials=4",
        "algo=cql",
        "dataset=pendulum",
        "dataset.id=test/pendulum/random-v0",
        "dataset.builder=null",
        "trainer.total_steps=30",
        "trainer.eval_every=30",
        "trainer.eval_episodes=1",
        "trainer.log_every=10",
        "trainer.progress=false",
        "network.hidden_sizes=[16,16]",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert log.count("Launching 1 jobs locally") == 4
    assert "Best parameters: {'algo.cql_alpha':" in log


def test_slurm_launcher_settings_are_shown(tmp_path):
    result = rlrun(
        "-m",
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        "algo=sac",
        "env=pendulum",
        "--cfg",
        "hydra",
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "SlurmLauncher" in result.stdout and "partition: gpu" in result.stdout
    assert "max_num_timeout: 20" in result.stdout


def test_dry_run_prints_dims_and_parameter_counts(tmp_path, door_dataset):
    start = time.time()
    result = rlrun(
        "algo=cql", "dataset=door", "dataset.id=test/door/random-v0", "trainer.batch_size=64", "dry_run=true", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "obs_dim=39 act_dim=28 continuous" in result.stdout
    assert "critic: 298,498 parameters" in result.stdout  # 2 critics of 67 -> 3x256 -> 1
    assert time.time() - start < 30
    assert not list(tmp_path.rglob("events.out.tfevents.*"))


def test_catalog_lists_choices(tmp_path, pendulum_dataset):
    result = subprocess.run([sys.executable, "-m", "rlrun.catalog"], capture_output=True, text=True)
    assert result.returncode == 0
    for expected in ("cql", "door_demos", "pick_place", "local_parallel", "test/pendulum/random-v0"):
        assert expected in result.stdout


def test_iqm_by_hand():
    assert iqm(np.array([1.0, 2.0, 3.0, 4.0])) == 2.5
    assert iqm(np.array([8.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])) == 4.5  # middle half 3..6
    point, low, high = iqm_with_ci(np.array([1.0, 2.0, 3.0, 4.0, 100.0]))
    assert point == 3.0 and low <= point <= high and high < 100.0


def test_report_names_algorithm_by_dataset_groups_and_gives_last_and_best():
    from rlrun.report import Run, comparison, group_runs, markdown, table

    def run(algo: str, dataset: str, seed: int, values: list[float]) -> Run:
        extra = {f"algo.k{i}": (algo, i) for i in range(5)}  # presets differ in many keys
        config = {"algo._target_": f"rlrun.algos.{algo.lower()}.{algo}", "dataset.id": dataset, "seed": seed, **extra}
        return Run(
            Path(f"/{algo}/{dataset}/{seed}"), config, {"eval/normalized_score": (np.arange(len(values)), np.array(values))}
        )

    runs = [
        run("CQL", "d/a-v0", 0, [10, 90, 80]),
        run("CQL", "d/a-v0", 1, [20, 70, 60]),
        run("SAC", "d/a-v0", 0, [5, 6, 7]),
        run("CQL", "d/b-v0", 0, [1, 2, 3]),
    ]
    groups = group_runs(runs)
    assert sorted(groups) == ["CQL on d/a-v0", "CQL on d/b-v0", "SAC on d/a-v0"]
    row = next(r for r in table(groups, ["eval/normalized_score"]) if r["group"] == "CQL on d/a-v0")
    assert (row["runs"], row["mean"], row["best_mean"]) == (2, 70.0, 80.0)
    assert "| CQL on d/a-v0 | eval/normalized_score | 2 | 70.0 ± 10.0 | 80.0 ± 10.0 |" in markdown([row])
    # algorithms side by side per dataset: IQM of the last values, CI and run count; "–" where none ran
    text = comparison(runs, "eval/normalized_score")
    assert "| eval/normalized_score, last: IQM [95% CI] (runs) | CQL | SAC |" in text
    assert "| d/a-v0 | 70.0 [60.0, 80.0] (2) | 7.0 [7.0, 7.0] (1) |" in text
    assert "| d/b-v0 | 3.0 [3.0, 3.0] (1) | – |" in text


def test_report_gives_fine_tuning_before_after_dip_and_regret_by_hand():
    from rlrun.report import Run, finetune_numbers, finetune_table, group_runs

    def run(seed: int, values: list[float], finetune_steps: int = 4) -> Run:
        config = {"algo._target_": "rlrun.algos.cal_ql.CalQL", "dataset.id": "d/a-v0", "seed": seed}
        config |= {"trainer.total_steps": 4, "trainer.finetune_steps": finetune_steps}
        steps = np.array([2, 4, 6, 8])  # evaluations at 2 and 4 offline, 6 and 8 online (the switch is after 4)
        return Run(Path(f"/{seed}"), config, {"eval/normalized_score": (steps, np.array(values, dtype=float))})

    first = finetune_numbers(run(0, [10, 20, 5, 60]), "eval/normalized_score")
    # before: the score at the switch; dip: 5 − 20; regret: 1 − mean(5, 60) / 100
    assert first == {"before": 20.0, "after": 60.0, "dip": -15.0, "regret": pytest.approx(0.675)}
    assert finetune_numbers(run(0, [10, 20, 5, 60], finetune_steps=0), "eval/normalized_score") is None
    text = finetune_table(group_runs([run(0, [10, 20, 5, 60]), run(1, [10, 40, 40, 80])]), ["eval/normalized_score"])
    # before 20, 40; after 60, 80; dip −15, 0; regret 0.675, 0.4
    assert "| 2 | 30.00 ± 10.00 | 70.00 ± 10.00 | -7.50 ± 7.50 | 0.54 ± 0.14 |" in text
