"""The Ray actors: one per training rank, rollout engine and reward pool.

These are plain classes; ``zerorl.distributed.builder`` turns them into actors with
``ray.remote(cls).options(...)`` and its placement. Each method is a typed remote call (rule 7):
the driver-side groups in ``zerorl.distributed.groups`` call them by name, never by string.
"""

from __future__ import annotations

from pathlib import Path

import torch

from zerorl.distributed import fsdp
from zerorl.distributed.settings import EngineSpec, RankSpec
from zerorl.distributed.sharded import (
    ShardedCritic,
    ShardedPolicy,
    load_critic_rank,
    load_policy_rank,
)
from zerorl.models import DTYPES, load_policy, load_tokenizer
from zerorl.reward import RewardPool, RewardResult
from zerorl.rollout import local_engine
from zerorl.rollout.base import RolloutEngine
from zerorl.types import Completion, PackedBatch, SamplingParams
from zerorl.workers import CriticStats, PolicyOutput, PolicyStats


class _TrainActor:
    """What policy and critic ranks share: joining the group's world, checkpoints, offloading."""

    def __init__(self, spec: RankSpec, rank: int) -> None:
        torch.set_num_threads(spec.num_threads)
        self.spec = spec
        self.rank = rank
        self.worker: ShardedPolicy | ShardedCritic | None = None

    def rendezvous(self) -> tuple[str, int]:
        """Rank 0's host and a free port: where the group's torch.distributed world meets."""
        return fsdp.free_address()

    def _join(self, address: tuple[str, int]) -> None:
        s = self.spec
        if fsdp.uses_fsdp(s.world, s.device):
            fsdp.init_world(self.rank, s.world, address, s.device, s.timeout_s)

    def save(self, directory: str) -> None:
        """Hugging Face weights + optimizer.pt into ``directory`` (written by rank 0)."""
        self.worker.save(Path(directory))

    def load_optim(self, directory: str) -> None:
        self.worker.load_optim(Path(directory))

    def offload(self) -> None:
        """Free the device for the engines (colocation)."""
        self.worker.offload()

    def reload(self) -> None:
        self.worker.reload()


class PolicyActor(_TrainActor):
    """One rank of the policy group."""

    def setup(self, address: tuple[str, int]) -> None:
        """Join the world and load this rank's (shard of the) policy; all ranks at once."""
        self._join(address)
        s = self.spec
        self.worker = ShardedPolicy(
            load_policy_rank(s.model, self.rank, s.world, s.device), s, self.rank
        )

    def logprobs(self, batch: PackedBatch) -> PolicyOutput:
        return self.worker.logprobs(batch)

    def train(
        self,
        batch: PackedBatch,
        advantages: torch.Tensor,
        old_logprobs: torch.Tensor | None,
        ref_logprobs: torch.Tensor | None,
        seed: int,
    ) -> PolicyStats:
        return self.worker.train(batch, advantages, old_logprobs, ref_logprobs, seed)

    def state_dict(self, dtype: str) -> dict[str, torch.Tensor]:
        """The full weights in ``dtype`` on rank 0 (an empty dict on the others)."""
        state = self.worker.full_state_dict()
        return {k: v.to(DTYPES[dtype]) if v.is_floating_point() else v for k, v in state.items()}


class CriticActor(_TrainActor):
    """One rank of the critic group."""

    def setup(self, address: tuple[str, int]) -> None:
        self._join(address)
        s = self.spec
        self.worker = ShardedCritic(
            load_critic_rank(s.model, self.rank, s.world, s.device), s, self.rank
        )

    def values(self, batch: PackedBatch) -> torch.Tensor:
        return self.worker.values(batch)

    def train(
        self, batch: PackedBatch, returns: torch.Tensor, old_values: torch.Tensor, seed: int
    ) -> CriticStats:
        return self.worker.train(batch, returns, old_values, seed)


class _StateModel:
    """A module-like read-only view of a state dict (what engines read in ``sync_weights``)."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        self._state = state

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self._state

    def named_parameters(self):
        return iter(self._state.items())


class WeightsView:
    """Looks like a ``PolicyWorker`` to ``RolloutEngine.sync_weights``: ``.model`` exposes the
    gathered weights through ``state_dict()`` and ``named_parameters()``."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        self.model = _StateModel(state)


def build_engine(spec: EngineSpec, index: int) -> RolloutEngine:
    """The engine of rollout actor ``index``: vLLM, or an in-process one (hf, fast)."""
    if spec.engine == "vllm":
        from zerorl.rollout.vllm import VLLMEngine

        return VLLMEngine(
            spec.model_path,
            dtype=spec.dtype,
            tensor_parallel_size=spec.tensor_parallel,
            gpu_memory_utilization=spec.gpu_memory_utilization,
            max_model_len=spec.max_model_len or None,
            engine_index=index,
            engine_kwargs={"max_num_seqs": spec.max_num_seqs} if spec.max_num_seqs else None,
        )
    model = load_policy(spec.model_path, spec.dtype, spec.attn_implementation)
    model = model.to("cuda" if spec.device == "cuda" else "cpu").eval().requires_grad_(False)
    tokenizer = load_tokenizer(spec.model_path)
    return local_engine(spec.engine, model, tokenizer, spec.batch_size)


class RolloutActor:
    """One rollout engine. Weights arrive as a full state dict (see ``PolicyGroup.state_ref``)."""

    def __init__(self, spec: EngineSpec, index: int) -> None:
        torch.set_num_threads(spec.num_threads)
        self.spec = spec
        self.engine = build_engine(spec, index)

    def ready(self) -> None:
        """Returns once the engine is built (calls queue behind ``__init__``)."""

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Completion]]:
        return self.engine.generate(prompts, params)

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        """Sample from these weights from now on (Ray resolves the object ref to the dict)."""
        self.engine.sync_weights(WeightsView(state))

    def sleep(self) -> None:
        """Free the device for training (colocation)."""
        self.engine.sleep()
        if self._hf_on_gpu():
            self.engine.model.to("cpu")
            torch.cuda.empty_cache()

    def wake(self) -> None:
        if self._hf_on_gpu():
            self.engine.model.to("cuda")
        self.engine.wake()

    def _hf_on_gpu(self) -> bool:
        # The HF engine's own sleep is a no-op (locally it *is* the policy); here it holds a copy.
        return self.spec.engine == "hf" and self.spec.device == "cuda"


class RewardActor:
    """The reward pool (its verification processes live inside this actor)."""

    def __init__(
        self,
        num_workers: int,
        timeout_s: float,
        memory_mb: int,
        call_budget_s: float = 0.0,
        box_rule: str = "last",
    ) -> None:
        self.pool = RewardPool(
            num_workers, timeout_s, memory_mb, call_budget_s=call_budget_s, box_rule=box_rule
        )

    def ready(self) -> None:
        """Returns once every verification process has started."""
        if not self.pool.wait_ready():
            raise RuntimeError("reward workers did not start")

    def score(self, responses: list[str], truths: list[str], finished: list[bool]) -> RewardResult:
        return self.pool.score(responses, truths, finished)

    def close(self) -> None:
        self.pool.close()
