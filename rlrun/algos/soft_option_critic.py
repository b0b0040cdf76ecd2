"""Soft option-critic for Box actions: Option-Critic (Bacon, Harb and Precup, "The Option-Critic
Architecture", AAAI 2017) with the paper's action-value critic Q_U(s, ω, a) learned off-policy and
entropy-regularised values as in SAC (Haarnoja et al., "Soft Actor-Critic Algorithms and
Applications", 2018).

On replay batches (s, ω, a, r, s', d), with a'_ω ~ π_ω(·|s') and ã ~ π_ω(·|s), it minimises
  critics:      Σ_i E[(Q_U,i(s, ω, a) − G)²],
                G = r + γ(1 − d)[(1 − β_ω(s')) Q̄_Ω(s', ω) + β_ω(s') (V_Ω(s') − c)],
                Q̄_Ω(s', ω) = min_j Q̄_U,j(s', ω, a'_ω) − α log π_ω(a'_ω|s'),
                V_Ω(s') = (1 − ε) max_ω' Q̄_Ω(s', ω') + ε mean_ω' Q̄_Ω(s', ω')  (the ε-greedy policy's)
  policies:     E[α log π_ω(ã|s) − min_i Q_U,i(s, ω, ã)]   (intra-option gradient, reparameterized)
  terminations: E[β_ω(s') (Q̄_Ω(s', ω) − V_Ω(s') + ξ + c)(1 − d)]   (termination gradient)
  temperature:  −E[log α (log π_ω(ã|s) − act_dim)]
with target critics Q̄_U following by Polyak averaging (rate τ), and c the deliberation cost of a
switch (Harb, Bacon, Klissarov and Precup, "When Waiting is Not an Option", AAAI 2018). The paper's intra-option policy
gradient E[∇ log π_ω(a|s) Q_U(s, ω, a)] is the gradient of E_a~π_ω[Q_U(s, ω, a)]; for continuous
actions the reparameterized estimator of that same gradient has far lower variance than the
one-step likelihood-ratio one of `OptionCritic`. The policy over options stays ε-greedy in
Q_Ω(s, ω) ≈ min_i Q_U,i(s, ω, tanh μ_ω(s)).
With `critic_every_option` the critics fit every option's Q_U(s, ω', a) at the transition's action
on its own G_ω' (intra-option value learning, Sutton, Precup and Singh 1999): Q_U conditions on the
action, so one transition is evidence for every option, not only for the one that chose it.
With `interest` the policy over options draws a new option from π_I,Ω(ω|s) ∝ I_ω(s) π_Ω(ω|s), I_ω the
options' interest functions (Khetarpal et al., "Options of Interest", AAAI 2020); V_Ω above is then
that policy's value, and the interest functions minimise
  interest:     −E[β_ω(s') Σ_ω' π_I,Ω(ω'|s') Q̄_Ω(s', ω') (1 − d)]   (interest-function gradient).
With `critic_huber` = δ > 0 a critic's TD error e beyond δ counts 2δ|e| − δ² instead of e² (twice the
Huber loss): the same near the target, linear for the rare large errors of a lucky episode.
With `termination_standardize` the termination gradient takes Â + ξ in place of A + ξ + c, with
Â = (A − mean A) / std A over the batch's non-terminal s' (A = Q̄_Ω(s', ω) − V_Ω(s')): ξ is then in
units of the advantage's spread, options end where they are worst relative to the batch whatever the
value scale, and c acts through the values alone. This is rlrun's setting, not the papers'.
"""

from __future__ import annotations

import copy
import math
from functools import partial

import torch
from torch import Tensor

from rlrun.algos.base import Batch, adam, memoryless
from rlrun.algos.options import act_with_options, build_options, hallway_metrics, pick, termination_figures
from rlrun.algos.sac import soft_actor_critic_step
from rlrun.losses import (
    critic_huber_loss,
    critic_mse,
    every_option_target,
    sac_actor_loss,
    standardized,
    termination_loss,
)
from rlrun.nets import CriticEnsemble, MLPSpec, ObsNormalizer, frozen


class SoftOptionCritic:
    online_only = True
    offline_only = False
    discrete_actions = False
    learns_from_latest = False
    parallel_seeds = False  # see base.Algorithm

    def __init__(
        self,
        *,
        obs_dim: int,
        act_dim: int,
        network: MLPSpec,
        device: torch.device,
        n_options: int,
        gamma: float,
        tau: float,
        critic_lr: float,
        actor_lr: float,
        termination_lr: float,
        alpha_lr: float,
        init_alpha: float,
        autotune_alpha: bool,
        target_entropy: float | None,
        num_critics: int,
        termination_reg: float,
        deliberation_cost: float,
        interest: bool,
        interest_lr: float,
        epsilon_start: float,
        epsilon_end: float,
        epsilon_decay_steps: int,
        stats_rate: float,
        critic_every_option: bool,
        critic_huber: float,
        termination_standardize: bool,
    ) -> None:
        self.obs_norm = ObsNormalizer(obs_dim).to(device)  # identity: option-critics learn online from raw observations
        self.gamma, self.tau, self.xi, self.cost = gamma, tau, termination_reg, deliberation_cost
        self.autotune_alpha, self.critic_every_option = autotune_alpha, critic_every_option
        self.termination_standardize = termination_standardize
        self.value_loss = partial(critic_huber_loss, delta=critic_huber) if critic_huber > 0 else critic_mse
        # Q_U(s, ω, a): an ensemble with ω as a one-hot beside s, its Polyak target and optimizer
        self.critic = CriticEnsemble(obs_dim + n_options, act_dim, network, num_critics).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.critic_opt = adam(self.critic.parameters(), lr=critic_lr)
        self._soft_pairs = (list(self.critic_target.parameters()), list(self.critic.parameters()))
        build_options(
            self,
            obs_dim=obs_dim,
            act_dim=act_dim,
            discrete=False,
            network=network,
            device=device,
            n_options=n_options,
            actor_lr=actor_lr,
            termination_lr=termination_lr,
            interest=interest,
            interest_lr=interest_lr,
            epsilon_start=epsilon_start,
            epsilon_end=epsilon_end,
            epsilon_decay_steps=epsilon_decay_steps,
            stats_rate=stats_rate,
        )
        self.target_entropy = -float(act_dim) if target_entropy is None else target_entropy
        self.log_alpha = torch.tensor(math.log(init_alpha), device=device, requires_grad=True)
        self.alpha_opt = adam([self.log_alpha], lr=alpha_lr)
        self.eye = torch.eye(n_options, device=device)
        self.updates = torch.zeros((), dtype=torch.long)  # a CPU counter: no device sync
        self.critic_loss_last = torch.zeros((), device=device)  # from the latest step, for logging

    initial_state = memoryless
    act = act_with_options
    figures = termination_figures
    eval_metrics = hallway_metrics

    @property
    def alpha(self) -> Tensor:
        return self.log_alpha.detach().exp()

    def with_options(self, obs: Tensor) -> Tensor:
        """obs beside each option's one-hot: (*B, O) -> (*B, K, O + K)."""
        k = self.n_options
        return torch.cat([obs.unsqueeze(-2).expand(*obs.shape[:-1], k, -1), self.eye.expand(*obs.shape[:-1], k, k)], -1)

    def with_option(self, obs: Tensor, option: Tensor) -> Tensor:
        """obs beside the one-hot of its option: (B, O), (B,) -> (B, O + K)."""
        return torch.cat([obs, self.eye[option]], -1)

    @torch.no_grad()
    def option_values(self, obs: Tensor) -> Tensor:
        """Q_Ω(s, ω) ≈ min_i Q_U,i(s, ω, tanh μ_ω(s)) for every option, (B, O) -> (B, K)."""
        act, _ = self.policies.rsample_all(obs, deterministic=True)  # (B, K, A)
        return self.critic(self.with_options(obs), act).min(0).values  # (n, B, K) -> (B, K)

    @torch.no_grad()
    def soft_option_values(self, next_obs: Tensor) -> Tensor:
        """Q̄_Ω(s', ω) = min_j Q̄_U,j(s', ω, a'_ω) − α log π_ω(a'_ω|s') for every option, (B, O) -> (B, K)."""
        act, log_prob = self.policies.rsample_all(next_obs)  # (B, K, A), (B, K)
        q = self.critic_target(self.with_options(next_obs), act).min(0).values  # (n, B, K) -> (B, K)
        return q - self.alpha * log_prob

    def critic_loss(
        self, batch: Batch, obs_option: Tensor, beta_all: Tensor, q_next: Tensor, v_next: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Σ_i MSE of Q_U,i(s, ω, a) against G_ω, for the running option ω (obs_option: s beside its
        one-hot), or for every option (`critic_every_option`); returns it and the running option's Q_U (n, B)."""
        target = every_option_target(batch.rew, batch.terminal, beta_all.detach(), q_next, v_next, self.gamma)  # (B, K)
        if not self.critic_every_option:
            q = self.critic(obs_option, batch.act)  # (n, B)
            return self.value_loss(q, pick(target, batch.option)), q
        q_all = self.critic(self.with_options(batch.obs), batch.act.unsqueeze(1))  # (B, K, O+K), (B, 1, A) -> (n, B, K)
        q = q_all.gather(2, batch.option.view(1, -1, 1).expand(q_all.shape[0], -1, 1)).squeeze(2)  # (n, B, K) -> (n, B)
        return self.value_loss(q_all.flatten(1), target.flatten()), q  # (n, B, K) -> (n, B·K)

    def termination_objective(self, beta_running: Tensor, advantage: Tensor, terminal: Tensor) -> Tensor:
        """The termination loss: at A + ξ + η, or with `termination_standardize` at the advantage
        standardized over the batch plus ξ (the cost then acts through the values alone)."""
        if self.termination_standardize:
            return termination_loss(beta_running, standardized(advantage, 1.0 - terminal), self.xi, terminal)
        return termination_loss(beta_running, advantage, self.xi + self.cost, terminal)

    def losses(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, dict[str, Tensor]]:
        """Critic, intra-option policy and termination losses, log π of the fresh actions (B,) and
        β of every option at s' (B, K)."""
        q_next = self.soft_option_values(batch.next_obs)  # (B, K)
        beta_all = self.options.beta(batch.next_obs)  # (B, K)
        beta_running = pick(beta_all, batch.option)
        v_next, interest, interest_metrics = self.options.at_next(batch.next_obs, q_next, beta_running, batch.terminal)
        obs_option = self.with_option(batch.obs, batch.option)
        critic, q = self.critic_loss(batch, obs_option, beta_all, q_next, v_next - self.cost)  # a switch pays the cost
        advantage_next = pick(q_next, batch.option) - v_next
        term = self.termination_objective(beta_running, advantage_next, batch.terminal)
        act, log_prob = self.policies.rsample(batch.obs, batch.option)  # (B, A), (B,): the running option's
        q_pi = frozen(self.critic, obs_option, act).min(0).values  # (n, B) -> (B,)
        policy = sac_actor_loss(self.alpha, log_prob, q_pi)
        metrics = {
            "train/q_mean": q.detach().mean(),
            "train/termination_loss": term.detach(),
            "train/policy_loss": policy.detach(),
            "train/advantage": advantage_next.mean(),
        } | interest_metrics
        return critic, policy, term + interest, log_prob, beta_all.detach(), metrics

    def update(self, batch: Batch) -> dict[str, Tensor]:
        self.updates += 1
        critic_loss, policy_loss, term_loss, log_prob, beta_all, metrics = self.losses(batch)
        soft_actor_critic_step(self, policy_loss + term_loss, log_prob, critic_loss)
        self.critic_loss_last = critic_loss.detach()
        self.options.beta_last.copy_(beta_all.mean(0))
        return (
            metrics
            | self.options.stats()
            | {"train/critic_loss": self.critic_loss_last, "train/alpha": self.alpha, "train/entropy": -log_prob.detach().mean()}
        )
