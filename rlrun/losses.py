"""Pure loss functions shared by the algorithms: tensors in, scalar tensors out."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def td_target(reward: Tensor, terminal: Tensor, next_value: Tensor, gamma: float) -> Tensor:
    """r + γ (1 - terminal) V(s'). A truncation is not terminal: it bootstraps."""
    return reward + gamma * (1.0 - terminal) * next_value


def critic_mse(q: Tensor, target: Tensor) -> Tensor:
    """Σ over ensemble members of the mean squared TD error; q (n, B), target (B,)."""
    return ((q - target.unsqueeze(0)) ** 2).mean(-1).sum()


def critic_huber_loss(q: Tensor, target: Tensor, delta: float) -> Tensor:
    """`critic_mse` with each TD error e counted as e² for |e| ≤ δ and 2δ|e| − δ² beyond (twice the
    Huber loss): the same as the squared error near the target, linear for rare large errors;
    q (n, B), target (B,)."""
    huber = torch.nn.functional.huber_loss(q, target.unsqueeze(0).expand_as(q), reduction="none", delta=delta)  # (n, B)
    return 2.0 * huber.mean(-1).sum()


def sac_actor_loss(alpha: Tensor, log_prob: Tensor, q_pi: Tensor) -> Tensor:
    """E[α log π(a|s) − Q(s, a)], a ~ π(·|s)."""
    return (alpha * log_prob - q_pi).mean()


def temperature_loss(log_alpha: Tensor, log_prob: Tensor, target_entropy: float) -> Tensor:
    """−E[log α (log π + H̄)]: raises α when the entropy is below the target."""
    return -(log_alpha * (log_prob.detach() + target_entropy)).mean()


def uniform_log_density(act_dim: int) -> float:
    """log density of the uniform distribution on [-1, 1]^act_dim."""
    return -act_dim * math.log(2.0)


def cql_logsumexp(
    q_rand: Tensor,
    q_pi: Tensor,
    q_next_pi: Tensor,
    log_pi: Tensor,
    log_next_pi: Tensor,
    act_dim: int,
    temperature: float,
    importance_sample: bool,
) -> Tensor:
    """T · logsumexp(Q / T) over the sampled actions, per state and critic.

    q_rand, q_pi, q_next_pi: (n, B, N) Q(s, a) at uniform actions, a ~ π(·|s) and a ~ π(·|s');
    log_pi, log_next_pi: (B, N). With importance sampling each Q is divided by its proposal
    density (subtracted in log space), estimating log ∫ exp Q(s, a) da. Returns (n, B).
    """
    if importance_sample:
        parts = [q_rand - uniform_log_density(act_dim), q_pi - log_pi.detach(), q_next_pi - log_next_pi.detach()]
    else:
        parts = [q_rand, q_pi, q_next_pi]
    cat = torch.cat(parts, dim=-1)  # 3 × (n, B, N) -> (n, B, 3N)
    return torch.logsumexp(cat / temperature, dim=-1) * temperature


def calibrated(q: Tensor, lower_bound: Tensor) -> Tensor:
    """Cal-QL's calibration: max(Q(s, a), V^μ(s)) for the policy's actions, so the conservative penalty
    stops pushing a Q-value down once it reaches the data's own return. q (n, B, N), lower_bound (B,)."""
    return torch.maximum(q, lower_bound[None, :, None])  # (B,) -> (1, B, 1) broadcasts over critics and actions


def cql_difference(ood: Tensor, q_data: Tensor, clip_min: float, clip_max: float) -> Tensor:
    """Per critic: mean over the batch of clip(logsumexp − Q(s, a_data)); ood, q_data (n, B) -> (n,)."""
    return (ood - q_data).clamp(clip_min, clip_max).mean(-1)


def lagrange_terms(log_alpha_prime: Tensor, diff: Tensor, cql_alpha: float | Tensor, target_gap: float) -> tuple[Tensor, Tensor]:
    """Lagrange variant with α' = clamp(exp(log α'), 0, 1e6); diff (n,).

    Returns the critic's penalty α' α (diff − gap) per critic (n,), and α''s own loss, which
    ascends the same quantity (α' grows while the gap is exceeded).
    """
    alpha_prime = log_alpha_prime.exp().clamp(0.0, 1e6)
    penalty = alpha_prime.detach() * cql_alpha * (diff - target_gap)
    alpha_prime_loss = -(alpha_prime * cql_alpha * (diff.detach() - target_gap)).mean()
    return penalty, alpha_prime_loss


@torch.no_grad()
def soft_update(target: list[Tensor], source: list[Tensor], tau: float) -> None:
    """target ← (1 − τ) target + τ source, in one fused foreach op."""
    torch._foreach_lerp_(target, source, tau)


# --- option-critic --------------------------------------------------------------------------
def epsilon_greedy_value(q: Tensor, epsilon: float | Tensor) -> Tensor:
    """V_Ω(s) of the ε-greedy policy over options: (1 − ε) max_ω Q + ε mean_ω Q; (B, K) -> (B,)."""
    return (1.0 - epsilon) * q.max(-1).values + epsilon * q.mean(-1)


def interest_policy(epsilon_greedy: Tensor, interest: Tensor) -> Tensor:
    """π_I,Ω(ω|s) = I_ω(s) π_Ω(ω|s) / Σ_ω' I_ω'(s) π_Ω(ω'|s): the policy over options restricted by the
    options' interest functions (Khetarpal et al. 2020); both (B, K) -> (B, K)."""
    weighted = interest * epsilon_greedy
    return weighted / weighted.sum(-1, keepdim=True)


def interest_loss(policy: Tensor, q: Tensor, beta: Tensor, terminal: Tensor) -> Tensor:
    """−E[β_ω(s') Σ_ω' π_I,Ω(ω'|s') Q_Ω(s', ω') (1 − d)] over non-terminal s': descending it follows the
    interest-function gradient of Khetarpal et al. 2020 (where the running option ω ends, with probability
    β_ω(s'), the choice of the next option moves towards options of higher value). policy (B, K) carries
    the interest's gradient; q (B, K) and beta (B,) are constants here."""
    chosen = (policy * q.detach()).sum(-1)  # (B, K) -> (B,)
    return -(beta.detach() * chosen * (1.0 - terminal)).mean()


def option_target(
    reward: Tensor, terminal: Tensor, beta_next: Tensor, q_next: Tensor, v_next: Tensor, option: Tensor, gamma: float
) -> Tensor:
    """r + γ (1 − terminal) U(s', ω), U(s', ω) = (1 − β_ω(s')) Q(s', ω) + β_ω(s') V(s').

    beta_next: (B,) termination probability of the running option at s'; q_next: (B, K);
    v_next: (B,) V(s'), the value on termination (max_ω' Q(s', ω') for intra-option Q-learning).
    """
    q_same = q_next.gather(1, option.unsqueeze(1))  # (B, K) -> (B, 1)
    return every_option_target(reward, terminal, beta_next.unsqueeze(1), q_same, v_next, gamma).squeeze(1)


def every_option_target(
    reward: Tensor, terminal: Tensor, beta_next: Tensor, q_next: Tensor, v_next: Tensor, gamma: float
) -> Tensor:
    """`option_target` for every option ω at once (intra-option value learning: the transition's
    action is evidence for each option's Q_U(s, ω, a)); beta_next, q_next (B, K), v_next (B,) -> (B, K)."""
    upon_arrival = (1.0 - beta_next) * q_next + beta_next * v_next.unsqueeze(1)  # (B, K)
    return td_target(reward.unsqueeze(1), terminal.unsqueeze(1), upon_arrival, gamma)


def termination_loss(beta_next: Tensor, advantage: Tensor, xi: float, terminal: Tensor) -> Tensor:
    """E[β_ω(s') (A_Ω(s', ω) + ξ)] over non-terminal s': its gradient is the termination gradient.

    A_Ω(s', ω) = Q_Ω(s', ω) − V_Ω(s') is a constant here; descending lowers β where the running
    option is better than average (by more than −ξ) and raises it elsewhere.
    """
    return (beta_next * (advantage.detach() + xi) * (1.0 - terminal)).mean()


def standardized(x: Tensor, weight: Tensor) -> Tensor:
    """(x − mean) / std over the entries of weight 1 (the non-terminal s'), as a constant: a termination
    advantage in units of its spread over the batch. (B,), (B,) -> (B,)."""
    x, n = x.detach(), weight.sum().clamp(min=1.0)
    mean = (x * weight).sum() / n
    std = (((x - mean) ** 2 * weight).sum() / n).sqrt()
    return (x - mean) / (std + 1e-8)


def intra_option_pg_loss(log_prob: Tensor, advantage: Tensor, entropy: Tensor, entropy_coef: float) -> Tensor:
    """−E[log π_ω(a|s) (G − Q_Ω(s, ω)) + η H(π_ω(·|s))]: the intra-option policy gradient with a baseline."""
    return -(log_prob * advantage.detach() + entropy_coef * entropy).mean()


# --- offline actor-critics: TD3+BC, ReBRAC, IQL, AWAC, BC ------------------------------------
def smoothed_target_action(action: Tensor, noise: Tensor, noise_clip: float) -> Tensor:
    """TD3's target policy smoothing: clip(a + clip(noise, ±c), ±1); noise already scaled by its σ."""
    return (action + noise.clamp(-noise_clip, noise_clip)).clamp(-1.0, 1.0)


def td3_bc_actor_loss(q_pi: Tensor, pi_act: Tensor, data_act: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """TD3+BC: −λ E[Q(s, π(s))] + E[(π(s) − a)²] (mean over batch and action dims), λ = α / E|Q(s, π(s))|
    held constant; returns the loss and λ. q_pi (B,), pi_act and data_act (B, A)."""
    lam = alpha / q_pi.abs().mean().detach()
    return -lam * q_pi.mean() + ((pi_act - data_act) ** 2).mean(), lam


def rebrac_actor_loss(q_pi: Tensor, pi_act: Tensor, data_act: Tensor, bc_coef: float, normalize_q: bool) -> Tensor:
    """ReBRAC's actor: E[β ||π(s) − a||² − λ Q(s, π(s))], λ = 1 / E|Q(s, π(s))| (held constant) when
    normalize_q, else 1. q_pi (B,), pi_act and data_act (B, A)."""
    lam = 1.0 / q_pi.abs().mean().detach() if normalize_q else 1.0
    return (bc_coef * ((pi_act - data_act) ** 2).sum(-1) - lam * q_pi).mean()


def rebrac_next_value(q_next: Tensor, next_pi_act: Tensor, next_data_act: Tensor, bc_coef: float) -> Tensor:
    """ReBRAC's critic penalty: Q̄(s', a') − β' ||a' − a'_data||², a' the target policy's next action;
    q_next (B,), actions (B, A) -> (B,)."""
    return q_next - bc_coef * ((next_pi_act - next_data_act) ** 2).sum(-1)


def expectile_loss(diff: Tensor, expectile: float) -> Tensor:
    """IQL's value loss E[|τ − 1(u < 0)| u²] with u = Q(s, a) − V(s): τ > 0.5 weighs V below Q more."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff**2).mean()


def advantage_weights(advantage: Tensor, temperature: float, max_weight: float) -> Tensor:
    """exp(β A) clipped above at max_weight, without gradient (IQL: β = beta; AWAC: β = 1/λ)."""
    return (temperature * advantage.detach()).exp().clamp(max=max_weight)


def weighted_log_likelihood_loss(log_prob: Tensor, weights: Tensor) -> Tensor:
    """−E[w log π(a|s)]: behaviour cloning weighted by w (w = 1: plain BC by log-likelihood)."""
    return -(weights * log_prob).mean()
