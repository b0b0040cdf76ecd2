"""Times d3rlpy's own update() at a given size; runs inside bench/.venv-d3rlpy (d3rlpy 2.8.1).

Prints one JSON line: {"algo": ..., "updates_per_s": ...}. Not part of the rlrun package.
"""

import argparse
import json
import time

import d3rlpy
import numpy as np
import torch


def make_config(algo: str, common: dict, enc, args):
    """d3rlpy's config of `algo` at the sizes rlrun's bench uses (rlrun's defaults where they differ)."""
    if algo == "cql":
        return d3rlpy.algos.CQLConfig(**common, conservative_weight=1.0, n_action_samples=args.n_actions, alpha_learning_rate=0.0)
    if algo == "sac":
        return d3rlpy.algos.SACConfig(**common)
    if algo == "bc":
        return d3rlpy.algos.BCConfig(encoder_factory=enc, batch_size=args.batch, learning_rate=3e-4)
    if algo == "td3_bc":
        return d3rlpy.algos.TD3PlusBCConfig(**common, alpha=2.5, update_actor_interval=2)
    if algo == "iql":
        return d3rlpy.algos.IQLConfig(**common, value_encoder_factory=enc, expectile=0.7, weight_temp=3.0)
    if algo == "awac":
        return d3rlpy.algos.AWACConfig(**common, lam=1.0)
    # ReBRAC: LayerNorm in the critics, as rlrun's critic_layer_norm
    layer_norm = d3rlpy.models.encoders.VectorEncoderFactory(hidden_units=args.hidden, use_layer_norm=True)
    return d3rlpy.algos.ReBRACConfig(
        **(common | {"critic_encoder_factory": layer_norm}), actor_beta=0.1, critic_beta=0.1, update_actor_interval=2
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--algo", choices=["cql", "sac", "bc", "td3_bc", "iql", "awac", "rebrac"], required=True)
    p.add_argument("--obs-dim", type=int, required=True)
    p.add_argument("--act-dim", type=int, required=True)
    p.add_argument("--hidden", type=int, nargs="+", required=True)
    p.add_argument("--n-actions", type=int, default=10)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--device", default="cpu:0")
    args = p.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = 5000
    dataset = d3rlpy.dataset.MDPDataset(
        observations=rng.standard_normal((n, args.obs_dim)).astype(np.float32),
        actions=rng.uniform(-1, 1, (n, args.act_dim)).astype(np.float32),
        rewards=rng.standard_normal(n).astype(np.float32),
        terminals=(np.arange(n) % 200 == 199).astype(np.float32),
    )
    enc = d3rlpy.models.encoders.VectorEncoderFactory(hidden_units=args.hidden)
    common = dict(
        actor_encoder_factory=enc,
        critic_encoder_factory=enc,
        batch_size=args.batch,
        actor_learning_rate=1e-4,
        critic_learning_rate=3e-4,
    )
    config = make_config(args.algo, common, enc, args)
    algo = config.create(device=args.device)
    algo.build_with_dataset(dataset)
    batch = dataset.sample_transition_batch(args.batch)
    for _ in range(3):
        algo.update(batch)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        algo.update(batch)
        count += 1
    print(json.dumps({"algo": args.algo, "updates_per_s": count / (time.perf_counter() - start)}))


if __name__ == "__main__":
    main()
