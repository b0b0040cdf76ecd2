"""Layer 2: the loss math against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlrun import losses
from rlrun.losses import (
    advantage_weights,
    epsilon_greedy_value,
    every_option_target,
    expectile_loss,
    interest_loss,
    interest_policy,
    intra_option_pg_loss,
    option_target,
    rebrac_actor_loss,
    rebrac_next_value,
    smoothed_target_action,
    standardized,
    td3_bc_actor_loss,
    termination_loss,
    weighted_log_likelihood_loss,
)
from rlrun.nets import GaussianActor, MLPSpec, OptionPolicies, TanhGaussianActor, tanh_gaussian_log_prob


def test_td_target_bootstraps_through_truncation_not_termination():
    r, v = torch.tensor([1.0, 1.0]), torch.tensor([10.0, 10.0])
    terminal = torch.tensor([0.0, 1.0])  # a truncated step is stored as terminal=0
    assert torch.allclose(losses.td_target(r, terminal, v, 0.9), torch.tensor([10.0, 1.0]))


def test_critic_mse_sums_members_and_averages_batch():
    q = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    target = torch.tensor([0.0, 0.0])
    # member 0: (1 + 4) / 2 = 2.5; member 1: 0
    assert losses.critic_mse(q, target).item() == 2.5


def test_critic_huber_is_the_squared_error_near_the_target_and_linear_beyond_delta():
    q = torch.tensor([[0.5, 3.0], [-0.2, -4.0]])
    target = torch.tensor([0.0, 0.0])
    # δ = 1: member 0: (0.25 + (2·3 − 1)) / 2 = 2.625; member 1: (0.04 + (2·4 − 1)) / 2 = 3.52
    torch.testing.assert_close(losses.critic_huber_loss(q, target, delta=1.0), torch.tensor(2.625 + 3.52))
    small = torch.tensor([[0.3, -0.1]])
    torch.testing.assert_close(losses.critic_huber_loss(small, target, delta=1.0), losses.critic_mse(small, target))


def test_temperature_loss_by_hand():
    log_alpha = torch.tensor(math.log(2.0), requires_grad=True)
    log_prob = torch.tensor([-1.0, -3.0])
    loss = losses.temperature_loss(log_alpha, log_prob, target_entropy=-1.0)
    # log π + H̄ = (-2, -4), mean -3: loss = -(log 2 · -3) = 3 log 2
    assert math.isclose(loss.item(), 3 * math.log(2.0), rel_tol=1e-6)
    loss.backward()
    assert math.isclose(log_alpha.grad.item(), 3.0, rel_tol=1e-6)  # d/dlog α = -mean(log π + H̄)


def test_cql_logsumexp_importance_sampled_by_hand():
    # one critic, one state, N = 1 sampled action of each kind, act_dim 2
    q_rand, q_pi, q_next = (torch.tensor([[[v]]]) for v in (1.0, 2.0, 3.0))
    log_pi, log_next = torch.tensor([[-0.5]]), torch.tensor([[-1.5]])
    out = losses.cql_logsumexp(q_rand, q_pi, q_next, log_pi, log_next, act_dim=2, temperature=1.0, importance_sample=True)
    # uniform density on [-1,1]^2 is 1/4: terms 1 + log 4, 2 + 0.5, 3 + 1.5
    terms = [1.0 + math.log(4.0), 2.5, 4.5]
    expected = math.log(sum(math.exp(t) for t in terms))
    assert out.shape == (1, 1) and math.isclose(out.item(), expected, rel_tol=1e-6)


def test_cql_logsumexp_plain_and_temperature():
    q = [torch.tensor([[[v]]]) for v in (0.0, 1.0, 2.0)]
    zeros = torch.zeros(1, 1)
    out = losses.cql_logsumexp(*q, zeros, zeros, act_dim=3, temperature=2.0, importance_sample=False)
    expected = 2.0 * math.log(math.exp(0.0) + math.exp(0.5) + math.exp(1.0))
    assert math.isclose(out.item(), expected, rel_tol=1e-6)


def test_conservative_difference_and_clip():
    ood = torch.tensor([[3.0, 1.0], [0.0, 0.0]])
    q_data = torch.tensor([[1.0, 1.0], [5.0, 1.0]])
    diff = losses.cql_difference(ood, q_data, float("-inf"), float("inf"))
    assert torch.allclose(diff, torch.tensor([1.0, -3.0]))  # member 1: mean(-5, -1)
    clipped = losses.cql_difference(ood, q_data, -1.0, 1.5)
    assert torch.allclose(clipped, torch.tensor([0.75, -1.0]))  # member 0: mean(1.5, 0); member 1: mean(-1, -1)


def test_conservative_term_on_tiny_critic_by_hand():
    """A linear critic Q(s, a) = w·a, one state: the penalty's value and gradient match the formula."""
    w = torch.tensor([1.0, -1.0], requires_grad=True)
    a_rand, a_pi, a_next, a_data = (torch.tensor(v) for v in ([0.5, 0.5], [1.0, 0.0], [0.0, 1.0], [0.2, 0.1]))
    q = lambda a: (w * a).sum().reshape(1, 1, 1)  # noqa: E731  (n=1, B=1, N=1)
    log_pi, log_next = torch.tensor([[-0.2]]), torch.tensor([[0.3]])
    ood = losses.cql_logsumexp(q(a_rand), q(a_pi), q(a_next), log_pi, log_next, 2, 1.0, True)
    diff = losses.cql_difference(ood, q(a_data)[..., 0], float("-inf"), float("inf"))
    diff.sum().backward()
    terms = torch.tensor([0.0 + math.log(4.0), 1.0 + 0.2, -1.0 - 0.3])  # Q - log density
    weights = torch.softmax(terms, 0)
    assert math.isclose(diff.item(), torch.logsumexp(terms, 0).item() - 0.1, rel_tol=1e-6)
    expected_grad = weights[0] * a_rand + weights[1] * a_pi + weights[2] * a_next - a_data
    assert torch.allclose(w.grad, expected_grad, atol=1e-6)


def test_cal_ql_lower_bound_by_hand():
    q = torch.tensor([[[1.0, -3.0], [0.5, 4.0]], [[-2.0, 2.0], [6.0, -1.0]]])  # (n=2, B=2, N=2)
    bound = torch.tensor([0.0, 1.0])  # V^μ of the two states
    expected = torch.tensor([[[1.0, 0.0], [1.0, 4.0]], [[0.0, 2.0], [6.0, 1.0]]])
    assert torch.equal(losses.calibrated(q, bound), expected)


def test_mc_returns_by_hand_terminated_and_truncated_episodes():
    from rlrun.data.offline import mc_returns

    rewards = np.array([1.0, 2.0, 3.0, 1.0, 1.0, 4.0], dtype=np.float32)  # a terminated episode, then two truncated ones
    got = mc_returns(rewards, np.array([3, 2, 1]), gamma=0.5)
    # 3 | 2 + .5·3 = 3.5 | 1 + .5·3.5 = 2.75; truncated: 1 | 1 + .5·1 = 1.5 (nothing after its last step); 4
    np.testing.assert_allclose(got, [2.75, 3.5, 3.0, 1.5, 1.0, 4.0])


def test_lagrange_terms():
    log_ap = torch.tensor(math.log(2.0), requires_grad=True)
    diff = torch.tensor([3.0, 1.0], requires_grad=True)
    penalty, ap_loss = losses.lagrange_terms(log_ap, diff, cql_alpha=5.0, target_gap=2.0)
    assert torch.allclose(penalty, torch.tensor([10.0, -10.0]))
    assert math.isclose(ap_loss.item(), 0.0, abs_tol=1e-6)  # -(10 - 10)/2
    ap_loss.backward()
    assert log_ap.grad is not None and diff.grad is None


def test_tanh_gaussian_log_prob_matches_change_of_variables():
    mean, log_std = torch.tensor([[0.3, -0.2]]), torch.tensor([[-0.5, 0.1]])
    u = torch.tensor([[0.7, -1.2]])
    normal = torch.distributions.Normal(mean, log_std.exp())
    expected = (normal.log_prob(u) - torch.log(1 - torch.tanh(u) ** 2)).sum(-1)
    assert torch.allclose(tanh_gaussian_log_prob(u, mean, log_std), expected, atol=1e-5)


def test_actor_log_prob_of_own_sample_agrees():
    torch.manual_seed(0)
    actor = TanhGaussianActor(3, 2, MLPSpec([16]))
    obs = torch.randn(5, 3)
    action, log_prob = actor(obs)
    assert torch.allclose(actor.log_prob(obs, action), log_prob, atol=1e-3)


def test_gaussian_actor_explores_with_its_floor_on_sigma_and_learns_with_its_own():
    torch.manual_seed(0)
    floored, plain = (
        GaussianActor(3, 1, MLPSpec([16]), tanh_mean=True, dropout=0.0, min_explore_std=floor) for floor in (0.3, 0.0)
    )
    with torch.no_grad():
        floored.net[-1].weight.zero_()
        floored.net[-1].bias.fill_(0.2)  # μ = tanh(0.2) in every state
        floored.log_std.fill_(math.log(0.05))
    plain.load_state_dict(floored.state_dict())
    obs, act = torch.randn(40000, 3), torch.full((40000, 1), 0.5)
    assert abs(floored.act(obs, False).std().item() - 0.3) < 0.01  # σ 0.05 raised to the floor (clipping at 1 is 2.7σ away)
    assert abs(plain.act(obs, False).std().item() - 0.05) < 0.002
    assert abs(floored.sample(obs).std().item() - 0.05) < 0.002  # the losses' draws (AWAC's) keep the learned σ
    assert torch.equal(floored.act(obs, True), plain.act(obs, True))
    assert torch.equal(floored.log_prob(obs, act), plain.log_prob(obs, act))
    for actor in (floored, plain):
        with torch.no_grad():
            actor.log_std.fill_(math.log(0.4))  # above the floor: the learned σ explores
    torch.manual_seed(1)
    above = floored.act(obs, False)
    torch.manual_seed(1)
    assert torch.equal(above, plain.act(obs, False))


def test_soft_update():
    target, source = [torch.zeros(3)], [torch.ones(3)]
    losses.soft_update(target, source, 0.25)
    assert torch.allclose(target[0], torch.full((3,), 0.25))


# --- option-critic ---------------------------------------------------------------------------
def test_epsilon_greedy_value_and_option_target_by_hand():
    q = torch.tensor([[1.0, 3.0]])
    assert torch.allclose(epsilon_greedy_value(q, 0.2), torch.tensor([0.8 * 3 + 0.2 * 2.0]))
    # U = (1 − β) Q(s', ω) + β max Q(s') = 0.75·2 + 0.25·4 = 2.5; G = 1 + 0.5·2.5
    args = dict(
        reward=torch.tensor([1.0]),
        beta_next=torch.tensor([0.25]),
        q_next=torch.tensor([[2.0, 4.0]]),
        v_next=torch.tensor([4.0]),
        option=torch.tensor([0]),
        gamma=0.5,
    )
    assert torch.allclose(option_target(terminal=torch.tensor([0.0]), **args), torch.tensor([2.25]))
    assert torch.allclose(option_target(terminal=torch.tensor([1.0]), **args), torch.tensor([1.0]))
    # with an ε-greedy V(s') = 3.0 instead: U = 0.75·2 + 0.25·3 = 2.25; G = 1 + 0.5·2.25
    args["v_next"] = torch.tensor([3.0])
    assert torch.allclose(option_target(terminal=torch.tensor([0.0]), **args), torch.tensor([2.125]))


def test_interest_policy_and_its_gradient_by_hand():
    """π_Ω = (0.1, 0.9) (ε = 0.2 at Q = (1, 3)) and I = (0.8, 0.2): π_I,Ω = (0.08, 0.18) / 0.26, V = 2.3846;
    the loss is −β V, and ∂V/∂I_0 = π_Ω,0 (Q_0 − V) / 0.26 < 0: option 0's interest falls."""
    q = torch.tensor([[1.0, 3.0]])
    interest = torch.tensor([[0.8, 0.2]], requires_grad=True)
    policy = interest_policy(torch.tensor([[0.1, 0.9]]), interest)
    torch.testing.assert_close(policy, torch.tensor([[0.08 / 0.26, 0.18 / 0.26]]))
    v = (0.08 * 1.0 + 0.18 * 3.0) / 0.26
    loss = interest_loss(policy, q, torch.tensor([0.5]), torch.tensor([0.0]))
    torch.testing.assert_close(loss, torch.tensor(-0.5 * v))
    loss.backward()
    torch.testing.assert_close(interest.grad[0, 0], torch.tensor(-0.5 * 0.1 * (1.0 - v) / 0.26))
    assert interest_loss(policy, q, torch.tensor([0.5]), torch.tensor([1.0])).item() == 0.0  # terminal s': none


def test_every_option_target_by_hand():
    """Each option's own U(s', ω): ω0 0.5·2 + 0.5·4 = 3, ω1 0.75·4 + 0.25·4 = 4; G = 1 + 0.5 U."""
    args = dict(
        reward=torch.tensor([1.0]),
        beta_next=torch.tensor([[0.5, 0.25]]),
        q_next=torch.tensor([[2.0, 4.0]]),
        v_next=torch.tensor([4.0]),
        gamma=0.5,
    )
    assert torch.allclose(every_option_target(terminal=torch.tensor([0.0]), **args), torch.tensor([[2.5, 3.0]]))
    assert torch.allclose(every_option_target(terminal=torch.tensor([1.0]), **args), torch.tensor([[1.0, 1.0]]))


def test_termination_gradient_by_hand():
    """β = σ(w x): ∂/∂w of β (A + ξ) is σ'(w x) x (A + ξ); A gets no gradient; terminal s' none."""
    w = torch.tensor(0.5, requires_grad=True)
    advantage = torch.tensor([-0.3], requires_grad=True)
    beta = torch.sigmoid(w * 2.0).reshape(1)
    termination_loss(beta, advantage, xi=0.01, terminal=torch.tensor([0.0])).backward()
    s = 1 / (1 + math.exp(-1.0))
    assert math.isclose(w.grad.item(), s * (1 - s) * 2.0 * (-0.3 + 0.01), rel_tol=1e-5)
    assert advantage.grad is None
    w.grad = None
    termination_loss(torch.sigmoid(w * 2.0).reshape(1), advantage, 0.01, torch.tensor([1.0])).backward()
    assert w.grad.item() == 0.0


def test_standardized_advantage_by_hand_over_non_terminal_entries():
    """A = (1, 3, 100) with the third s' terminal: mean 2, std 1 over the first two -> (−1, 1, 98); a
    flat batch stays finite (0); the result carries no gradient."""
    advantage = torch.tensor([1.0, 3.0, 100.0], requires_grad=True)
    got = standardized(advantage, torch.tensor([1.0, 1.0, 0.0]))
    torch.testing.assert_close(got, torch.tensor([-1.0, 1.0, 98.0]))
    assert not got.requires_grad
    torch.testing.assert_close(standardized(torch.full((4,), 0.3), torch.ones(4)), torch.zeros(4))
    torch.testing.assert_close(standardized(torch.tensor([0.001, 0.003]), torch.ones(2)), torch.tensor([-1.0, 1.0]))


def test_intra_option_policy_gradient_by_hand():
    """Softmax logits θ: ∂/∂θ of −(log π(a) A + η H) = −A (e_a − π) + η π (log π + H)."""
    theta = torch.tensor([[0.1, 0.2, -0.3]], requires_grad=True)
    log_p = torch.log_softmax(theta, -1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    intra_option_pg_loss(log_p[:, 1], torch.tensor([2.0]), entropy, entropy_coef=0.5).backward()
    p = np.exp([0.1, 0.2, -0.3]) / np.exp([0.1, 0.2, -0.3]).sum()
    h = -(p * np.log(p)).sum()
    expected = -2.0 * (np.eye(3)[1] - p) + 0.5 * p * (np.log(p) + h)
    assert np.allclose(theta.grad.numpy()[0], expected, atol=1e-6)


def test_option_policies_read_the_running_options_head():
    torch.manual_seed(0)
    pol = OptionPolicies(obs_dim=3, act_dim=4, n_options=2, discrete=True, spec=MLPSpec([8]))
    obs, act = torch.randn(5, 3), torch.randint(0, 4, (5,))
    option = torch.tensor([0, 1, 1, 0, 1])
    log_prob, entropy = pol.log_prob_entropy(obs, option, act)
    logits = pol.net(obs).reshape(5, 2, 4)[torch.arange(5), option]  # (B, K, A) -> (B, A)
    expected = torch.log_softmax(logits, -1)
    assert torch.allclose(log_prob, expected[torch.arange(5), act])
    assert torch.allclose(entropy, -(expected.exp() * expected).sum(-1))
    box = OptionPolicies(obs_dim=3, act_dim=2, n_options=2, discrete=False, spec=MLPSpec([8]))
    sample = box.sample(obs, option, deterministic=False)
    assert sample.shape == (5, 2) and sample.abs().max() < 1
    assert torch.isfinite(box.log_prob_entropy(obs, option, sample)[0]).all()


# --- offline actor-critics -------------------------------------------------------------------
def test_expectile_loss_by_hand():
    # u = Q − V = [2, −1]; τ = 0.8: weights 0.8 and 0.2 -> mean(0.8·4, 0.2·1) = 1.7
    assert expectile_loss(torch.tensor([2.0, -1.0]), 0.8).item() == pytest.approx(1.7)
    # τ = 0.5 is half the mean squared error
    assert expectile_loss(torch.tensor([2.0, -1.0]), 0.5).item() == pytest.approx(1.25)


def test_advantage_weights_by_hand_and_clipped():
    adv = torch.tensor([0.0, 1.0, 10.0], requires_grad=True)
    w = advantage_weights(adv, 3.0, 100.0)  # exp(0), exp(3), exp(30) clipped to 100
    torch.testing.assert_close(w, torch.tensor([1.0, math.exp(3.0), 100.0]))
    assert not w.requires_grad
    # AWAC's λ = 0.1 is β = 10
    assert advantage_weights(torch.tensor([0.2]), 1 / 0.1, 100.0).item() == pytest.approx(math.exp(2.0), rel=1e-6)


def test_weighted_log_likelihood_loss_by_hand():
    assert weighted_log_likelihood_loss(torch.tensor([-1.0, -2.0]), torch.tensor([2.0, 0.5])).item() == pytest.approx(1.5)


def test_td3_bc_lambda_and_actor_loss_by_hand():
    q = torch.tensor([2.0, -4.0])  # mean |Q| = 3 -> λ = 2.5 / 3
    pi = torch.tensor([[0.5, 0.0], [0.0, 0.0]])
    a = torch.tensor([[0.0, 0.0], [0.0, 1.0]])  # squared errors 0.25 and 1 over 4 entries: 0.3125
    loss, lam = td3_bc_actor_loss(q, pi, a, 2.5)
    assert lam.item() == pytest.approx(2.5 / 3)
    assert loss.item() == pytest.approx(-(2.5 / 3) * (-1.0) + 0.3125)


def test_rebrac_penalties_by_hand():
    q = torch.tensor([1.0, -3.0])  # mean |Q| = 2 -> λ = 0.5
    pi = torch.tensor([[0.5, 0.5], [0.0, 0.0]])
    a = torch.tensor([[0.0, 0.0], [1.0, 0.0]])  # ||π − a||² = 0.5 and 1
    # mean of (0.1·0.5 − 0.5·1, 0.1·1 + 0.5·3) = mean(−0.45, 1.6) = 0.575
    assert rebrac_actor_loss(q, pi, a, 0.1, normalize_q=True).item() == pytest.approx(0.575)
    assert rebrac_actor_loss(q, pi, a, 0.1, normalize_q=False).item() == pytest.approx((0.05 - 1 + 0.1 + 3) / 2)
    # critic: Q̄ − β ||a' − a'_data||² = [1 − 0.1·0.5, −3 − 0.1·1]
    torch.testing.assert_close(rebrac_next_value(q, pi, a, 0.1), torch.tensor([0.95, -3.1]))


def test_smoothed_target_action_clips_noise_then_action():
    a = torch.tensor([0.9, 0.0, -0.2])
    noise = torch.tensor([0.3, 2.0, -0.1])  # clipped to ±0.5: 0.3, 0.5, −0.1
    torch.testing.assert_close(smoothed_target_action(a, noise, 0.5), torch.tensor([1.0, 0.5, -0.3]))
