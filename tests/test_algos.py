"""Layer 3: the contract every algorithm keeps (shapes, metrics, learning step, save → load)."""

from __future__ import annotations

import copy
import io
import math
import os

import numpy as np
import pytest
import torch
from conftest import make_cfg
from hydra.utils import get_class

from rlrun import checkpoint, onednn
from rlrun.accel import accelerate
from rlrun.algos.base import Batch
from rlrun.algos.options import pick
from rlrun.build import make_algo, make_source
from rlrun.data.online import Spaces
from rlrun.data.replay import ReplayBuffer
from rlrun.losses import soft_update, standardized, temperature_loss, termination_loss
from rlrun.schema import ALGO_SCHEMAS

CONTINUOUS = Spaces(obs_dim=5, act_dim=3, discrete=False)
DISCRETE = Spaces(obs_dim=4, act_dim=2, discrete=True)
# variants of registered algorithms that take another code path
VARIANTS = {
    "bc-gaussian": ["algo.gaussian=true"],
    "iql-dropout": ["algo.actor_dropout=0.1"],
    "iql-min-explore-std": ["algo.min_explore_std=0.3"],
    "awac-min-explore-std": ["algo.min_explore_std=0.3"],
    "cql-lagrange-bc": ["algo.lagrange=true", "algo.bc_steps=2", "algo.max_target_backup=true"],
    "soft_option_critic-every": ["algo.critic_every_option=true"],
    "soft_option_critic-huber": ["algo.critic_every_option=true", "algo.critic_huber=1.0"],
    "soft_option_critic-interest": ["algo.interest=true"],
    "soft_option_critic-standardize": ["algo.termination_standardize=true"],
    "option_critic-interest": ["algo.interest=true"],
}
N_OPTIONS = 3
# the contract tests' device: RLRUN_TEST_DEVICE=cuda runs them on a GPU (bench/gpu_check.sh)
DEVICE = torch.device(os.environ.get("RLRUN_TEST_DEVICE", "cpu"))


def registry_cases() -> dict[str, Spaces]:
    """Every registered algorithm (rlrun.schema.ALGO_SCHEMAS) on each kind of action space it takes,
    and the VARIANTS: a newly registered algorithm joins every contract test here."""
    cases = {}
    for name, schema in ALGO_SCHEMAS.items():
        kind = get_class(schema._target_).discrete_actions
        if kind is not False:
            cases[name] = DISCRETE
        if kind is not True:
            cases[name if kind is False else f"{name}-box"] = CONTINUOUS
    return cases | {name: CONTINUOUS for name in VARIANTS}


ALGOS = registry_cases()


def build(name: str, spaces: Spaces, seed: int = 0, *overrides: str):
    torch.manual_seed(seed)
    algo = name.split("-")[0]
    extra = {
        "option_critic": [f"algo.n_options={N_OPTIONS}", "algo.critic_every=1"],
        "soft_option_critic": [f"algo.n_options={N_OPTIONS}"],
    }.get(algo, []) + VARIANTS.get(name, [])
    cfg = make_cfg(f"algo={algo}", "env=pendulum", "network.hidden_sizes=[32,32]", *extra, *overrides)
    return make_algo(cfg, spaces, DEVICE)


def random_batch(spaces: Spaces, size: int = 16) -> Batch:
    act = torch.randint(0, spaces.act_dim, (size,)) if spaces.discrete else torch.rand(size, spaces.act_dim) * 2 - 1
    batch = Batch(
        torch.randn(size, spaces.obs_dim),
        act,
        torch.randn(size),
        torch.randn(size, spaces.obs_dim),
        (torch.rand(size) < 0.1).float(),
        torch.randint(0, N_OPTIONS, (size,)),
        act.roll(1, 0),
        torch.randn(size) * 5,
    )
    return Batch(*(x.to(DEVICE) for x in batch))


def update(algo, batch: Batch) -> dict:
    """One update the way the trainer calls it (with the newest transition when the algorithm asks)."""
    return algo.update(batch, _first(batch)) if algo.learns_from_latest else algo.update(batch)


def _first(batch: Batch) -> Batch:
    return Batch(*(x[:1] for x in batch))


def all_equal(xs, ys) -> bool:
    """Whether two sequences of tensors (parameters, say) are equal one by one."""
    return all(torch.equal(x, y) for x, y in zip(xs, ys, strict=True))


def learned_modules(algo) -> list[str]:
    """Names of the modules with trainable parameters (the ones an update must move)."""
    return [k for k, v in vars(algo).items() if isinstance(v, torch.nn.Module) and any(p.requires_grad for p in v.parameters())]


@pytest.mark.parametrize("name", ALGOS)
def test_act_shapes_and_range(name):
    spaces = ALGOS[name]
    algo = build(name, spaces)
    action, _ = algo.act(torch.randn(4, spaces.obs_dim, device=DEVICE), algo.initial_state(), False)
    assert action.shape == ((4,) if spaces.discrete else (4, spaces.act_dim))
    if not spaces.discrete:
        assert action.abs().max() <= 1.0


BACKENDS = ["blas", pytest.param("onednn", marks=pytest.mark.skipif(not onednn.available(), reason="no oneDNN"))]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ALGOS)
def test_update_returns_prefixed_finite_tensors_and_changes_weights(name, backend):
    onednn.use(backend)  # the critics' CPU matmuls: torch's BLAS or the per-member oneDNN path
    spaces = ALGOS[name]
    algo = build(name, spaces)
    modules = learned_modules(algo)
    before = {m: {k: v.clone() for k, v in checkpoint.collect(algo)[m].items()} for m in modules}
    for _ in range(3):
        metrics = update(algo, random_batch(spaces))
    assert metrics and all(k.startswith("train/") for k in metrics)
    assert all(isinstance(v, torch.Tensor) and torch.isfinite(v).all() for v in metrics.values())
    after = checkpoint.collect(algo)
    for m in modules:
        assert any(not torch.equal(before[m][k], after[m][k]) for k in before[m]), f"{m} did not change"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ALGOS)
def test_save_load_gives_identical_actions_and_optimizer_state(name, backend, tmp_path):
    onednn.use(backend)
    spaces = ALGOS[name]
    algo = build(name, spaces, seed=0)
    for _ in range(3):
        update(algo, random_batch(spaces))
    checkpoint.save(tmp_path, 3, {"algo": checkpoint.collect(algo)}, keep=1)
    fresh = build(name, spaces, seed=1)
    obs = torch.randn(32, spaces.obs_dim, device=DEVICE)
    assert not torch.equal(fresh.act(obs, None, True)[0], algo.act(obs, None, True)[0])
    state, _ = checkpoint.load_latest(tmp_path)
    checkpoint.restore(fresh, state["algo"])
    assert torch.equal(fresh.act(obs, None, True)[0], algo.act(obs, None, True)[0])
    # the next update is identical too: optimizer moments and temperatures were restored
    batch = random_batch(spaces)
    torch.manual_seed(7)
    m1 = update(algo, batch)
    torch.manual_seed(7)
    m2 = update(fresh, batch)
    assert all(torch.equal(m1[k], m2[k]) for k in m1)


def uncollected(algo) -> dict:
    """Copies of the attributes a checkpoint does not collect (settings, views of collected
    parameters and the compiled update are left out as what they are)."""
    collected = {t.data_ptr() for v in vars(algo).values() if isinstance(v, torch.nn.Module) for t in v.parameters()}

    def copy_of(value):
        if isinstance(value, torch.Tensor):
            return "collected" if value.data_ptr() in collected else value.clone()
        if isinstance(value, (list, tuple)):
            return [copy_of(v) for v in value]
        return value if callable(value) else copy.deepcopy(value)

    return {k: copy_of(v) for k, v in vars(algo).items() if not checkpoint.stateful(v)}


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a is b if callable(a) else a == b


@pytest.mark.parametrize("name", ALGOS)
def test_checkpoints_collect_all_mutable_state(name):
    """Acting and updating change nothing a checkpoint would miss (a Python counter, say)."""
    spaces = ALGOS[name]
    algo = build(name, spaces)
    before = uncollected(algo)
    state = algo.initial_state()
    for _ in range(3):
        _, state = algo.act(torch.randn(2, spaces.obs_dim, device=DEVICE), state, False)
        update(algo, random_batch(spaces))
    after = uncollected(algo)
    changed = [k for k in before if not same(before[k], after[k])]
    assert not changed, f"{name} changes state that checkpoints do not collect: {changed}"


@pytest.mark.parametrize("name", ALGOS)
def test_bf16_autocast_update_runs_finitely(name):
    spaces = ALGOS[name]
    algo = build(name, spaces)
    fast = accelerate(algo.update, DEVICE, True, False, False)
    for _ in range(2):
        batch = random_batch(spaces)
        metrics = fast(batch, _first(batch)) if algo.learns_from_latest else fast(batch)
    assert all(torch.isfinite(v).all() for v in metrics.values()), name


def test_restore_names_missing_and_unexpected_keys():
    algo = build("td3_bc", CONTINUOUS)
    state = checkpoint.collect(algo)
    with pytest.raises(checkpoint.CheckpointError, match="missing actor_target"):
        checkpoint.restore(algo, {k: v for k, v in state.items() if k != "actor_target"})
    with pytest.raises(checkpoint.CheckpointError, match="unexpected log_alpha"):
        checkpoint.restore(algo, state | {"log_alpha": torch.zeros(())})


def test_restore_collects_lr_schedulers():
    """IQL's cosine schedule is an attribute with state_dict: saved and restored like a module."""
    algo, fresh = (build("iql", CONTINUOUS, 0, "trainer.total_steps=10") for _ in range(2))
    for _ in range(5):
        algo.update(random_batch(CONTINUOUS))
    checkpoint.restore(fresh, checkpoint.collect(algo))
    assert fresh.actor_schedule.last_epoch == algo.actor_schedule.last_epoch == 5
    lr = float(algo.actor_opt.param_groups[0]["lr"])
    assert float(fresh.actor_opt.param_groups[0]["lr"]) == lr == pytest.approx(3e-4 * 0.5, rel=1e-5)  # halfway


def test_a_missing_contract_piece_stops_the_build_naming_it():
    from rlrun.algos.base import ContractError, check_contract

    class NoFlags:
        def act(self, obs, state, deterministic):
            return obs, state

    with pytest.raises(ContractError, match="class flag online_only.*method update.*obs_norm"):
        check_contract(NoFlags())
    check_contract(build("rebrac", CONTINUOUS))


def test_checkpoint_collects_every_module_optimizer_and_tensor():
    algo = build("cql", CONTINUOUS)
    state = checkpoint.collect(algo)
    for key in (
        "actor",
        "critic",
        "critic_target",
        "obs_norm",
        "actor_opt",
        "critic_opt",
        "alpha_opt",
        "log_alpha",
        "log_alpha_prime",
        "alpha_prime_opt",
        "updates",
    ):
        assert key in state, key


def test_cql_penalty_pushes_down_out_of_distribution_actions():
    """On a fixed batch, CQL's conservative term lowers Q at random actions relative to data actions."""
    spaces = CONTINUOUS
    torch.manual_seed(0)
    cfg = make_cfg("algo=cql", "env=pendulum", "network.hidden_sizes=[32,32]", "algo.cql_alpha=5.0", "algo.critic_lr=1e-3")
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
    cfg = make_cfg(
        "algo=cql",
        "env=pendulum",
        "network.hidden_sizes=[32,32]",
        "algo.lagrange=true",
        "algo.target_action_gap=0.5",
        "algo.max_target_backup=true",
        "algo.bc_steps=2",
        "algo.clip_diff_min=-50",
        "algo.clip_diff_max=50",
    )
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
    algo = make_algo(
        make_cfg("algo=cql", "env=pendulum", "network.hidden_sizes=[32,32]", "algo.bc_steps=10"), CONTINUOUS, torch.device("cpu")
    )
    batch = random_batch(CONTINUOUS)

    def loss_change_when_the_critic_moves() -> float:
        torch.manual_seed(1)
        before, _ = algo.actor_loss(batch)
        with torch.no_grad():
            algo.critic.head.bias.add_(1.0)
        torch.manual_seed(1)
        after, _ = algo.actor_loss(batch)
        return (after - before).item()

    assert loss_change_when_the_critic_moves() == 0.0
    algo.updates += 10
    assert loss_change_when_the_critic_moves() == pytest.approx(-1.0, abs=1e-5)  # −min_i Q_i moved by −1


@pytest.mark.parametrize("name", ["sac", "soft_option_critic"])
def test_actor_loss_reaches_the_actor_through_frozen_critics(name):
    """The SAC family's single backward relies on it: the actor loss moves no critic parameter."""
    algo = build(name, CONTINUOUS)
    batch = random_batch(CONTINUOUS)
    if name == "sac":
        loss, _ = algo.actor_loss(batch)
        actor = algo.actor
    else:
        _, loss, _, _, _, _ = algo.losses(batch)
        actor = algo.policies
    loss.backward()
    assert all(p.grad is None for p in algo.critic.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in actor.parameters())


def test_single_backward_update_equals_one_backward_per_optimizer():
    """SAC's joint step gives the weights that actor, temperature and critic steps taken one by one
    (each with its own backward, on losses computed before any step) give."""
    ref, joint = build("cql", CONTINUOUS), build("cql", CONTINUOUS)
    batch = random_batch(CONTINUOUS)
    torch.manual_seed(5)
    joint.update(batch)
    torch.manual_seed(5)
    actor_loss, log_prob = ref.actor_loss(batch)
    critic_loss, _ = ref.critic_loss(batch)
    for opt, loss in [
        (ref.actor_opt, actor_loss),
        (ref.critic_opt, critic_loss),
        (ref.alpha_opt, temperature_loss(ref.log_alpha, log_prob, ref.target_entropy)),
    ]:
        opt.zero_grad()
        loss.backward(retain_graph=True)
        opt.step()
    soft_update(*ref._soft_pairs, ref.tau)
    want, got = checkpoint.collect(ref), checkpoint.collect(joint)
    for module in ("actor", "critic", "critic_target"):
        for key in want[module]:
            torch.testing.assert_close(got[module][key], want[module][key], rtol=0, atol=1e-6, msg=key)
    torch.testing.assert_close(joint.log_alpha, ref.log_alpha)


@pytest.mark.parametrize("name", ["td3_bc", "rebrac"])
def test_policy_delay_steps_the_actor_and_targets_every_policy_freq_updates(name):
    """With policy_freq = 3 the critic moves on every update, the actor and the target actor on the
    3rd and 6th only; the delay's position is a Python int that checkpoints carry."""
    algo = build(name, CONTINUOUS, 0, "algo.policy_freq=3")
    moved = []
    for _ in range(6):
        before = {m: [p.detach().clone() for p in getattr(algo, m).parameters()] for m in ("critic", "actor", "actor_target")}
        algo.update(random_batch(CONTINUOUS))
        moved.append({m: not all_equal(ps, getattr(algo, m).parameters()) for m, ps in before.items()})
    assert [m["critic"] for m in moved] == [True] * 6
    assert [m["actor"] for m in moved] == [m["actor_target"] for m in moved] == [False, False, True, False, False, True]
    algo.update(random_batch(CONTINUOUS))
    assert checkpoint.collect(algo)["updates"] == {"position": 1}
    checkpoint.restore(algo, checkpoint.collect(algo) | {"updates": torch.tensor(8)})  # earlier versions' tensor count
    assert algo.updates.position == 2


# --- option-critic ---------------------------------------------------------------------------
def test_option_critic_keeps_options_until_they_terminate():
    algo = build("option_critic", DISCRETE)
    obs = torch.randn(64, DISCRETE.obs_dim)
    state = torch.randint(0, N_OPTIONS, (64,))
    with torch.no_grad():
        algo.termination[-1].bias.fill_(-50.0)  # β ≈ 0: every option keeps running
    _, kept = algo.act(obs, state, False)
    assert torch.equal(kept, state)
    with torch.no_grad():
        algo.termination[-1].bias.fill_(50.0)  # β ≈ 1: every option ends; greedy choice when deterministic
    _, chosen = algo.act(obs, state, True)
    assert torch.equal(chosen, algo.q(obs).argmax(-1))


def test_option_critic_steps_its_critic_and_copies_its_target_on_their_own_cycles():
    """critic_every = 2 and target_every = 3: the critic moves on updates 2, 4 and 6; the target
    follows it on updates 3 and 6 (a copy of the critic as it is then)."""
    algo = build("option_critic", DISCRETE, 0, "algo.critic_every=2", "algo.target_every=3")
    critic_moved, target_is_critic = [], []
    for _ in range(6):
        before = [p.detach().clone() for p in algo.q.parameters()]
        batch = random_batch(DISCRETE)
        algo.update(batch, _first(batch))
        critic_moved.append(not all_equal(before, algo.q.parameters()))
        target_is_critic.append(all_equal(algo.q_target.parameters(), algo.q.parameters()))
    assert critic_moved == [False, True, False, True, False, True]
    assert target_is_critic == [True, False, True, False, False, True]  # update 1: neither has moved yet


def test_option_critic_epsilon_decays_linearly_and_stats_track_usage():
    algo = build("option_critic", DISCRETE)
    assert algo.options.epsilon == 1.0
    algo.options.env_steps.fill_(algo.options.eps_steps // 2)
    assert abs(float(algo.options.epsilon) - (1.0 + 0.05) / 2) < 1e-6
    algo.options.env_steps.fill_(10 * algo.options.eps_steps)
    assert math.isclose(algo.options.epsilon, 0.05, rel_tol=1e-6)
    algo.options.stats_rate = 0.5
    with torch.no_grad():
        algo.termination[-1].bias.fill_(-50.0)
    obs = torch.randn(1, DISCRETE.obs_dim)
    _, state = algo.act(obs, None, False)  # starts an option: one termination event
    for _ in range(20):
        _, state = algo.act(obs, state, False)
    assert algo.options.usage[state[0]] > 0.99  # the one running option
    assert algo.options.stats()["train/option_duration_mean"] > 1000  # it never terminated


def test_option_critic_termination_falls_where_the_option_is_best():
    """Repeated actor steps on a transition whose option has a positive advantage at s' lower β there."""
    algo = build("option_critic", DISCRETE)
    batch = random_batch(DISCRETE, 1)._replace(terminal=torch.zeros(1), option=torch.zeros(1, dtype=torch.long))
    with torch.no_grad():
        algo.q[-1].weight.zero_()
        algo.q[-1].bias.copy_(torch.tensor([5.0, 0.0, 0.0]))  # option 0 is clearly the best
    beta_before = algo.options.beta(batch.next_obs)[0, 0].item()
    for _ in range(60):
        algo.update(batch, batch)
    assert algo.options.beta(batch.next_obs)[0, 0].item() < beta_before - 0.1


def test_option_critic_resumes_mid_option_with_identical_actions(tmp_path):
    algo = build("option_critic", DISCRETE)
    for _ in range(3):
        update(algo, random_batch(DISCRETE))
    obs = torch.randn(32, DISCRETE.obs_dim)
    _, state = algo.act(obs, None, False)
    checkpoint.save(tmp_path, 3, {"algo": checkpoint.collect(algo)}, keep=1)
    fresh = build("option_critic", DISCRETE, seed=1)
    checkpoint.restore(fresh, checkpoint.load_latest(tmp_path)[0]["algo"])
    assert int(fresh.options.env_steps) == int(algo.options.env_steps) and torch.equal(fresh.options.usage, algo.options.usage)
    torch.manual_seed(3)
    a1, s1 = algo.act(obs, state, False)
    torch.manual_seed(3)
    a2, s2 = fresh.act(obs, state, False)
    assert torch.equal(a1, a2) and torch.equal(s1, s2)


# --- soft option-critic ----------------------------------------------------------------------
def test_soft_option_critic_option_values_use_each_options_mean_action():
    """Q_Ω(s, ω) for greedy option choice = min_i Q_U,i(s, ω, tanh μ_ω(s)), with ω as a one-hot beside s."""
    algo = build("soft_option_critic", CONTINUOUS)
    obs = torch.randn(5, CONTINUOUS.obs_dim)
    values = algo.option_values(obs)
    assert values.shape == (5, N_OPTIONS)
    for k in range(N_OPTIONS):
        option = torch.full((5,), k)
        mean_action = algo.policies.sample(obs, option, deterministic=True)
        one_hot = torch.nn.functional.one_hot(option, N_OPTIONS).float()
        expected = algo.critic(torch.cat([obs, one_hot], -1), mean_action).min(0).values
        torch.testing.assert_close(values[:, k], expected)


def test_soft_option_critic_target_follows_the_option_target_by_hand():
    """Q̄_Ω(s', ω) = min_j Q̄_U,j(s', ω, a'_ω) − α log π_ω(a'_ω|s'), and the critics regress on
    G = r + γ(1 − d)[(1 − β_ω(s')) Q̄_Ω(s', ω) + β_ω(s') V_Ω(s')] with the ε-greedy
    V_Ω(s') = (1 − ε) max_ω' Q̄_Ω(s', ω') + ε mean_ω' Q̄_Ω(s', ω') (hand-set β = 0.25, ε = 0.525)."""
    algo = build("soft_option_critic", CONTINUOUS)
    batch = random_batch(CONTINUOUS, 1)._replace(terminal=torch.zeros(1), option=torch.tensor([1]), rew=torch.ones(1))
    with torch.no_grad():
        algo.termination[-1].weight.zero_()
        algo.termination[-1].bias.copy_(torch.tensor([0.0, math.log(1 / 3), 0.0]))  # β_1(s') = 0.25
        for p in algo.critic_target.parameters():
            p.zero_()
        algo.critic_target.head.bias.copy_(torch.tensor([3.0, 2.0]).view(2, 1, 1))  # Q̄_U,1 ≡ 3, Q̄_U,2 ≡ 2
    torch.manual_seed(5)
    q_next = algo.soft_option_values(batch.next_obs)
    torch.manual_seed(5)
    _, log_prob = algo.policies.rsample_all(batch.next_obs)
    torch.testing.assert_close(q_next, 2.0 - algo.alpha * log_prob)
    algo.soft_option_values = lambda next_obs: torch.tensor([[1.0, 2.0, 5.0]])
    algo.options.env_steps.fill_(algo.options.eps_steps // 2)  # halfway from ε = 1 to 0.05
    assert math.isclose(float(algo.options.epsilon), 0.525, rel_tol=1e-6)
    critic_loss, *_ = algo.losses(batch)
    v_next = 0.475 * 5.0 + 0.525 * (8.0 / 3.0)
    target = 1.0 + 0.99 * (0.75 * 2.0 + 0.25 * v_next)
    q = algo.critic(torch.cat([batch.obs, torch.tensor([[0.0, 1.0, 0.0]])], -1), batch.act)  # (2 critics, 1)
    torch.testing.assert_close(critic_loss, ((q - target) ** 2).sum())


def test_deliberation_cost_is_paid_on_switching_and_added_to_the_termination_advantage():
    """Harb et al. 2018: with cost c the option target is r + γ(1 − d)[(1 − β) Q̄(s', ω) + β (max Q̄(s', ·) − c)],
    i.e. lower by γ(1 − d) β c, and the termination loss is the one of regularizer ξ + c."""
    batch = random_batch(DISCRETE, 32)
    plain = build("option_critic", DISCRETE, 0, "algo.termination_reg=0.01")
    costly = build("option_critic", DISCRETE, 0, "algo.termination_reg=0.01", "algo.deliberation_cost=0.5")
    shifted = build("option_critic", DISCRETE, 0, "algo.termination_reg=0.51")
    beta_next = pick(plain.options.beta(batch.next_obs), batch.option)
    drop = plain.target(batch, beta_next) - costly.target(batch, beta_next)
    torch.testing.assert_close(drop, 0.99 * (1 - batch.terminal) * beta_next * 0.5)
    assert drop.abs().max() > 0
    torch.testing.assert_close(
        costly.actor_loss(batch)[1]["train/termination_loss"], shifted.actor_loss(batch)[1]["train/termination_loss"]
    )
    soft = build("soft_option_critic", CONTINUOUS, 0, "algo.deliberation_cost=0.5")
    soft_batch = random_batch(CONTINUOUS, 8)
    torch.manual_seed(1)
    with_cost = soft.losses(soft_batch)[0]
    soft.cost = 0.0
    torch.manual_seed(1)
    assert not torch.equal(with_cost, soft.losses(soft_batch)[0])  # the soft critics' target pays it too


def test_standardized_termination_gradient_does_not_depend_on_the_value_scale():
    """termination_standardize: values 10x larger (critics' heads and α scaled) leave the termination
    loss as it was, where the plain loss at ξ = 0.01 moves; it equals termination_loss at the standardized A."""
    batch = random_batch(CONTINUOUS, 32)

    def termination_losses(*overrides: str) -> tuple[torch.Tensor, torch.Tensor]:
        algo = build("soft_option_critic", CONTINUOUS, 0, *overrides)
        torch.manual_seed(1)
        before = algo.losses(batch)[-1]["train/termination_loss"]
        with torch.no_grad():
            for critic in (algo.critic, algo.critic_target):
                critic.head.weight.mul_(10.0)
                critic.head.bias.mul_(10.0)
            algo.log_alpha.add_(math.log(10.0))
        torch.manual_seed(1)
        return before, algo.losses(batch)[-1]["train/termination_loss"]

    before, after = termination_losses("algo.termination_standardize=true")
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-6)
    plain_before, plain_after = termination_losses()
    assert not torch.allclose(plain_after, plain_before, rtol=1e-3)
    algo = build("soft_option_critic", CONTINUOUS, 0, "algo.termination_standardize=true")
    beta, advantage = torch.rand(32), torch.randn(32)
    want = termination_loss(beta, standardized(advantage, 1.0 - batch.terminal), 0.01, batch.terminal)
    torch.testing.assert_close(algo.termination_objective(beta, advantage, batch.terminal), want)


def test_soft_option_critic_fits_every_options_critic_by_hand():
    """critic_every_option: each option ω regresses Q_U(s, ω, a) at the transition's action on its own
    G_ω = r + γ(1 − d)[(1 − β_ω(s')) Q̄_Ω(s', ω) + β_ω(s') V_Ω(s')] (hand-set β = 0.5, 0.25, 0.75)."""
    algo = build("soft_option_critic-every", CONTINUOUS)
    batch = random_batch(CONTINUOUS, 1)._replace(terminal=torch.zeros(1), option=torch.tensor([1]), rew=torch.ones(1))
    with torch.no_grad():
        algo.termination[-1].weight.zero_()
        algo.termination[-1].bias.copy_(torch.tensor([0.0, math.log(1 / 3), math.log(3)]))
    algo.soft_option_values = lambda next_obs: torch.tensor([[1.0, 2.0, 5.0]])
    algo.options.env_steps.fill_(algo.options.eps_steps // 2)  # ε = 0.525
    critic_loss, *_, metrics = algo.losses(batch)
    v_next = 0.475 * 5.0 + 0.525 * (8.0 / 3.0)
    target = 1.0 + 0.99 * torch.tensor([0.5 * 1.0 + 0.5 * v_next, 0.75 * 2.0 + 0.25 * v_next, 0.25 * 5.0 + 0.75 * v_next])
    q = algo.critic(torch.cat([batch.obs.expand(3, -1), torch.eye(3)], -1), batch.act.expand(3, -1))  # (2 critics, 3)
    torch.testing.assert_close(critic_loss, ((q - target) ** 2).mean(-1).sum())
    torch.testing.assert_close(metrics["train/q_mean"], q[:, 1].mean())  # the running option's, as without the flag


def set_interest(algo, interest: list[float]) -> None:
    """Make every option's interest I_ω(s) the given constant, whatever s."""
    with torch.no_grad():
        algo.interest[-1].weight.zero_()
        algo.interest[-1].bias.copy_(torch.logit(torch.tensor(interest)))


def test_soft_option_critic_with_interest_targets_the_interest_policys_value_by_hand():
    """With interest functions V_Ω(s') is the value of π_I,Ω ∝ I π_Ω: ε = 0.525 over 3 options gives
    π_Ω = (0.175, 0.175, 0.65) at Q̄_Ω(s') = (1, 2, 5); I = (0.75, 0.25, 0.5) reweights it to
    (0.2625, 0.0875, 0.65), so V = 3.6875 and G = 1 + 0.99 (0.75 · 2 + 0.25 · 3.6875) at β_1 = 0.25."""
    algo = build("soft_option_critic-interest", CONTINUOUS)
    batch = random_batch(CONTINUOUS, 1)._replace(terminal=torch.zeros(1), option=torch.tensor([1]), rew=torch.ones(1))
    with torch.no_grad():
        algo.termination[-1].weight.zero_()
        algo.termination[-1].bias.copy_(torch.tensor([0.0, math.log(1 / 3), 0.0]))  # β_1(s') = 0.25
    set_interest(algo, [0.75, 0.25, 0.5])
    algo.soft_option_values = lambda next_obs: torch.tensor([[1.0, 2.0, 5.0]])
    algo.options.env_steps.fill_(algo.options.eps_steps // 2)  # ε = 0.525
    critic_loss, _, term_and_interest, *_, metrics = algo.losses(batch)
    target = 1.0 + 0.99 * (0.75 * 2.0 + 0.25 * 3.6875)
    q = algo.critic(torch.cat([batch.obs, torch.tensor([[0.0, 1.0, 0.0]])], -1), batch.act)  # (2 critics, 1)
    torch.testing.assert_close(critic_loss, ((q - target) ** 2).sum())
    torch.testing.assert_close(metrics["train/interest_loss"], torch.tensor(-0.25 * 3.6875))
    torch.testing.assert_close(metrics["train/interest/0"], torch.tensor(0.75))
    term = 0.25 * (2.0 - 3.6875 + algo.xi)
    torch.testing.assert_close(term_and_interest, torch.tensor(term - 0.25 * 3.6875))


def test_interest_moves_the_choice_towards_better_options_and_gates_it():
    """The interest gradient lowers the interest of options worse than V and raises the better ones';
    an option with no interest in s is not chosen there, even when its value is the highest."""
    algo = build("option_critic-interest", DISCRETE)
    obs = torch.randn(64, DISCRETE.obs_dim)
    values = torch.tensor([1.0, 3.0, 2.0]).expand(64, -1)
    beta = torch.full((64,), 0.5)
    set_interest(algo, [0.5, 0.5, 0.5])
    algo.options.at_next(obs, values, beta, torch.zeros(64))[1].backward()
    grad = algo.interest[-1].bias.grad  # d loss / d logit of each option's interest
    assert grad[0] > 0 and grad[1] < 0  # worst option loses interest, best gains
    set_interest(algo, [0.9, 1e-6, 0.9])  # the greedy option (1) is not interested anywhere
    chosen = algo.options.choose(obs, values, None, deterministic=True)
    assert (chosen != 1).all()  # the other options share ε's mass: one of them, at the final ε
    sampled = algo.options.choose(obs, values, None, deterministic=False)
    assert (sampled != 1).all() and sampled.unique().numel() == 2


def test_soft_option_critic_huber_critics_count_large_errors_linearly_by_hand():
    """critic_huber = δ: a TD error e beyond δ counts 2δ|e| − δ² (δ = 1, every Q_U set to 2, G = 7: 2·5 − 1 = 9)."""
    algo = build("soft_option_critic-huber", CONTINUOUS)
    batch = random_batch(CONTINUOUS, 1)._replace(terminal=torch.ones(1), option=torch.tensor([1]), rew=torch.full((1,), 7.0))
    with torch.no_grad():
        algo.critic.head.weight.zero_()
        algo.critic.head.bias.fill_(2.0)
    critic_loss, *_ = algo.losses(batch)
    torch.testing.assert_close(critic_loss, torch.tensor(2 * 9.0))  # 2 critics, each the mean of 9 over 3 options


def test_soft_option_critic_policy_gradient_reaches_only_the_running_options_head():
    algo = build("soft_option_critic", CONTINUOUS)
    batch = random_batch(CONTINUOUS, 8)._replace(option=torch.full((8,), 2))
    _, policy_loss, *_ = algo.losses(batch)
    out = algo.policies.net[-1]  # rows: option k's mean and log σ at [k*2A, (k+1)*2A)
    policy_loss.backward()
    head = 2 * CONTINUOUS.act_dim
    grad = out.weight.grad.abs().sum(-1)
    assert grad[: 2 * head].sum() == 0 and grad[2 * head :].sum() > 0


def test_soft_option_critic_termination_falls_where_the_option_is_best():
    """Updates on a transition whose option is best at s' (A_Ω(s', 0) = 10/3 under ε = 1) lower β_0(s')."""
    algo = build("soft_option_critic", CONTINUOUS)
    batch = random_batch(CONTINUOUS, 1)._replace(terminal=torch.zeros(1), option=torch.zeros(1, dtype=torch.long))
    algo.soft_option_values = lambda next_obs: torch.tensor([[5.0, 0.0, 0.0]])
    beta_before = algo.options.beta(batch.next_obs)[0, 0].item()
    for _ in range(150):
        algo.update(batch)
    assert algo.options.beta(batch.next_obs)[0, 0].item() < beta_before - 0.1


def test_env_reward_scale_reaches_learning_batches_only():
    """`env.reward_scale` scales what the algorithm learns from; returns and the stored buffer stay true."""
    cfg = make_cfg("algo=sac", "env=pendulum", "env.reward_scale=0.1", "trainer.learning_starts=300")
    source = make_source(cfg, torch.device("cpu"))
    algo = build("sac", source.spaces)
    stats = [source.step(algo, step) for step in range(1, 201)]  # Pendulum episodes last 200 steps
    stored = source.replay.chronological()["rew"]  # (200,)
    assert stats[-1]["train/episode_return"] == pytest.approx(stored.sum().item(), rel=1e-5)
    assert stored.min() < -1.0  # rewards far from zero, so a missing or doubled scale shows below
    assert torch.allclose(source.latest().rew, stored[-1:] * 0.1)
    batch = source.sample(64)
    assert torch.isin(batch.rew, stored * 0.1).all()


def test_replay_state_holds_the_stored_rows_only():
    """A checkpoint's replay grows with the transitions stored, not with the preallocated capacity."""
    replay = ReplayBuffer(100_000, 39, (28,), torch.float32, torch.device("cpu"))
    for i in range(10):
        replay.add(np.full(39, i), np.zeros(28), float(i), np.full(39, i + 1), False, i == 9)
    buf = io.BytesIO()
    torch.save(replay.state_dict(), buf)
    assert buf.tell() < 50_000  # the whole capacity would be about 43 MB
    fresh = ReplayBuffer(100_000, 39, (28,), torch.float32, torch.device("cpu"))
    buf.seek(0)
    fresh.load_state_dict(torch.load(buf, weights_only=False))
    assert fresh.size == 10 and torch.equal(fresh.chronological()["next_obs"], replay.chronological()["next_obs"])


def test_cal_ql_is_cql_where_returns_are_below_q_and_calibrates_where_above():
    """Cal-QL's critic loss equals CQL's (same weights, same sampled actions) when V^μ is below every
    Q-value, and differs, with every policy action's Q raised to the bound, when V^μ is above them."""
    batch = random_batch(CONTINUOUS)
    cal_ql_same = ("algo.max_target_backup=false", "algo.cql_alpha_online=null")
    cql = build("cql", CONTINUOUS, 0, *cal_ql_same)
    cal_ql = build("cal_ql", CONTINUOUS, 0, *cal_ql_same)
    cal_ql.critic.load_state_dict(cql.critic.state_dict())
    cal_ql.actor.load_state_dict(cql.actor.state_dict())
    cal_ql.critic_target.load_state_dict(cql.critic_target.state_dict())
    losses = {}
    for name, algo, mc_return in (("cql", cql, None), ("low", cal_ql, -1e6), ("high", cal_ql, 1e6)):
        torch.manual_seed(1)
        b = batch if mc_return is None else batch._replace(mc_return=torch.full_like(batch.rew, mc_return))
        losses[name] = algo.critic_loss(b)
    assert torch.allclose(losses["low"][0], losses["cql"][0])
    assert losses["low"][1]["train/calibrated_share"] == 0.0
    assert losses["high"][1]["train/calibrated_share"] == 1.0
    assert not torch.allclose(losses["high"][0], losses["cql"][0])


def test_cql_alpha_online_takes_over_at_the_switch_and_is_checkpointed():
    from rlrun.algos.base import begin_online

    algo = build("cql", CONTINUOUS, 0, "algo.cql_alpha=5.0", "algo.cql_alpha_online=0.5")
    assert float(algo.cql_alpha) == 5.0
    begin_online(algo)
    assert float(algo.cql_alpha) == 0.5
    fresh = build("cql", CONTINUOUS, 0, "algo.cql_alpha=5.0", "algo.cql_alpha_online=0.5")
    checkpoint.restore(fresh, checkpoint.collect(algo))
    assert float(fresh.cql_alpha) == 0.5
