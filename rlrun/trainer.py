"""One training loop for every algorithm, online or offline; it owns time, signals and resume.

Per step: source.step (online: act and store) → algo.update(source.sample(B)) → log → evaluate
→ checkpoint. Steps are env steps online and gradient updates offline.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from rlrun import __version__, checkpoint, onednn, video
from rlrun.algos.base import Algorithm, Batch, begin_online, eval_metrics
from rlrun.data.online import play
from rlrun.envs import is_mujoco
from rlrun.errors import UserError
from rlrun.logger import Logger
from rlrun.members import Members, MemberStreams

log = logging.getLogger(__name__)


class SignalExit(Exception):
    """SIGINT/SIGTERM arrived; a checkpoint was written. `code` is 128 + signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by signal {signum}")
        self.code = 128 + signum


class NonFiniteError(Exception):
    """A loss or parameter became NaN or infinite."""


@dataclass
class Schedule:
    total_steps: int
    batch_size: int
    eval_every: int
    eval_episodes: int
    log_every: int
    checkpoint_every: int
    keep_checkpoints: int
    progress: bool
    eval_video: bool = False
    eval_envs: int = 1
    updates_per_step: int = 1  # online steps (env steps) only
    online_from: int | None = None  # fine-tuning: the last offline update; online env steps follow

    def updates(self, online: bool) -> int:
        """Gradient updates per step: updates_per_step per env step online, one per offline step."""
        return self.updates_per_step if online else 1


def evaluate(
    algo: Algorithm, env: gym.Env, episodes: int, seed: int, device: torch.device, trace: list | None = None
) -> dict[str, float]:
    """Deterministic policy over `episodes` episodes, reset with seeds seed, seed+1, ...

    Envs that report `info["success"]` (Meta-World) also get eval/success_rate: the share of
    episodes that succeeded at any step. Algorithms with options (an `n_options` attribute, the
    running option as policy state) also get `option_stats`, and `trace` (a list) receives each
    episode's options step by step.
    """
    returns, lengths, successes, options = [], [], [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        ret, length, success, running = 0.0, 0, None, []
        for step in play(algo, env, obs, device):
            ret, length = ret + step.reward, length + 1
            if "success" in step.info:
                success = bool(success) or bool(step.info["success"])
            if isinstance(step.state, torch.Tensor):
                running.append(int(step.state[0]))
        returns.append(ret)
        lengths.append(length)
        successes.append(success)
        options.append(running)
    if trace is not None:
        trace += options
    return summarize(returns, lengths, successes) | option_stats(options, getattr(algo, "n_options", 0))


def option_stats(episodes: list[list[int]], n_options: int) -> dict[str, float]:
    """eval/ option metrics from the running option at each step of each episode ({} without options):
    the mean duration of a stretch of one option, option changes per episode, and each option's share of steps."""
    if not n_options or not any(episodes):
        return {}
    stretches = [1 + sum(a != b for a, b in zip(ep, ep[1:])) for ep in episodes if ep]
    steps = [o for ep in episodes for o in ep]
    metrics = {
        "eval/option_duration_mean": len(steps) / sum(stretches),
        "eval/option_switches_per_episode": float(np.mean([n - 1 for n in stretches])),
    }
    counts = np.bincount(steps, minlength=n_options)
    return metrics | {f"eval/option_usage/{k}": float(counts[k] / len(steps)) for k in range(n_options)}


def summarize(returns: list[float], lengths: list[int], successes: list[bool | None]) -> dict[str, float]:
    """eval/ metrics of played episodes; eval/success_rate only where every episode reported success."""
    metrics = {
        "eval/return_mean": float(np.mean(returns)),
        "eval/return_std": float(np.std(returns)),
        "eval/length_mean": float(np.mean(lengths)),
    }
    if all(s is not None for s in successes):
        metrics["eval/success_rate"] = float(np.mean(successes))
    return metrics


def make_eval_envs(make_env: Callable[[int], gym.Env], n: int, seed: int) -> gym.vector.VectorEnv:
    """`n` eval envs as one vector env: async worker processes for MuJoCo envs on machines with 4 or more
    cores, in process otherwise (on 2 cores the workers' messages cost more than their parallel physics:
    door's 10 episodes took 2.2–3.7 s async against 1.5–2.1 s in process)."""
    probe = make_env(seed)
    parallel = is_mujoco(probe) and (os.cpu_count() or 1) >= 4
    probe.close()
    vector = gym.vector.AsyncVectorEnv if parallel else gym.vector.SyncVectorEnv
    return vector([partial(make_env, seed + i) for i in range(n)])


def evaluate_vector(
    algo: Algorithm, envs: gym.vector.VectorEnv, episodes: int, seed: int, device: torch.device, trace: list | None = None
) -> dict[str, float]:
    """`evaluate` with episodes played num_envs at a time and the policy batched: episode i is reset
    with seed + i, as in `evaluate`, so the results are the same. Envs past an episode's end (or
    beyond the last episode) keep stepping, ignored."""
    n = envs.num_envs
    returns, lengths, successes, options = [], [], [], []
    for start in range(0, episodes, n):
        count = min(n, episodes - start)
        obs, _ = envs.reset(seed=[seed + start + i for i in range(n)])
        state, done = algo.initial_state(), np.zeros(n, dtype=bool)
        ret, length = np.zeros(n), np.zeros(n, dtype=int)
        success: np.ndarray | None = None
        running: list[list[int]] = [[] for _ in range(count)]
        while not done[:count].all():
            with torch.no_grad():
                action, state = algo.act(torch.as_tensor(obs, dtype=torch.float32, device=device), state, True)
            obs, reward, terminated, truncated, info = envs.step(action.cpu().numpy())
            live = ~done
            if isinstance(state, torch.Tensor):
                for i in np.flatnonzero(live[:count]):
                    running[i].append(int(state[i]))
            ret, length = ret + reward * live, length + live
            if "success" in info:
                success = (np.zeros(n, dtype=bool) if success is None else success) | (np.asarray(info["success"]) & live)
            done |= terminated | truncated
        returns += list(ret[:count])
        lengths += list(length[:count])
        successes += [None] * count if success is None else list(success[:count])
        options += running
    if trace is not None:
        trace += options
    return summarize(returns, lengths, successes) | option_stats(options, getattr(algo, "n_options", 0))


def non_finite(metrics: dict[str, Any], algo: Algorithm) -> list[str]:
    """Names of non-finite loss terms and parameter tensors."""
    bad = [k for k, v in metrics.items() if isinstance(v, torch.Tensor) and not torch.isfinite(v).all()]
    for name, value in vars(algo).items():
        if isinstance(value, torch.nn.Module):
            bad += [f"{name}.{p}" for p, t in value.named_parameters() if not torch.isfinite(t).all()]
    return bad


class Trainer:
    def __init__(
        self,
        algo: Algorithm,
        source: Any,
        logger: Logger,
        run_dir: Path,
        schedule: Schedule,
        seed: int,
        config: dict[str, Any],
        device: torch.device,
    ) -> None:
        self.algo, self.source, self.logger, self.run_dir = algo, source, logger, run_dir
        self.s, self.seed, self.config, self.device = schedule, seed, config, device
        self.step = 0
        self.last_eval: dict[str, float] = {}
        self._signal: int | None = None
        self._eval_envs: gym.vector.VectorEnv | None = None
        self.label = ""  # before its log lines (parallel seeds: "seed <s>: ")
        # the random state a checkpoint holds, and its restore (parallel seeds: the member's own stream)
        self.rng_state: Callable[[], dict[str, Any]] = checkpoint.rng_state
        self.set_rng_state: Callable[[dict[str, Any]], None] = checkpoint.set_rng_state

    # --- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "step": self.step,
            "config": self.config,
            "algo": checkpoint.collect(self.algo),
            "source": self.source.state_dict(),
            "rng": self.rng_state(),
            "last_eval": self.last_eval,
            # what device.cpu_matmul=auto chose on CPU, kept by a resume (None: not a CPU run)
            "cpu_matmul": onednn.current() if self.device.type == "cpu" else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        try:
            checkpoint.restore(self.algo, state["algo"])
        except checkpoint.CheckpointError as e:
            raise UserError(
                f"cannot resume from {self.run_dir / 'checkpoints'}: {e}; resume it with the rlrun "
                f"version that wrote it, or start a new run."
            ) from None
        self.source.load_state_dict(state["source"])
        self.set_rng_state(state["rng"])
        self.step, self.last_eval = state["step"], state["last_eval"]

    def save(self) -> Path:
        ckpt_dir = self.run_dir / "checkpoints"
        try:
            return checkpoint.save(ckpt_dir, self.step, self.state_dict(), self.s.keep_checkpoints)
        except OSError as e:
            raise UserError(
                f"cannot write the step {self.step} checkpoint to {ckpt_dir} ({e.strerror or e}); the "
                f"checkpoints already there are intact: free disk space, then continue with "
                f"`rlrun resume={self.run_dir}`."
            ) from e

    # --- the loop ----------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signal = signum

    def _check_finite(self, metrics: dict[str, Any]) -> None:
        bad = non_finite(metrics, self.algo)
        if bad:
            raise NonFiniteError(
                f"non-finite values at step {self.step} in {', '.join(bad)}; training stopped "
                f"and the last good checkpoint in {self.run_dir / 'checkpoints'} was kept."
            )

    def _log_train(self, metrics: dict[str, Any], timer: dict[str, float]) -> None:
        self._check_finite(metrics)
        now = time.perf_counter()
        rate = (self.step - timer["step"]) / max(now - timer["time"], 1e-9)
        perf = {"perf/updates_per_s": rate} | ({"perf/env_steps_per_s": rate} if self.source.online else {})
        self.logger.scalars({**metrics, **perf}, self.step)
        timer.update(step=self.step, time=now)

    def _evaluate(self) -> None:
        seed, trace = self.seed + 10_000, []
        if self.s.eval_envs > 1:
            if self._eval_envs is None:  # kept for the run: async workers start once
                self._eval_envs = make_eval_envs(self.source.make_eval_env, self.s.eval_envs, seed)
            self.last_eval = evaluate_vector(self.algo, self._eval_envs, self.s.eval_episodes, seed, self.device, trace)
        else:
            env = self.source.make_eval_env(seed)
            self.last_eval = evaluate(self.algo, env, self.s.eval_episodes, seed, self.device, trace)
            env.close()
        self.last_eval |= eval_metrics(self.algo, partial(self.source.make_eval_env, seed), self.device)
        if any(trace):
            self._option_timeline(trace)
        score = self.source.normalized_score(self.last_eval["eval/return_mean"])
        if score is not None:
            self.last_eval["eval/normalized_score"] = score
        self.logger.scalars(self.last_eval, self.step)
        if self.s.eval_video:
            self._record_video()
        headline = ", ".join(f"{k}={v:.2f}" for k, v in self.last_eval.items() if k.count("/") == 1)  # not per option
        log.info("%sstep %d: %s", self.label, self.step, headline)

    def _option_timeline(self, episodes: list[list[int]]) -> None:
        """Which option acted at each step of each evaluation episode: options/eval_step_<N>.png and TensorBoard."""
        from rlrun.viz import option_timeline  # matplotlib only for runs with options, not at every start

        figure = option_timeline(episodes, self.algo.n_options)
        path = self.run_dir / "options" / f"eval_step_{self.step}.png"
        path.parent.mkdir(exist_ok=True)
        figure.savefig(path, dpi=80)
        self.logger.figure("eval/option_timeline", figure, self.step)

    def _record_video(self) -> None:
        env = self.source.make_eval_env(self.seed + 10_000, render=True)
        frames = video.record(self.algo, env, self.seed + 10_000, self.device)
        fps = env.metadata.get("render_fps") or 30
        env.close()
        data, (height, width) = video.gif(frames, fps)
        path = self.run_dir / "videos" / f"eval_step_{self.step}.gif"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        self.logger.gif("eval/video", data, height, width, self.step)

    def _iteration(self, metrics: dict[str, Any], timer: dict[str, float]) -> dict[str, Any]:
        episode = self.source.step(self.algo, self.step)
        if episode:
            self.logger.scalars(episode, self.step)
        if self.step - 1 == self.s.online_from:
            self._mark_switch()
        if self.source.ready(self.step):
            latest = (self.source.latest(),) if self.algo.learns_from_latest else ()
            for _ in range(self.s.updates(self.source.online)):
                metrics = self.algo.update(self.source.sample(self.s.batch_size), *latest)
        self.after_update(metrics, timer)
        return metrics

    def after_update(self, metrics: dict[str, Any], timer: dict[str, float], sync: Callable[[], None] = lambda: None) -> None:
        """Log, evaluate and checkpoint where the schedule says; `sync` runs first when either of the last two is due."""
        if self.step % self.s.log_every == 0 and metrics:
            self._log_train(metrics, timer)
        evaluate = self.step % self.s.eval_every == 0 or self.step == self.s.total_steps
        save = self.step % self.s.checkpoint_every == 0 or self.step == self.s.total_steps
        if evaluate or save:
            sync()
        if evaluate:
            self._evaluate()
        if save:
            self._check_finite(metrics)
            self.save()

    def _mark_switch(self) -> None:
        """Fine-tuning starts: the algorithm's begin_online hook; marked once, as a log line and as TensorBoard text."""
        begin_online(self.algo)
        text = f"step {self.step}: offline updates end, online fine-tuning begins"
        log.info("%s", text)
        self.logger.text("phase", text, self.step)

    def run(self) -> float:
        """Train to total_steps; returns the final eval/return_mean (what sweepers optimize)."""
        metrics: dict[str, Any] = {}
        timer = {"step": self.step, "time": time.perf_counter()}
        with running(self.s, self.step, self._on_signal) as bar:
            try:
                while self.step < self.s.total_steps:
                    if self._signal is not None:
                        self.save()
                        log.warning("signal %d: checkpoint written at step %d; exiting", self._signal, self.step)
                        raise SignalExit(self._signal)
                    self.step += 1
                    metrics = self._iteration(metrics, timer)
                    advance(bar, self.last_eval)
            finally:
                self.close()
        return self.last_eval.get("eval/return_mean", math.nan)

    def close(self) -> None:
        self.logger.flush()
        if self._eval_envs is not None:
            self._eval_envs.close()
            self._eval_envs = None


@contextlib.contextmanager
def running(s: Schedule, start: int, on_signal: Callable[[int, Any], None]) -> Iterator[tqdm]:
    """A training loop's progress bar, with SIGINT and SIGTERM caught by `on_signal` until it ends."""
    handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    bar = tqdm(
        total=s.total_steps,
        initial=start,
        disable=not s.progress,
        dynamic_ncols=True,
        mininterval=0.5 if sys.stderr.isatty() else 30.0,
    )
    try:
        yield bar
    finally:
        bar.close()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def advance(bar: tqdm, last_eval: dict[str, float]) -> None:
    bar.update(1)
    if last_eval:
        bar.set_postfix(eval_return=f"{last_eval['eval/return_mean']:.1f}", refresh=False)


class ParallelTrainer:
    """trainer.parallel_seeds: K member Trainers, each with its run directory, logger, evaluations and
    checkpoints, whose algorithms learn in lockstep as one rlrun.members.Members.

    Each step (online: after every member acted once in its own env, storing into its own replay)
    samples every member's batch from its own stream and updates all members at once;
    where an evaluation or a checkpoint is due, the members' state is first copied into their
    Trainers' algorithms. A member's checkpoint is a single run's, random state included.
    """

    def __init__(self, members: Members, trainers: list[Trainer], update: Callable[[Batch], dict[str, Tensor]]) -> None:
        self.members, self.trainers, self.update = members, trainers, update
        lead = trainers[0]
        self.source, self.s, self.step = lead.source, lead.s, lead.step
        self._signal: int | None = None
        for k, trainer in enumerate(trainers):
            trainer.rng_state = partial(members.streams.run, k, checkpoint.rng_state)
            trainer.set_rng_state = partial(_set_member_rng, members.streams, k)
            trainer.label = f"seed {trainer.seed}: "

    def load_state_dicts(self, states: list[dict[str, Any]]) -> None:
        for trainer, state in zip(self.trainers, states):
            trainer.load_state_dict(state)
        self.members.gather()
        self.step = self.trainers[0].step

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signal = signum

    def _save_all(self) -> None:
        self.members.scatter()
        for trainer in self.trainers:
            trainer.save()

    def _collect(self) -> None:
        """Online: each member acts once in its own env with its current policy and stores the transition."""
        for k, trainer in enumerate(self.trainers):
            episode = self.members.acting(k, partial(trainer.source.step, step=self.step))
            if episode:
                trainer.logger.scalars(episode, self.step)

    def _iteration(self, timers: list[dict[str, float]], metrics: dict[str, Tensor]) -> dict[str, Tensor]:
        if self.source.online:
            self._collect()
        if self.source.ready(self.step):
            sources = [trainer.source for trainer in self.trainers]
            for _ in range(self.s.updates(self.source.online)):
                metrics = self.update(self.members.sample(sources, self.s.batch_size))  # each (K,)
        synced: list[bool] = []

        def sync() -> None:  # once per step, however many members evaluate or save
            if not synced:
                self.members.scatter()
                synced.append(True)

        for k, trainer in enumerate(self.trainers):
            trainer.step = self.step
            trainer.after_update({name: value[k] for name, value in metrics.items()}, timers[k], sync)
        return metrics

    def run(self) -> float:
        """Train every member to total_steps; returns the mean over members of their final eval/return_mean."""
        timers = [{"step": self.step, "time": time.perf_counter()} for _ in self.trainers]
        metrics: dict[str, Tensor] = {}
        with running(self.s, self.step, self._on_signal) as bar:
            try:
                while self.step < self.s.total_steps:
                    if self._signal is not None:
                        self._save_all()
                        log.warning("signal %d: checkpoints of all members written at step %d; exiting", self._signal, self.step)
                        raise SignalExit(self._signal)
                    self.step += 1
                    metrics = self._iteration(timers, metrics)
                    advance(bar, self.trainers[0].last_eval)
            finally:
                for trainer in self.trainers:
                    trainer.close()
        return float(np.mean([t.last_eval.get("eval/return_mean", math.nan) for t in self.trainers]))


def _set_member_rng(streams: MemberStreams, k: int, state: dict[str, Any]) -> None:
    """Restore a member's saved random state: its torch generators become member k's stream."""
    streams.run(k, partial(checkpoint.set_rng_state, state))
