"""The one place that reads the config: it turns it into a device, a data source, an algorithm,
a logger and a trainer, all taking plain typed arguments, and runs them.
"""

from __future__ import annotations

import logging
import math
import random
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from rlrun import checkpoint, onednn, presets, video
from rlrun.accel import accelerate, keep_freed_memory
from rlrun.algos import base
from rlrun.data import offline
from rlrun.data.online import EnvSource, Spaces
from rlrun.envs import check_env_id, make_env
from rlrun.errors import UserError
from rlrun.logger import Logger, flatten
from rlrun.members import Members, MemberStreams
from rlrun.schema import merge_checked, range_errors, with_current_schema
from rlrun.trainer import ParallelTrainer, Schedule, Trainer

log = logging.getLogger(__name__)


def check_config(cfg: DictConfig) -> None:
    """Pre-flight checks that need no data: every setting in its declared range, one source, the algorithm fits it."""
    try:  # the network's settings (activation) are checked by building its spec
        instantiate(cfg.network, _convert_="all")
    except (InstantiationException, ValueError) as e:
        raise UserError(f"network settings: {str(e.__cause__ or e).splitlines()[0]}.") from None
    errors = range_errors(cfg)
    if errors:
        more = f" (and {len(errors) - 1} more: {'; '.join(errors[1:])})" if len(errors) > 1 else ""
        raise UserError(f"{errors[0]}{more}; fix the setting on the command line or in its preset.")
    if cfg.env is not None and cfg.dataset is not None:
        raise UserError(
            "both env= and dataset= were given: an offline run evaluates in the env its dataset "
            "records, so keep dataset=... for offline training or env=... for online training."
        )
    if cfg.env is None and cfg.dataset is None:
        raise UserError("no data source: choose env=... (online) or dataset=... (offline).")
    if cfg.env is not None:
        check_env_id(cfg.env.id)
    if cfg.dataset is not None and OmegaConf.is_missing(cfg.dataset, "id"):
        raise UserError(
            "dataset=minari needs the Minari id of the dataset: add dataset.id=... (e.g. dataset.id=mujoco/hopper/medium-v0)."
        )
    algo_cls = get_class(cfg.algo._target_)
    if algo_cls.online_only and cfg.env is None:
        raise UserError(
            f"{algo_cls.__name__} learns online and needs an environment: add env=... (e.g. env=cartpole) instead of dataset=...."
        )
    if algo_cls.offline_only and cfg.dataset is None:
        raise UserError(
            f"{algo_cls.__name__} learns from datasets only: add dataset=... (e.g. dataset=pendulum_medium) instead of env=...."
        )
    if cfg.env is not None and cfg.trainer.finetune_steps > 0:
        raise UserError(
            "trainer.finetune_steps continues an offline run online: use it with dataset=..., not env=... "
            "(an online run learns online throughout)."
        )
    if algo_cls.offline_only and cfg.dataset is not None and cfg.trainer.finetune_steps > 0:
        raise UserError(
            f"{algo_cls.__name__} learns from datasets only and cannot fine-tune online; set trainer.finetune_steps=0 "
            f"or choose another algo=."
        )
    if cfg.trainer.parallel_seeds > 1:
        check_parallel(cfg, algo_cls)
    if (
        cfg.env is not None
        and cfg.trainer.save_buffer
        and not cfg.resume
        and offline.dataset_exists(cfg.trainer.buffer_dataset_id)
    ):
        raise UserError(
            f"Minari dataset {cfg.trainer.buffer_dataset_id} exists already: choose another "
            f"trainer.buffer_dataset_id or delete it with `minari delete {cfg.trainer.buffer_dataset_id}`."
        )


def check_parallel(cfg: DictConfig, algo_cls: type) -> None:
    """trainer.parallel_seeds > 1: offline learning, or online learning from a replay; eager updates."""
    if cfg.trainer.finetune_steps > 0 or algo_cls.learns_from_latest or not getattr(algo_cls, "parallel_seeds", True):
        raise UserError(
            f"trainer.parallel_seeds trains offline runs and online runs that learn from a replay (no options, no "
            f"fine-tuning), and {algo_cls.__name__} here cannot: set trainer.parallel_seeds=1 and sweep over seed= instead."
        )
    if cfg.env is not None and cfg.trainer.save_buffer:
        raise UserError(
            "trainer.save_buffer writes one run's replay, and parallel seeds have one replay each: "
            "set trainer.save_buffer=false, or trainer.parallel_seeds=1."
        )
    if cfg.device.compile or cfg.device.cuda_graphs:
        raise UserError(
            "device.compile and device.cuda_graphs do not apply to parallel seeds: "
            "set them to false, or trainer.parallel_seeds=1."
        )


def make_device(cfg: DictConfig, resume_state: dict[str, Any] | None = None) -> torch.device:
    name = cfg.name
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
        log.info("device=auto: using %s", name)
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={name} was asked for but no CUDA GPU is visible to torch; use device=cpu or device=auto.")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise UserError(f"unknown device {name!r}: use auto, cpu or cuda.")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    if cfg.keep_freed_memory:
        keep_freed_memory()
    torch.set_float32_matmul_precision(cfg.matmul_precision)
    if name == "cpu":
        use_cpu_matmul(cfg.cpu_matmul, (resume_state or {}).get("cpu_matmul"))
    return torch.device(name)


def use_cpu_matmul(choice: str, chosen_before: str | None = None) -> None:
    """device.cpu_matmul; with auto, a resumed run keeps the kernels its start chose, so it continues bit for bit."""
    if choice not in onednn.CHOICES:
        raise UserError(f"unknown device.cpu_matmul={choice!r}: use auto, onednn or blas.")
    if choice == "onednn" and not onednn.available():
        raise UserError("device.cpu_matmul=onednn needs a PyTorch build with oneDNN; use device.cpu_matmul=blas or auto.")
    kept = choice == "auto" and chosen_before in ("blas", "onednn") and (chosen_before == "blas" or onednn.available())
    on = onednn.use(chosen_before if kept else choice)
    log.info(
        "CPU fp32 critic matmuls: %s%s", "oneDNN" if on else "torch's BLAS", " (as the run chose at its start)" if kept else ""
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_source(cfg: DictConfig, device: torch.device) -> Any:
    t = cfg.trainer
    if cfg.env is not None:
        env_fn = partial(make_env, cfg.env.id, OmegaConf.to_container(cfg.env.kwargs, resolve=True), cfg.env.max_episode_steps)
        return EnvSource(env_fn, cfg.seed, t.replay_size, t.learning_starts, device, cfg.env.reward_scale)
    d = cfg.dataset
    builder = instantiate(d.builder, _partial_=True) if d.builder is not None else None
    dataset = offline.load(d.id, d.download, builder)
    uses_mc_returns = getattr(get_class(cfg.algo._target_), "uses_mc_returns", False)
    data = offline.DatasetSource(
        dataset,
        d.normalize_obs,
        d.reward_scale,
        d.reward_bias,
        d.ref_min_score,
        d.ref_max_score,
        device,
        d.return_range_scale,
        mc_gamma=cfg.algo.gamma if uses_mc_returns else None,
    )
    if t.finetune_steps == 0:
        return data
    try:  # fine-tuning collects in the dataset's own env, so it must be made here
        collector = EnvSource(data.make_eval_env, cfg.seed, t.replay_size, 0, device)
    except Exception as e:
        raise UserError(
            f"trainer.finetune_steps needs the dataset's env, and creating it failed ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else e}); install what it needs or set trainer.finetune_steps=0."
        ) from None
    return offline.FinetuneSource(data, collector, t.total_steps, t.offline_ratio, t.finetune_warmup)


def make_algo(cfg: DictConfig, spaces: Spaces, device: torch.device) -> Any:
    algo_cls = get_class(cfg.algo._target_)
    if algo_cls.discrete_actions is not None and algo_cls.discrete_actions != spaces.discrete:
        kind = "discrete" if spaces.discrete else "continuous"
        raise UserError(f"{algo_cls.__name__} does not support {kind} actions; choose another algo= or env=.")
    sizes = {"obs_dim": spaces.obs_dim, "act_dim": spaces.act_dim}
    if algo_cls.discrete_actions is None:  # it takes both kinds, so it is told which
        sizes["discrete"] = spaces.discrete
    # network and device go to the class directly: through instantiate they would become configs
    try:
        network = instantiate(cfg.network, _convert_="all")
        algo = instantiate(cfg.algo, **sizes, _partial_=True)(network=network, device=device)
    except (InstantiationException, ValueError, TypeError) as e:
        cause = e.__cause__ or e
        raise UserError(
            f"building {algo_cls.__name__} failed ({type(cause).__name__}: {str(cause).splitlines()[0]}); "
            f"check the algo.* and network.* settings."
        ) from None
    try:
        base.check_contract(algo)
    except base.ContractError as e:
        raise UserError(str(e)) from None
    d = cfg.device
    algo.update = accelerate(algo.update, device, d.amp, d.compile, d.cuda_graphs)
    return algo


def make_members(cfg: DictConfig, spaces: Spaces, device: torch.device, seed: int, k: int) -> Members:
    """trainer.parallel_seeds: member i built as a run with seed `seed + i` builds its algorithm, each
    keeping its own random stream from there on."""
    streams, shells = MemberStreams(device), []
    outside = streams.capture()
    for i in range(k):
        seed_everything(seed + i)
        shells.append(make_algo(cfg, spaces, device))
        streams.states.append(streams.capture())
    stacked = make_algo(cfg, spaces, device)
    streams._set(outside)
    return Members(shells, stacked, streams)


RESUME_OVERRIDABLE = ("trainer.", "device.")  # how long and where a run goes on, not what it learns


def load_resume(cfg: DictConfig, run_dir: Path, overrides: Sequence[str]) -> tuple[DictConfig, dict[str, Any] | None]:
    """With resume=<dir>: the checkpoint's config (plus trainer.* and device.* overrides) and its state.

    A run whose own directory already holds checkpoints (a requeued SLURM job, rerun in its job
    directory) resumes from them too; its other overrides are the ones that started it.
    """
    if cfg.resume:
        ckpt_dir = Path(cfg.resume).expanduser() / "checkpoints"
        found = find_checkpoint(Path(cfg.resume).expanduser())
        if found is None:
            raise UserError(
                f"resume={cfg.resume} holds no readable checkpoint ({ckpt_dir}); give the directory of an earlier run."
            )
        other = [o for o in overrides if not o.startswith(("resume=", "hydra.", *RESUME_OVERRIDABLE))]
        if other:
            raise UserError(
                f"resume continues the saved run's settings, so {' '.join(other)} cannot apply; "
                f"only trainer.* and device.* settings change on resume, so start a new run "
                f"to change the others."
            )
    else:
        found = find_checkpoint(run_dir)
        if found is None:
            return cfg, None
        log.info("%s already holds checkpoints (a requeued job?): resuming from them", run_dir)
        cfg = cfg.copy()
        cfg.resume = str(run_dir)
    state, path = found
    if state["config"]["trainer"].get("parallel_seeds", 1) > 1 and "members" not in state:
        raise UserError(
            f"{path.parent.parent} is one member of a parallel-seeds run: resume the whole run with "
            f"resume={path.parent.parent.parent}."
        )
    log.info("resuming from %s at step %d", path, state["step"])
    try:
        saved = with_current_schema(state["config"])
    except ValueError as e:
        raise UserError(
            f"the config saved in {path} does not fit this rlrun version ({e}); resume it with the rlrun version that wrote it."
        ) from None
    extra = [o for o in overrides if o.startswith(RESUME_OVERRIDABLE)]
    try:
        merged = merge_checked(saved, OmegaConf.from_dotlist(extra))
    except ValueError as e:
        raise UserError(
            f"bad override on resume: {e}; only trainer.* and device.* settings of their declared types can change."
        ) from None
    if merged.trainer.parallel_seeds != saved.trainer.parallel_seeds:
        raise UserError(
            f"the run trains {saved.trainer.parallel_seeds} parallel seeds and resumes with as many: "
            f"drop trainer.parallel_seeds={merged.trainer.parallel_seeds}."
        )
    merged.resume = cfg.resume
    return merged, state


def find_checkpoint(run_dir: Path) -> tuple[dict[str, Any], Path] | None:
    """A run directory's newest readable checkpoint. A parallel-seeds run's are its members', at their
    newest common step: the first member's state with "members", every member's state in seed order."""
    if (run_dir / "checkpoints").is_dir():
        return checkpoint.load_latest(run_dir / "checkpoints")
    dirs = sorted(run_dir.glob("seed_*/checkpoints"), key=lambda d: int(d.parent.name.removeprefix("seed_")))
    found = checkpoint.load_common_step(dirs) if dirs else None
    if found is None:
        return None
    states, path = found
    return {**states[0], "members": states}, path


def summary(cfg: DictConfig, source: Any, algo: Any, device: torch.device) -> str:
    """What a run would train: data, sizes, networks with parameter counts, device."""
    sp = source.spaces
    data = (
        f"env {cfg.env.id} (online)" if cfg.env is not None else f"dataset {cfg.dataset.id}: {source.size} transitions (offline)"
    )
    lines = [
        f"algorithm  {type(algo).__name__} ({cfg.algo._target_})",
        f"data       {data}",
        f"spaces     obs_dim={sp.obs_dim} act_dim={sp.act_dim} {'discrete' if sp.discrete else 'continuous'}",
        f"device     {device}",
        f"steps      {cfg.trainer.total_steps} × batch {cfg.trainer.batch_size}",
    ]
    for name, module in vars(algo).items():
        if isinstance(module, torch.nn.Module) and sum(p.numel() for p in module.parameters()):
            count = sum(p.numel() for p in module.parameters())
            lines.append(f"network    {name}: {count:,} parameters")
    return "\n".join(lines)


def _schedule(t: DictConfig, eval_video: bool, offline: bool) -> Schedule:
    finetune = offline and t.finetune_steps > 0
    return Schedule(
        t.total_steps + (t.finetune_steps if finetune else 0),
        t.batch_size,
        t.eval_every,
        t.eval_episodes,
        t.log_every,
        t.checkpoint_every,
        t.keep_checkpoints,
        t.progress,
        eval_video,
        t.eval_envs,
        t.updates_per_step,
        t.total_steps if finetune else None,
    )


def videos_possible(source: Any, seed: int) -> bool:
    """trainer.eval_video's pre-flight: the eval env renders a frame here, else a warning and no videos."""
    problem = video.probe(partial(source.make_eval_env, seed, render=True))
    if problem is not None:
        log.warning(
            "trainer.eval_video: the eval env cannot render here (%s); evaluation videos are skipped. "
            "MuJoCo envs render with MUJOCO_GL=egl (GPU or Mesa EGL) or MUJOCO_GL=osmesa (libOSMesa); "
            "classic-control envs need pygame.",
            problem,
        )
    return problem is None


def _hparams(cfg: DictConfig) -> dict[str, Any]:
    """Flat hyperparameters of a run, without `_target_`s, dataset builders and unset values."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    flat = flatten({k: resolved[k] for k in ("algo", "network", "trainer", "seed", "dataset", "env") if k in resolved})
    return {
        k: v
        for k, v in flat.items()
        if v is not None and not any(part.startswith("_") or part == "builder" for part in k.split("."))
    }


def log_figures(algo: Any, source: Any, logger: Logger, run_dir: Path, step: int, device: torch.device) -> None:
    """The algorithm's figures hook after training (option-critic: β maps of a grid world), to TensorBoard and PNGs."""
    if not source.online:
        return
    env = source.make_eval_env(0)
    for name, figure in base.figures(algo, env, device).items():
        figure.savefig(run_dir / f"{name}.png", dpi=100)
        logger.figure(f"eval/{name}", figure, step)
        log.info("%s: %s", name, run_dir / f"{name}.png")
    env.close()


def with_presets(cfg: DictConfig, overrides: Sequence[str], run_dir: Path | None = None) -> DictConfig:
    """The config with the tuned settings of its algorithm and dataset id (conf/presets), the command
    line's overrides still on top; Hydra's saved .hydra/config.yaml is rewritten to match."""
    try:
        merged = presets.apply(cfg, overrides)
    except ValueError as e:
        raise UserError(f"a preset does not fit the config ({e}); fix the preset file or the override.") from None
    saved = run_dir / ".hydra" / "config.yaml" if run_dir is not None else None
    if merged is not cfg and saved is not None and saved.exists():
        OmegaConf.save(merged, saved)
    return merged


def run(cfg: DictConfig, run_dir: Path, overrides: Sequence[str] = ()) -> float:
    """Build everything from `cfg` and train; returns the final eval/return_mean."""
    cfg, resume_state = load_resume(cfg, run_dir, overrides)
    if resume_state is None:
        cfg = with_presets(cfg, overrides, run_dir)
    check_config(cfg)
    device = make_device(cfg.device, resume_state)
    seed_everything(cfg.seed)
    if cfg.trainer.eval_video:
        video.default_mujoco_backend()
    source = make_source(cfg, device)
    if not source.online and cfg.trainer.batch_size > source.size:
        raise UserError(
            f"trainer.batch_size={cfg.trainer.batch_size} is larger than dataset {cfg.dataset.id} "
            f"({source.size} transitions); choose trainer.batch_size <= {source.size}."
        )
    if cfg.trainer.parallel_seeds > 1:
        return run_parallel(cfg, run_dir, source, device, resume_state)
    algo = make_algo(cfg, source.spaces, device)
    if cfg.dataset is not None:  # the contract's normalizer hook
        algo.obs_norm.set(source.obs_mean, source.obs_std)
    if cfg.dry_run:
        print(summary(cfg, source, algo, device))
        return math.nan
    resolved = OmegaConf.to_container(cfg, resolve=True)
    logger = Logger(run_dir, purge_step=resume_state["step"] + 1 if resume_state else None)
    eval_video = cfg.trainer.eval_video and videos_possible(source, cfg.seed)
    trainer = Trainer(
        algo, source, logger, run_dir, _schedule(cfg.trainer, eval_video, cfg.dataset is not None), cfg.seed, resolved, device
    )
    if resume_state is not None:
        trainer.load_state_dict(resume_state)
    else:
        logger.text("config", "```\n" + OmegaConf.to_yaml(cfg, resolve=True) + "```")
    try:
        result = trainer.run()
        log_figures(algo, source, logger, run_dir, trainer.step, device)
        if cfg.env is not None and cfg.trainer.save_buffer:
            source.export(cfg.trainer.buffer_dataset_id, f"rlrun {type(algo).__name__}")
        logger.hparams(_hparams(cfg), [k for k in trainer.last_eval])
    finally:
        logger.close()
    return result


def run_parallel(cfg: DictConfig, run_dir: Path, source: Any, device: torch.device, resume_state: dict[str, Any] | None) -> float:
    """trainer.parallel_seeds=K: K runs with seeds seed … seed+K−1 in this process, each in
    run_dir/seed_<s>/ as a run of its own (config, TensorBoard, checkpoints; online, its own env and
    replay); returns their mean final return."""
    k = cfg.trainer.parallel_seeds
    members = make_members(cfg, source.spaces, device, cfg.seed, k)
    if cfg.dataset is not None:
        for shell in members.shells:
            shell.obs_norm.set(source.obs_mean, source.obs_std)
    members.gather()
    if cfg.dry_run:
        print(summary(cfg, source, members.shells[0], device) + f"\nseeds      {k} in parallel: {cfg.seed} … {cfg.seed + k - 1}")
        return math.nan
    schedule = _schedule(cfg.trainer, cfg.trainer.eval_video and videos_possible(source, cfg.seed), cfg.dataset is not None)
    configs, trainers = [], []
    for i, shell in enumerate(members.shells):
        member = cfg.copy()
        member.seed = cfg.seed + i
        # each online member collects in its own env, seeded like its own run
        member_source = make_source(member, device) if source.online and i > 0 else source
        member_dir = run_dir / f"seed_{member.seed}"
        (member_dir / ".hydra").mkdir(parents=True, exist_ok=True)
        OmegaConf.save(member, member_dir / ".hydra" / "config.yaml")
        logger = Logger(member_dir, purge_step=resume_state["step"] + 1 if resume_state else None)
        resolved = OmegaConf.to_container(member, resolve=True)
        trainers.append(Trainer(shell, member_source, logger, member_dir, schedule, member.seed, resolved, device))
        configs.append(member)
    parallel = ParallelTrainer(members, trainers, accelerate(members.update, device, cfg.device.amp, False, False))
    if resume_state is not None:
        parallel.load_state_dicts(resume_state["members"])
    else:
        for trainer, member in zip(trainers, configs):
            trainer.logger.text("config", "```\n" + OmegaConf.to_yaml(member, resolve=True) + "```")
    try:
        result = parallel.run()
        for trainer, member in zip(trainers, configs):
            log_figures(trainer.algo, trainer.source, trainer.logger, trainer.run_dir, trainer.step, device)
            trainer.logger.hparams(_hparams(member), list(trainer.last_eval))
    finally:
        for trainer in trainers:
            trainer.logger.close()
    return result
