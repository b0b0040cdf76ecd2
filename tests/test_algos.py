"""Layer 3: the contract every algorithm keeps (shapes, metrics, learning step, save → load)."""

from __future__ import annotations

import pytest
import torch

from rlrun import checkpoint
from rlrun.algos.base import Batch
from rlrun.build import make_algo
from rlrun.data.online import Spaces

from conftest import make_cfg

CONTINUOUS = Spaces(obs_dim=5, act_dim=3, discrete=False)
ALGOS = {"sac": CONTINUOUS, "cql": CONTINUOUS}


def build(name: str, spaces: Spaces, seed: int = 0):
    torch.manual_seed(seed)
    cfg = make_cfg(f"algo={name}", "env=pendulum", "network.hidden_sizes=[32,32]")
    return make_algo(cfg, spaces, torch.device("cpu"))


def random_batch(spaces: Spaces, size: int = 16) -> Batch:
    act = (torch.randint(0, spaces.act_dim, (size,)) if spaces.discrete
           else torch.rand(size, spaces.act_dim) * 2 - 1)
    return Batch(torch.randn(size, spaces.obs_dim), act, torch.randn(size), torch.randn(size, spaces.obs_dim),
                 (torch.rand(size) < 0.1).float())


@pytest.mark.parametrize("name", ALGOS)
def test_act_shapes_and_range(name):
    spaces = ALGOS[name]
    algo = build(name, spaces)
    action, _ = algo.act(torch.randn(4, spaces.obs_dim), algo.initial_state(), False)
    assert action.shape == ((4,) if spaces.discrete else (4, spaces.act_dim))
    if not spaces.discrete:
        assert action.abs().max() <= 1.0


@pytest.mark.parametrize("name", ALGOS)
def test_update_returns_prefixed_finite_tensors_and_changes_weights(name):
    spaces = ALGOS[name]
    algo = build(name, spaces)
    before = {k: v.clone() for k, v in checkpoint.collect(algo)["actor"].items()}
    critic_before = {k: v.clone() for k, v in checkpoint.collect(algo)["critic"].items()}
    for _ in range(3):
        metrics = algo.update(random_batch(spaces))
    assert metrics and all(k.startswith("train/") for k in metrics)
    assert all(isinstance(v, torch.Tensor) and torch.isfinite(v).all() for v in metrics.values())
    after = checkpoint.collect(algo)
    assert any(not torch.equal(before[k], after["actor"][k]) for k in before)
    assert any(not torch.equal(critic_before[k], after["critic"][k]) for k in critic_before)


@pytest.mark.parametrize("name", ALGOS)
def test_save_load_gives_identical_actions_and_optimizer_state(name, tmp_path):
    spaces = ALGOS[name]
    algo = build(name, spaces, seed=0)
    for _ in range(3):
        algo.update(random_batch(spaces))
    checkpoint.save(tmp_path, 3, {"algo": checkpoint.collect(algo)}, keep=1)
    fresh = build(name, spaces, seed=1)
    obs = torch.randn(8, spaces.obs_dim)
    assert not torch.equal(fresh.act(obs, None, True)[0], algo.act(obs, None, True)[0])
    state, _ = checkpoint.load_latest(tmp_path)
    checkpoint.restore(fresh, state["algo"])
    assert torch.equal(fresh.act(obs, None, True)[0], algo.act(obs, None, True)[0])
    # the next update is identical too: optimizer moments and temperatures were restored
    batch = random_batch(spaces)
    torch.manual_seed(7)
    m1 = algo.update(batch)
    torch.manual_seed(7)
    m2 = fresh.update(batch)
    assert all(torch.equal(m1[k], m2[k]) for k in m1)


def test_checkpoint_collects_every_module_optimizer_and_tensor():
    algo = build("cql", CONTINUOUS)
    state = checkpoint.collect(algo)
    for key in ("actor", "critic", "critic_target", "obs_norm", "actor_opt", "critic_opt", "alpha_opt",
                "log_alpha", "log_alpha_prime", "alpha_prime_opt", "updates"):
        assert key in state, key


def test_cql_penalty_pushes_down_out_of_distribution_actions():
    """On a fixed batch, CQL's conservative term lowers Q at random actions relative to data actions."""
    spaces = CONTINUOUS
    torch.manual_seed(0)
    cfg = make_cfg("algo=cql", "env=pendulum", "network.hidden_sizes=[32,32]", "algo.cql_alpha=5.0",
                   "algo.critic_lr=1e-3")
    algo = make_algo(cfg, spaces, torch.device("cpu"))
    batch = random_batch(spaces, 64)
    batch = batch._replace(act=torch.full_like(batch.act, 0.5), rew=torch.zeros(64))
    for _ in range(200):
        algo.update(batch)
    with torch.no_grad():
        q_data = algo.critic(batch.obs, batch.act).mean()
        q_ood = algo.critic(batch.obs, -batch.act).mean()
    assert q_data > q_ood + 0.5


def test_cql_variants_update_finitely_and_move_their_own_parameters():
    """Lagrange multiplier, max-target backup and behaviour-cloning warm-up all run and learn."""
    torch.manual_seed(0)
    cfg = make_cfg("algo=cql", "env=pendulum", "network.hidden_sizes=[32,32]", "algo.lagrange=true",
                   "algo.target_action_gap=0.5", "algo.max_target_backup=true", "algo.bc_steps=2",
                   "algo.clip_diff_min=-50", "algo.clip_diff_max=50")
    algo = make_algo(cfg, CONTINUOUS, torch.device("cpu"))
    before = algo.log_alpha_prime.detach().clone()
    for _ in range(4):
        metrics = algo.update(random_batch(CONTINUOUS))
    assert {"train/alpha_prime", "train/cql_diff"} <= set(metrics)
    assert all(torch.isfinite(v).all() for v in metrics.values())
    assert not torch.equal(before, algo.log_alpha_prime.detach())
    assert int(algo.updates) == 4


def test_cql_bc_warmup_uses_dataset_actions():
    """During bc_steps the actor loss is α log π − log π(a_data|s): it does not depend on the critic."""
    torch.manual_seed(0)
    algo = make_algo(make_cfg("algo=cql", "env=pendulum", "network.hidden_sizes=[32,32]", "algo.bc_steps=10"),
                     CONTINUOUS, torch.device("cpu"))
    batch = random_batch(CONTINUOUS)
    loss, _ = algo.actor_loss(batch)
    loss.backward()
    assert all(p.grad is None for p in algo.critic.parameters())
    algo.updates += 10
    loss, _ = algo.actor_loss(batch)
    loss.backward()
    assert any(p.grad is not None for p in algo.critic.parameters())
