"""Advantage-Weighted Actor-Critic (Nair, Gupta, Dalal & Levine, "AWAC: Accelerating Online
Reinforcement Learning with Offline Datasets", 2020).

Per update on a batch (s, a, r, s', d):
  critics:  Σ_i E[(Q_i(s, a) − (r + γ(1 − d) min_j Q̄_j(s', a')))²],  a' ~ π(·|s')
  actor:    −E[min(exp(A(s, a) / λ), w_max) log π(a|s)],
            A(s, a) = min_i Q_i(s, a) − min_i Q_i(s, ã), ã ~ π(·|s)      (no gradient through A)
with both losses at the same parameters and one backward, and the target critics following by
Polyak averaging. As in CORL, the actor is a Gaussian with a raw mean and a state-independent σ,
its samples clipped to the action bounds; the actions it explores with online can be given a floor
on σ (`min_explore_std`, rlrun's exploration setting, not the paper's); the draws a' and ã above keep σ.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from rlrun.algos.base import Batch, act_with_actor, adam, after_step, joint_step, memoryless
from rlrun.losses import advantage_weights, critic_mse, soft_update, td_target, weighted_log_likelihood_loss
from rlrun.nets import CriticEnsemble, GaussianActor, MLPSpec, ObsNormalizer


class AWAC:
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
        awac_lambda: float,
        max_weight: float,
        min_explore_std: float,
        num_critics: int,
    ) -> None:
        self.gamma, self.tau, self.awac_lambda, self.max_weight = gamma, tau, awac_lambda, max_weight
        self.obs_norm = ObsNormalizer(obs_dim).to(device)
        self.actor = GaussianActor(obs_dim, act_dim, network, tanh_mean=False, dropout=0.0, min_explore_std=min_explore_std).to(
            device
        )
        self.critic = CriticEnsemble(obs_dim, act_dim, network, num_critics).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = adam(self.actor.parameters(), lr=actor_lr)
        self.critic_opt = adam(self.critic.parameters(), lr=critic_lr)
        self._soft_pairs = (list(self.critic_target.parameters()), list(self.critic.parameters()))

    initial_state = memoryless
    act = act_with_actor

    def losses(self, batch: Batch) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Critic and actor losses at the current parameters, and metrics."""
        with torch.no_grad():
            next_q = self.critic_target(batch.next_obs, self.actor.sample(batch.next_obs)).min(0).values  # (B,)
            target = td_target(batch.rew, batch.terminal, next_q, self.gamma)
            # the baseline Q at one policy action per state needs no graph: the backward runs over B rows, not 2B
            q_policy = self.critic(batch.obs, self.actor.sample(batch.obs)).min(0).values  # (n, B) -> (B,)
        q = self.critic(batch.obs, batch.act)  # (n, B)
        critic_loss = critic_mse(q, target)
        q_data = q.detach().min(0).values  # (n, B) -> (B,)
        weights = advantage_weights(q_data - q_policy, 1.0 / self.awac_lambda, self.max_weight)
        actor_loss = weighted_log_likelihood_loss(self.actor.log_prob(batch.obs, batch.act), weights)
        return critic_loss, actor_loss, {"train/q_mean": q_data.mean(), "train/weight_mean": weights.mean()}

    def update(self, batch: Batch) -> dict[str, Tensor]:
        critic_loss, actor_loss, metrics = self.losses(batch)
        joint_step((self.critic_opt, critic_loss), (self.actor_opt, actor_loss))
        after_step(soft_update, *self._soft_pairs, self.tau)
        return metrics | {"train/critic_loss": critic_loss.detach(), "train/actor_loss": actor_loss.detach()}
