"""The Ray actors: one per training rank, rollout engine and reward pool.

These are plain classes; ``zerorl.distributed.builder`` turns them into actors with
``ray.remote(cls).options(...)`` and its placement. A training rank's actor is the worker itself
(``zerorl.workers``), with a shell that joins the group's world. Each method is a typed remote
call (rule 7): the driver-side groups in ``zerorl.distributed.groups`` call them by name, never
by string.
"""

from __future__ import annotations

import torch

from zerorl.distributed import fsdp
from zerorl.distributed.sharded import load_critic_rank, load_policy_rank
from zerorl.distributed.specs import EngineSpec, RankSpec
from zerorl.models import load_policy, load_tokenizer
from zerorl.reward import RewardPool, RewardResult
from zerorl.rollout import local_engine
from zerorl.rollout.base import RolloutEngine
from zerorl.types import Completion, SamplingParams
from zerorl.workers import CriticWorker, PolicyWorker, init_threads


class _RankShell:
    """What makes a worker a rank of a group: its threads and joining the group's world.

    The actors below are the workers themselves (``logprobs``, ``values``, ``train``, ``save``,
    ``weights``... are the worker's methods, not restated here); only their construction waits
    for ``setup``, once rank 0 has chosen where the world meets."""

    def __init__(self, spec: RankSpec, rank: int) -> None:
        init_threads(spec.num_threads)
        self.rank_spec = spec
        self.rank = rank

    def rendezvous(self) -> tuple[str, int]:
        """Rank 0's host and a free port: where the group's torch.distributed world meets."""
        return fsdp.free_address()

    def _join(self, address: tuple[str, int]) -> RankSpec:
        s = self.rank_spec
        w = s.worker
        if fsdp.uses_fsdp(w.world, w.device):
            fsdp.init_world(self.rank, w.world, address, w.device, s.timeout_s)
        return s


class PolicyActor(_RankShell, PolicyWorker):
    """One rank of the policy group."""

    def setup(self, address: tuple[str, int]) -> None:
        """Join the world and load this rank's (shard of the) policy; all ranks at once."""
        s = self._join(address)
        model = load_policy_rank(s.model, self.rank, s.worker.world, s.worker.device)
        PolicyWorker.__init__(self, model, s.worker, s.loss, self.rank)


class CriticActor(_RankShell, CriticWorker):
    """One rank of the critic group."""

    def setup(self, address: tuple[str, int]) -> None:
        s = self._join(address)
        model = load_critic_rank(s.model, self.rank, s.worker.world, s.worker.device)
        CriticWorker.__init__(self, model, s.worker, s.loss, self.rank)


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
            engine_kwargs={"max_num_seqs": spec.max_num_seqs} if spec.max_num_seqs else None,
        )
    model = load_policy(spec.model_path, spec.dtype, spec.attn_implementation)
    model = model.to("cuda" if spec.device == "cuda" else "cpu").eval().requires_grad_(False)
    tokenizer = load_tokenizer(spec.model_path)
    return local_engine(spec.engine, model, tokenizer, spec.batch_size)


class RolloutActor:
    """One rollout engine. Weights arrive as a full state dict (see ``PolicyGroup.weights``)."""

    def __init__(self, spec: EngineSpec, index: int) -> None:
        init_threads(spec.num_threads)
        self.spec = spec
        self.engine = build_engine(spec, index)

    def ready(self) -> None:
        """Returns once the engine is built (calls queue behind ``__init__``)."""

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Completion]]:
        return self.engine.generate(prompts, params)

    def load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        """Sample from these weights from now on (Ray resolves the object ref to the dict)."""
        self.engine.load_weights(weights)

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
