"""Behaviour cloning (Pomerleau 1991; CORL's "BC" baseline).

Fits the policy to the dataset's actions, ignoring rewards:
  deterministic actor:  E[(π(s) − a)²]            (mean squared error, the default)
  Gaussian actor:       −E[log π(a|s)]            (log-likelihood; `gaussian=true`)
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlrun.algos.base import Batch, act_with_actor, adam, memoryless, optimizer_step
from rlrun.losses import weighted_log_likelihood_loss
from rlrun.nets import DeterministicActor, GaussianActor, MLPSpec, ObsNormalizer


class BC:
    online_only = False
    offline_only = True
    discrete_actions = False
    learns_from_latest = False

    def __init__(
        self, *, obs_dim: int, act_dim: int, network: MLPSpec, device: torch.device, actor_lr: float, gaussian: bool
    ) -> None:
        self.gaussian = gaussian
        self.obs_norm = ObsNormalizer(obs_dim).to(device)
        self.actor = (
            GaussianActor(obs_dim, act_dim, network, tanh_mean=True, dropout=0.0, min_explore_std=0.0)
            if gaussian
            else DeterministicActor(obs_dim, act_dim, network)
        ).to(device)
        self.actor_opt = adam(self.actor.parameters(), lr=actor_lr)

    initial_state = memoryless
    act = act_with_actor

    def loss(self, batch: Batch) -> Tensor:
        if self.gaussian:
            return weighted_log_likelihood_loss(self.actor.log_prob(batch.obs, batch.act), torch.ones_like(batch.rew))
        return ((self.actor(batch.obs) - batch.act) ** 2).mean()

    def update(self, batch: Batch) -> dict[str, Tensor]:
        loss = self.loss(batch)
        optimizer_step(self.actor_opt, loss)
        return {"train/actor_loss": loss.detach()}
