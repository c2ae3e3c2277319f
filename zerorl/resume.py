"""What ``zerorl train --resume RUN key=value ...`` may change in a run's config.

The run's own config.yaml is the base. Each override is applied on top of it, and every changed
key is either allowed (and recorded in the run's config history) or refused with its reason: the
keys that decide what the checkpoint holds, which prompts its data position indexes, the random
streams, or the shape of the world the run was trained in. Everything else (``train.steps``,
learning rates, sampling, evaluation, timeouts, ...) may change between two stretches of a run.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from zerorl.config import Config, ConfigError, apply_mapping, parse_override, validate

_WEIGHTS = "the checkpoint holds the weights and optimiser states of the run's model"
_DATA = "the checkpoint's data position indexes the run's prompt set"
_WORLD = (
    "the run's world shape (backend, nodes, devices, ranks) decides how its numbers are "
    "computed; start a new run to train with another"
)
REFUSED: dict[str, str] = {
    "model.path": _WEIGHTS,
    "model.critic_path": _WEIGHTS,
    "model.dtype": _WEIGHTS,
    "model.value_head_init": "the critic's value head is already trained",
    "algo.advantage": "a critic is trained (gae) or not at all; the checkpoint has one or none",
    "toy.world_seed": _WEIGHTS + " (the toy world built for that seed)",
    "data.train_files": _DATA,
    "data.toy_train_size": _DATA,
    "data.max_prompt_tokens": _DATA + " (it decides which prompts are kept)",
    "data.shuffle": _DATA,
    "train.seed": "every step's sampling and data order derive from the run's seed",
    "train.out_dir": "--resume names the run folder",
    "train.run_name": "--resume names the run folder",
    "train.backend": _WORLD,
    "dist.num_nodes": _WORLD,
    "dist.num_gpus_per_node": _WORLD,
    "dist.colocate": _WORLD,
    "dist.policy_ranks": _WORLD,
    "dist.critic_ranks": _WORLD,
}


def resumed_config(saved: Config, overrides: Sequence[str]) -> tuple[Config, dict[str, list[Any]]]:
    """``saved`` with ``overrides`` (``key=value``) applied, and the changed keys as
    ``{key: [old, new]}``. Raises ConfigError naming every refused key with its reason."""
    cfg = copy.deepcopy(saved)
    for text in overrides:
        key, value = parse_override(text)
        apply_mapping(cfg, {key: value}, "command line")
    validate(cfg)
    old, new = _flat(saved), _flat(cfg)
    changes = {key: [old[key], value] for key, value in new.items() if value != old[key]}
    refused = [f"{key} ({REFUSED[key]})" for key in changes if key in REFUSED]
    if refused:
        raise ConfigError(
            "--resume cannot change " + "; ".join(refused) + ". Every other key may change; "
            "to train with these, start a new run"
        )
    return cfg, changes


def _flat(cfg: Config) -> dict[str, Any]:
    return {f"{s}.{k}": v for s, section in cfg.to_dict().items() for k, v in section.items()}
