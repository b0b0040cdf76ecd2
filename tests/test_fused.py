"""The fused CQL critic loss (batched ensemble, one forward pass for all sampled actions) equals a
plain implementation (one critic at a time, one pass per action set) in value and gradients, with
torch's BLAS and with the oneDNN critic path; the oneDNN path equals the batched one."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import make_cfg

from rlrun import onednn
from rlrun.algos.base import Batch
from rlrun.build import make_algo
from rlrun.data.online import Spaces


def plain_q(critic, member: int, obs, act):
    """Q of ensemble member `member`, layer by layer with F.linear."""
    x = torch.cat([obs, act], -1)
    for layer, norm in zip(critic.hidden, critic.norms):
        x = critic.act(norm(F.linear(x, layer.weight[member].T, layer.bias[member, 0])))
    return F.linear(x, critic.head.weight[member].T, critic.head.bias[member, 0]).squeeze(-1)


def plain_cql_loss(algo, batch, rand_act, pi_act, pi_logp, next_act, next_logp, target):
    """CQL(H) critic loss written the straightforward way: loops, repeats, no fusion."""
    n, B = algo.n_actions, batch.obs.shape[0]
    obs_rep = batch.obs.repeat_interleave(n, 0)  # (B, O) -> (B*N, O)
    total = 0.0
    for i in range(algo.critic.n):
        q_data = plain_q(algo.critic, i, batch.obs, batch.act)
        q_rand = plain_q(algo.critic, i, obs_rep, rand_act.reshape(B * n, -1)).reshape(B, n)
        q_pi = plain_q(algo.critic, i, obs_rep, pi_act.reshape(B * n, -1)).reshape(B, n)
        q_next = plain_q(algo.critic, i, obs_rep, next_act.reshape(B * n, -1)).reshape(B, n)
        cat = torch.cat([q_rand + algo.act_dim * math.log(2.0), q_pi - pi_logp, q_next - next_logp], 1)
        ood = torch.logsumexp(cat, 1)
        total = total + F.mse_loss(q_data, target) + algo.cql_alpha * (ood - q_data).mean()
    return total


needs_onednn = pytest.mark.skipif(not onednn.available(), reason="this PyTorch build has no oneDNN")


@pytest.mark.parametrize("backend", ["blas", pytest.param("onednn", marks=needs_onednn)])
def test_fused_and_plain_cql_losses_and_gradients_agree(backend):
    torch.manual_seed(0)
    spaces = Spaces(obs_dim=39, act_dim=28, discrete=False)
    cfg = make_cfg("algo=cql", "dataset=door", "network.hidden_sizes=[64,64,64]")
    algo = make_algo(cfg, spaces, torch.device("cpu"))
    B, n = 32, algo.n_actions
    batch = Batch(torch.randn(B, 39), torch.rand(B, 28) * 2 - 1, torch.randn(B), torch.randn(B, 39), torch.zeros(B))

    # capture the random draws of the fused pass so the plain pass sees the same samples
    torch.manual_seed(1)
    target_value = algo.target_value(batch.next_obs)
    torch.manual_seed(1)
    onednn.use(backend)
    fused, _ = algo.critic_loss(batch)
    fused_grads = torch.autograd.grad(fused, list(algo.critic.parameters()))
    onednn.use("blas")

    torch.manual_seed(1)
    algo.target_value(batch.next_obs)  # same draws as inside critic_loss
    with torch.no_grad():
        both = torch.stack([batch.obs, batch.next_obs], 1).unsqueeze(2).expand(-1, -1, n, -1)
        pi_act, pi_logp = algo.actor(both)
        rand_act = torch.rand(B, n, 28) * 2 - 1
    target = batch.rew + algo.gamma * target_value
    plain = plain_cql_loss(algo, batch, rand_act, pi_act[:, 0], pi_logp[:, 0], pi_act[:, 1], pi_logp[:, 1], target)
    plain_grads = torch.autograd.grad(plain, list(algo.critic.parameters()))

    assert torch.allclose(fused, plain, atol=1e-5, rtol=1e-5), (fused.item(), plain.item())
    for g_fused, g_plain in zip(fused_grads, plain_grads):
        assert torch.allclose(g_fused, g_plain, atol=1e-5, rtol=1e-4)


def test_critic_with_a_shared_observation_equals_the_repeated_one():
    """critic(s (B, 1, O), a (B, N, A)) — s through the first layer once — equals critic on s repeated N times."""
    torch.manual_seed(0)
    from rlrun.nets import CriticEnsemble, MLPSpec

    critic = CriticEnsemble(7, 3, MLPSpec([16, 16], layer_norm=True), n=2)
    obs, act = torch.randn(5, 1, 7), torch.rand(5, 4, 3) * 2 - 1
    shared = critic(obs, act)
    repeated = critic(obs.expand(-1, 4, -1), act)
    assert shared.shape == repeated.shape == (2, 5, 4)
    torch.testing.assert_close(shared, repeated, rtol=1e-6, atol=1e-6)
    g_shared = torch.autograd.grad(shared.sum(), list(critic.parameters()))
    g_repeated = torch.autograd.grad(repeated.sum(), list(critic.parameters()))
    for a, b in zip(g_shared, g_repeated):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layer_norm", [False, True])
@pytest.mark.parametrize("i", [0, 2])
def test_one_frozen_member_equals_that_member_of_the_whole_ensemble(i, layer_norm):
    """TD3+BC's actor loss evaluates the first critic alone: same values and input gradients as slicing
    the whole ensemble's output, and no gradient for the critic."""
    from rlrun.nets import CriticEnsemble, MLPSpec, frozen, frozen_member

    torch.manual_seed(0)
    critic = CriticEnsemble(7, 3, MLPSpec([16, 16], layer_norm=layer_norm), n=3)
    obs, act = torch.randn(5, 7), (torch.rand(5, 3) * 2 - 1).requires_grad_()
    one = frozen_member(critic, i, obs, act)
    whole = frozen(critic, obs, act)
    assert one.shape == (5,)
    torch.testing.assert_close(one, whole[i], rtol=1e-6, atol=1e-6)
    (g_one,) = torch.autograd.grad(one.sum(), act)
    (g_whole,) = torch.autograd.grad(whole[i].sum(), act)
    torch.testing.assert_close(g_one, g_whole, rtol=1e-6, atol=1e-6)
    assert all(p.grad is None for p in critic.parameters())


@needs_onednn
@pytest.mark.parametrize("shared_obs", [True, False], ids=["shared_obs", "obs_per_action"])
def test_onednn_critic_path_equals_the_batched_one(shared_obs):
    """Values and gradients (parameters and actions) of the per-member oneDNN path match the batched bmm path."""
    from rlrun.nets import CriticEnsemble, MLPSpec

    torch.manual_seed(0)
    critic = CriticEnsemble(7, 3, MLPSpec([32, 32]), n=2)
    obs = torch.randn(6, 1, 7) if shared_obs else torch.randn(6, 5, 7)
    act, weights = torch.rand(6, 5, 3) * 2 - 1, torch.randn(2, 6, 5)
    results = []
    for backend in ("blas", "onednn"):
        onednn.use(backend)
        a = act.clone().requires_grad_()
        q = critic(obs, a)
        grads = torch.autograd.grad((q * weights).sum(), [a, *critic.parameters()])
        results.append((q, grads))
    (q_blas, g_blas), (q_dnn, g_dnn) = results
    assert q_dnn.shape == (2, 6, 5)
    torch.testing.assert_close(q_dnn, q_blas, atol=1e-6, rtol=1e-5)
    for got, want in zip(g_dnn, g_blas):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


@needs_onednn
def test_onednn_path_stays_off_under_autocast_and_on_other_dtypes():
    onednn.use("onednn")
    x = torch.randn(4, 3)
    assert onednn.enabled_for(x, 2**30)
    assert not onednn.enabled_for(x.double(), 2**30)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not onednn.enabled_for(x, 2**30)
    onednn.use("blas")
    assert not onednn.enabled_for(x, 2**30)


@needs_onednn
def test_only_critic_calls_with_big_layers_take_the_onednn_path(monkeypatch):
    """Per-member calls pay off only for big products: door CQL's 256 x 31 actions at width 256 yes, 256 rows at width 64 no."""
    from rlrun.nets import CriticEnsemble, MLPSpec

    monkeypatch.setattr(onednn, "MIN_LAYER_MACS", 2**24)
    calls = []
    by_member = CriticEnsemble._by_member
    monkeypatch.setattr(CriticEnsemble, "_by_member", lambda self, *a: calls.append(1) or by_member(self, *a))
    onednn.use("onednn")
    with torch.no_grad():
        CriticEnsemble(39, 28, MLPSpec([256, 256]))(torch.randn(256, 1, 39), torch.rand(256, 31, 28))
        assert len(calls) == 1  # 7936 rows x 256 x 256 per layer
        CriticEnsemble(3, 1, MLPSpec([64, 64]))(torch.randn(256, 3), torch.rand(256, 1))
        assert len(calls) == 1  # 256 rows x 64 x 64: the batched path


def test_cpu_matmul_choice_is_checked():
    assert onednn.use("auto") in (True, False)
    with pytest.raises(ValueError, match="unknown CPU matmul backend"):
        onednn.use("fast")
