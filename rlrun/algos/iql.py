"""Implicit Q-Learning (Kostrikov, Nair & Levine, "Offline Reinforcement Learning with Implicit
Q-Learning", ICLR 2022).

Never queries Q at actions outside the data. Per update on a batch (s, a, r, s', d):
  value:    E[|τ − 1(u < 0)| u²],  u = min_j Q̄_j(s, a) − V(s)           (expectile regression)
  critics:  Σ_i E[(Q_i(s, a) − (r + γ(1 − d) V(s')))²]
  actor:    −E[min(exp(β u), w_max) log π(a|s)]                       (advantage-weighted regression)
with all three losses at the same parameters and one backward; the target critics Q̄ follow by
Polyak averaging, and the actor's learning rate follows CORL's cosine schedule over
`lr_schedule_steps` updates (the scheduler is saved in checkpoints). The actor is a Gaussian with
a tanh mean and a state-independent σ, as in CORL; the actions it explores with online can be given
a floor on σ (`min_explore_std`, rlrun's exploration setting, not the paper's).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from rlrun.algos.base import Batch, act_with_actor, adam, after_step, joint_step, memoryless
from rlrun.losses import (
    advantage_weights,
    critic_mse,
    expectile_loss,
    soft_update,
    td_target,
    weighted_log_likelihood_loss,
)
from rlrun.nets import CriticEnsemble, GaussianActor, MLPSpec, ObsNormalizer, mlp


class IQL:
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
        value_lr: float,
        expectile: float,
        beta: float,
        max_weight: float,
        actor_dropout: float,
        min_explore_std: float,
        lr_schedule_steps: int,
        num_critics: int,
    ) -> None:
        self.gamma, self.tau, self.expectile, self.beta, self.max_weight = gamma, tau, expectile, beta, max_weight
        self.obs_norm = ObsNormalizer(obs_dim).to(device)
        self.actor = GaussianActor(
            obs_dim, act_dim, network, tanh_mean=True, dropout=actor_dropout, min_explore_std=min_explore_std
        ).to(device)
        self.critic = CriticEnsemble(obs_dim, act_dim, network, num_critics).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.value = mlp(obs_dim, 1, network).to(device)
        self.actor_opt = adam(self.actor.parameters(), lr=torch.tensor(actor_lr))  # a tensor lr: the schedule never recompiles
        self.critic_opt = adam(self.critic.parameters(), lr=critic_lr)
        self.value_opt = adam(self.value.parameters(), lr=value_lr)
        self.actor_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.actor_opt, max(1, lr_schedule_steps))
        self._soft_pairs = (list(self.critic_target.parameters()), list(self.critic.parameters()))

    initial_state = memoryless
    act = act_with_actor

    def losses(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]:
        """Value, critic and actor losses at the current parameters, and metrics."""
        with torch.no_grad():
            target_q = self.critic_target(batch.obs, batch.act).min(0).values  # (n, B) -> (B,)
            next_v = self.value(batch.next_obs).squeeze(-1)  # (B, 1) -> (B,)
        v = self.value(batch.obs).squeeze(-1)  # (B, 1) -> (B,)
        advantage = target_q - v
        value_loss = expectile_loss(advantage, self.expectile)
        q = self.critic(batch.obs, batch.act)  # (n, B)
        critic_loss = critic_mse(q, td_target(batch.rew, batch.terminal, next_v, self.gamma))
        weights = advantage_weights(advantage, self.beta, self.max_weight)
        actor_loss = weighted_log_likelihood_loss(self.actor.log_prob(batch.obs, batch.act), weights)
        metrics = {
            "train/q_mean": q.detach().mean(),
            "train/v_mean": v.detach().mean(),
            "train/weight_mean": weights.mean(),
            "train/actor_std": self.actor.std().detach().mean(),
        }
        return value_loss, critic_loss, actor_loss, metrics

    def update(self, batch: Batch) -> dict[str, Tensor]:
        value_loss, critic_loss, actor_loss, metrics = self.losses(batch)
        joint_step((self.value_opt, value_loss), (self.critic_opt, critic_loss), (self.actor_opt, actor_loss))
        after_step(self.actor_schedule.step)
        after_step(soft_update, *self._soft_pairs, self.tau)
        return metrics | {
            "train/value_loss": value_loss.detach(),
            "train/critic_loss": critic_loss.detach(),
            "train/actor_loss": actor_loss.detach(),
        }
