"""Typed schema of every rlrun setting, registered in Hydra's ConfigStore.

Each field is declared once here, with its type and a one-line description. The yaml files in
`conf/` only choose values; a key that is not declared here, or a value of the wrong type, stops
the run at start with Hydra's error. Sizes known only at run time (observation and action
dimensions) are `???` and are passed as arguments by `rlrun.build`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError


@dataclass
class NetworkConfig:
    _target_: str = "rlrun.nets.MLPSpec"
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
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
    threads: int = 0
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
    max_episode_steps: Optional[int] = None
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
    return_range_scale: Optional[float] = None
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
    total_steps: int = 100_000
    """Env steps (online) or gradient updates (offline)."""
    batch_size: int = 256
    """Transitions per update."""
    learning_starts: int = 1000
    """Online: uniformly random actions for this many env steps before the first update."""
    replay_size: int = 1_000_000
    """Online: replay buffer capacity in transitions."""
    eval_every: int = 5000
    """Steps between evaluations."""
    eval_episodes: int = 10
    """Episodes per evaluation (deterministic policy, seeded eval envs)."""
    log_every: int = 1000
    """Steps between train/ and perf/ scalars (and the non-finite check)."""
    checkpoint_every: int = 10_000
    """Steps between checkpoints (one is always written at the end)."""
    keep_checkpoints: int = 3
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
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Soft target update rate."""
    actor_lr: float = 3e-4
    """Actor learning rate."""
    critic_lr: float = 3e-4
    """Critic learning rate."""
    num_critics: int = 2
    """Critics in the ensemble (min over them for targets)."""


@dataclass
class SoftActorCriticSettings(ActorCriticSettings):
    """Settings of the SAC family (SAC, CQL, soft option-critic)."""

    alpha_lr: float = 3e-4
    """Entropy temperature learning rate."""
    init_alpha: float = 1.0
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
    cql_alpha: float = 1.0
    """Weight of the conservative penalty."""
    n_actions: int = 10
    """Sampled actions per state for the logsumexp (uniform, pi(s), pi(s'))."""
    temperature: float = 1.0
    """Temperature of the logsumexp."""
    importance_sample: bool = True
    """Subtract the log densities of the sampled actions (CQL(H) importance sampling)."""
    lagrange: bool = False
    """Tune the penalty weight with a Lagrange multiplier towards target_action_gap."""
    target_action_gap: float = -1.0
    """Target of the conservative difference under the Lagrange variant."""
    alpha_prime_lr: float = 3e-4
    """Learning rate of the Lagrange multiplier."""
    max_target_backup: bool = False
    """Back up max over n_actions sampled next actions instead of one."""
    bc_steps: int = 0
    """Updates at the start in which the actor does behaviour cloning instead of maximizing Q."""
    clip_diff_min: float = float("-inf")
    """Lower clip of the conservative difference."""
    clip_diff_max: float = float("inf")
    """Upper clip of the conservative difference."""


@dataclass
class DelayedPolicySettings(ActorCriticSettings):
    """TD3's policy delay and target policy smoothing (TD3+BC, ReBRAC)."""

    policy_noise: float = 0.2
    """Std of the Gaussian noise on the target policy's next action (in [-1, 1] units)."""
    noise_clip: float = 0.5
    """That noise is clipped to +-noise_clip."""
    policy_freq: int = 2
    """The actor and the targets update once every policy_freq critic updates."""


@dataclass
class BCConfig:
    _target_: str = "rlrun.algos.bc.BC"
    obs_dim: int = MISSING
    """Observation size (set at run time)."""
    act_dim: int = MISSING
    """Action size (set at run time)."""
    actor_lr: float = 3e-4
    """Actor learning rate."""
    gaussian: bool = False
    """Gaussian actor trained by log-likelihood instead of a deterministic one trained by mean squared error."""


@dataclass
class TD3BCConfig(DelayedPolicySettings):
    _target_: str = "rlrun.algos.td3_bc.TD3BC"
    alpha: float = 2.5
    """alpha of lambda = alpha / mean |Q|: the weight of Q against behaviour cloning in the actor loss."""


@dataclass
class ReBRACConfig(DelayedPolicySettings):
    _target_: str = "rlrun.algos.rebrac.ReBRAC"
    actor_lr: float = 1e-3
    """Actor learning rate (ReBRAC's default)."""
    critic_lr: float = 1e-3
    """Critic learning rate (ReBRAC's default)."""
    actor_bc_coef: float = 1.0
    """Weight of the actor's behaviour-cloning penalty ||pi(s) - a||^2."""
    critic_bc_coef: float = 1.0
    """Weight of the critic target's penalty ||a' - a'_data||^2."""
    normalize_q: bool = True
    """Divide the actor's Q term by mean |Q| (held constant)."""
    critic_layer_norm: bool = True
    """LayerNorm in the critics' hidden layers (the actor follows network.layer_norm)."""


@dataclass
class IQLConfig(ActorCriticSettings):
    _target_: str = "rlrun.algos.iql.IQL"
    value_lr: float = 3e-4
    """Learning rate of the state-value network V."""
    expectile: float = 0.7
    """Expectile tau of the value loss (0.5: mean; towards 1: max over the data's actions)."""
    beta: float = 3.0
    """Inverse temperature of the advantage weights exp(beta * A)."""
    max_weight: float = 100.0
    """Advantage weights are clipped above at this."""
    actor_dropout: float = 0.0
    """Dropout rate in the actor's hidden layers while learning."""
    lr_schedule_steps: int = MISSING
    """Updates of the actor's cosine learning-rate schedule (conf/algo/iql.yaml: trainer.total_steps)."""


@dataclass
class AWACConfig(ActorCriticSettings):
    _target_: str = "rlrun.algos.awac.AWAC"
    awac_lambda: float = 1.0
    """Temperature lambda of the advantage weights exp(A / lambda)."""
    max_weight: float = 100.0
    """Advantage weights are clipped above at this."""


@dataclass
class OptionSettings:
    """Settings of the options themselves, shared by both option-critics."""

    termination_reg: float = 0.01
    """Termination regularizer xi added to the advantage (larger: longer options)."""
    epsilon_start: float = 1.0
    """Exploration of the epsilon-greedy policy over options at the start ..."""
    epsilon_end: float = 0.05
    """... and after epsilon_decay_steps env steps (linear decay)."""
    epsilon_decay_steps: int = 20_000
    """Env steps over which epsilon decays."""
    stats_rate: float = 0.001
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
    n_options: int = 4
    """Number of options."""
    gamma: float = 0.99
    """Discount factor."""
    critic_lr: float = 5e-4
    """Learning rate of the option-value critic Q_Omega."""
    actor_lr: float = 5e-4
    """Learning rate of the intra-option policies."""
    termination_lr: float = 5e-4
    """Learning rate of the termination functions."""
    entropy_coef: float = 0.01
    """Weight of the intra-option policies' entropy bonus."""
    critic_every: int = 4
    """Env steps between critic updates (the actor updates every step)."""
    target_every: int = 200
    """Env steps between copies of the critic into its target."""


@dataclass
class SoftOptionCriticConfig(SoftActorCriticSettings, OptionSettings):
    """Box actions only; actor_lr is the intra-option policies' rate, the critics are Q_U(s, option, a)."""

    _target_: str = "rlrun.algos.soft_option_critic.SoftOptionCritic"
    n_options: int = 2
    """Number of options."""
    termination_lr: float = 3e-4
    """Learning rate of the termination functions."""
    critic_every_option: bool = False
    """Fit Q_U(s, option, a) of every option on each transition (intra-option value learning), not only the running option's."""
    critic_huber: float = 0.0
    """Huber threshold of the critics' TD errors (squared below it, linear above); 0 keeps the squared error."""


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
ALGO_SCHEMAS = {"sac": SACConfig, "cql": CQLConfig, "bc": BCConfig, "td3_bc": TD3BCConfig, "iql": IQLConfig,
                "awac": AWACConfig, "rebrac": ReBRACConfig, "option_critic": OptionCriticConfig,
                "soft_option_critic": SoftOptionCriticConfig}


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
