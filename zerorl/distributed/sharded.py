"""One rank of a data-parallel policy or critic group (torch.distributed only, no Ray).

Every rank receives the whole ``PackedBatch`` and works on its own rows: a contiguous block of
the batch (:func:`rank_rows`), so the group's results concatenated in rank order are in row order.
The arithmetic is that of ``PolicyWorker``/``CriticWorker`` with one change: a row's loss weight
is its share of the *global* batch (or mini-batch), and FSDP sums the gradients over ranks, so
the update equals the single-process one whatever the number of ranks. With one CPU rank the
module is not wrapped and the numbers are bit-identical to the local backend's.

FSDP's collectives need every rank to run the same number of forwards (and backwards): a rank
with fewer rows runs zero-weight forwards on a row of the batch (:func:`micro_plan`).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from zerorl.core.logprobs import entropy, shift_right, token_logprobs
from zerorl.distributed import fsdp
from zerorl.distributed.settings import ModelSpec, RankSpec
from zerorl.models import DTYPES, VALUE_HEAD_FILE, Critic, load_critic, load_policy
from zerorl.types import PackedBatch
from zerorl.workers import (
    OPTIM_FILE,
    CriticStats,
    Plan,
    PolicyLoss,
    PolicyOutput,
    PolicyStats,
    accumulate_policy_grads,
    accumulate_value_grads,
    configured_hyperparameters,
    make_optimizer,
    mean_policy_stats,
    minibatches,
)

MicroPlan = list[tuple[list[int], bool]]


def split_rows(rows: list[int], world: int) -> list[list[int]]:
    """``rows`` in ``world`` contiguous blocks whose sizes differ by at most one."""
    q, r = divmod(len(rows), world)
    bounds = [k * q + min(k, r) for k in range(world + 1)]
    return [rows[bounds[k] : bounds[k + 1]] for k in range(world)]


def rank_rows(n: int, rank: int, world: int) -> list[int]:
    """The rows of a batch of ``n`` rows that ``rank`` works on."""
    return split_rows(list(range(n)), world)[rank]


def micro_plan(parts: list[list[int]], rank: int, micro_rows: int, filler: int) -> MicroPlan:
    """This rank's micro-batches as ``(rows, real)``, padded with ``([filler], False)`` to the
    largest count over ranks so that all ranks run the same number of forwards."""
    steps = max(math.ceil(len(p) / micro_rows) for p in parts)
    mine = parts[rank]
    plan: MicroPlan = [(mine[i : i + micro_rows], True) for i in range(0, len(mine), micro_rows)]
    return plan + [([filler], False)] * (steps - len(plan))


def _spec_dtype(spec: ModelSpec, device: str) -> str:
    # Under bf16 mixed precision the sharded master weights stay in fp32.
    return "float32" if fsdp.mixed_precision(spec.dtype, device) else spec.dtype


def _checkpointing(model: nn.Module, on: bool) -> None:
    if on:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def load_policy_rank(spec: ModelSpec, rank: int, world: int, device: str) -> nn.Module:
    """The policy for one rank: the plain model, or its FSDP2 shard."""
    dtype = _spec_dtype(spec, device)
    if not fsdp.uses_fsdp(world, device):
        model = load_policy(spec.path, dtype, spec.attn_implementation)
        _checkpointing(model, spec.gradient_checkpointing)
        return model.to(device)

    def build_meta() -> nn.Module:
        config = AutoConfig.from_pretrained(spec.path)
        lm = AutoModelForCausalLM.from_config(config, attn_implementation=spec.attn_implementation)
        return lm.to(DTYPES[dtype])

    def wrap(model: nn.Module) -> nn.Module:
        _checkpointing(model, spec.gradient_checkpointing)
        blocks = set(model._no_split_modules or ())
        return fsdp.shard(model, blocks, world, device, fsdp.mixed_precision(spec.dtype, device))

    def load_full() -> nn.Module:
        return load_policy(spec.path, dtype, spec.attn_implementation)

    return fsdp.load_sharded(load_full, build_meta, wrap, rank, device)


def load_critic_rank(spec: ModelSpec, rank: int, world: int, device: str) -> Critic:
    """The critic (backbone + fp32 value head) for one rank: plain, or its FSDP2 shard."""
    dtype = _spec_dtype(spec, device)

    def load_full() -> Critic:
        return load_critic(
            spec.path, dtype, spec.attn_implementation, spec.value_head_init, seed=spec.seed
        )

    if not fsdp.uses_fsdp(world, device):
        critic = load_full()
        _checkpointing(critic.backbone, spec.gradient_checkpointing)
        return critic.to(device)

    def build_meta() -> Critic:
        config = AutoConfig.from_pretrained(spec.path)
        backbone = AutoModel.from_config(config, attn_implementation=spec.attn_implementation)
        hidden = backbone.config.get_text_config().hidden_size
        head = nn.Linear(hidden, 1, bias=False, dtype=torch.float32)
        return Critic(backbone.to(DTYPES[dtype]), head)

    def wrap(critic: Critic) -> Critic:
        _checkpointing(critic.backbone, spec.gradient_checkpointing)
        blocks = set(critic.backbone._no_split_modules or ())
        mp = fsdp.mixed_precision(spec.dtype, device)
        return fsdp.shard(critic, blocks, world, device, mp, fp32_modules=(critic.value_head,))

    return fsdp.load_sharded(load_full, build_meta, wrap, rank, device)


class _Rank:
    """What policy and critic ranks share: the model, optimiser, schedule and checkpoints."""

    def __init__(self, model: nn.Module, spec: RankSpec, rank: int) -> None:
        self.model = model
        self.spec = spec
        self.rank = rank
        self.world = spec.world
        self.sharded = fsdp.uses_fsdp(spec.world, spec.device)
        self.optimizer, self.scheduler = make_optimizer(model.parameters(), spec.optim)

    def _plan(self, n: int, micro_rows: int) -> MicroPlan:
        parts = split_rows(list(range(n)), self.world)
        return micro_plan(parts, self.rank, micro_rows, filler=0)

    def _minibatch_plan(self, minibatch: list[int]) -> Plan:
        """This rank's micro-batches of ``minibatch`` with their loss weights (0: a filler)."""
        parts = split_rows(minibatch, self.world)
        plan = micro_plan(parts, self.rank, self.spec.micro_rows, filler=minibatch[0])
        return [(rows, len(rows) / len(minibatch) if real else 0.0) for rows, real in plan]

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """All weights on rank 0 (empty elsewhere); every rank must call it."""
        return fsdp.full_state_dict(self.model, self.sharded)

    def _save_optim(self, directory: Path) -> None:
        state = fsdp.optimizer_state(self.model, self.optimizer, self.sharded)
        if fsdp.is_rank0():
            payload = {"optimizer": state, "scheduler": self.scheduler.state_dict()}
            torch.save(payload, fsdp.ensure_dir(directory) / OPTIM_FILE)

    def load_optim(self, directory: str | Path) -> None:
        """Optimiser and schedule from ``directory/optimizer.pt`` (read by rank 0 only)."""
        payload = None
        if fsdp.is_rank0():
            payload = torch.load(Path(directory) / OPTIM_FILE, weights_only=False)  # our file
        state = payload["optimizer"] if payload else None
        with configured_hyperparameters(self.optimizer, self.scheduler):
            fsdp.load_optimizer_state(self.model, self.optimizer, state, self.sharded)
            sched = fsdp.broadcast_object(payload["scheduler"] if payload else None, self.sharded)
            self.scheduler.load_state_dict(sched)

    def offload(self) -> None:
        fsdp.to_device(self.model, self.optimizer, "cpu")

    def reload(self) -> None:
        fsdp.to_device(self.model, self.optimizer, self.spec.device)

    def _saveable(self) -> dict[str, torch.Tensor]:
        state = self.full_state_dict()
        for name in fsdp.tied_aliases(self.model):
            state.pop(name, None)
        return state


class ShardedPolicy(_Rank):
    """One policy rank: ``logprobs`` for its rows, ``train`` with global row weights."""

    def _forward(self, batch: PackedBatch) -> torch.Tensor:
        device = self.spec.device
        return self.model(
            input_ids=batch.input_ids.to(device),
            position_ids=batch.position_ids.to(device),
            use_cache=False,
        ).logits

    @torch.no_grad()
    def logprobs(self, batch: PackedBatch) -> PolicyOutput:
        """Log-probs and entropies of this rank's rows (in row order), each (B_rank, T)."""
        self.model.eval()
        lps, ents = [], []
        for rows, real in self._plan(batch.num_rows, self.spec.micro_rows):
            sub = batch.rows(rows)
            logits = self._forward(sub)
            if real:
                lps.append(token_logprobs(logits, sub.input_ids.to(logits.device)).cpu())
                ents.append(shift_right(entropy(logits)).cpu())
        width = batch.input_ids.shape[1]
        empty = torch.zeros(0, width)
        return PolicyOutput(torch.cat(lps) if lps else empty, torch.cat(ents) if ents else empty)

    def train(
        self,
        batch: PackedBatch,
        advantages: torch.Tensor,
        old_logprobs: torch.Tensor | None,
        ref_logprobs: torch.Tensor | None = None,
        seed: int = 0,
    ) -> PolicyStats:
        """``PolicyWorker.train`` for the group: the same mini-batches (same ``seed``), each split
        over the ranks. Returned loss, clip_frac, approx_kl, kl_loss and entropy are this rank's
        parts of the batch means (the group sums them); grad_norm and lr are global."""
        s = self.spec
        self.model.train()
        loss_spec = PolicyLoss(s.clip_eps, s.aggregation, s.kl_loss_coef, s.entropy_coef)
        parts = []
        for minibatch in minibatches(batch.num_rows, s.steps, seed):
            self.optimizer.zero_grad(set_to_none=True)
            plan = self._minibatch_plan(minibatch)
            totals = accumulate_policy_grads(
                self._forward, batch, plan, advantages, old_logprobs, ref_logprobs, loss_spec
            )
            norm = fsdp.grad_norm(self.model, s.optim.grad_clip)
            parts.append({**totals, "grad_norm": norm, "lr": self.scheduler.get_last_lr()[0]})
            self.optimizer.step()
            self.scheduler.step()
        return mean_policy_stats(parts)

    def save(self, directory: str | Path) -> None:
        """Hugging Face weights (rank 0) and ``optimizer.pt``; every rank must call it."""
        state = self._saveable()
        if fsdp.is_rank0():
            self.model.save_pretrained(fsdp.ensure_dir(directory), state_dict=state)
        self._save_optim(Path(directory))


class ShardedCritic(_Rank):
    """One critic rank: ``values`` for its rows; ``train`` splits each mini-batch over ranks."""

    def _values(self, batch: PackedBatch) -> torch.Tensor:
        device = self.spec.device
        out = self.model(batch.input_ids.to(device), batch.position_ids.to(device))
        return shift_right(out)

    @torch.no_grad()
    def values(self, batch: PackedBatch) -> torch.Tensor:
        """Values of this rank's rows (in row order): (B_rank, T)."""
        self.model.eval()
        parts = []
        for rows, real in self._plan(batch.num_rows, self.spec.micro_rows):
            values = self._values(batch.rows(rows))
            if real:
                parts.append(values.cpu())
        return torch.cat(parts) if parts else torch.zeros(0, batch.input_ids.shape[1])

    def train(
        self, batch: PackedBatch, returns: torch.Tensor, old_values: torch.Tensor, seed: int
    ) -> CriticStats:
        """``critic_steps`` optimiser steps over the same shuffled mini-batches as
        ``CriticWorker.train`` (same ``seed``), each split over the ranks. Returned loss and
        clip_frac are this rank's parts (the group sums them)."""
        s = self.spec
        self.model.train()
        losses, clips, norms, lrs = [], [], [], []
        for minibatch in minibatches(batch.num_rows, s.steps, seed):
            self.optimizer.zero_grad(set_to_none=True)
            plan = self._minibatch_plan(minibatch)
            loss, clip = accumulate_value_grads(
                self._values, batch, plan, returns, old_values, s.clip_eps, s.aggregation
            )
            losses.append(loss / s.steps)
            clips.append(clip / s.steps)
            norms.append(fsdp.grad_norm(self.model, s.optim.grad_clip))
            lrs.append(self.scheduler.get_last_lr()[0])
            self.optimizer.step()
            self.scheduler.step()
        return CriticStats(
            loss=sum(losses), clip_frac=sum(clips), grad_norm=sum(norms) / len(norms), lr=lrs[-1]
        )

    def save(self, directory: str | Path) -> None:
        """Backbone in Hugging Face format + value head + ``optimizer.pt`` (as ``CriticWorker``);
        every rank must call it."""
        state = self._saveable()
        if fsdp.is_rank0():
            out = fsdp.ensure_dir(directory)
            prefix = "backbone."
            backbone = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            self.model.backbone.save_pretrained(out, state_dict=backbone)
            head = state["value_head.weight"].contiguous()
            save_file({"weight": head}, out / VALUE_HEAD_FILE)
        self._save_optim(Path(directory))
