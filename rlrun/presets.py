"""Tuned settings keyed by algorithm and Minari dataset id (`conf/presets/*.yaml`).

Each preset file names one algorithm (`algo`, a name from `conf/algo/`), the dataset ids it
serves (`ids`, shell-style patterns such as `D4RL/antmaze/*`), optionally dataset config names
(`configs`), and the settings it sets (`settings`, any part of the config). A run whose algorithm
and `dataset.id` match a preset gets its settings on top of the composed config; where no preset
matches the id, one that lists the dataset's config name (`dataset.name`) applies. The command
line's own `key=value` overrides still win. So `dataset=door` and `dataset=minari
dataset.id=D4RL/door/human-v2` get the same settings, and so does `dataset=door dataset.id=<a local copy>`.
A preset that lists an id as it is beats one whose pattern matches it (`rebrac_pendulum_expert`
over `rebrac_pendulum`'s `rlrun/pendulum/*`).
A preset with `finetune: true` serves only runs that fine-tune online (`trainer.finetune_steps` > 0),
and such a run takes it before the offline one.
"""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from rlrun.resolvers import CONF_DIR
from rlrun.schema import ALGO_SCHEMAS, merge_checked

log = logging.getLogger(__name__)
CONF = Path(CONF_DIR)
PRESETS = CONF / "presets"


@dataclass(frozen=True)
class Preset:
    path: Path
    algo: str
    ids: tuple[str, ...]
    configs: tuple[str, ...]
    settings: dict[str, Any]
    finetune: bool = False  # serves only fine-tuning runs (trainer.finetune_steps > 0), before the offline presets

    @property
    def name(self) -> str:
        return self.path.stem

    def serves(self, algo: str, dataset_id: str, exact: bool = False) -> bool:
        """Whether it serves this algorithm on this id: listed as it is (`exact`) or by a pattern."""
        match = str.__eq__ if exact else fnmatch.fnmatchcase
        return algo == self.algo and any(match(dataset_id, pattern) for pattern in self.ids)


def load_all(root: Path = PRESETS) -> list[Preset]:
    presets = []
    for path in sorted(root.glob("*.yaml")):
        raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        presets.append(
            Preset(
                path, raw["algo"], tuple(raw["ids"]), tuple(raw.get("configs", ())), raw["settings"], raw.get("finetune", False)
            )
        )
    return presets


def algo_name(target: str) -> str | None:
    """The `conf/algo` name of an algorithm class path (None for an algorithm from elsewhere)."""
    return next((name for name, schema in ALGO_SCHEMAS.items() if schema._target_ == target), None)


def find(
    algo: str,
    dataset_id: str,
    config_name: str | None = None,
    presets: Sequence[Preset] | None = None,
    finetune: bool = False,
) -> Preset | None:
    """The preset for this algorithm and dataset id (one that lists the id itself before one that
    matches it by a pattern), else for the dataset config's name; for a fine-tuning run the
    fine-tuning presets are looked through first. Two that match the same way are a defect of
    conf/presets."""
    loaded = load_all() if presets is None else presets
    for mode in (True, False) if finetune else (False,):
        pool = [p for p in loaded if p.finetune == mode]
        for matches, what in (
            ([p for p in pool if p.serves(algo, dataset_id, exact=True)], dataset_id),
            ([p for p in pool if p.serves(algo, dataset_id)], dataset_id),
            ([p for p in pool if p.algo == algo and config_name in p.configs], f"dataset={config_name}"),
        ):
            if len(matches) > 1:
                raise ValueError(f"presets {', '.join(p.name for p in matches)} all serve {algo} on {what}")
            if matches:
                return matches[0]
    return None


def value_overrides(overrides: Sequence[str]) -> list[str]:
    """The `key=value` overrides of a command line, without config-group choices and hydra's own."""
    kept = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key.startswith("hydra") or ("." not in key and (CONF / key).is_dir()):
            continue
        kept.append(override)
    return kept


def apply(cfg: DictConfig, overrides: Sequence[str] = ()) -> DictConfig:
    """`cfg` with the preset of its algorithm and dataset id merged in, then `overrides` again on top;
    a config that took its preset already (`cfg.preset`) is returned as it is."""
    if cfg.get("preset") is not None or cfg.get("dataset") is None or OmegaConf.is_missing(cfg.dataset, "id"):
        return cfg
    algo = algo_name(cfg.algo._target_)
    finetune = cfg.trainer.finetune_steps > 0
    preset = find(algo, cfg.dataset.id, cfg.dataset.name, finetune=finetune) if algo else None
    if preset is None:
        return cfg
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.override_parser.overrides_parser import OverridesParser

    merged = merge_checked(cfg, preset.settings, {"preset": preset.name})
    OmegaConf.set_struct(merged, True)
    ConfigLoaderImpl._apply_overrides_to_config(OverridesParser.create().parse_overrides(value_overrides(overrides)), merged)
    log.info("settings of preset %s (conf/presets/%s) for %s on %s", preset.name, preset.path.name, algo, cfg.dataset.id)
    return merged


def compose(overrides: Sequence[str]) -> DictConfig:
    """The config a run with these command-line overrides gets: composed by Hydra from conf/ (inside a
    running Hydra app, by that app's), then its dataset's preset on top."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return apply(hydra_compose("config", overrides=list(overrides)), overrides)
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        return apply(hydra_compose("config", overrides=list(overrides)), overrides)
