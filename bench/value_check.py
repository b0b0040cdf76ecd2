"""Value check of a saved online run: what its critics predict against what its policy gets.

    python bench/value_check.py outputs/.../run_dir --episodes 3

Loads the run's newest checkpoint, plays greedy episodes in its env (`--sample`: the training-time
policy, sampled options and actions), and prints per episode the
return, the critics' value of the actions taken (min over the ensemble, mean over the first
`--horizon` steps) beside the discounted return that followed them, and for Meta-World envs the
success and the closest the hand came to the object, then the mean, median and success rate over
the episodes. `--each-placement` (Meta-World MT1): episode i plays placement i of the run's 50
object/goal placements, so `--episodes 50` covers them all once. A prediction far above the
realized return is overestimation. Both are in the units the critics learned (rewards times the run's
`env.reward_scale`); returns are in env units. For runs with an env and a critic ensemble over (s, a) (sac)
or over (s, ω, a) (soft_option_critic).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from rlrun import checkpoint
from rlrun.build import make_algo, make_source
from rlrun.data.online import play
from rlrun.schema import with_current_schema


def discounted(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """G_t = r_t + γ G_{t+1} for every t of one (possibly truncated) episode."""
    out, acc = np.zeros_like(rewards), 0.0
    for t in range(len(rewards) - 1, -1, -1):
        acc = rewards[t] + gamma * acc
        out[t] = acc
    return out


@torch.no_grad()
def episode(algo, env, seed: int, device: torch.device, deterministic: bool = True) -> dict[str, np.ndarray]:
    """One episode (greedy unless told): rewards, the critics' value of each action taken, hand-object distances."""
    obs, _ = env.reset(seed=seed)
    rows = []
    for step in play(algo, env, obs, device, deterministic):
        if hasattr(algo, "with_option"):
            inputs = algo.with_option(step.obs, step.state)
        else:  # the critics see normalized observations, as in training
            inputs = algo.obs_norm(step.obs)
        q = algo.critic(inputs, step.action).min(0).values.item()  # (n, 1) -> scalar
        meta_world = "success" in step.info
        hand_to_obj = float(np.linalg.norm(step.next_obs[:3] - step.next_obs[4:7])) if meta_world else np.nan
        rows.append((step.reward, q, float(step.info.get("success", np.nan)), hand_to_obj))
    return dict(zip(("reward", "q", "success", "hand_to_obj"), np.array(rows, dtype=float).T))


def placements(env) -> list:
    """Meta-World MT1's object/goal placements (its task list), with sampling on reset switched off."""
    try:
        tasks = env.get_wrapper_attr("tasks")
    except AttributeError:
        raise SystemExit("--each-placement needs a Meta-World MT1 env (env=pick_place); this run's env has no placements.")
    env.get_wrapper_attr("toggle_sample_tasks_on_reset")(False)
    return list(tasks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--horizon", type=int, default=300, help="steps whose value is compared")
    parser.add_argument("--seed", type=int, default=1000, help="first evaluation seed")
    parser.add_argument("--step", type=int, help="load checkpoints/step_<STEP>.pt instead of the newest")
    parser.add_argument(
        "--sample",
        action="store_true",
        help="play the training-time policy (sampled options and actions) instead of the greedy one",
    )
    parser.add_argument(
        "--each-placement",
        action="store_true",
        help="Meta-World: episode i plays placement i of the run's 50 (else a random one per episode)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)  # --sample draws repeat
    ckpt_dir = args.run_dir / "checkpoints"
    if args.step is not None:
        path = ckpt_dir / f"step_{args.step}.pt"
        found = (checkpoint.read(path), path) if path.is_file() else None
    else:
        found = checkpoint.load_latest(ckpt_dir)
    if found is None:
        raise SystemExit(f"{args.run_dir} holds no readable checkpoint; give the directory of a run.")
    state, path = found
    cfg = with_current_schema(state["config"])
    device = torch.device("cpu")
    source = make_source(cfg, device)
    algo = make_algo(cfg, source.spaces, device)
    checkpoint.restore(algo, state["algo"])
    env = source.make_eval_env(args.seed)
    # one entry per episode: the MT1 placement to play, or None for the env's own choice on reset
    tasks = placements(env)[: args.episodes] if args.each_placement else [None] * args.episodes
    print(f"{path} (step {state['step']}), gamma {cfg.algo.gamma}")
    returns, successes = [], []
    for i, task in enumerate(tasks):
        if task is not None:
            env.unwrapped.set_task(task)
        ep = episode(algo, env, args.seed + i, device, not args.sample)
        h = args.horizon
        realized = discounted(ep["reward"] * cfg.env.reward_scale, cfg.algo.gamma)[:h].mean()
        returns.append(ep["reward"].sum())
        successes.append(np.nanmax(ep["success"]))
        print(
            f"episode {i}: return {returns[-1]:.1f}, predicted value {ep['q'][:h].mean():.2f} vs "
            f"realized discounted return {realized:.2f} (mean over the first {h} steps), "
            f"success {successes[-1]:.0f}, closest hand-object distance {np.nanmin(ep['hand_to_obj']):.3f} m"
        )
    rate = "" if np.isnan(successes).all() else f", success rate {np.nanmean(successes):.2f}"
    print(
        f"{len(returns)} episodes: mean return {np.mean(returns):.1f}, median {np.median(returns):.1f}, "
        f"range {min(returns):.1f} to {max(returns):.1f}{rate}"
    )


if __name__ == "__main__":
    main()
