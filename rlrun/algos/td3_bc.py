"""TD3+BC (Fujimoto & Gu, "A Minimalist Approach to Offline Reinforcement Learning", 2021).

TD3 with a behaviour-cloning term in the actor. Per update on a batch (s, a, r, s', d):
  critics:  Σ_i E[(Q_i(s, a) − (r + γ(1 − d) min_j Q̄_j(s', ã')))²],
            ã' = clip(π̄(s') + clip(ε, ±c), ±1), ε ~ N(0, σ²)       (target policy smoothing)
  actor, every `policy_freq` updates:
            −λ E[Q_1(s, π(s))] + E[(π(s) − a)²],  λ = α / E|Q_1(s, π(s))|  (held constant)
and on those updates the target actor π̄ and critics Q̄ follow by Polyak averaging (rate τ). Both
losses are taken at the same parameters and stepped with one backward (the actor sees the first
critic alone, `frozen_member`). The delay is a Python int (`Cycle`), so the branch on it reads no
tensor: no device sync, and torch.compile traces the two kinds of update as two graphs.

The functions before the class are what TD3+BC and ReBRAC share: a deterministic actor, a critic
ensemble, their targets and optimizers (set on the algorithm, so checkpoints collect them), the
smoothed target action and the delayed step.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch
from torch import Tensor

from rlrun import noise
from rlrun.algos.base import Batch, Cycle, act_with_actor, adam, after_step, joint_step, memoryless, optimizer_step
from rlrun.losses import critic_mse, smoothed_target_action, soft_update, td3_bc_actor_loss, td_target
from rlrun.nets import CriticEnsemble, DeterministicActor, MLPSpec, ObsNormalizer, frozen_member


def build_delayed_actor_critic(
    algo: Any,
    obs_dim: int,
    act_dim: int,
    actor_spec: MLPSpec,
    critic_spec: MLPSpec,
    device: torch.device,
    actor_lr: float,
    critic_lr: float,
    num_critics: int,
    policy_freq: int,
) -> None:
    """Set the normalizer, actor, critics, their targets, optimizers and policy delay as attributes of `algo`."""
    algo.obs_norm = ObsNormalizer(obs_dim).to(device)
    algo.actor = DeterministicActor(obs_dim, act_dim, actor_spec).to(device)
    algo.actor_target = copy.deepcopy(algo.actor).requires_grad_(False)
    algo.critic = CriticEnsemble(obs_dim, act_dim, critic_spec, num_critics).to(device)
    algo.critic_target = copy.deepcopy(algo.critic).requires_grad_(False)
    algo.actor_opt = adam(algo.actor.parameters(), lr=actor_lr)
    algo.critic_opt = adam(algo.critic.parameters(), lr=critic_lr)
    algo.updates = Cycle(policy_freq)  # the policy delay: the actor steps when it comes round to 0
    algo.actor_loss_last = torch.zeros((), device=device)  # from the latest actor step, for logging
    algo._soft_pairs = (
        [*algo.actor_target.parameters(), *algo.critic_target.parameters()],
        [*algo.actor.parameters(), *algo.critic.parameters()],
    )


@torch.no_grad()
def smoothed_next_action(algo: Any, next_obs: Tensor) -> Tensor:
    """ã' = clip(π̄(s') + clip(ε, ±c), ±1), ε ~ N(0, σ²); (B, O) -> (B, A)."""
    action = algo.actor_target(next_obs)
    return smoothed_target_action(action, noise.randn_like(action) * algo.policy_noise, algo.noise_clip)


def delayed_step(
    algo: Any,
    batch: Batch,
    critic_loss: Tensor,
    metrics: dict[str, Tensor],
    actor_loss: Callable[[Batch], tuple[Tensor, dict[str, Tensor]]],
) -> dict[str, Tensor]:
    """The critic steps every update; every `policy_freq`-th the actor steps too (one backward) and
    the targets follow. Returns the metrics with the critic's and the latest actor loss."""
    if algo.updates.advance():
        optimizer_step(algo.critic_opt, critic_loss)
    else:
        loss, actor_metrics = actor_loss(batch)
        joint_step((algo.critic_opt, critic_loss), (algo.actor_opt, loss))
        after_step(soft_update, *algo._soft_pairs, algo.tau)
        algo.actor_loss_last = loss.detach()
        metrics = metrics | actor_metrics
    return metrics | {"train/critic_loss": critic_loss.detach(), "train/actor_loss": algo.actor_loss_last}


class TD3BC:
    online_only = False
    offline_only = False
    discrete_actions = False
    learns_from_latest = False

    def __init__(
        self,
        *,
        obs_dim: int,
        act_dim: int,
        network: MLPSpec,
        device: torch.device,
        gamma: float,
        tau: float,
        actor_lr: float,
        critic_lr: float,
        policy_noise: float,
        noise_clip: float,
        policy_freq: int,
        alpha: float,
        num_critics: int,
    ) -> None:
        self.gamma, self.tau, self.alpha = gamma, tau, alpha
        self.policy_noise, self.noise_clip = policy_noise, noise_clip
        build_delayed_actor_critic(
            self, obs_dim, act_dim, network, network, device, actor_lr, critic_lr, num_critics, policy_freq
        )

    initial_state = memoryless
    act = act_with_actor

    def critic_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        with torch.no_grad():
            next_q = self.critic_target(batch.next_obs, smoothed_next_action(self, batch.next_obs)).min(0).values
            target = td_target(batch.rew, batch.terminal, next_q, self.gamma)  # (n, B) -> (B,)
        q = self.critic(batch.obs, batch.act)  # (n, B)
        return critic_mse(q, target), {"train/q_mean": q.detach().mean()}

    def actor_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        pi = self.actor(batch.obs)
        q_pi = frozen_member(self.critic, 0, batch.obs, pi)  # the first critic only, as TD3+BC: (B,)
        loss, lam = td3_bc_actor_loss(q_pi, pi, batch.act, self.alpha)
        return loss, {"train/lambda": lam}

    def update(self, batch: Batch) -> dict[str, Tensor]:
        critic_loss, metrics = self.critic_loss(batch)
        return delayed_step(self, batch, critic_loss, metrics, self.actor_loss)
