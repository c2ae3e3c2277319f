"""The four roles of a PPO step, typed by what the trainer calls, and their local builder.

Both backends fill ``Roles``: the local one with ``zerorl.workers`` in this process, the Ray one
with the driver-side groups of ``zerorl.distributed.groups``; the Protocols below are what both
satisfy. This is where the config is read; the roles below it take plain arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from transformers import PreTrainedTokenizerBase

from zerorl.config import Config
from zerorl.distributed.sharded import load_critic_rank, load_policy_rank
from zerorl.distributed.specs import ModelSpec
from zerorl.models import load_tokenizer, resolve_device
from zerorl.reward import RewardPool, RewardResult
from zerorl.rollout import local_engine
from zerorl.rollout.base import RolloutEngine
from zerorl.types import PackedBatch
from zerorl.workers import (
    CriticStats,
    CriticWorker,
    OptimSpec,
    PolicyLossSpec,
    PolicyOutput,
    PolicyStats,
    PolicyWorker,
    ValueLossSpec,
    WorkerSpec,
    init_threads,
)


class PolicyRole(Protocol):
    """The policy (or the frozen reference): log-probs, the update, its weights, checkpoints."""

    def logprobs(self, batch: PackedBatch) -> PolicyOutput: ...

    def train(
        self,
        batch: PackedBatch,
        advantages: torch.Tensor,
        old_logprobs: torch.Tensor | None,
        ref_logprobs: torch.Tensor | None = None,
        seed: int = 0,
        rollout_logprobs: torch.Tensor | None = None,
    ) -> PolicyStats: ...

    def weights(self) -> Mapping[str, torch.Tensor]: ...

    def save(self, directory: Path) -> None: ...

    def load_optim(self, directory: Path) -> None: ...


class CriticRole(Protocol):
    """The critic: values, the update, checkpoints."""

    def values(self, batch: PackedBatch) -> torch.Tensor: ...

    def train(
        self, batch: PackedBatch, returns: torch.Tensor, old_values: torch.Tensor, seed: int
    ) -> CriticStats: ...

    def save(self, directory: Path) -> None: ...

    def load_optim(self, directory: Path) -> None: ...


class RewardRole(Protocol):
    """Scores responses against their ground truths (``RewardPool`` or its Ray client)."""

    def score(
        self, responses: list[str], truths: list[str], finished: list[bool]
    ) -> RewardResult: ...

    def close(self) -> None: ...


@dataclass
class Roles:
    """What the trainer drives; it never learns which backend built them."""

    engine: RolloutEngine
    reward: RewardRole
    policy: PolicyRole
    critic: CriticRole | None  # None: a critic-free advantage estimator (algo.advantage)
    tokenizer: PreTrainedTokenizerBase
    reference: PolicyRole | None = None  # only for the KL ablations

    def close(self) -> None:
        self.reward.close()


def optim_spec(cfg: Config, lr: float) -> OptimSpec:
    o = cfg.optim
    return OptimSpec(
        lr=lr,
        betas=(o.betas[0], o.betas[1]),
        weight_decay=o.weight_decay,
        warmup_steps=o.warmup_steps,
        warmup_from_zero=o.warmup_from_zero,
        grad_clip=o.grad_clip,
    )


def policy_specs(
    cfg: Config, reference: bool = False, device: str = "cpu"
) -> tuple[WorkerSpec, PolicyLossSpec]:
    """How the policy trains and its loss; the reference (``reference``) never trains: lr 0."""
    p, t = cfg.ppo, cfg.train
    if reference:
        spec = WorkerSpec(optim_spec(cfg, 0.0), micro_rows=t.micro_rows, device=device)
        return spec, PolicyLossSpec()
    lr = cfg.optim.policy_lr
    worker = WorkerSpec(optim_spec(cfg, lr), p.policy_steps, t.micro_rows, device=device)
    loss = PolicyLossSpec(
        p.clip_eps, p.loss_aggregation, p.clip_eps_high or None, p.kl_loss_coef, p.entropy_coef
    )
    return worker, loss


def critic_specs(cfg: Config, device: str = "cpu") -> tuple[WorkerSpec, ValueLossSpec]:
    p, lr = cfg.ppo, cfg.optim.critic_lr
    worker = WorkerSpec(optim_spec(cfg, lr), p.critic_steps, cfg.train.micro_rows, device=device)
    return worker, ValueLossSpec(p.value_clip, p.loss_aggregation)


def model_spec(cfg: Config, path: str) -> ModelSpec:
    m = cfg.model
    return ModelSpec(
        path, m.dtype, m.attn_implementation, m.gradient_checkpointing, m.value_head_init,
        cfg.train.seed,
    )  # fmt: skip


def build_local_roles(cfg: Config, checkpoint: Path | None = None) -> Roles:
    """Build every role in this process (rank 0 of a world of one, on ``train.device``); from
    ``checkpoint`` (policy/, critic/) when resuming."""
    init_threads(cfg.train.num_threads)
    m, device = cfg.model, resolve_device(cfg.train.device)
    policy_path = str(checkpoint / "policy") if checkpoint else m.path
    critic_path = str(checkpoint / "critic") if checkpoint else (m.critic_path or m.path)
    tokenizer = load_tokenizer(policy_path)
    policy_model = load_policy_rank(model_spec(cfg, policy_path), 0, 1, device)
    policy = PolicyWorker(policy_model, *policy_specs(cfg, device=device))
    critic = None
    if cfg.algo.needs_critic:
        critic_model = load_critic_rank(model_spec(cfg, critic_path), 0, 1, device)
        critic = CriticWorker(critic_model, *critic_specs(cfg, device))
    reference = None
    p = cfg.ppo
    if p.kl_loss_coef > 0 or p.kl_penalty_coef > 0:
        # The reference is the *initial* policy, also when resuming.
        ref_model = load_policy_rank(model_spec(cfg, m.path), 0, 1, device)
        reference = PolicyWorker(
            ref_model.eval().requires_grad_(False), *policy_specs(cfg, True, device)
        )
    engine = local_engine(cfg.rollout.engine, policy_model, tokenizer, cfg.rollout.batch_size)
    r = cfg.reward
    pool = RewardPool(
        r.num_workers, r.timeout_s, r.memory_mb, call_budget_s=r.call_budget_s, box_rule=r.box_rule
    )
    return Roles(engine, pool, policy, critic, tokenizer, reference)
