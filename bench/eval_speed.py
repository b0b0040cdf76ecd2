"""Wall time of one evaluation (10 episodes of AdroitHandDoor-v1, 200 steps each) with trainer.eval_envs = 1
(serial, one env) and with vector envs in process (Sync) and in worker processes (Async), for a door-size
CQL policy (3x256, untrained: speed only).

    python bench/eval_speed.py [--envs 1 2 5 10] [--repeats 2]
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from typing import Callable

import gymnasium as gym
import torch

from rlrun import presets
from rlrun.build import make_algo, make_source
from rlrun.resolvers import register_resolvers
from rlrun.schema import register_configs
from rlrun.trainer import evaluate, evaluate_vector


def fastest(play: Callable[[], None], repeats: int) -> float:
    """The shortest wall time of `repeats` calls of `play`."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        play()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    register_resolvers()
    register_configs()
    p = argparse.ArgumentParser()
    p.add_argument("--envs", type=int, nargs="+", default=[1, 2, 5, 10])
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--repeats", type=int, default=2, help="evaluations timed per setting (the fastest counts)")
    args = p.parse_args()
    cfg = presets.compose(["algo=cql", "env=door", "network.hidden_sizes=[256,256,256]", "device=cpu"])
    device = torch.device("cpu")
    source = make_source(cfg, device)
    algo = make_algo(cfg, source.spaces, device)
    print(
        f"# {time.strftime('%Y-%m-%d')} · {torch.get_num_threads()} threads · {args.episodes} episodes of "
        f"{cfg.env.id}, door-size CQL policy"
    )
    print("| eval_envs | vector env | wall time (s) |\n|---|---|---|")

    def serial() -> None:
        env = source.make_eval_env(10_000)
        evaluate(algo, env, args.episodes, 10_000, device)
        env.close()

    for n in args.envs:
        if n == 1:
            print(f"| 1 | none (serial) | {fastest(serial, args.repeats):.2f} |", flush=True)
            continue
        for vector in (gym.vector.SyncVectorEnv, gym.vector.AsyncVectorEnv):
            envs = vector([partial(source.make_eval_env, 10_000 + i) for i in range(n)])
            wall = fastest(lambda: evaluate_vector(algo, envs, args.episodes, 10_000, device), args.repeats)
            envs.close()
            print(f"| {n} | {vector.__name__} | {wall:.2f} |", flush=True)


if __name__ == "__main__":
    main()
