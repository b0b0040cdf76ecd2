"""Value check of a saved online run: what its critics predict against what its policy gets.

    python bench/value_check.py outputs/.../run_dir --episodes 3

Loads the run's newest checkpoint, plays greedy episodes in its env (`--sample`: the training-time
policy, sampled options and actions), and prints per episode the return, the critics' value of the
actions taken (min over the ensemble, mean over the first `--horizon` steps) beside the discounted
return that followed them, and for Meta-World envs the success and the closest the hand came to the
object, then the mean, median and success rate over the episodes. `--each-placement` (Meta-World
MT1): episode i plays placement i of the run's 50 object/goal placements, so `--episodes 50` covers
them all once. A prediction far above the realized return is overestimation. Both are in the units
the critics learned (rewards times the run's `env.reward_scale`); returns are in env units. For runs
with an env and a critic ensemble over (s, a) (sac) or over (s, ω, a) (soft_option_critic).

For option-critics it adds the option statistics of the played episodes (the trainer's eval/option_*
metrics) and, per option, its share of the steps and where it acts: the mean hand-object distance
and the share of its steps with the object lifted 2 cm or more above where the episode started it
(Meta-World). `--timeline PNG` saves which option acted at each step of each episode.
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
from rlrun.trainer import option_stats

LIFTED = 0.02  # m: the object counts as lifted this far above its height at the episode's start


def discounted(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """G_t = r_t + γ G_{t+1} for every t of one (possibly truncated) episode."""
    out, acc = np.zeros_like(rewards), 0.0
    for t in range(len(rewards) - 1, -1, -1):
        acc = rewards[t] + gamma * acc
        out[t] = acc
    return out


@torch.no_grad()
def episode(algo, env, seed: int, device: torch.device, deterministic: bool = True) -> dict[str, np.ndarray]:
    """One episode (greedy unless told): rewards, the critics' value of each action taken, hand-object
    distances, the object's height above its start (Meta-World) and the running option (-1 without options)."""
    obs, _ = env.reset(seed=seed)
    start_z, rows = (float(obs[6]) if len(obs) > 6 else np.nan), []  # Meta-World: obs[4:7] is the object
    for step in play(algo, env, obs, device, deterministic):
        if hasattr(algo, "with_option"):
            inputs = algo.with_option(step.obs, step.state)
        else:  # the critics see normalized observations, as in training
            inputs = algo.obs_norm(step.obs)
        q = algo.critic(inputs, step.action).min(0).values.item()  # (n, 1) -> scalar
        meta_world = "success" in step.info
        hand_to_obj = float(np.linalg.norm(step.next_obs[:3] - step.next_obs[4:7])) if meta_world else np.nan
        lift = float(step.next_obs[6]) - start_z if meta_world else np.nan
        option = int(step.state[0]) if isinstance(step.state, torch.Tensor) else -1
        rows.append((step.reward, q, float(step.info.get("success", np.nan)), hand_to_obj, lift, option))
    names = ("reward", "q", "success", "hand_to_obj", "lift", "option")
    return dict(zip(names, np.array(rows, dtype=float).T))


def running_options(played: list[dict[str, np.ndarray]]) -> list[list[int]]:
    """The running option at each step of each played episode, as the trainer's option statistics take it."""
    return [ep["option"].astype(int).tolist() for ep in played]


def describe_options(played: list[dict[str, np.ndarray]], n_options: int) -> list[str]:
    """The option statistics of the played episodes, then one line per option: what share of the steps
    it ran and, in Meta-World, the mean hand-object distance on them and the share with the object lifted."""
    stats = option_stats(running_options(played), n_options)
    lines = [", ".join(f"{name.removeprefix('eval/')} {value:.3f}" for name, value in stats.items())]
    option = np.concatenate([ep["option"] for ep in played])  # (total steps,)
    hand = np.concatenate([ep["hand_to_obj"] for ep in played])
    lifted = np.concatenate([ep["lift"] for ep in played]) >= LIFTED
    for k in range(n_options):
        on = option == k
        if not on.any():
            lines.append(f"option {k}: never ran")
            continue
        where = ""
        if not np.isnan(hand).all():  # Meta-World only
            where = f", mean hand-object distance {np.nanmean(hand[on]):.3f} m, object lifted on {lifted[on].mean():.1%} of them"
        lines.append(f"option {k}: {on.mean():.1%} of steps{where}")
    return lines


def placements(env) -> list:
    """Meta-World MT1's object/goal placements (its task list), with sampling on reset switched off."""
    try:
        tasks = env.get_wrapper_attr("tasks")
    except AttributeError:
        raise SystemExit("--each-placement needs a Meta-World MT1 env (env=pick_place); this run's env has no placements.")
    env.get_wrapper_attr("toggle_sample_tasks_on_reset")(False)
    return list(tasks)


def parse_args() -> argparse.Namespace:
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
    parser.add_argument("--timeline", type=Path, help="option-critics: save the option timeline of the episodes as this PNG")
    parser.add_argument(
        "--each-placement",
        action="store_true",
        help="Meta-World: episode i plays placement i of the run's 50 (else a random one per episode)",
    )
    return parser.parse_args()


def load(run_dir: Path, step: int | None, device: torch.device):
    """The run's checkpoint (the newest, or the one of `step`): its state, path, config and restored algorithm."""
    ckpt_dir = run_dir / "checkpoints"
    if step is not None:
        path = ckpt_dir / f"step_{step}.pt"
        found = (checkpoint.read(path), path) if path.is_file() else None
    else:
        found = checkpoint.load_latest(ckpt_dir)
    if found is None:
        raise SystemExit(f"{run_dir} holds no readable checkpoint; give the directory of a run.")
    state, path = found
    cfg = with_current_schema(state["config"])
    source = make_source(cfg, device)
    algo = make_algo(cfg, source.spaces, device)
    checkpoint.restore(algo, state["algo"])
    return state, path, cfg, source, algo


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)  # --sample draws repeat
    device = torch.device("cpu")
    state, path, cfg, source, algo = load(args.run_dir, args.step, device)
    env = source.make_eval_env(args.seed)
    # one entry per episode: the MT1 placement to play, or None for the env's own choice on reset
    tasks = placements(env)[: args.episodes] if args.each_placement else [None] * args.episodes
    print(f"{path} (step {state['step']}), gamma {cfg.algo.gamma}")
    returns, successes, played = [], [], []
    for i, task in enumerate(tasks):
        if task is not None:
            env.unwrapped.set_task(task)
        ep = episode(algo, env, args.seed + i, device, not args.sample)
        played.append(ep)
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
    report_options(played, getattr(algo, "n_options", 0), args.timeline)


def report_options(played: list[dict[str, np.ndarray]], n_options: int, timeline: Path | None) -> None:
    """Option-critics: print the option statistics and what each option does; save the timeline if asked."""
    if not n_options:
        return
    print("\n".join(describe_options(played, n_options)))
    if timeline is not None:
        from rlrun.viz import option_timeline

        option_timeline(running_options(played), n_options).savefig(timeline, dpi=120)
        print(f"option timeline: {timeline}")


if __name__ == "__main__":
    main()
