"""Option-Critic (Bacon, Harb and Precup, "The Option-Critic Architecture", AAAI 2017).

K options ω = (π_ω, β_ω) run under a policy over options that is ε-greedy in Q_Ω(s, ω), with ε
decaying linearly. Each env step, on the transition just taken (s, ω, a, r, s', d), the intra-option
policies and terminations descend
  −log π_ω(a|s) (G − Q_Ω(s, ω)) − η H(π_ω(·|s))       (intra-option policy gradient)
  + β_ω(s') (Q_Ω(s', ω) − V_Ω(s') + ξ + c) (1 − d)   (termination gradient, regularizer ξ)
with G = r + γ (1 − d) [(1 − β_ω(s')) Q̄(s', ω) + β_ω(s') (max_ω' Q̄(s', ω') − c)] and V_Ω the value of
the ε-greedy policy over options. c is the deliberation cost of Harb, Bacon, Klissarov and Precup
("When Waiting is Not an Option", AAAI 2018): each switch pays it, so options last unless switching
gains more. Every `critic_every` steps the critic minimises
  E_replay[(Q_Ω(s, ω) − G)²]   (intra-option Q-learning on a small replay of (s, ω, a, r, s'))
and the target Q̄ is copied from Q_Ω every `target_every` steps. With `interest`, new options are drawn
from π_I,Ω(ω|s) ∝ I_ω(s) π_Ω(ω|s) (Khetarpal et al., "Options of Interest", AAAI 2020), V_Ω is that
policy's value, and the interest functions descend −β_ω(s') Σ_ω' π_I,Ω(ω'|s') Q_Ω(s', ω') (1 − d).
As in the authors' deep version, the one-step advantage G − Q_Ω(s, ω) stands in for the paper's
Q_U(s, ω, a) in the policy gradient.
Discrete actions use softmax intra-option policies, Box actions tanh-Gaussian ones.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor

from rlrun.algos.base import Batch, Cycle, adam, memoryless, optimizer_step
from rlrun.algos.options import act_with_options, build_options, hallway_metrics, pick, termination_figures
from rlrun.losses import critic_mse, intra_option_pg_loss, option_target, termination_loss
from rlrun.nets import MLPSpec, ObsNormalizer, mlp


class OptionCritic:
    online_only = True
    offline_only = False
    discrete_actions = None
    learns_from_latest = True
    parallel_seeds = False  # see base.Algorithm

    def __init__(
        self,
        *,
        obs_dim: int,
        act_dim: int,
        discrete: bool,
        network: MLPSpec,
        device: torch.device,
        n_options: int,
        gamma: float,
        critic_lr: float,
        actor_lr: float,
        termination_lr: float,
        termination_reg: float,
        deliberation_cost: float,
        interest: bool,
        interest_lr: float,
        entropy_coef: float,
        epsilon_start: float,
        epsilon_end: float,
        epsilon_decay_steps: int,
        critic_every: int,
        target_every: int,
        stats_rate: float,
    ) -> None:
        self.obs_norm = ObsNormalizer(obs_dim).to(device)  # identity: option-critic learns online from raw observations
        self.gamma, self.xi, self.eta, self.cost = gamma, termination_reg, entropy_coef, deliberation_cost
        self.q = mlp(obs_dim, n_options, network).to(device)  # Q_Ω(s, ·) for all options
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.critic_opt = adam(self.q.parameters(), lr=critic_lr)
        self._target_pairs = (list(self.q_target.parameters()), list(self.q.parameters()))
        build_options(
            self,
            obs_dim=obs_dim,
            act_dim=act_dim,
            discrete=discrete,
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
        self.critic_every, self.target_every = critic_every, target_every
        self.updates = Cycle(math.lcm(critic_every, target_every))  # a Python int: no device sync
        self.critic_loss_last = torch.zeros((), device=device)  # from the latest critic step, for logging

    initial_state = memoryless
    act = act_with_options
    figures = termination_figures
    eval_metrics = hallway_metrics

    def option_values(self, obs: Tensor) -> Tensor:
        """Q_Ω(s, ω) of every option, (B, O) -> (B, K)."""
        return self.q(obs)

    # --- losses ------------------------------------------------------------------------------
    @torch.no_grad()
    def target(self, batch: Batch, beta_next: Tensor) -> Tensor:
        """G = r + γ(1 − d) U(s', ω) with the target critic; (B,)."""
        q_next = self.q_target(batch.next_obs)  # (B, K)
        v_next = q_next.max(-1).values - self.cost  # a switch pays the deliberation cost
        return option_target(batch.rew, batch.terminal, beta_next, q_next, v_next, batch.option, self.gamma)

    def critic_loss(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Intra-option Q-learning on a replay batch; also returns β of every option there (B, K)."""
        with torch.no_grad():
            beta_all = self.options.beta(batch.next_obs)
            target = self.target(batch, pick(beta_all, batch.option))
        q = pick(self.q(batch.obs), batch.option)
        return critic_mse(q.unsqueeze(0), target), beta_all

    def actor_loss(self, latest: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Termination and intra-option policy losses on the transition just taken."""
        option = latest.option
        beta_next = pick(self.options.beta(latest.next_obs), option)
        with torch.no_grad():
            q_next = self.q(latest.next_obs)
            advantage = self.target(latest, beta_next.detach()) - pick(self.q(latest.obs), option)
        v_next, interest, interest_metrics = self.options.at_next(latest.next_obs, q_next, beta_next, latest.terminal)
        advantage_next = pick(q_next, option) - v_next
        log_prob, entropy = self.policies.log_prob_entropy(latest.obs, option, latest.act)
        term = termination_loss(beta_next, advantage_next, self.xi + self.cost, latest.terminal)
        policy = intra_option_pg_loss(log_prob, advantage, entropy, self.eta)
        return term + interest + policy, {
            "train/termination_loss": term.detach(),
            "train/policy_loss": policy.detach(),
            "train/entropy": entropy.detach().mean(),
            "train/advantage": advantage.mean(),
        } | interest_metrics

    def update(self, batch: Batch, latest: Batch) -> dict[str, Tensor]:
        """Actor step on `latest` every call; critic step on the replay `batch` every critic_every calls."""
        actor_loss, metrics = self.actor_loss(latest)
        optimizer_step(self.actor_opt, actor_loss)
        if self.updates.advance() % self.critic_every == 0:
            critic_loss, beta_all = self.critic_loss(batch)
            optimizer_step(self.critic_opt, critic_loss)
            self.critic_loss_last = critic_loss.detach()
            self.options.beta_last.copy_(beta_all.mean(0))
        if self.updates.position % self.target_every == 0:
            torch._foreach_copy_(*self._target_pairs)
        return metrics | self.options.stats() | {"train/critic_loss": self.critic_loss_last}
