"""Offline data: a Minari dataset flattened into transitions held on the training device."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
from typing import Any, Callable

import gymnasium as gym
import minari
import numpy as np
import torch

from rlrun.algos.base import Batch
from rlrun.data.online import Spaces, spaces_of
from rlrun.envs import prepare
from rlrun.errors import UserError

log = logging.getLogger(__name__)
MINARI_HOST = ("huggingface.co", 443)


def dataset_exists(dataset_id: str) -> bool:
    from minari.storage import get_dataset_path

    return (get_dataset_path(dataset_id) / "data").is_dir()


def network_reachable(address: tuple[str, int] = MINARI_HOST, timeout: float = 5.0) -> bool:
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


def download(dataset_id: str) -> None:
    """minari.download_dataset, failing fast (one probe, no retry loop) when offline."""
    hint = (
        "retry on a machine with network access, or run offline on the imported human "
        "demonstrations with `rlrun algo=cql dataset=door_demos`"
    )
    if not network_reachable():
        raise UserError(
            f"dataset {dataset_id} is not in the local Minari store "
            f"({minari.storage.get_dataset_path(dataset_id).parent}) and the download failed: "
            f"{MINARI_HOST[0]} cannot be reached; {hint}."
        )
    log.info("downloading Minari dataset %s", dataset_id)
    try:
        minari.download_dataset(dataset_id)
    except Exception as e:  # the remote API raises many types
        raise UserError(f"downloading dataset {dataset_id} failed ({type(e).__name__}: {e}); {hint}.") from e


@contextlib.contextmanager
def store_lock(dataset_id: str):
    """An exclusive lock per dataset id, so parallel jobs build or download a dataset once."""
    from minari.storage import get_dataset_path

    path = get_dataset_path(dataset_id).parent / f".{dataset_id.replace('/', '_')}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def load(dataset_id: str, allow_download: bool, builder: Callable[..., object] | None) -> minari.MinariDataset:
    """The local dataset; else built by `builder`, else downloaded (if allowed)."""
    if not dataset_exists(dataset_id):
        with store_lock(dataset_id):
            if not dataset_exists(dataset_id):  # another job may have made it meanwhile
                fetch(dataset_id, allow_download, builder)
    return minari.load_dataset(dataset_id)


def fetch(dataset_id: str, allow_download: bool, builder: Callable[..., object] | None) -> None:
    """Make a missing dataset local: build it, or download it, or say how to."""
    if builder is not None:
        log.info("dataset %s is missing locally: building it now", dataset_id)
        builder(dataset_id=dataset_id)
    elif allow_download:
        download(dataset_id)
    else:
        root = os.environ.get("MINARI_DATASETS_PATH", "~/.minari/datasets")
        raise UserError(
            f"dataset {dataset_id} is not in the local Minari store ({root}) and "
            f"dataset.download=false; download it with `minari download {dataset_id}` "
            f"or set dataset.download=true."
        )


def flat_obs(space: gym.Space, obs: Any) -> np.ndarray:
    """Observations (T, ...) as (T, D) float32. A Dict space's parts are concatenated in the space's key
    order (gymnasium sorts the keys; AntMaze: achieved_goal, desired_goal, observation), recursively,
    which is the order of gymnasium's FlattenObservation on the eval env."""
    if isinstance(space, gym.spaces.Dict):
        return np.concatenate([flat_obs(sub, obs[key]) for key, sub in space.spaces.items()], axis=1)
    arr = np.asarray(obs, dtype=np.float32)
    return arr.reshape(len(arr), -1)


def flatten(dataset: minari.MinariDataset) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Episodes → transitions, and each episode's length; the last step of a truncated episode stays non-terminal."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "act", "rew", "next_obs", "terminal")}
    lengths = []
    for ep in dataset.iterate_episodes():
        obs = flat_obs(dataset.observation_space, ep.observations)  # (T+1, O)
        parts["obs"].append(obs[:-1])
        parts["next_obs"].append(obs[1:])
        parts["act"].append(np.asarray(ep.actions))
        parts["rew"].append(np.asarray(ep.rewards, dtype=np.float32))
        parts["terminal"].append(np.asarray(ep.terminations, dtype=np.float32))
        lengths.append(len(ep.rewards))
    return {k: np.concatenate(v) for k, v in parts.items()}, np.asarray(lengths)


def eval_env_spec(dataset: minari.MinariDataset) -> Any:
    """The env a dataset is evaluated in: its eval env spec, else the env it was collected in."""
    spec = getattr(dataset, "_eval_env_spec", None)
    if spec is None and dataset.spec.env_spec is None:
        raise UserError(
            f"dataset {dataset.spec.dataset_id} records no environment, so its policies cannot be "
            f"evaluated; write it with an env spec (rlrun-collect does)."
        )
    return spec if spec is not None else dataset.spec.env_spec


def make_eval_env(spec: Any, seed: int, render: bool = False) -> gym.Env:
    """The eval env of a dataset (its `eval_env_spec`) as policies see it: Dict observations flattened
    (in `flat_obs`'s order), Box actions in [-1, 1]."""
    env = gym.make(spec, **({"render_mode": "rgb_array"} if render else {}))
    if isinstance(env.observation_space, gym.spaces.Dict):
        env = gym.wrappers.FlattenObservation(env)
    return prepare(env, seed)


def check_env(dataset: minari.MinariDataset, env: gym.Env, lengths: np.ndarray) -> None:
    """The dataset's spaces must have its eval env's shapes; other disagreements are one warning each."""
    name, env_id = dataset.spec.dataset_id, env.spec.id if env.spec else type(env.unwrapped).__name__
    for kind, data_space, env_space in (
        ("observation", dataset.observation_space, env.observation_space),
        ("action", dataset.action_space, env.action_space),
    ):
        flat_data, flat_env = gym.spaces.flatten_space(data_space), gym.spaces.flatten_space(env_space)
        if flat_data.shape != flat_env.shape or type(data_space) is not type(env_space):
            raise UserError(
                f"dataset {name} has {kind} space {data_space} but its eval env "
                f"{env_id} has {env_space}; rebuild the dataset for that env."
            )
        if data_space != env_space:
            log.warning(
                "dataset %s: its %s space %s differs from its eval env %s's %s", name, kind, data_space, env_id, env_space
            )
    limit = env.spec.max_episode_steps if env.spec else None
    if limit is not None and len(lengths) and lengths.max() > limit:
        log.warning(
            "dataset %s has episodes of up to %d steps but its eval env %s ends episodes after %d steps; "
            "evaluations see only their first %d steps",
            name,
            lengths.max(),
            env_id,
            limit,
            limit,
        )


def return_range(rewards: np.ndarray, lengths: np.ndarray) -> float:
    """max − min of the episodes' returns (at least 1e-6)."""
    returns = np.add.reduceat(rewards, np.concatenate([[0], np.cumsum(lengths)[:-1]])) if len(lengths) else [0.0]
    return max(float(np.max(returns) - np.min(returns)), 1e-6)


def reference_scores(
    dataset: minari.MinariDataset, ref_min_score: float | None, ref_max_score: float | None
) -> tuple[float | None, float | None]:
    """The returns of a random and an expert policy for normalized scores: the dataset's metadata wins over the config."""
    meta = dataset.storage.metadata
    return meta.get("ref_min_score", ref_min_score), meta.get("ref_max_score", ref_max_score)


def next_actions(actions: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The data's next action of every transition (ReBRAC's critic penalty); at an episode's last
    step, where the data has none, its own action."""
    nxt = np.concatenate([actions[1:], actions[-1:]])
    ends = np.cumsum(lengths) - 1
    nxt[ends] = actions[ends]
    return nxt


def mc_returns(rewards: np.ndarray, lengths: np.ndarray, gamma: float) -> np.ndarray:
    """Discounted return from each transition to the end of its episode, Σ_k γ^k r_(t+k) (Cal-QL's V^μ).
    The sum ends at an episode's last step whether it terminated (its value after the end is 0) or was
    truncated (the data holds no later reward; the Cal-QL paper's and CORL's code end it there too)."""
    out = np.zeros(len(rewards), dtype=np.float64)
    end = 0
    for length in lengths:
        end, following = end + length, 0.0
        for t in range(end - 1, end - length - 1, -1):
            following = rewards[t] + gamma * following
            out[t] = following
    return out.astype(np.float32)


class DatasetSource:
    """Transitions resident on the device, sampled with on-device indices."""

    online = False

    def __init__(
        self,
        dataset: minari.MinariDataset,
        normalize_obs: bool,
        reward_scale: float,
        reward_bias: float,
        ref_min_score: float | None,
        ref_max_score: float | None,
        device: torch.device,
        return_range_scale: float | None = None,
        mc_gamma: float | None = None,
    ) -> None:
        self.dataset, self.device = dataset, device
        self.env_spec = eval_env_spec(dataset)
        data, lengths = flatten(dataset)
        try:  # runs are evaluated (and fine-tuned) in it
            env = gym.make(self.env_spec)
        except Exception as e:
            name = getattr(self.env_spec, "id", self.env_spec)
            raise UserError(
                f"dataset {dataset.spec.dataset_id} records the env {name}, which cannot be made here "
                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no message'}); install the package "
                f"that provides it."
            ) from None
        check_env(dataset, env, lengths)  # so the dataset's spaces are its eval env's
        env.close()
        self.spaces: Spaces = spaces_of(gym.spaces.flatten_space(dataset.observation_space), dataset.action_space)
        self.ref_min, self.ref_max = reference_scores(dataset, ref_min_score, ref_max_score)
        if self.ref_min is None or self.ref_max is None:
            log.info(
                "dataset %s has no reference scores (ref_min_score, ref_max_score): eval/normalized_score is not logged",
                dataset.spec.dataset_id,
            )
        space = dataset.action_space
        if isinstance(space, gym.spaces.Box):  # [low, high] -> [-1, 1], as the eval env expects
            scaled = 2.0 * (data["act"] - space.low) / (space.high - space.low) - 1.0
            data["act"] = np.clip(scaled, -1.0, 1.0).astype(np.float32)  # the env clips too (human demos exceed it)
        range_factor = 1.0 if return_range_scale is None else return_range_scale / return_range(data["rew"], lengths)
        self.reward_factor, self.reward_bias = range_factor * reward_scale, reward_bias  # for online rewards too
        data["rew"] = (data["rew"] * self.reward_factor + reward_bias).astype(np.float32)
        mean, std = data["obs"].mean(0), data["obs"].std(0) + 1e-3
        if not normalize_obs:
            mean, std = np.zeros_like(mean), np.ones_like(std)
        self.obs_mean, self.obs_std = torch.as_tensor(mean, device=device), torch.as_tensor(std, device=device)
        data["next_act"] = next_actions(data["act"], lengths)
        if mc_gamma is not None:  # the algorithm's uses_mc_returns: returns of the learned rewards
            data["mc_return"] = mc_returns(data["rew"], lengths, mc_gamma)
        t = {k: torch.as_tensor(v, device=device) for k, v in data.items()}
        self.data = Batch(
            (t["obs"] - self.obs_mean) / self.obs_std,
            t["act"],
            t["rew"],
            (t["next_obs"] - self.obs_mean) / self.obs_std,
            t["terminal"],
            next_act=t["next_act"],
            mc_return=t.get("mc_return"),
        )
        self.size = len(t["rew"])
        log.info(
            "dataset %s: %d episodes, %d transitions on %s", dataset.spec.dataset_id, dataset.total_episodes, self.size, device
        )

    def make_eval_env(self, seed: int, render: bool = False) -> gym.Env:
        return make_eval_env(self.env_spec, seed, render)

    def step(self, algo, step: int) -> dict[str, float]:
        return {}

    def ready(self, step: int) -> bool:
        return True

    def sample(self, batch_size: int) -> Batch:
        idx = torch.randint(0, self.size, (batch_size,), device=self.device)
        return Batch(*(None if x is None else x[idx] for x in self.data))

    def as_learned(self, batch: Batch) -> Batch:
        """Env transitions (raw observations, env rewards) as this dataset's are learned from: observations
        normalized with the dataset's statistics, rewards scaled and shifted as the dataset's."""
        return batch._replace(
            obs=(batch.obs - self.obs_mean) / self.obs_std,
            next_obs=(batch.next_obs - self.obs_mean) / self.obs_std,
            rew=batch.rew * self.reward_factor + self.reward_bias,
        )

    def normalized_score(self, mean_return: float) -> float | None:
        if self.ref_min is None or self.ref_max is None:
            return None
        return 100.0 * (mean_return - self.ref_min) / (self.ref_max - self.ref_min)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class FinetuneSource:
    """Offline updates up to `switch_step`, then online fine-tuning in the dataset's eval env.

    Online, the policy collects one transition per step into `online`'s replay; once the replay holds
    `warmup` transitions, each batch draws round(offline_ratio × B) transitions from the dataset and the
    rest from the replay, both as the dataset's are learned from (`DatasetSource.as_learned`). Before
    that, batches come wholly from the dataset, so the first few new transitions are not each drawn
    many times per batch.
    """

    def __init__(self, offline: DatasetSource, online: Any, switch_step: int, offline_ratio: float, warmup: int) -> None:
        self.data, self.env, self.switch_step, self.offline_ratio = offline, online, switch_step, offline_ratio
        self.warmup = warmup
        self.spaces, self.size = offline.spaces, offline.size
        self.obs_mean, self.obs_std = offline.obs_mean, offline.obs_std
        self.online = False  # True from the first online step: perf/env_steps_per_s, episode returns

    def make_eval_env(self, seed: int, render: bool = False) -> gym.Env:
        return self.data.make_eval_env(seed, render)

    def step(self, algo, step: int) -> dict[str, float]:
        self.online = step > self.switch_step
        return self.env.step(algo, step) if self.online else {}

    def ready(self, step: int) -> bool:
        return True

    def sample(self, batch_size: int) -> Batch:
        if not self.online or self.env.replay.size < self.warmup:
            return self.data.sample(batch_size)
        n_offline = round(self.offline_ratio * batch_size)
        parts = [self.data.sample(n_offline), self.data.as_learned(self.env.sample(batch_size - n_offline))]
        parts = [p for p in parts if p.obs.shape[0] > 0]
        # (n_offline, ...) and (B - n_offline, ...) -> (B, ...); fields only one side has are dropped
        return Batch(*(torch.cat(xs) if all(x is not None for x in xs) else None for xs in zip(*parts)))

    def normalized_score(self, mean_return: float) -> float | None:
        return self.data.normalized_score(mean_return)

    def state_dict(self) -> dict:
        return {"online": self.online, "env": self.env.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.online = state["online"]
        self.env.load_state_dict(state["env"])
