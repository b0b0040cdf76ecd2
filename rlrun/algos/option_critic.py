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
and the target Q̄ is copied from Q_Ω every `target_every` steps. As in the authors' deep version,
the one-step advantage G − Q_Ω(s, ω) stands in for the paper's Q_U(s, ω, a) in the policy gradient.
Discrete actions use softmax intra-option policies, Box actions tanh-Gaussian ones.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rlrun.algos.base import Batch, adam, optimizer_step
from rlrun.losses import critic_mse, epsilon_greedy_value, intra_option_pg_loss, option_target, termination_loss
from rlrun.nets import MLPSpec, ObsNormalizer, OptionPolicies, mlp
from rlrun.viz import termination_figure


def pick(values: Tensor, option: Tensor) -> Tensor:
    """values[b, option[b]]: (B, K), (B,) -> (B,)."""
    return values.gather(1, option.unsqueeze(1)).squeeze(1)


class OptionCritic:
    online_only = True
    offline_only = False
    discrete_actions = None
    learns_from_latest = True

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
        entropy_coef: float,
        epsilon_start: float,
        epsilon_end: float,
        epsilon_decay_steps: int,
        critic_every: int,
        target_every: int,
        stats_rate: float,
    ) -> None:
        self.obs_norm = ObsNormalizer(obs_dim).to(device)  # identity: option-critic learns online from raw observations
        self.n_options, self.gamma, self.xi, self.eta = n_options, gamma, termination_reg, entropy_coef
        self.cost = deliberation_cost
        self.eps_start, self.eps_end, self.eps_steps = epsilon_start, epsilon_end, epsilon_decay_steps
        self.critic_every, self.target_every, self.stats_rate = critic_every, target_every, stats_rate
        self._build_critic(obs_dim, act_dim, network, device, critic_lr)
        self.termination = mlp(obs_dim, n_options, network).to(device)  # logits of β_ω(s)
        self.policies = OptionPolicies(obs_dim, act_dim, n_options, discrete, network).to(device)
        self.actor_opt = adam(
            [
                {"params": self.policies.parameters(), "lr": actor_lr},
                {"params": self.termination.parameters(), "lr": termination_lr},
            ]
        )
        self.env_steps = torch.zeros((), dtype=torch.long)  # CPU counters: no device sync
        self.updates = torch.zeros((), dtype=torch.long)
        self.usage = torch.full((n_options,), 1.0 / n_options, device=device)  # EMA of option frequencies
        self.switch_rate = torch.ones((), device=device)  # EMA of P(option ends) per step
        self.critic_loss_last = torch.zeros((), device=device)  # from the latest critic step, for logging
        self.beta_last = torch.zeros(n_options, device=device)  # mean β_ω(s') of that step's batch

    def _build_critic(self, obs_dim: int, act_dim: int, network: MLPSpec, device: torch.device, critic_lr: float) -> None:
        """Q_Ω(s, ·) for all options, its target copy and its optimizer."""
        self.q = mlp(obs_dim, self.n_options, network).to(device)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.critic_opt = adam(self.q.parameters(), lr=critic_lr)
        self._target_pairs = (list(self.q_target.parameters()), list(self.q.parameters()))

    # --- acting ------------------------------------------------------------------------------
    @property
    def epsilon(self) -> Tensor:
        """ε of the policy over options now, a 0-dim CPU tensor (no host sync, no compile graph break)."""
        frac = (self.env_steps / max(1, self.eps_steps)).clamp(max=1.0)
        return self.eps_start + frac * (self.eps_end - self.eps_start)

    def initial_state(self) -> Any:
        return None

    def option_values(self, obs: Tensor) -> Tensor:
        """Q_Ω(s, ω) of every option, (B, O) -> (B, K)."""
        return self.q(obs)

    def beta(self, obs: Tensor) -> Tensor:
        """Termination probabilities of every option, (B, O) -> (B, K)."""
        return torch.sigmoid(self.termination(obs))

    def figures(self, env: Any, device: torch.device) -> dict[str, Any]:
        """The contract's figures hook: each option's β over a grid world (none for other envs)."""
        figure = termination_figure(self.beta, env, device)
        return {} if figure is None else {"termination_probs": figure}

    @torch.no_grad()
    def act(self, obs: Tensor, state: Tensor | None, deterministic: bool = False) -> tuple[Tensor, Tensor]:
        """Keep the running option unless it terminates at obs (sampled; β > 0.5 when deterministic),
        then pick one ε-greedily (greedily when deterministic); act with its policy. State: options (B,)."""
        b, obs = obs.shape[0], self.obs_norm(obs)
        new = self.option_values(obs).argmax(-1)  # (B, K) -> (B,)
        if state is None:
            ends = torch.ones(b, dtype=torch.bool, device=obs.device)
        else:
            beta = pick(self.beta(obs), state)
            ends = beta > 0.5 if deterministic else torch.rand_like(beta) < beta
        if not deterministic:
            explore = torch.rand(b, device=obs.device) < self.epsilon
            new = torch.where(explore, torch.randint(0, self.n_options, (b,), device=obs.device), new)
        option = new if state is None else torch.where(ends, new, state)
        if not deterministic:
            self._record(option, ends)
        return self.policies.sample(obs, option, deterministic), option

    def _record(self, option: Tensor, ends: Tensor) -> None:
        """Training-time statistics: option frequencies and termination rate (EMAs), env steps."""
        self.env_steps += 1
        self.usage.lerp_(F.one_hot(option, self.n_options).float().mean(0), self.stats_rate)
        self.switch_rate.lerp_(ends.float().mean(), self.stats_rate)

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
            beta_all = self.beta(batch.next_obs)
            target = self.target(batch, pick(beta_all, batch.option))
        q = pick(self.q(batch.obs), batch.option)
        return critic_mse(q.unsqueeze(0), target), beta_all

    def actor_loss(self, latest: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Termination and intra-option policy losses on the transition just taken."""
        option = latest.option
        beta_next = pick(self.beta(latest.next_obs), option)
        with torch.no_grad():
            q_next = self.q(latest.next_obs)
            advantage_next = pick(q_next, option) - epsilon_greedy_value(q_next, self.epsilon)
            advantage = self.target(latest, beta_next.detach()) - pick(self.q(latest.obs), option)
        log_prob, entropy = self.policies.log_prob_entropy(latest.obs, option, latest.act)
        term = termination_loss(beta_next, advantage_next, self.xi + self.cost, latest.terminal)
        policy = intra_option_pg_loss(log_prob, advantage, entropy, self.eta)
        return term + policy, {
            "train/termination_loss": term.detach(),
            "train/policy_loss": policy.detach(),
            "train/entropy": entropy.detach().mean(),
            "train/advantage": advantage.mean(),
        }

    def update(self, batch: Batch, latest: Batch) -> dict[str, Tensor]:
        """Actor step on `latest` every call; critic step on the replay `batch` every critic_every calls."""
        self.updates += 1
        actor_loss, metrics = self.actor_loss(latest)
        optimizer_step(self.actor_opt, actor_loss)
        if int(self.updates) % self.critic_every == 0:
            critic_loss, beta_all = self.critic_loss(batch)
            optimizer_step(self.critic_opt, critic_loss)
            self.critic_loss_last, self.beta_last = critic_loss.detach(), beta_all.mean(0)
        if int(self.updates) % self.target_every == 0:
            torch._foreach_copy_(*self._target_pairs)
        return metrics | self.option_stats() | {"train/critic_loss": self.critic_loss_last, "train/epsilon": self.epsilon}

    def option_stats(self) -> dict[str, Tensor]:
        """Per option: usage frequency and mean β over the last critic batch; mean option duration."""
        stats = {"train/option_duration_mean": 1.0 / self.switch_rate.clamp_min(1e-6)}
        for k in range(self.n_options):
            stats[f"train/option_usage/{k}"] = self.usage[k]
            stats[f"train/termination_prob/{k}"] = self.beta_last[k]
        return stats
