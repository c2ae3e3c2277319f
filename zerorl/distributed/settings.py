"""Settings of the Ray backend, and the plain specs its actors are built from.

``DistSettings`` mirrors the ``dist`` section of the config (same field names); it is read with
:func:`dist_settings`, which falls back to these defaults while a config has no such section.
The specs are small picklable records: the config is read here, at the edge, and the actors get
plain values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from zerorl.workers import OptimSettings


@dataclass
class DistSettings:
    """Where and how the Ray backend places its workers.

    ``address``: "" starts a Ray instance in this process; "auto" or "HOST:PORT" joins a running
    cluster. ``num_gpus_per_node`` 0 means CPU workers. ``colocate``: generation and training
    share devices (models are offloaded between phases); otherwise policy, critic and engines get
    their own devices. ``policy_ranks``/``critic_ranks``: data-parallel sizes (0 = one per device
    when colocated, 1 on CPU). Every remote call is bounded by ``call_timeout_s``; starting the
    actors and loading the models by ``start_timeout_s``.
    """

    address: str = ""
    num_nodes: int = 1
    num_gpus_per_node: int = 0
    colocate: bool = True
    policy_ranks: int = 0
    critic_ranks: int = 0
    cpus_per_slot: float = 1.0
    reward_cpus: float = 1.0
    call_timeout_s: float = 3600.0
    start_timeout_s: float = 900.0


def dist_settings(cfg: Any) -> DistSettings:
    """The ``dist`` section of ``cfg`` as ``DistSettings`` (defaults while the section is absent).

    A ``DistSettings`` instance attached as ``cfg.dist`` is used as it is.
    """
    section = getattr(cfg, "dist", None)
    if section is None:
        return DistSettings()
    if isinstance(section, DistSettings):
        return section
    names = {f.name for f in dataclasses.fields(DistSettings)}
    return DistSettings(**{k: v for k, v in vars(section).items() if k in names})


@dataclass(frozen=True)
class ModelSpec:
    """How a rank loads its network. ``path`` is a resolved local directory or hub id."""

    path: str
    dtype: str
    attn_implementation: str
    gradient_checkpointing: bool
    value_head_init: str = "normal"
    seed: int = 0


@dataclass(frozen=True)
class RankSpec:
    """One training group: its network, optimiser and loss settings, and its placement."""

    model: ModelSpec
    optim: OptimSettings
    world: int
    device: str  # "cpu" or "cuda"
    num_threads: int
    timeout_s: float
    micro_rows: int = 1
    aggregation: str = "row-mean"
    clip_eps: float = 0.2  # policy ratio clip or critic value clip
    kl_loss_coef: float = 0.0
    entropy_coef: float = 0.0
    steps: int = 1  # optimiser steps per train call (ppo.policy_steps / ppo.critic_steps)


@dataclass(frozen=True)
class EngineSpec:
    """One rollout engine: the model it starts from and how it generates."""

    engine: str  # "hf", "fast" or "vllm"
    model_path: str
    dtype: str
    attn_implementation: str
    device: str
    num_threads: int
    batch_size: int = 256
    tensor_parallel: int = 1
    gpu_memory_utilization: float = 0.5
    max_model_len: int = 0  # vllm: prompt + response cap (0: the model's own length)
    max_num_seqs: int = 0  # vllm: sequences decoded at once (0: vLLM's default)
