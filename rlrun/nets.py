"""Networks: MLPs, a batched critic ensemble, a tanh-Gaussian actor and intra-option policies."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlrun import noise, onednn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU}
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


@dataclass
class MLPSpec:
    """Shape of every hidden stack; built from the `network` config group."""

    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
    activation: str = "relu"
    layer_norm: bool = False
    orthogonal_init: bool = False

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; use one of {sorted(ACTIVATIONS)}")
        self.hidden_sizes = [int(h) for h in self.hidden_sizes]


def _init_linear(layer: nn.Linear, gain: float) -> None:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)


def mlp(in_dim: int, out_dim: int, spec: MLPSpec) -> nn.Sequential:
    """in_dim → hidden layers (activation, optional LayerNorm) → out_dim, no output activation."""
    layers: list[nn.Module] = []
    for width in spec.hidden_sizes:
        linear = nn.Linear(in_dim, width)
        if spec.orthogonal_init:
            _init_linear(linear, math.sqrt(2))
        layers += [linear] + ([nn.LayerNorm(width)] if spec.layer_norm else []) + [ACTIVATIONS[spec.activation]()]
        in_dim = width
    head = nn.Linear(in_dim, out_dim)
    if spec.orthogonal_init:
        _init_linear(head, 1e-2)
    return nn.Sequential(*layers, head)


class EnsembleLinear(nn.Module):
    """`n` independent linear layers applied in one batched matmul: (n, B, in) → (n, B, out)."""

    def __init__(self, n: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(n, 1, out_dim))
        bound = 1.0 / math.sqrt(in_dim)  # PyTorch's nn.Linear default range
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    @torch.no_grad()
    def orthogonal_(self, gain: float) -> None:
        """Each member initialised like an orthogonal nn.Linear of shape (out, in)."""
        n, in_dim, out_dim = self.weight.shape
        for i in range(n):
            self.weight[i] = nn.init.orthogonal_(torch.empty(out_dim, in_dim), gain).T
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        """(n, B, in) -> (n, B, out). The bias is added in place after the product: under `vmap`
        (parallel seeds) a baddbmm decomposes into bmm, mul and add, and on CPU even alone it was ≈ 4%
        slower than bmm and one in-place add at door CQL's critic sizes (7936 rows × 256)."""
        return torch.bmm(x, self.weight).add_(self.bias)


class CriticEnsemble(nn.Module):
    """`n` Q(s, a) networks evaluated together; forward returns (n, *batch)."""

    def __init__(self, obs_dim: int, act_dim: int, spec: MLPSpec, n: int = 2) -> None:
        super().__init__()
        dims = [obs_dim + act_dim, *spec.hidden_sizes]
        self.n = n
        self.hidden = nn.ModuleList(EnsembleLinear(n, i, o) for i, o in zip(dims[:-1], dims[1:]))
        self.norms = nn.ModuleList(nn.LayerNorm(o) if spec.layer_norm else nn.Identity() for o in spec.hidden_sizes)
        self.head = EnsembleLinear(n, dims[-1], 1)
        self.act = ACTIVATIONS[spec.activation]()
        self.layer_norm, self.width = spec.layer_norm, max(spec.hidden_sizes)
        if spec.orthogonal_init:
            for layer in self.hidden:
                layer.orthogonal_(math.sqrt(2))
            self.head.orthogonal_(1e-2)

    def forward(self, obs: Tensor, act: Tensor) -> Tensor:
        """Q of every member: obs (*S, O) broadcasts against act (*B, A) -> (n, *B).

        The first layer W [s; a] + b is computed as (W_s s + b) + W_a a, so an observation shared
        by many actions (obs (B, 1, O), act (B, N, A)) goes through W_s once, not N times.
        """
        batch_shape = torch.broadcast_shapes(obs.shape[:-1], act.shape[:-1])
        n = self.hidden[0].weight.shape[0]  # self.n, or fewer under `frozen_member`
        if not self.layer_norm and onednn.enabled_for(act, math.prod(batch_shape) * self.width**2):
            return self._by_member(obs, act, batch_shape, n)
        if obs.shape[:-1] == act.shape[:-1]:  # one row per action: one matmul on [s; a]
            x = torch.cat([obs, act], -1).reshape(1, -1, obs.shape[-1] + act.shape[-1])  # (*B, O+A) -> (1, B', O+A)
            return self._from_hidden(self.hidden[0](x.expand(n, -1, -1)), obs.shape[:-1])
        first = self.hidden[0]
        w_obs, w_act = first.weight.split([obs.shape[-1], act.shape[-1]], 1)  # (n, O + A, H) -> (n, O, H), (n, A, H)
        h_obs = torch.baddbmm(first.bias, _rows(obs, n), w_obs)  # (n, S', H)
        h_act = torch.bmm(_rows(act, n), w_act)  # (n, B', H)
        width = h_obs.shape[-1]
        x = h_obs.view(n, *obs.shape[:-1], width) + h_act.view(n, *act.shape[:-1], width)  # (n, *B, H)
        return self._from_hidden(x.reshape(n, -1, width), x.shape[1:-1])  # (n, *B, H) -> (n, B', H)

    def _from_hidden(self, x: Tensor, batch_shape: torch.Size) -> Tensor:
        """First layer's pre-activation (n, B', H) -> Q values (n, *B)."""
        x = self.act(self.norms[0](x))
        for layer, norm in zip(self.hidden[1:], self.norms[1:]):
            x = self.act(norm(layer(x)))
        return self.head(x).reshape(-1, *batch_shape)  # (n, B', 1) -> (n, *B)

    def _by_member(self, obs: Tensor, act: Tensor, batch_shape: torch.Size, n: int) -> Tensor:
        """The oneDNN path: one member at a time on feature-major activations (H, rows); same values as forward."""
        obs_t = obs.reshape(-1, obs.shape[-1]).T  # (*S, O) -> (O, S')
        act_t = act.reshape(-1, act.shape[-1]).T.contiguous()  # (*B, A) -> (A, B')
        first, q = self.hidden[0], []
        for i in range(n):
            if obs.shape[:-1] == act.shape[:-1]:  # one row per action: [s; a] (O + A, B')
                x = onednn.linear_t(torch.cat([obs_t, act_t]), first.weight[i], first.bias[i, 0])
            else:  # W_s s once per state, broadcast over the actions of that state
                w_obs, w_act = first.weight[i].split([obs.shape[-1], act.shape[-1]])  # (O + A, H) -> (O, H), (A, H)
                h_obs = onednn.linear_t(obs_t, w_obs, first.bias[i, 0]).view(-1, *obs.shape[:-1])  # (H, *S)
                h_act = onednn.linear_t(act_t, w_act).view(-1, *act.shape[:-1])  # (H, *B)
                x = (h_obs + h_act).reshape(h_act.shape[0], -1)  # (H, *B) -> (H, B')
            x = self.act(x)
            for layer in self.hidden[1:]:
                x = self.act(onednn.linear_t(x, layer.weight[i], layer.bias[i, 0]))  # (H, B') -> (H', B')
            q.append(torch.addmm(self.head.bias[i], self.head.weight[i].T, x))  # (1, H) @ (H, B') -> (1, B')
        return torch.cat(q).reshape(-1, *batch_shape)  # n × (1, B') -> (n, *B)


def frozen(module: nn.Module, *args: Tensor, member: int | None = None) -> Tensor:
    """module(*args) with its parameters detached: gradients reach the inputs, never the module.

    With `member=i`, an ensemble's stacked (n, ...) parameters are sliced to member i's (1, ...).
    """
    params = {
        name: p.detach()[member : member + 1] if member is not None and p.dim() == 3 else p.detach()
        for name, p in module.named_parameters()
    }
    return torch.func.functional_call(module, params, args)


def frozen_member(ensemble: CriticEnsemble, i: int, obs: Tensor, act: Tensor) -> Tensor:
    """Member i's Q (*B) with its parameters detached: one member's work, not the whole ensemble's."""
    return frozen(ensemble, obs, act, member=i)[0]  # (1, *B) -> (*B)


def _rows(x: Tensor, n: int) -> Tensor:
    """(*B, D) -> (n, B', D): the same rows for every ensemble member (a view)."""
    return x.reshape(1, -1, x.shape[-1]).expand(n, -1, -1)


class TanhGaussianActor(nn.Module):
    """π(a|s) = tanh(N(μ(s), σ(s))); actions in [-1, 1]."""

    def __init__(self, obs_dim: int, act_dim: int, spec: MLPSpec) -> None:
        super().__init__()
        self.net = mlp(obs_dim, 2 * act_dim, spec)

    def _dist(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_std = self.net(obs).chunk(2, -1)
        return mean, squash_log_std(log_std)

    def forward(self, obs: Tensor, deterministic: bool = False) -> tuple[Tensor, Tensor]:
        """A sampled (reparameterized) action and its log-probability, shape (*B, A) and (*B,)."""
        return tanh_gaussian_sample(*self._dist(obs), deterministic)

    def sample_n(self, obs: Tensor, n: int) -> tuple[Tensor, Tensor]:
        """n samples per state from one pass of the network: (*B, O) -> (*B, n, A), (*B, n)."""
        mean, log_std = self._dist(obs.unsqueeze(-2))  # (*B, 1, A) each
        shape = (*obs.shape[:-1], n, mean.shape[-1])
        return tanh_gaussian_sample(mean.expand(shape), log_std.expand(shape), False)

    def log_prob(self, obs: Tensor, act: Tensor) -> Tensor:
        """log π(act|obs) of given actions in [-1, 1] (behaviour cloning)."""
        return tanh_gaussian_log_prob_of(act, *self._dist(obs))


class DeterministicActor(nn.Module):
    """a = tanh(μ(s)) in [-1, 1] (BC, TD3+BC, ReBRAC)."""

    def __init__(self, obs_dim: int, act_dim: int, spec: MLPSpec) -> None:
        super().__init__()
        self.net = mlp(obs_dim, act_dim, spec)

    def forward(self, obs: Tensor) -> Tensor:
        return torch.tanh(self.net(obs))

    def act(self, obs: Tensor, deterministic: bool) -> Tensor:
        return self(obs)


class GaussianActor(nn.Module):
    """π(a|s) = N(μ(s), σ) with a state-independent σ, actions clipped to [-1, 1] (IQL, AWAC, Gaussian BC).

    μ(s) is tanh-squashed when `tanh_mean` (IQL's policy) and raw otherwise (AWAC's); log σ is
    clamped to [-20, 2]. `dropout` drops hidden units while learning (IQL on Adroit), never when acting.
    Exploring actions (`act`, not deterministic) use σ no smaller than `min_explore_std`; `sample` and
    `log_prob`, which the losses use, keep the learned σ.
    """

    def __init__(
        self, obs_dim: int, act_dim: int, spec: MLPSpec, *, tanh_mean: bool, dropout: float, min_explore_std: float
    ) -> None:
        super().__init__()
        self.net = mlp(obs_dim, act_dim, spec)
        self.log_std = nn.Parameter(torch.zeros(act_dim))
        self.tanh_mean, self.dropout, self.min_explore_std = tanh_mean, dropout, min_explore_std

    def std(self) -> Tensor:
        """The learned σ, clamped: (A,)."""
        return self.log_std.clamp(-20.0, 2.0).exp()

    def mean(self, obs: Tensor, dropout: bool = False) -> Tensor:
        x = obs
        for layer in self.net:
            x = layer(x)
            if dropout and self.dropout > 0 and isinstance(layer, tuple(ACTIVATIONS.values())):
                x = noise.dropout(x, self.dropout)
        return torch.tanh(x) if self.tanh_mean else x

    def log_prob(self, obs: Tensor, act: Tensor) -> Tensor:
        """log π(act|obs) of given actions, summed over the action dim, with dropout: (B, O), (B, A) -> (B,)."""
        return torch.distributions.Normal(self.mean(obs, dropout=True), self.std()).log_prob(act).sum(-1)

    def sample(self, obs: Tensor) -> Tensor:
        """A sampled action (the learned σ), clipped to [-1, 1], without gradient: (*B, O) -> (*B, A)."""
        return self._draw(obs, self.std())

    def act(self, obs: Tensor, deterministic: bool) -> Tensor:
        """The greedy action, or an exploring one drawn with σ no smaller than `min_explore_std`."""
        if deterministic:
            return self.mean(obs).clamp(-1.0, 1.0)
        return self._draw(obs, self.std().clamp(min=self.min_explore_std))

    @torch.no_grad()
    def _draw(self, obs: Tensor, std: Tensor) -> Tensor:
        mean = self.mean(obs)
        return (mean + std * noise.randn_like(mean)).clamp(-1.0, 1.0)


def squash_log_std(raw: Tensor) -> Tensor:
    """Unbounded network output -> log σ in [LOG_STD_MIN, LOG_STD_MAX], smoothly."""
    return LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(raw) + 1)


class OptionPolicies(nn.Module):
    """K intra-option policies π_ω(a|s) in one network whose output holds every option's head.

    Discrete actions: softmax over `act_dim` logits per option. Continuous: tanh-Gaussian per
    option (mean and log σ for each of `act_dim` dims), actions in [-1, 1].
    """

    def __init__(self, obs_dim: int, act_dim: int, n_options: int, discrete: bool, spec: MLPSpec) -> None:
        super().__init__()
        self.act_dim, self.n_options, self.discrete = act_dim, n_options, discrete
        self.head_size = act_dim if discrete else 2 * act_dim
        self.net = mlp(obs_dim, n_options * self.head_size, spec)

    def _head(self, obs: Tensor, option: Tensor) -> Tensor:
        out = self.net(obs).reshape(-1, self.n_options, self.head_size)  # (B, K*H) -> (B, K, H)
        index = option.reshape(-1, 1, 1).expand(-1, 1, self.head_size)
        return out.gather(1, index).squeeze(1)  # (B, K, H) -> (B, H): option ω's head

    @staticmethod
    def _gaussian(head: Tensor) -> tuple[Tensor, Tensor]:
        """A Box head (..., 2A) -> the pre-tanh Gaussian's mean and log σ, (..., A) each."""
        mean, log_std = head.chunk(2, -1)
        return mean, squash_log_std(log_std)

    def sample(self, obs: Tensor, option: Tensor, deterministic: bool) -> Tensor:
        """An action of option `option` (B,) at obs (B, O): (B,) indices or (B, A) in [-1, 1]."""
        head = self._head(obs, option)
        if self.discrete:
            return head.argmax(-1) if deterministic else torch.distributions.Categorical(logits=head).sample()
        mean, log_std = self._gaussian(head)
        u = mean if deterministic else mean + log_std.exp() * torch.randn_like(mean)
        return torch.tanh(u)

    def rsample(self, obs: Tensor, option: Tensor) -> tuple[Tensor, Tensor]:
        """Option `option`'s reparameterized action at obs and its log-probability (Box actions only).

        (B, O), (B,) -> (B, A), (B,).
        """
        return tanh_gaussian_sample(*self._gaussian(self._head(obs, option)), False)

    def rsample_all(self, obs: Tensor, deterministic: bool = False) -> tuple[Tensor, Tensor]:
        """Every option's reparameterized action and its log-probability (Box actions only).

        (*B, O) -> (*B, K, A), (*B, K).
        """
        out = self.net(obs).unflatten(-1, (self.n_options, self.head_size))  # (*B, K*H) -> (*B, K, H)
        return tanh_gaussian_sample(*self._gaussian(out), deterministic)

    def log_prob_entropy(self, obs: Tensor, option: Tensor, act: Tensor) -> tuple[Tensor, Tensor]:
        """log π_ω(act|obs) and the policy's entropy (the pre-tanh Gaussian's when continuous), both (B,)."""
        head = self._head(obs, option)
        if self.discrete:
            log_p = F.log_softmax(head, -1)  # (B, A)
            return log_p.gather(1, act.long().unsqueeze(1)).squeeze(1), -(log_p.exp() * log_p).sum(-1)
        mean, log_std = self._gaussian(head)
        entropy = (log_std + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)
        return tanh_gaussian_log_prob_of(act, mean, log_std), entropy


def tanh_gaussian_sample(mean: Tensor, log_std: Tensor, deterministic: bool) -> tuple[Tensor, Tensor]:
    """a = tanh(u), u ~ N(mean, exp(log_std)) reparameterized (u = mean when deterministic), and log π(a)."""
    u = mean if deterministic else mean + log_std.exp() * noise.randn_like(mean)
    return torch.tanh(u), tanh_gaussian_log_prob(u, mean, log_std)


def tanh_gaussian_log_prob_of(act: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """log π of given actions in [-1, 1] (stored or demonstrated ones), summed over the action dim."""
    return tanh_gaussian_log_prob(torch.atanh(act.clamp(-1 + 1e-6, 1 - 1e-6)), mean, log_std)


def tanh_gaussian_log_prob(u: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """log-density of a = tanh(u), u ~ N(mean, exp(log_std)), summed over the action dim."""
    gauss = -0.5 * ((u - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
    # log |d tanh(u)/du| = log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), stable for large |u|
    log_det = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
    return (gauss - log_det).sum(-1)


class ObsNormalizer(nn.Module):
    """(obs - mean) / std with stats from the dataset; identity until set. Saved in checkpoints."""

    def __init__(self, obs_dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(obs_dim))
        self.register_buffer("std", torch.ones(obs_dim))

    def set(self, mean: Tensor, std: Tensor) -> None:
        self.mean.copy_(mean)
        self.std.copy_(std)

    def forward(self, obs: Tensor) -> Tensor:
        return (obs - self.mean) / self.std
