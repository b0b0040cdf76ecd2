"""Conservative Q-Learning, CQL(H) (Kumar et al., "Conservative Q-Learning for Offline RL", 2020).

SAC whose critic loss gains, per critic i, the conservative penalty
  α_cql · clip(E_s[T log Σ_a exp(Q_i(s, a)/T) / density(a)] − E_(s,a)~D[Q_i(s, a)])
where the sum runs over N uniform actions, N actions of π(·|s) and N of π(·|s') (importance
sampled logsumexp). The Lagrange variant replaces α_cql with α' α_cql, α' tuned so the
difference approaches `target_action_gap`. Optional: max-target backup over N next actions,
and `bc_steps` updates of behaviour cloning for the actor at the start, and `cql_alpha_online`, the
weight from the start of online fine-tuning. rlrun.algos.cal_ql's CalQL shares these methods.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlrun import noise
from rlrun.algos.base import Batch, adam
from rlrun.algos.sac import SAC
from rlrun.losses import calibrated, cql_difference, cql_logsumexp, critic_mse, lagrange_terms, td_target


class CQL(SAC):
    # CalQL: batches carry the data's returns (Batch.mc_return), which bound the pushed-down Q-values below
    uses_mc_returns = False

    def __init__(
        self,
        *,
        cql_alpha: float,
        n_actions: int,
        temperature: float,
        importance_sample: bool,
        lagrange: bool,
        target_action_gap: float,
        alpha_prime_lr: float,
        max_target_backup: bool,
        bc_steps: int,
        clip_diff_min: float,
        clip_diff_max: float,
        cql_alpha_online: float | None,
        **sac_settings,
    ) -> None:
        SAC.__init__(self, **sac_settings)  # named, not super(): CalQL (a SAC) runs this __init__ too
        # a tensor, so the online weight set at the switch is in checkpoints
        self.cql_alpha = torch.tensor(float(cql_alpha), device=self.log_alpha.device)
        self.cql_alpha_online, self.n_actions, self.temperature = cql_alpha_online, n_actions, temperature
        self.importance_sample, self.lagrange, self.target_action_gap = importance_sample, lagrange, target_action_gap
        self.max_target_backup, self.bc_steps = max_target_backup, bc_steps
        self.clip_diff = (clip_diff_min, clip_diff_max)
        self.log_alpha_prime = torch.zeros((), device=self.log_alpha.device, requires_grad=True)
        self.alpha_prime_opt = adam([self.log_alpha_prime], lr=alpha_prime_lr)
        self.updates = torch.zeros((), dtype=torch.long)  # CPU counter: no device sync for bc_steps

    @torch.no_grad()
    def target_value(self, next_obs: Tensor) -> Tensor:
        if not self.max_target_backup:
            return SAC.target_value(self, next_obs)
        next_act, next_log_prob = self.actor.sample_n(next_obs, self.n_actions)  # (B, N, A), (B, N)
        q = self.critic_target(next_obs.unsqueeze(1), next_act).min(0).values  # (n, B, N) -> (B, N)
        value, idx = q.max(-1)  # (B, N) -> (B,)
        if self.backup_entropy:
            value = value - self.alpha * next_log_prob.gather(-1, idx.unsqueeze(-1)).squeeze(-1)
        return value

    def critic_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        target = td_target(batch.rew, batch.terminal, self.target_value(batch.next_obs), self.gamma)
        B, n = batch.obs.shape[0], self.n_actions
        with torch.no_grad():
            both = torch.stack([batch.obs, batch.next_obs], 1)  # (B, 2, O)
            pi_act, pi_log_prob = self.actor.sample_n(both, n)  # (B, 2, N, A), (B, 2, N)
            rand_act = noise.uniform((B, n, self.act_dim), -1.0, 1.0, batch.obs.device)  # (B, N, A)
        # Q(s, ·) at the data action and all 3N sampled actions in one pass: (B, 1 + 3N, A);
        # s enters once per state and broadcasts over the 1 + 3N actions
        actions = torch.cat([batch.act.unsqueeze(1), rand_act, pi_act.flatten(1, 2)], 1)
        q_all = self.critic(batch.obs.unsqueeze(1), actions)  # (n_critics, B, 1 + 3N)
        q_data = q_all[..., 0]
        q_rand, q_pi, q_next_pi = q_all[..., 1:].split(n, -1)  # 3 × (n_critics, B, N)
        metrics = {"train/q_mean": q_data.detach().mean()}
        if self.uses_mc_returns and batch.mc_return is not None:  # online batches carry no returns: plain CQL
            metrics["train/calibrated_share"] = (q_pi.detach() < batch.mc_return[None, :, None]).float().mean()
            q_pi, q_next_pi = calibrated(q_pi, batch.mc_return), calibrated(q_next_pi, batch.mc_return)
        ood = cql_logsumexp(
            q_rand, q_pi, q_next_pi, pi_log_prob[:, 0], pi_log_prob[:, 1], self.act_dim, self.temperature, self.importance_sample
        )
        diff = cql_difference(ood, q_data, *self.clip_diff)  # (n_critics,)
        metrics["train/cql_diff"] = diff.detach().mean()
        if self.lagrange:
            penalty, metrics["train/alpha_prime_loss"] = lagrange_terms(
                self.log_alpha_prime, diff, self.cql_alpha, self.target_action_gap
            )
            metrics["train/alpha_prime"] = self.log_alpha_prime.detach().exp()
        else:
            penalty = self.cql_alpha * diff
        td_loss = critic_mse(q_data, target)
        metrics["train/td_loss"] = td_loss.detach()
        return td_loss + penalty.sum(), metrics

    def actor_loss(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """SAC's actor loss; during the first bc_steps updates, behaviour cloning E[α log π(ã|s) − log π(a|s)]
        instead (chosen with torch.where on the update counter: no Python branch on its value)."""
        loss, log_prob = SAC.actor_loss(self, batch)
        if self.bc_steps == 0:
            return loss, log_prob
        bc_loss = (self.alpha * log_prob - self.actor.log_prob(batch.obs, batch.act)).mean()
        return torch.where(self.updates < self.bc_steps, bc_loss, loss), log_prob

    def auxiliary_steps(self, metrics: dict[str, Tensor]) -> list[tuple[torch.optim.Optimizer, Tensor]]:
        """The Lagrange multiplier's step (its loss sees the CQL gap detached)."""
        return [(self.alpha_prime_opt, metrics.pop("train/alpha_prime_loss"))] if self.lagrange else []

    def update(self, batch: Batch) -> dict[str, Tensor]:
        metrics = SAC.update(self, batch)
        self.updates += 1
        return metrics

    def begin_online(self) -> None:
        """Fine-tuning starts: the penalty weight becomes cql_alpha_online (None: it stays)."""
        if self.cql_alpha_online is not None:
            self.cql_alpha.fill_(self.cql_alpha_online)
