"""Driver-side handles on the Ray actors, with the same typed methods as the local roles.

``PolicyGroup`` and ``CriticGroup`` are the ``PolicyRole`` and ``CriticRole`` of ``zerorl.roles``
(the local workers are the other kind); each call sends the batch to every rank once (through the
object store) and combines the ranks' rows in row order. ``RolloutClient`` is a ``RolloutEngine``;
``RewardClient`` scores like ``RewardPool``. Every remote call is bounded: a worker that dies,
raises or does not answer in time stops the run with a ``WorkerFailure`` naming it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import torch
from ray.actor import ActorHandle
from ray.exceptions import RayActorError, RayTaskError

from zerorl.reward import RewardResult
from zerorl.types import Completion, PackedBatch, SamplingParams
from zerorl.workers import CriticStats, PolicyOutput, PolicyStats

RESUME_HINT = "the run stops here; continue it from its last checkpoint with --resume RUN_DIR"


class WorkerFailure(RuntimeError):
    """A Ray worker died, raised, or did not answer within its timeout."""


@dataclass
class Member:
    """One actor and the name the errors give it (e.g. ``policy rank 1``)."""

    name: str
    actor: ActorHandle


def wait_all(calls: list[tuple[Member, Any]], what: str, timeout_s: float) -> list[Any]:
    """The results of ``calls`` (member, object ref) in order, or a ``WorkerFailure``.

    Results are taken as they arrive, so a dead or failing worker is reported at once, not after
    the live ranks of its group have waited out their collective timeout."""
    pending = {ref: i for i, (_, ref) in enumerate(calls)}
    results: list[Any] = [None] * len(calls)
    deadline = time.monotonic() + timeout_s
    while pending:
        left = max(deadline - time.monotonic(), 0.0)
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=left)
        if not ready:
            late = ", ".join(calls[i][0].name for i in sorted(pending.values()))
            raise WorkerFailure(
                f"{late}: no answer to {what} within {timeout_s:.0f} s; {RESUME_HINT}"
            )
        for ref in ready:
            i = pending.pop(ref)
            name = calls[i][0].name
            try:
                results[i] = ray.get(ref)
            except RayActorError as e:
                cause = str(e).strip().splitlines()[-1]  # Ray's last line says why it died
                message = f"{name} died during {what} ({cause}); {RESUME_HINT}"
                raise WorkerFailure(message) from None
            except RayTaskError as e:
                raise WorkerFailure(f"{name} failed in {what}; {RESUME_HINT}\n{e}") from None
    return results


@dataclass
class Phases:
    """Colocation: the training groups and the engines take turns on the same devices.

    ``generation()`` offloads every training group and wakes the engines; ``training()`` puts the
    engines to sleep and reloads the groups. Both are no-ops when already in that phase or when
    colocation is off."""

    enabled: bool
    groups: list[Any] = field(default_factory=list)
    engines: RolloutClient | None = None
    phase: str = "training"

    def generation(self) -> None:
        if self.enabled and self.phase == "training":
            for group in self.groups:
                group.offload()
            if self.engines is not None:
                self.engines.wake()
            self.phase = "generation"

    def training(self) -> None:
        if self.enabled and self.phase == "generation":
            if self.engines is not None:
                self.engines.sleep()
            for group in self.groups:
                group.reload()
            self.phase = "training"


class _Group:
    """What both training groups share: broadcast calls, checkpoints and offloading."""

    def __init__(self, members: list[Member], timeout_s: float, phases: Phases) -> None:
        self.members = members
        self.timeout_s = timeout_s
        self.phases = phases

    @property
    def actors(self) -> list[ActorHandle]:
        return [m.actor for m in self.members]

    def _run(self, what: str, refs: list[Any]) -> list[Any]:
        return wait_all(list(zip(self.members, refs)), what, self.timeout_s)

    def save(self, directory: Path) -> None:
        """Hugging Face weights + optimizer.pt into ``directory``, as the local workers do (a
        path the rank-0 worker can write: the same machine or a shared filesystem)."""
        self.phases.training()
        self._run("save", [a.save.remote(str(directory)) for a in self.actors])

    def load_optim(self, directory: Path) -> None:
        self.phases.training()
        self._run("load_optim", [a.load_optim.remote(str(directory)) for a in self.actors])

    def offload(self) -> None:
        self._run("offload", [a.offload.remote() for a in self.actors])

    def reload(self) -> None:
        self._run("reload", [a.reload.remote() for a in self.actors])


def _sum_parts(
    parts: list[Any], cls: type, global_keys: tuple[str, ...], max_keys: tuple[str, ...] = ()
) -> Any:
    """Rank parts of a stats record: sums, except ``global_keys`` taken from rank 0 and
    ``max_keys`` maxed over ranks."""
    first = vars(parts[0])
    summed = {
        k: v if k in global_keys else sum(vars(p)[k] for p in parts) for k, v in first.items()
    }
    summed |= {k: max(vars(p)[k] for p in parts) for k in max_keys}
    return cls(**summed)


class RemoteWeights(Mapping[str, torch.Tensor]):
    """The policy's full weights, gathered on its rank 0 and left in the object store: the
    ``RolloutClient`` hands the reference to its engines, which load them without a copy through
    the driver. Read as a mapping (on the driver) it fetches them."""

    def __init__(self, ref: ray.ObjectRef) -> None:
        self.ref = ref

    def _state(self) -> dict[str, torch.Tensor]:
        return ray.get(self.ref)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._state()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._state())

    def __len__(self) -> int:
        return len(self._state())


class PolicyGroup(_Group):
    """The policy's data-parallel ranks; ``weights`` come in ``dtype`` (the engines' dtype)."""

    def __init__(self, members: list[Member], timeout_s: float, phases: Phases, dtype: str):
        super().__init__(members, timeout_s, phases)
        self.dtype = dtype

    def logprobs(self, batch: PackedBatch) -> PolicyOutput:
        self.phases.training()
        ref = ray.put(batch)
        parts = self._run("logprobs", [a.logprobs.remote(ref) for a in self.actors])
        return PolicyOutput(
            torch.cat([p.logprobs for p in parts]), torch.cat([p.entropy for p in parts])
        )

    def train(
        self,
        batch: PackedBatch,
        advantages: torch.Tensor,
        old_logprobs: torch.Tensor | None,
        ref_logprobs: torch.Tensor | None = None,
        seed: int = 0,
        rollout_logprobs: torch.Tensor | None = None,
    ) -> PolicyStats:
        self.phases.training()
        args = [ray.put(x) for x in (batch, advantages, old_logprobs, ref_logprobs)]
        roll = ray.put(rollout_logprobs)
        parts = self._run("train", [a.train.remote(*args, seed, roll) for a in self.actors])
        return _sum_parts(parts, PolicyStats, ("grad_norm", "lr"), ("mismatch_abs_max",))

    def weights(self) -> RemoteWeights:
        self.phases.training()
        refs = [a.weights.remote(self.dtype) for a in self.actors]
        self._run("weights", refs)
        return RemoteWeights(refs[0])


class CriticGroup(_Group):
    """The critic's data-parallel ranks."""

    def values(self, batch: PackedBatch) -> torch.Tensor:
        self.phases.training()
        ref = ray.put(batch)
        return torch.cat(self._run("values", [a.values.remote(ref) for a in self.actors]))

    def train(
        self, batch: PackedBatch, returns: torch.Tensor, old_values: torch.Tensor, seed: int
    ) -> CriticStats:
        self.phases.training()
        args = [ray.put(x) for x in (batch, returns, old_values)]
        parts = self._run("train", [a.train.remote(*args, seed) for a in self.actors])
        return _sum_parts(parts, CriticStats, ("grad_norm", "lr"))


class RolloutClient:
    """The rollout engines as one ``RolloutEngine``: prompts split in contiguous blocks."""

    def __init__(self, members: list[Member], timeout_s: float, phases: Phases):
        self.members = members
        self.timeout_s = timeout_s
        self.phases = phases

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Completion]]:
        """Engine ``i`` samples its block with seed ``params.seed + i`` (one engine: the local
        backend's draws exactly); prompt indices are made global again."""
        self.phases.generation()
        n = len(self.members)
        bounds = [k * len(prompts) // n for k in range(n + 1)]
        calls = []
        for i, m in enumerate(self.members):
            block = prompts[bounds[i] : bounds[i + 1]]
            sampling = SamplingParams(**{**vars(params), "seed": params.seed + i})
            calls.append((m, m.actor.generate.remote(block, sampling)))
        out: list[list[Completion]] = []
        for start, results in zip(bounds, wait_all(calls, "generate", self.timeout_s)):
            for completions in results:
                for c in completions:
                    c.prompt_index += start
                out.append(completions)
        return out

    def load_weights(self, weights: Mapping[str, torch.Tensor]) -> None:
        """Load ``weights`` into every engine: a ``RemoteWeights`` by reference (Ray resolves it
        in each engine), any other mapping put into the object store once."""
        ref = weights.ref if isinstance(weights, RemoteWeights) else ray.put(dict(weights))
        self.phases.generation()
        self._each("load_weights", [m.actor.load_weights.remote(ref) for m in self.members])

    def sleep(self) -> None:
        self._each("sleep", [m.actor.sleep.remote() for m in self.members])

    def wake(self) -> None:
        self._each("wake", [m.actor.wake.remote() for m in self.members])

    def _each(self, what: str, refs: list[Any]) -> None:
        wait_all(list(zip(self.members, refs)), what, self.timeout_s)


class RewardClient:
    """The reward actor, scoring like ``RewardPool``."""

    def __init__(self, member: Member, timeout_s: float) -> None:
        self.member = member
        self.timeout_s = timeout_s

    def score(self, responses: list[str], truths: list[str], finished: list[bool]) -> RewardResult:
        ref = self.member.actor.score.remote(responses, truths, finished)
        return wait_all([(self.member, ref)], "score", self.timeout_s)[0]

    def close(self) -> None:
        """Stop the verification processes; a reward actor already gone is not an error."""
        with contextlib.suppress(WorkerFailure):
            wait_all([(self.member, self.member.actor.close.remote())], "close", 60.0)
