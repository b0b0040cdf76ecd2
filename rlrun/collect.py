"""`rlrun-collect`: roll out a saved run's policy (or uniform random actions) into a Minari dataset.

    rlrun-collect outputs/sac/pendulum/<run> --episodes 50 --noise 0.1 --dataset-id rlrun/pendulum/medium-v0
    rlrun-collect --random --env Pendulum-v1 --steps 10000 --dataset-id rlrun/pendulum/random-v0

Actions are written in the env's units, with true terminations and truncations, the env spec and
an eval env spec, the reference scores when given, and the run's algorithm and config.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from omegaconf import OmegaConf

from rlrun.errors import UserError


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="rlrun-collect", description="Roll out a saved run's policy into a Minari dataset.")
    p.add_argument("run_dir", nargs="?", help="an rlrun run directory (not with --random)")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest good one)")
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--episodes", type=int, help="episodes to play")
    size.add_argument("--steps", type=int, help="steps to play (the last episode is cut there, as a truncation)")
    p.add_argument("--noise", type=float, default=0.0, help="Gaussian action noise, std in the policy's [-1, 1] units")
    p.add_argument("--epsilon", type=float, default=0.0, help="probability of a uniform random action instead")
    p.add_argument("--seed", type=int, default=0, help="seed of the env resets and the noise")
    p.add_argument("--dataset-id", required=True, help="Minari id of the new dataset (never overwritten)")
    p.add_argument("--random", action="store_true", help="uniform random actions in --env; needs no run")
    p.add_argument("--env", default=None, help="with --random: the gymnasium id (`module:Id` imports module)")
    p.add_argument("--ref-min-score", type=float, default=None, help="return of a random policy, for normalized scores")
    p.add_argument("--ref-max-score", type=float, default=None, help="return of an expert policy, for normalized scores")
    p.add_argument("--device", default="cpu", help="where the policy runs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def check(args: argparse.Namespace) -> None:
    """Every mistake in the arguments, before anything is loaded or played."""
    from rlrun.rollout import check_new_dataset_id

    if (args.episodes if args.episodes is not None else args.steps) <= 0:
        raise UserError(
            f"--{'episodes' if args.episodes is not None else 'steps'} must be positive, "
            f"got {args.episodes if args.episodes is not None else args.steps}."
        )
    if args.noise < 0:
        raise UserError(f"--noise is a standard deviation and cannot be negative, got {args.noise}.")
    if not 0.0 <= args.epsilon <= 1.0:
        raise UserError(f"--epsilon is a probability in [0, 1], got {args.epsilon}.")
    if args.random == (args.run_dir is not None):
        raise UserError("give a run directory to play its policy, or --random --env ID for uniform random actions.")
    if args.random and not args.env:
        raise UserError("--random plays in a named env: add --env ID (e.g. --env Pendulum-v1).")
    check_new_dataset_id(args.dataset_id)


def run(args: argparse.Namespace) -> None:
    from rlrun.envs import make_env
    from rlrun.rollout import collect, load_run, mean_return, noisy, uniform_random, write_dataset

    if args.random:
        env = make_env(args.env, {}, None, args.seed)
        act, initial_state, name, config = uniform_random(env.action_space, args.seed), (lambda: None), "uniform random", None
    else:
        saved = load_run(Path(args.run_dir), args.step, args.device)
        env, act, initial_state = saved.make_env(args.seed), saved.act, saved.algo.initial_state
        name = f"rlrun {type(saved.algo).__name__} ({saved.path.parent.parent}, step {saved.step})"
        config = OmegaConf.to_container(saved.config, resolve=True)
    act = noisy(act, env.action_space, args.noise, args.epsilon, args.seed)
    buffers = collect(act, initial_state, env, args.seed, args.episodes, args.steps, not args.no_progress)
    description = f"{name}; Gaussian action noise {args.noise}, random actions with probability {args.epsilon}, seed {args.seed}"
    write_dataset(args.dataset_id, buffers, env, name, args.ref_min_score, args.ref_max_score, description, config)
    env.close()
    print(
        f"{args.dataset_id}: {len(buffers)} episodes, {sum(len(b.rewards) for b in buffers)} steps, "
        f"mean return {mean_return(buffers):.1f}"
    )


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        check(args)
        run(args)
    except UserError as e:
        print(f"rlrun-collect: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
