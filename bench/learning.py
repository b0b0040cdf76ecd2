"""Learning benchmark: runs `rlrun` for several seeds and reports the final eval/return_mean.

    python bench/learning.py --seeds 0 1 2 -- algo=sac env=pendulum trainer.total_steps=20000

Each seed is a real `rlrun` process; results are read back from its TensorBoard events.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


def final_scalar(run_dir: Path, tag: str) -> float | None:
    points = scalars(run_dir, tag)
    return points[-1][1] if points else None


def first_reaching(run_dir: Path, threshold: float) -> str:
    """When eval/return_mean first reached `threshold`, and the best evaluation."""
    curve = scalars(run_dir, "eval/return_mean")
    step = next((s for s, v in curve if v >= threshold), None)
    best = max((v for _, v in curve), default=float("nan"))
    return f"  first ≥ {threshold:g} at step {step}  best {best:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--parallel", type=int, default=1, help="seeds run at once (threads split evenly)")
    parser.add_argument("--out", default=None, help="root of the run directories (default: a temp dir)")
    parser.add_argument("--threshold", type=float, default=None, help="report when eval return first reaches it")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="rlrun-bench-"))
    threads = max(1, 2 // args.parallel)
    jobs, results = [], {}
    start = time.time()
    for seed in args.seeds:
        run_dir = root / f"seed{seed}"
        cmd = [
            "rlrun",
            *args.overrides,
            f"seed={seed}",
            f"hydra.run.dir={run_dir}",
            "trainer.progress=false",
            f"device.threads={threads}",
        ]
        jobs.append((seed, run_dir, time.time(), subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
        while len([j for j in jobs if j[3].poll() is None]) >= args.parallel:
            time.sleep(1)
    for seed, run_dir, t0, proc in jobs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            print(err.decode()[-2000:], file=sys.stderr)
        results[seed] = (
            final_scalar(run_dir, "eval/return_mean"),
            final_scalar(run_dir, "eval/normalized_score"),
            final_scalar(run_dir, "perf/updates_per_s"),
        )
    wall = time.time() - start
    print(f"rlrun {' '.join(args.overrides)}")
    for seed, (ret, score, ups) in results.items():
        extra = f"  normalized_score {score:.1f}" if score is not None else ""
        if args.threshold is not None:
            extra += first_reaching(root / f"seed{seed}", args.threshold)
        print(f"  seed {seed}: eval/return_mean {ret:.1f}{extra}  updates/s {ups:.0f}")
    print(f"  wall time {wall:.0f} s for {len(args.seeds)} seeds ({args.parallel} at a time); runs in {root}")


if __name__ == "__main__":
    main()
