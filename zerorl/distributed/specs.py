"""The plain specs the Ray backend's actors are built from.

Small picklable records: the config is read at the edge (``zerorl.distributed.builder``), and
the actors get plain values. Where the actors run is read from the config's ``dist`` section
(``zerorl.config.DistConfig``) directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from zerorl.workers import PolicyLossSpec, ValueLossSpec, WorkerSpec


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
    """One training group: its network, how its workers train (world and device included),
    the loss (the policy's or the critic's), and the actors' threads and call timeout."""

    model: ModelSpec
    worker: WorkerSpec
    loss: PolicyLossSpec | ValueLossSpec
    num_threads: int
    timeout_s: float


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
