"""ReBRAC (Tarasov et al., "Revisiting the Minimalist Approach to Offline Reinforcement Learning", 2023).

TD3+BC with LayerNorm critics, behaviour-cloning penalties in both actor and critic, and a large
batch. Per update on a batch (s, a, r, s', a'_data, d):
  critics:  Σ_i E[(Q_i(s, a) − (r + γ(1 − d)(min_j Q̄_j(s', ã') − β_c ||ã' − a'_data||²)))²],
            ã' = clip(π̄(s') + clip(ε, ±c), ±1)                            (target policy smoothing)
  actor, every `policy_freq` updates:
            E[β_a ||π(s) − a||² − λ min_i Q_i(s, π(s))],  λ = 1 / E|min_i Q_i(s, π(s))| (held constant)
then the targets follow by Polyak averaging. a'_data is the dataset's next action (at an episode's
last step, its own action), so ReBRAC learns from datasets only. The shared TD3 parts live in
rlrun.algos.td3_bc.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from rlrun.algos.base import Batch, act_with_actor, memoryless
from rlrun.algos.td3_bc import build_delayed_actor_critic, delayed_step, smoothed_next_action
from rlrun.losses import critic_mse, rebrac_actor_loss, rebrac_next_value, td_target
from rlrun.nets import MLPSpec, frozen


class ReBRAC:
    online_only = False
    offline_only = True
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
        num_critics: int,
        actor_bc_coef: float,
        critic_bc_coef: float,
        normalize_q: bool,
        critic_layer_norm: bool,
    ) -> None:
        self.gamma, self.tau = gamma, tau
        self.policy_noise, self.noise_clip = policy_noise, noise_clip
        self.actor_bc_coef, self.critic_bc_coef, self.normalize_q = actor_bc_coef, critic_bc_coef, normalize_q
        critic_spec = replace(network, layer_norm=network.layer_norm or critic_layer_norm)
        build_delayed_actor_critic(
            self, obs_dim, act_dim, network, critic_spec, device, actor_lr, critic_lr, num_critics, policy_freq
        )

    initial_state = memoryless
    act = act_with_actor

    def critic_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        with torch.no_grad():
            next_act = smoothed_next_action(self, batch.next_obs)  # (B, A)
            next_q = self.critic_target(batch.next_obs, next_act).min(0).values  # (n, B) -> (B,)
            next_value = rebrac_next_value(next_q, next_act, batch.next_act, self.critic_bc_coef)
            target = td_target(batch.rew, batch.terminal, next_value, self.gamma)
        q = self.critic(batch.obs, batch.act)  # (n, B)
        return critic_mse(q, target), {"train/q_mean": q.detach().mean()}

    def actor_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        pi = self.actor(batch.obs)
        q_pi = frozen(self.critic, batch.obs, pi).min(0).values  # (n, B) -> (B,)
        loss = rebrac_actor_loss(q_pi, pi, batch.act, self.actor_bc_coef, self.normalize_q)
        return loss, {"train/bc_mse": ((pi - batch.act) ** 2).sum(-1).mean().detach()}

    def update(self, batch: Batch) -> dict[str, Tensor]:
        critic_loss, metrics = self.critic_loss(batch)
        return delayed_step(self, batch, critic_loss, metrics, self.actor_loss)
