"""Four Rooms transfer (option-critic paper, Fig. 4): steps per episode before and after the goal moves.

    python bench/four_rooms.py --seeds 0 1 2 --out /tmp/four_rooms

Runs option-critic with 4 options (its preset, deliberation cost 0.01) and the flat baseline (the
same learner with one option and no cost: an actor-critic with the same one-hot features) on
`env=four_rooms_moving_goal`, two runs at a time
with one thread each, then reads every training episode's length back from TensorBoard and writes
`curves.png` and a Markdown table (`table.md`) into --out. `--cost η …` adds option-critic with
that deliberation cost. Runs whose directory holds a finished checkpoint are read, not rerun.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from learning import scalars

MOVE = 1000  # episodes on the first goal (the env config's goal_moves_after)
Learners = dict[str, tuple[str, list[str]]]  # label -> (directory under --out, overrides)
LEARNERS: Learners = {
    "option-critic, 4 options (preset: cost 0.01)": ("option-critic", ["algo.n_options=4"]),
    "flat (1 option)": ("flat", ["algo.n_options=1", "algo.deliberation_cost=0"]),
}


def run_all(root: Path, learners: Learners, seeds: list[int], extra: list[str]) -> None:
    jobs = []
    for folder, overrides in learners.values():
        for seed in seeds:
            run_dir = root / folder / f"seed{seed}"
            if (run_dir / "checkpoints" / "last.pt").exists():
                continue
            cmd = ["rlrun", "algo=option_critic", "env=four_rooms_moving_goal", *overrides, *extra]
            cmd += [f"seed={seed}", f"hydra.run.dir={run_dir}", "trainer.progress=false", "device.threads=1"]
            jobs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
            while sum(j.poll() is None for j in jobs) >= 2:
                time.sleep(1)
    for job in jobs:
        _, err = job.communicate()
        if job.returncode != 0:
            print(err.decode()[-2000:], file=sys.stderr)


def lengths(root: Path, folder: str, seeds: list[int]) -> list[np.ndarray]:
    """Each seed's training episode lengths, in episode order."""
    return [np.array([v for _, v in scalars(root / folder / f"seed{s}", "train/episode_length")]) for s in seeds]


def recovery(curve: np.ndarray, window: int = 50) -> int | None:
    """Episodes after the move until the mean of the last `window` episodes is within 25% of the
    mean of episodes 1901–2000 (the level on the new goal); None if it never gets there by 2000."""
    final = curve[2 * MOVE - 100 : 2 * MOVE].mean()
    for k in range(window, MOVE + 1):
        if curve[MOVE + k - window : MOVE + k].mean() <= 1.25 * final:
            return k
    return None


def table(runs: dict[str, list[np.ndarray]], seeds: list[int]) -> str:
    spans = [(901, 1000), (1001, 1100), (1001, 1500), (1901, 2000)]
    head = " | ".join(f"episodes {a}–{b}" for a, b in spans)
    lines = [f"| learner | seed | {head} | episodes to recover |", "|---" * (len(spans) + 3) + "|"]
    for name, curves in runs.items():
        for seed, curve in zip(seeds, curves):
            cells = [f"{curve[a - 1 : b].mean():.1f}" if len(curve) >= b else "–" for a, b in spans]
            rec = recovery(curve) if len(curve) >= 2 * MOVE else None
            lines.append(f"| {name} | {seed} | {' | '.join(cells)} | {rec if rec is not None else '–'} |")
    return "\n".join(lines)


def beta_table(root: Path, learners: Learners, seeds: list[int]) -> str:
    """Each option's mean β at the four hallway cells and elsewhere, at the last evaluation."""
    lines = ["| learner | seed | option | β at hallways | β elsewhere | ratio |", "|---|---|---|---|---|---|"]
    for name, (folder, _) in learners.items():
        for seed in seeds:
            run_dir = root / folder / f"seed{seed}"
            for k in range(4):
                hall, rest = (scalars(run_dir, f"eval/beta_{where}/{k}") for where in ("hallways", "elsewhere"))
                if hall and rest:
                    h, e = hall[-1][1], rest[-1][1]
                    lines.append(f"| {name} | {seed} | {k} | {h:.3f} | {e:.3f} | {h / e:.2f} |")
    return "\n".join(lines)


def plot(runs: dict[str, list[np.ndarray]], path: Path, smooth: int = 20) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, curves in runs.items():
        n = min(2 * MOVE, *(len(c) for c in curves))  # the paper's frame: 1000 episodes on each goal
        kernel = np.ones(smooth) / smooth
        smoothed = np.stack([np.convolve(c[:n], kernel, mode="valid") for c in curves])  # (seeds, n - smooth + 1)
        x = np.arange(smooth, n + 1)
        ax.plot(x, smoothed.mean(0), label=f"{name} (mean of {len(curves)} seeds)")
        ax.fill_between(x, smoothed.min(0), smoothed.max(0), alpha=0.2)
    ax.axvline(MOVE, color="grey", linestyle="--", linewidth=1)
    ax.set(xlabel="episode", ylabel=f"steps per episode ({smooth}-episode mean)", yscale="log")
    ax.set_title(f"Four Rooms: the goal moves after episode {MOVE}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", required=True, help="root of the run directories and the results")
    parser.add_argument("--no-run", action="store_true", help="only read the runs already in --out")
    parser.add_argument(
        "--cost", type=float, nargs="*", default=[], help="also option-critic with these costs (end the list with --)"
    )
    parser.add_argument("overrides", nargs="*", help="extra overrides for every run")
    args = parser.parse_args()
    root = Path(args.out)
    start = time.time()
    learners = dict(LEARNERS)
    for cost in args.cost:
        overrides = ["algo.n_options=4", f"algo.deliberation_cost={cost}"]
        learners[f"option-critic, 4 options, cost {cost:g}"] = (f"option-critic-cost-{cost:g}", overrides)
    if not args.no_run:
        run_all(root, learners, args.seeds, args.overrides)
    runs = {name: lengths(root, folder, args.seeds) for name, (folder, _) in learners.items()}
    options = {name: learner for name, learner in learners.items() if "algo.n_options=1" not in learner[1]}
    text = table(runs, args.seeds) + "\n\n" + beta_table(root, options, args.seeds)
    (root / "table.md").write_text(text + "\n")
    plot(runs, root / "curves.png")
    print(text)
    print(f"episodes per run: {[len(c) for curves in runs.values() for c in curves]}; wall {time.time() - start:.0f} s; {root}")


if __name__ == "__main__":
    main()
