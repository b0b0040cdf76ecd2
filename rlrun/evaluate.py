"""`rlrun-eval`: play a saved run's deterministic policy in its eval env and print what it scores.

    rlrun-eval outputs/cql/door_demos/<run> [--step N] [--episodes 10] [--seed 0] [--video]

The eval env is the run's env (online runs) or its dataset's eval env (offline runs). It prints the
mean and std of the return, the normalized score where the dataset has reference scores, the
success rate where the env reports success, and the mean episode length. `--video` writes one
episode as a GIF beside the checkpoints (`videos/eval_<step>_seed<seed>.gif`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from rlrun.errors import UserError


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="rlrun-eval", description="Evaluate a saved run's policy.")
    p.add_argument("run_dir", help="an rlrun run directory")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest good one)")
    p.add_argument("--episodes", type=int, default=10, help="episodes to play (env seeds seed, seed+1, ...)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first episode")
    p.add_argument("--video", action="store_true", help="also write the first episode as a GIF")
    p.add_argument("--device", default="cpu", help="where the policy runs")
    args = p.parse_args(argv)
    if args.episodes <= 0:
        raise UserError(f"--episodes must be positive, got {args.episodes}.")
    if not Path(args.run_dir).is_dir():
        raise UserError(f"{args.run_dir} is not a directory; give the directory of an rlrun run.")
    return args


def reference_scores(config) -> tuple[float | None, float | None]:
    """The dataset's reference returns (its metadata wins over the config), or Nones for online runs."""
    from rlrun.data import offline

    if config.dataset is None:
        return None, None
    dataset = offline.load(config.dataset.id, allow_download=False, builder=None)
    return offline.reference_scores(dataset, config.dataset.ref_min_score, config.dataset.ref_max_score)


def write_video(saved, seed: int, run_dir: Path) -> Path:
    from rlrun import video

    video.default_mujoco_backend()
    problem = video.probe(lambda: saved.make_env(seed, render=True))
    if problem is not None:
        raise UserError(
            f"the eval env cannot render here ({problem}): MuJoCo envs render with MUJOCO_GL=egl or "
            f"MUJOCO_GL=osmesa, classic-control envs need pygame; leave out --video to evaluate only."
        )
    env = saved.make_env(seed, render=True)
    frames = video.record(saved.algo, env, seed, saved.device)
    data, _ = video.gif(frames, env.metadata.get("render_fps") or 30)
    env.close()
    path = run_dir / "videos" / f"eval_{saved.step}_seed{seed}.gif"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path


def evaluate_run(args: argparse.Namespace) -> dict[str, float]:
    from rlrun.rollout import load_run
    from rlrun.trainer import evaluate

    saved = load_run(Path(args.run_dir), args.step, args.device)
    env = saved.make_env(args.seed)
    metrics = evaluate(saved.algo, env, args.episodes, args.seed, saved.device)
    env.close()
    low, high = reference_scores(saved.config)
    if low is not None and high is not None:
        metrics["eval/normalized_score"] = 100.0 * (metrics["eval/return_mean"] - low) / (high - low)
    print(f"{args.run_dir} at step {saved.step}, {args.episodes} episodes from seed {args.seed}:")
    for key, value in metrics.items():
        print(f"  {key.removeprefix('eval/'):<18} {value:.2f}")
    if args.video:
        print(f"  video              {write_video(saved, args.seed, Path(args.run_dir))}")
    return metrics


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        evaluate_run(parse(sys.argv[1:] if argv is None else argv))
    except UserError as e:
        print(f"rlrun-eval: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
