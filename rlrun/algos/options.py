"""What both option-critics hold: the policy over options and the statistics of the options.

`PolicyOverOptions` is one component, held by `OptionCritic` and `SoftOptionCritic` alike (neither
inherits from the other): the termination functions β_ω(s), the ε-greedy choice of a new option
with ε decaying linearly in env steps, the running option kept until it terminates, and the
moving averages of option usage and termination rate. The algorithms give it their option values
Q_Ω(s, ·) and act with their own intra-option policies; `act_with_options` and `termination_figures`
are the contract's `act` and `figures` for any algorithm that holds one as `options` beside
`policies` (rlrun.nets.OptionPolicies) and `option_values`.

With interest functions (Khetarpal, Klissarov, Chevalier-Boisvert, Bacon and Precup, "Options of
Interest: Temporal Abstraction with Interest Functions", AAAI 2020) each option ω also has an
interest I_ω(s) = sigmoid(interest(s)) in (0, 1), and a new option is drawn from
π_I,Ω(ω|s) ∝ I_ω(s) π_Ω(ω|s), π_Ω the ε-greedy policy: an option is chosen where it is interested.
V_Ω(s) (termination advantages, targets) is that policy's value, and the interest follows its
gradient (rlrun.losses.interest_loss).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlrun import checkpoint
from rlrun.algos.base import adam
from rlrun.losses import epsilon_greedy_value, interest_loss, interest_policy
from rlrun.nets import MLPSpec, OptionPolicies, mlp
from rlrun.viz import hallway_betas, termination_figure


def pick(values: Tensor, option: Tensor) -> Tensor:
    """values[b, option[b]]: (B, K), (B,) -> (B,)."""
    return values.gather(1, option.unsqueeze(1)).squeeze(1)


class PolicyOverOptions:
    """ε-greedy policy over `n_options` options with terminations β_ω(s) = sigmoid(termination(s)),
    restricted by interest functions I_ω(s) = sigmoid(interest(s)) when `interest` is a module.

    Its state (env-step counter, usage and termination-rate averages, the latest batch's mean β) is
    what `state_dict` gives; the termination network is the holder's module (its checkpoints and
    optimizer have it), shared here by reference, as is the interest network.
    """

    def __init__(
        self,
        *,
        n_options: int,
        termination: nn.Module,
        interest: nn.Module | None,
        epsilon_start: float,
        epsilon_end: float,
        epsilon_decay_steps: int,
        stats_rate: float,
        device: torch.device,
    ) -> None:
        self.n_options, self.termination, self.interest, self.stats_rate = n_options, termination, interest, stats_rate
        self.eps_start, self.eps_end, self.eps_steps = epsilon_start, epsilon_end, epsilon_decay_steps
        self.env_steps = torch.zeros((), dtype=torch.long)  # a CPU counter: no device sync
        self.usage = torch.full((n_options,), 1.0 / n_options, device=device)  # EMA of option frequencies
        self.switch_rate = torch.ones((), device=device)  # EMA of P(option ends) per step
        self.beta_last = torch.zeros(n_options, device=device)  # mean β_ω(s') of the latest critic batch

    def state_dict(self) -> dict[str, Tensor]:
        """Every tensor attribute (the termination network is its holder's to save)."""
        return {name: value.clone() for name, value in vars(self).items() if isinstance(value, Tensor)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Strictly: every tensor attribute, and nothing else."""
        own = {name for name, value in vars(self).items() if isinstance(value, Tensor)}
        if own != state.keys():
            raise checkpoint.CheckpointError(f"the saved policy over options holds {sorted(state)}, not {sorted(own)}")
        for name in own:
            getattr(self, name).copy_(state[name])

    @property
    def epsilon(self) -> Tensor:
        """ε now, a 0-dim CPU tensor (no host sync, no compile graph break)."""
        frac = (self.env_steps / max(1, self.eps_steps)).clamp(max=1.0)
        return self.eps_start + frac * (self.eps_end - self.eps_start)

    def beta(self, obs: Tensor) -> Tensor:
        """Termination probabilities of every option, (B, O) -> (B, K)."""
        return torch.sigmoid(self.termination(obs))

    def _epsilon_greedy(self, values: Tensor, epsilon: float | Tensor) -> Tensor:
        """π_Ω(·|s), ε-greedy in `values`: (B, K) -> (B, K)."""
        greedy = F.one_hot(values.argmax(-1), self.n_options).to(values.dtype)  # (B,) -> (B, K)
        return (1.0 - epsilon) * greedy + epsilon / self.n_options

    def _interest_policy(self, obs: Tensor, values: Tensor, epsilon: float | Tensor) -> tuple[Tensor, Tensor]:
        """The options' interest I_ω(s) and π_I,Ω(·|s) at ε-greedy in `values`: both (B, K)."""
        interest = torch.sigmoid(self.interest(obs))  # (B, O) -> (B, K)
        return interest, interest_policy(self._epsilon_greedy(values, epsilon), interest)

    def at_next(self, obs: Tensor, values: Tensor, beta: Tensor, terminal: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """At s' = obs, where the running option ends with probability `beta` (B,): V_Ω(s') = Σ_ω π(ω|s')
        Q_Ω(s', ω) of the policy over options now (B,), without gradient; the interest functions' loss
        there (rlrun.losses.interest_loss; 0 without them); and its metrics (the loss, each option's mean
        interest). values: Q_Ω(s', ·) (B, K), constants here."""
        if self.interest is None:
            return epsilon_greedy_value(values, self.epsilon), values.new_zeros(()), {}
        values = values.detach()
        interest, policy = self._interest_policy(obs, values, self.epsilon)
        loss = interest_loss(policy, values, beta, terminal)
        mean = interest.detach().mean(0)  # (B, K) -> (K,)
        metrics = {"train/interest_loss": loss.detach()} | {f"train/interest/{k}": mean[k] for k in range(self.n_options)}
        return (policy.detach() * values).sum(-1), loss, metrics

    def choose(self, obs: Tensor, values: Tensor, state: Tensor | None, deterministic: bool) -> Tensor:
        """The option to run at obs: the running one (`state`, (B,)) unless it terminates (sampled; β > 0.5
        when deterministic), else a new one (`new_option`)."""
        b = obs.shape[0]
        if state is None:
            ends = torch.ones(b, dtype=torch.bool, device=obs.device)
        else:
            beta = pick(self.beta(obs), state)
            ends = beta > 0.5 if deterministic else torch.rand_like(beta) < beta
        new = self.new_option(obs, values, deterministic)
        option = new if state is None else torch.where(ends, new, state)
        if not deterministic:
            self._record(option, ends)
        return option

    def new_option(self, obs: Tensor, values: Tensor, deterministic: bool) -> Tensor:
        """ε-greedy in `values` (B, K) (greedy when deterministic); with interest functions drawn from
        π_I,Ω (its most likely option at the final ε when deterministic). (B, K) -> (B,)."""
        if self.interest is not None:
            _, policy = self._interest_policy(obs, values, self.eps_end if deterministic else self.epsilon)
            return policy.argmax(-1) if deterministic else torch.multinomial(policy, 1).squeeze(1)
        new = values.argmax(-1)  # (B, K) -> (B,)
        if deterministic:
            return new
        explore = torch.rand(obs.shape[0], device=obs.device) < self.epsilon
        return torch.where(explore, torch.randint(0, self.n_options, (obs.shape[0],), device=obs.device), new)

    def _record(self, option: Tensor, ends: Tensor) -> None:
        """Training-time statistics: option frequencies and termination rate (EMAs), env steps."""
        self.env_steps += 1
        self.usage.lerp_(F.one_hot(option, self.n_options).float().mean(0), self.stats_rate)
        self.switch_rate.lerp_(ends.float().mean(), self.stats_rate)

    def stats(self) -> dict[str, Tensor]:
        """Per option: usage frequency and mean β over the last critic batch; mean option duration; ε."""
        stats = {"train/option_duration_mean": 1.0 / self.switch_rate.clamp_min(1e-6), "train/epsilon": self.epsilon}
        for k in range(self.n_options):
            stats[f"train/option_usage/{k}"] = self.usage[k]
            stats[f"train/termination_prob/{k}"] = self.beta_last[k]
        return stats


def build_options(
    algo: Any,
    *,
    obs_dim: int,
    act_dim: int,
    discrete: bool,
    network: MLPSpec,
    device: torch.device,
    n_options: int,
    actor_lr: float,
    termination_lr: float,
    interest: bool,
    interest_lr: float,
    epsilon_start: float,
    epsilon_end: float,
    epsilon_decay_steps: int,
    stats_rate: float,
) -> None:
    """Set what every option-critic holds on `algo`: n_options, the termination network (logits of β_ω(s)),
    the intra-option policies, the interest network (logits of I_ω(s)) when `interest`, one optimizer
    for all of them (its own rate each), and the policy over options."""
    algo.n_options = n_options
    algo.termination = mlp(obs_dim, n_options, network).to(device)
    algo.policies = OptionPolicies(obs_dim, act_dim, n_options, discrete, network).to(device)
    groups = [
        {"params": algo.policies.parameters(), "lr": actor_lr},
        {"params": algo.termination.parameters(), "lr": termination_lr},
    ]
    if interest:
        algo.interest = mlp(obs_dim, n_options, network).to(device)
        groups.append({"params": algo.interest.parameters(), "lr": interest_lr})
    algo.actor_opt = adam(groups)
    algo.options = PolicyOverOptions(
        n_options=n_options,
        termination=algo.termination,
        interest=algo.interest if interest else None,
        epsilon_start=epsilon_start,
        epsilon_end=epsilon_end,
        epsilon_decay_steps=epsilon_decay_steps,
        stats_rate=stats_rate,
        device=device,
    )


@torch.no_grad()
def act_with_options(self: Any, obs: Tensor, state: Tensor | None = None, deterministic: bool = False) -> tuple[Tensor, Tensor]:
    """`act` of an option-critic: the option from its `options` at its `option_values`, then that
    option's action from its `policies`. State: the running options (B,)."""
    obs = self.obs_norm(obs)
    option = self.options.choose(obs, self.option_values(obs), state, deterministic)
    return self.policies.sample(obs, option, deterministic), option


def termination_figures(self: Any, env: Any, device: torch.device) -> dict[str, Any]:
    """The contract's figures hook for an option-critic: each option's β over a grid world (none for other envs)."""
    figure = termination_figure(self.options.beta, env, device)
    return {} if figure is None else {"termination_probs": figure}


def hallway_metrics(self: Any, env: Any, device: torch.device) -> dict[str, float]:
    """The contract's eval_metrics hook for an option-critic: mean β at a grid world's hallways and elsewhere."""
    return hallway_betas(self.options.beta, env, device)
