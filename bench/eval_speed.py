"""Wall time of one evaluation (10 episodes of AdroitHandDoor-v1, 200 steps each) with trainer.eval_envs = 1
(serial, one env) and with vector envs in process (Sync) and in worker processes (Async), for a door-size
CQL policy (3x256, untrained: speed only).

    python bench/eval_speed.py [--envs 1 2 5 10] [--repeats 2]
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import gymnasium as gym
import torch

from rlrun import presets
from rlrun.build import make_algo, make_source
from rlrun.resolvers import register_resolvers
from rlrun.schema import register_configs
from rlrun.trainer import evaluate, evaluate_vector


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
    for n in args.envs:
        times = []
        if n == 1:
            for _ in range(args.repeats):
                start = time.perf_counter()
                env = source.make_eval_env(10_000)
                evaluate(algo, env, args.episodes, 10_000, device)
                env.close()
                times.append(time.perf_counter() - start)
            kind = "none (serial)"
        else:
            for kind in (gym.vector.SyncVectorEnv, gym.vector.AsyncVectorEnv):
                envs = kind([partial(source.make_eval_env, 10_000 + i) for i in range(n)])
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    evaluate_vector(algo, envs, args.episodes, 10_000, device)
                    times.append(time.perf_counter() - start)
                envs.close()
                print(f"| {n} | {kind.__name__} | {min(times):.2f} |", flush=True)
            continue
        print(f"| {n} | {kind} | {min(times):.2f} |", flush=True)


if __name__ == "__main__":
    main()
