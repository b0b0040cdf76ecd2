"""Soft Actor-Critic (Haarnoja et al., "Soft Actor-Critic Algorithms and Applications", 2018).

Minimises, per update on a batch (s, a, r, s', d):
  critics:  Σ_i E[(Q_i(s, a) − (r + γ(1 − d)(min_j Q̄_j(s', a') − α log π(a'|s'))))²], a' ~ π(·|s')
  actor:    E[α log π(ã|s) − min_i Q_i(s, ã)], ã ~ π(·|s)
  α:        −E[log α (log π(ã|s) + H̄)], H̄ = −act_dim by default
with target critics Q̄ following the critics by Polyak averaging (rate τ).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import Tensor

from rlrun.algos.base import Batch, adam, after_step, joint_step
from rlrun.losses import critic_mse, sac_actor_loss, soft_update, td_target, temperature_loss
from rlrun.nets import CriticEnsemble, MLPSpec, ObsNormalizer, TanhGaussianActor, frozen


class SAC:
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
        alpha_lr: float,
        init_alpha: float,
        autotune_alpha: bool,
        target_entropy: float | None,
        num_critics: int,
        backup_entropy: bool,
    ) -> None:
        self.act_dim, self.gamma, self.tau = act_dim, gamma, tau
        self.autotune_alpha, self.backup_entropy = autotune_alpha, backup_entropy
        self.target_entropy = -float(act_dim) if target_entropy is None else target_entropy
        self.obs_norm = ObsNormalizer(obs_dim).to(device)
        self.actor = TanhGaussianActor(obs_dim, act_dim, network).to(device)
        self.critic = CriticEnsemble(obs_dim, act_dim, network, num_critics).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(init_alpha), device=device, requires_grad=True)
        self.actor_opt = adam(self.actor.parameters(), lr=actor_lr)
        self.critic_opt = adam(self.critic.parameters(), lr=critic_lr)
        self.alpha_opt = adam([self.log_alpha], lr=alpha_lr)
        self._soft_pairs = (list(self.critic_target.parameters()), list(self.critic.parameters()))

    def initial_state(self) -> Any:
        return None

    @torch.no_grad()
    def act(self, obs: Tensor, state: Any = None, deterministic: bool = False) -> tuple[Tensor, Any]:
        action, _ = self.actor(self.obs_norm(obs), deterministic)
        return action, state

    @property
    def alpha(self) -> Tensor:
        return self.log_alpha.detach().exp()

    @torch.no_grad()
    def target_value(self, next_obs: Tensor) -> Tensor:
        """min_j Q̄_j(s', a') − α log π(a'|s') with a' ~ π(·|s'); (B, O) -> (B,)."""
        next_act, next_log_prob = self.actor(next_obs)
        value = self.critic_target(next_obs, next_act).min(0).values  # (n, B) -> (B,)
        return value - self.alpha * next_log_prob if self.backup_entropy else value

    def critic_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        target = td_target(batch.rew, batch.terminal, self.target_value(batch.next_obs), self.gamma)
        q = self.critic(batch.obs, batch.act)  # (n, B)
        return critic_mse(q, target), {"train/q_mean": q.detach().mean()}

    def actor_loss(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """The actor's loss and log π of its fresh actions (B,)."""
        action, log_prob = self.actor(batch.obs)
        q_pi = frozen(self.critic, batch.obs, action).min(0).values  # (n, B) -> (B,)
        return sac_actor_loss(self.alpha, log_prob, q_pi), log_prob

    def update(self, batch: Batch) -> dict[str, Tensor]:
        actor_loss, log_prob = self.actor_loss(batch)
        critic_loss, metrics = self.critic_loss(batch)
        soft_actor_critic_step(self, actor_loss, log_prob, critic_loss, *self.auxiliary_steps(metrics))
        return {
            **metrics,
            "train/critic_loss": critic_loss.detach(),
            "train/actor_loss": actor_loss.detach(),
            "train/alpha": self.alpha,
            "train/entropy": -log_prob.detach().mean(),
        }

    def auxiliary_steps(self, metrics: dict[str, Tensor]) -> list[tuple[torch.optim.Optimizer, Tensor]]:
        """Further (optimizer, loss) pairs of a subclass's update, taken from the critic's metrics."""
        return []


def soft_actor_critic_step(
    algo: Any, actor_loss: Tensor, log_prob: Tensor, critic_loss: Tensor, *auxiliary: tuple[torch.optim.Optimizer, Tensor]
) -> None:
    """The SAC family's update from losses at the current parameters: one backward for the actor,
    temperature (when tuned), critic and `auxiliary` losses, every optimizer steps, then the
    Polyak targets follow. The actor loss sees the critics `frozen`, so the gradients are disjoint.

    `algo` holds actor_opt, alpha_opt, log_alpha, autotune_alpha, target_entropy, critic_opt,
    _soft_pairs (target and online critic parameters) and tau, as SAC and SoftOptionCritic do.
    """
    steps = [(algo.actor_opt, actor_loss), (algo.critic_opt, critic_loss), *auxiliary]
    if algo.autotune_alpha:
        steps.append((algo.alpha_opt, temperature_loss(algo.log_alpha, log_prob, algo.target_entropy)))
    joint_step(*steps)
    after_step(soft_update, *algo._soft_pairs, algo.tau)
