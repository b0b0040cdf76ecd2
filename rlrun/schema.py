"""Typed schema of every rlrun setting, registered in Hydra's ConfigStore.

Each field is declared once here, with its type and a one-line description. The yaml files in
`conf/` only choose values; a key that is not declared here, or a value of the wrong type, stops
the run at start with Hydra's error. Sizes known only at run time (observation and action
dimensions) are `???` and are passed as arguments by `rlrun.build`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError


@dataclass(frozen=True)
class Range:
    """The values a numeric setting (or each item of a list setting) may take; None bounds are open."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    def holds(self, value: float) -> bool:
        return (
            (self.gt is None or value > self.gt)
            and (self.ge is None or value >= self.ge)
            and (self.lt is None or value < self.lt)
            and (self.le is None or value <= self.le)
        )

    def __str__(self) -> str:
        if (self.gt is not None or self.ge is not None) and (self.lt is not None or self.le is not None):
            low = f"({self.gt:g}" if self.gt is not None else f"[{self.ge:g}"
            high = f"{self.lt:g})" if self.lt is not None else f"{self.le:g}]"
            return f"in {low}, {high}"
        bound = [(">", self.gt), ("≥", self.ge), ("<", self.lt), ("≤", self.le)]
        return " and ".join(f"{op} {v:g}" for op, v in bound if v is not None)


def ranged(default: Any, **bounds: float) -> Any:
    """A setting's default and its allowed range (Range's gt/ge/lt/le), checked at start by `check_ranges`.
    A list default applies the range to each item."""
    meta = {"range": Range(**bounds)}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class NetworkConfig:
    _target_: str = "rlrun.nets.MLPSpec"
    hidden_sizes: list[int] = ranged([256, 256], gt=0)
    """Width of each hidden layer, input to output."""
    activation: str = "relu"
    """Hidden activation: relu, tanh, elu, gelu or silu."""
    layer_norm: bool = False
    """LayerNorm after each hidden linear layer."""
    orthogonal_init: bool = False
    """Orthogonal weight init (gain sqrt 2, last layer 1e-2) instead of PyTorch's default."""


@dataclass
class DeviceConfig:
    name: str = "auto"
    """auto (cuda when available, else cpu), cpu, or cuda[:N]."""
    compile: bool = False
    """torch.compile the update step."""
    cuda_graphs: bool = False
    """Capture the update step in a CUDA graph (cuda only)."""
    amp: bool = False
    """bf16 autocast in the update step."""
    matmul_precision: str = "highest"
    """torch.set_float32_matmul_precision: highest, high or medium."""
    threads: int = ranged(0, ge=0)
    """CPU threads for torch (0: torch's default)."""
    keep_freed_memory: bool = True
    """Let glibc keep freed tensor memory for reuse instead of unmapping it every step (faster on CPU)."""
    cpu_matmul: str = "auto"
    """fp32 critic matmuls on CPU: onednn, blas (torch's default), or auto (time both once at start, keep the faster)."""


@dataclass
class EnvConfig:
    id: str = MISSING
    """Gymnasium id; `module:Id` imports the module that registers it first."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for gymnasium.make."""
    max_episode_steps: Optional[int] = ranged(None, gt=0)
    """Time limit override (None: the registered one)."""
    reward_scale: float = 1.0
    """Rewards are multiplied by this for learning only (episode returns, evaluations and saved buffers stay unscaled)."""


@dataclass
class DatasetConfig:
    id: str = MISSING
    """Minari dataset id, e.g. D4RL/door/human-v2."""
    name: Optional[str] = None
    """The dataset config's name (conf/dataset/<name>.yaml); presets match it when none matches the id."""
    download: bool = True
    """Download the dataset with Minari when it is not in the local store."""
    normalize_obs: bool = True
    """Normalize observations with the dataset's mean and std (kept in checkpoints)."""
    return_range_scale: Optional[float] = ranged(None, gt=0)
    """Rewards are first multiplied by this / (max - min episode return in the data) (CORL's locomotion: 1000); None: not."""
    reward_scale: float = 1.0
    """Rewards are multiplied by this ..."""
    reward_bias: float = 0.0
    """... and then shifted by this (AntMaze presets: r*10 - 5 for CQL)."""
    ref_min_score: Optional[float] = None
    """Return of a random policy, for eval/normalized_score (dataset metadata wins)."""
    ref_max_score: Optional[float] = None
    """Return of an expert policy, for eval/normalized_score (dataset metadata wins)."""
    builder: Optional[dict[str, Any]] = None
    """`_target_` callable that writes the dataset locally when it is missing (before download)."""


@dataclass
class TrainerConfig:
    total_steps: int = ranged(100_000, gt=0)
    """Env steps (online) or gradient updates (offline)."""
    batch_size: int = ranged(256, gt=0)
    """Transitions per update."""
    finetune_steps: int = ranged(0, ge=0)
    """Offline runs: env steps of online fine-tuning in the dataset's env after the total_steps updates (0: none)."""
    offline_ratio: float = ranged(0.5, ge=0, le=1)
    """Fine-tuning: share of each batch drawn from the dataset, the rest from the new transitions."""
    finetune_warmup: int = ranged(0, ge=0)
    """Fine-tuning: batches come wholly from the dataset until this many new transitions are stored."""
    updates_per_step: int = ranged(1, ge=1)
    """Online training and fine-tuning: gradient updates per env step."""
    parallel_seeds: int = ranged(1, ge=1)
    """Train seeds seed … seed+K−1 in one process as one vectorized model (dirs seed_<s>/; online: an env and replay each)."""
    learning_starts: int = ranged(1000, ge=0)
    """Online: uniformly random actions for this many env steps before the first update."""
    replay_size: int = ranged(1_000_000, gt=0)
    """Online: replay buffer capacity in transitions."""
    eval_every: int = ranged(5000, gt=0)
    """Steps between evaluations."""
    eval_episodes: int = ranged(10, gt=0)
    """Episodes per evaluation (deterministic policy, seeded eval envs)."""
    eval_envs: int = ranged(1, ge=1)
    """Evaluation episodes played this many at a time in a gymnasium vector env (async workers for MuJoCo envs)."""
    log_every: int = ranged(1000, gt=0)
    """Steps between train/ and perf/ scalars (and the non-finite check)."""
    checkpoint_every: int = ranged(10_000, gt=0)
    """Steps between checkpoints (one is always written at the end)."""
    keep_checkpoints: int = ranged(3, gt=0)
    """How many step_<N>.pt files to keep."""
    save_buffer: bool = False
    """Online: write the replay buffer as a local Minari dataset at the end of the run."""
    buffer_dataset_id: str = "rlrun/pendulum/sac-v0"
    """Minari id of that dataset."""
    progress: bool = True
    """Show a progress bar."""
    eval_video: bool = False
    """Record one episode per evaluation as a GIF (TensorBoard Images tab and videos/ in the run dir)."""


@dataclass
class ActorCriticSettings:
    """Settings every actor-critic declares (the SAC family, TD3+BC, ReBRAC, IQL, AWAC)."""

    obs_dim: int = MISSING
    """Observation size (set at run time)."""
    act_dim: int = MISSING
    """Action size (set at run time)."""
    gamma: float = ranged(0.99, gt=0, le=1)
    """Discount factor."""
    tau: float = ranged(0.005, gt=0, le=1)
    """Soft target update rate."""
    actor_lr: float = ranged(3e-4, gt=0)
    """Actor learning rate."""
    critic_lr: float = ranged(3e-4, gt=0)
    """Critic learning rate."""
    num_critics: int = ranged(2, ge=1)
    """Critics in the ensemble (min over them for targets)."""


@dataclass
class SoftActorCriticSettings(ActorCriticSettings):
    """Settings of the SAC family (SAC, CQL, soft option-critic)."""

    alpha_lr: float = ranged(3e-4, gt=0)
    """Entropy temperature learning rate."""
    init_alpha: float = ranged(1.0, gt=0)
    """Initial entropy temperature."""
    autotune_alpha: bool = True
    """Tune the temperature towards target_entropy; false keeps init_alpha."""
    target_entropy: Optional[float] = None
    """Entropy target (None: -act_dim)."""


@dataclass
class SACConfig(SoftActorCriticSettings):
    _target_: str = "rlrun.algos.sac.SAC"
    backup_entropy: bool = True
    """Subtract alpha * log pi(a'|s') in the TD target."""


@dataclass
class CQLConfig(SACConfig):
    _target_: str = "rlrun.algos.cql.CQL"
    cql_alpha: float = ranged(1.0, ge=0)
    """Weight of the conservative penalty."""
    n_actions: int = ranged(10, ge=1)
    """Sampled actions per state for the logsumexp (uniform, pi(s), pi(s'))."""
    temperature: float = ranged(1.0, gt=0)
    """Temperature of the logsumexp."""
    importance_sample: bool = True
    """Subtract the log densities of the sampled actions (CQL(H) importance sampling)."""
    lagrange: bool = False
    """Tune the penalty weight with a Lagrange multiplier towards target_action_gap."""
    target_action_gap: float = -1.0
    """Target of the conservative difference under the Lagrange variant."""
    alpha_prime_lr: float = ranged(3e-4, gt=0)
    """Learning rate of the Lagrange multiplier."""
    max_target_backup: bool = False
    """Back up max over n_actions sampled next actions instead of one."""
    bc_steps: int = ranged(0, ge=0)
    """Updates at the start in which the actor does behaviour cloning instead of maximizing Q."""
    clip_diff_min: float = float("-inf")
    """Lower clip of the conservative difference."""
    clip_diff_max: float = float("inf")
    """Upper clip of the conservative difference."""
    cql_alpha_online: Optional[float] = ranged(None, ge=0)
    """Fine-tuning: the penalty's weight from the switch to online learning on (None: cql_alpha)."""


@dataclass
class CalQLConfig(CQLConfig):
    _target_: str = "rlrun.algos.cal_ql.CalQL"


@dataclass
class DelayedPolicySettings(ActorCriticSettings):
    """TD3's policy delay and target policy smoothing (TD3+BC, ReBRAC)."""

    policy_noise: float = ranged(0.2, ge=0)
    """Std of the Gaussian noise on the target policy's next action (in [-1, 1] units)."""
    noise_clip: float = ranged(0.5, ge=0)
    """That noise is clipped to +-noise_clip."""
    policy_freq: int = ranged(2, ge=1)
    """The actor and the targets update once every policy_freq critic updates."""


@dataclass
class BCConfig:
    _target_: str = "rlrun.algos.bc.BC"
    obs_dim: int = MISSING
    """Observation size (set at run time)."""
    act_dim: int = MISSING
    """Action size (set at run time)."""
    actor_lr: float = ranged(3e-4, gt=0)
    """Actor learning rate."""
    gaussian: bool = False
    """Gaussian actor trained by log-likelihood instead of a deterministic one trained by mean squared error."""


@dataclass
class TD3BCConfig(DelayedPolicySettings):
    _target_: str = "rlrun.algos.td3_bc.TD3BC"
    alpha: float = ranged(2.5, gt=0)
    """alpha of lambda = alpha / mean |Q|: the weight of Q against behaviour cloning in the actor loss."""


@dataclass
class ReBRACConfig(DelayedPolicySettings):
    _target_: str = "rlrun.algos.rebrac.ReBRAC"
    actor_lr: float = ranged(1e-3, gt=0)
    """Actor learning rate (ReBRAC's default)."""
    critic_lr: float = ranged(1e-3, gt=0)
    """Critic learning rate (ReBRAC's default)."""
    actor_bc_coef: float = ranged(1.0, ge=0)
    """Weight of the actor's behaviour-cloning penalty ||pi(s) - a||^2."""
    critic_bc_coef: float = ranged(1.0, ge=0)
    """Weight of the critic target's penalty ||a' - a'_data||^2."""
    normalize_q: bool = True
    """Divide the actor's Q term by mean |Q| (held constant)."""
    critic_layer_norm: bool = True
    """LayerNorm in the critics' hidden layers (the actor follows network.layer_norm)."""


@dataclass
class IQLConfig(ActorCriticSettings):
    _target_: str = "rlrun.algos.iql.IQL"
    value_lr: float = ranged(3e-4, gt=0)
    """Learning rate of the state-value network V."""
    expectile: float = ranged(0.7, gt=0, lt=1)
    """Expectile tau of the value loss (0.5: mean; towards 1: max over the data's actions)."""
    beta: float = ranged(3.0, ge=0)
    """Inverse temperature of the advantage weights exp(beta * A)."""
    max_weight: float = ranged(100.0, gt=0)
    """Advantage weights are clipped above at this."""
    actor_dropout: float = ranged(0.0, ge=0, lt=1)
    """Dropout rate in the actor's hidden layers while learning."""
    min_explore_std: float = ranged(0.0, ge=0)
    """Floor on the sigma of the actions the actor explores with online (0: the learned sigma); losses keep the learned one."""
    lr_schedule_steps: int = ranged(MISSING, ge=1)
    """Updates of the actor's cosine schedule (conf/algo/iql.yaml: the offline ones; fine-tuning continues it, as CORL)."""


@dataclass
class AWACConfig(ActorCriticSettings):
    _target_: str = "rlrun.algos.awac.AWAC"
    awac_lambda: float = ranged(1.0, gt=0)
    """Temperature lambda of the advantage weights exp(A / lambda)."""
    max_weight: float = ranged(100.0, gt=0)
    """Advantage weights are clipped above at this."""
    min_explore_std: float = ranged(0.0, ge=0)
    """Floor on the sigma of the actions the actor explores with online (0: the learned sigma); losses keep the learned one."""


@dataclass
class OptionSettings:
    """Settings of the options themselves, shared by both option-critics."""

    termination_reg: float = 0.01
    """Termination regularizer xi added to the advantage (larger: longer options)."""
    deliberation_cost: float = ranged(0.0, ge=0)
    """Cost eta of each switch (Harb et al. 2018): paid by the value on termination and added to the termination advantage."""
    interest: bool = False
    """Interest functions I(s) (Khetarpal et al. 2020): new options drawn by interest times the epsilon-greedy policy."""
    interest_lr: float = ranged(3e-4, gt=0)
    """Learning rate of the interest functions (with interest=true)."""
    epsilon_start: float = ranged(1.0, ge=0, le=1)
    """Exploration of the epsilon-greedy policy over options at the start ..."""
    epsilon_end: float = ranged(0.05, ge=0, le=1)
    """... and after epsilon_decay_steps env steps (linear decay)."""
    epsilon_decay_steps: int = ranged(20_000, ge=0)
    """Env steps over which epsilon decays."""
    stats_rate: float = ranged(0.001, gt=0, le=1)
    """Rate of the moving averages behind train/option_usage and train/option_duration_mean."""


@dataclass
class OptionCriticConfig(OptionSettings):
    _target_: str = "rlrun.algos.option_critic.OptionCritic"
    obs_dim: int = MISSING
    """Observation size (set at run time)."""
    act_dim: int = MISSING
    """Action size or number of discrete actions (set at run time)."""
    discrete: bool = MISSING
    """Discrete actions (softmax policies) or Box actions (tanh-Gaussian policies) (set at run time)."""
    n_options: int = ranged(4, ge=1)
    """Number of options."""
    gamma: float = ranged(0.99, gt=0, le=1)
    """Discount factor."""
    critic_lr: float = ranged(5e-4, gt=0)
    """Learning rate of the option-value critic Q_Omega."""
    actor_lr: float = ranged(5e-4, gt=0)
    """Learning rate of the intra-option policies."""
    termination_lr: float = ranged(5e-4, gt=0)
    """Learning rate of the termination functions."""
    entropy_coef: float = ranged(0.01, ge=0)
    """Weight of the intra-option policies' entropy bonus."""
    critic_every: int = ranged(4, ge=1)
    """Env steps between critic updates (the actor updates every step)."""
    target_every: int = ranged(200, ge=1)
    """Env steps between copies of the critic into its target."""


@dataclass
class SoftOptionCriticConfig(SoftActorCriticSettings, OptionSettings):
    """Box actions only; actor_lr is the intra-option policies' rate, the critics are Q_U(s, option, a)."""

    _target_: str = "rlrun.algos.soft_option_critic.SoftOptionCritic"
    n_options: int = ranged(2, ge=1)
    """Number of options."""
    termination_lr: float = ranged(3e-4, gt=0)
    """Learning rate of the termination functions."""
    critic_every_option: bool = False
    """Fit Q_U(s, option, a) of every option on each transition (intra-option value learning), not only the running option's."""
    critic_huber: float = ranged(0.0, ge=0)
    """Huber threshold of the critics' TD errors (squared below it, linear above); 0 keeps the squared error."""
    termination_standardize: bool = False
    """Termination gradient at the batch-standardized advantage plus xi (xi in units of its spread), at any value scale."""


@dataclass
class Config:
    algo: Any = MISSING
    """Algorithm (group `algo`)."""
    dataset: Optional[DatasetConfig] = None
    """Offline data (group `dataset`); None for an online run."""
    env: Optional[EnvConfig] = None
    """Online environment (group `env`); choosing one means online training."""
    network: NetworkConfig = field(default_factory=NetworkConfig)
    """Hidden layers of every network (group `network`)."""
    device: DeviceConfig = field(default_factory=DeviceConfig)
    """Where and how updates run (group `device`)."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    """The training loop."""
    seed: int = 0
    """Seed of networks, sampling and environments."""
    resume: Optional[str] = None
    """A run directory to continue from its newest good checkpoint."""
    dry_run: bool = False
    """Build data, networks and device, print a summary, and stop before training."""
    preset: Optional[str] = None
    """Set by rlrun: the conf/presets file whose settings this run took (None: none)."""


# The algorithm registry: conf/algo/<name>.yaml uses <name>_schema; the contract tests cover every entry.
ALGO_SCHEMAS = {
    "sac": SACConfig,
    "cql": CQLConfig,
    "cal_ql": CalQLConfig,
    "bc": BCConfig,
    "td3_bc": TD3BCConfig,
    "iql": IQLConfig,
    "awac": AWACConfig,
    "rebrac": ReBRACConfig,
    "option_critic": OptionCriticConfig,
    "soft_option_critic": SoftOptionCriticConfig,
}


def with_current_schema(saved: dict[str, Any]) -> DictConfig:
    """A checkpoint's resolved config under this version's schema, so an older run resumes:
    settings added since it was written take their defaults. A setting this version does not
    declare, or a value of the wrong type, raises ValueError naming it."""
    base = OmegaConf.structured(Config)
    algos = {schema._target_: schema for schema in ALGO_SCHEMAS.values()}
    algo = algos.get(saved.get("algo", {}).get("_target_"))
    if algo is not None:  # an algorithm from elsewhere keeps its saved settings as they are
        base.algo = OmegaConf.structured(algo)
    for key, schema in (("dataset", DatasetConfig), ("env", EnvConfig)):
        if saved.get(key) is not None:
            base[key] = OmegaConf.structured(schema)
    return merge_checked(base, saved)


def range_errors(cfg: DictConfig) -> list[str]:
    """Every setting outside the range declared beside it (`ranged`), as "<key> must be <range>, got <value>"."""
    algos = {schema._target_: schema for schema in ALGO_SCHEMAS.values()}
    sections = {
        "network": NetworkConfig,
        "device": DeviceConfig,
        "trainer": TrainerConfig,
        "env": EnvConfig,
        "dataset": DatasetConfig,
        "algo": algos.get(OmegaConf.select(cfg, "algo._target_")),
    }
    errors = []
    for section, schema in sections.items():
        if schema is None or cfg.get(section) is None:
            continue
        for f in fields(schema):
            bounds = f.metadata.get("range")
            if bounds is None or f.name not in cfg[section] or OmegaConf.is_missing(cfg[section], f.name):
                continue
            value = cfg[section][f.name]
            items = value if isinstance(value, (list, ListConfig)) else [value]
            if any(v is not None and not bounds.holds(v) for v in items):
                each = "each of " if isinstance(value, (list, ListConfig)) else ""
                errors.append(f"{each}{section}.{f.name} must be {bounds}, got {value}")
    return errors


def merge_checked(base: DictConfig, *others: Any) -> DictConfig:
    """OmegaConf.merge onto a typed config; a key it does not declare, or a value of the wrong
    type, raises ValueError "<key>: <omegaconf's first line>"."""
    try:
        return OmegaConf.merge(base, *others)
    except (ConfigKeyError, ValidationError) as e:
        raise ValueError(f"{e.full_key}: {str(e).splitlines()[0]}") from None


def register_configs() -> None:
    """Store the schemas so the yaml files can name them in their defaults lists."""
    cs = ConfigStore.instance()
    cs.store(name="rlrun_config", node=Config)
    for name, node in ALGO_SCHEMAS.items():
        cs.store(group="algo", name=f"{name}_schema", node=node)
    cs.store(group="dataset", name="dataset_schema", node=DatasetConfig)
    cs.store(group="env", name="env_schema", node=EnvConfig)
    cs.store(group="network", name="network_schema", node=NetworkConfig)
    cs.store(group="device", name="device_schema", node=DeviceConfig)
