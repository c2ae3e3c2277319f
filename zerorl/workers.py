"""Policy and critic workers: one data-parallel rank's model, optimiser and schedule.

One implementation for any world size. The local backend runs rank 0 of a world of one (the
plain module); the Ray backend runs one worker per rank inside its actors (FSDP2 when the world
is larger than one or on GPU, ``zerorl.distributed.fsdp``). Workers take and return typed
records (``PackedBatch`` in; tensors and ``*Stats`` out), so the trainer drives a local worker
and a Ray group the same way (``zerorl.roles``).

Every rank receives the whole batch and works on its own rows: a contiguous block of each
(mini-)batch (:func:`split_rows`; a mini-batch is a part of the step's samples, packed anew), so
the ranks' results concatenated in rank order are in row order. A micro-batch's loss weight is
its share of the *global* mini-batch's units (tokens, samples or rows, after the loss
aggregation) and FSDP sums the gradients over ranks, so the update equals the one-rank update
whatever the number of ranks. FSDP's collectives need every rank to run the same number of
forwards: a rank with fewer rows runs zero-weight forwards on a row of the batch
(:func:`padded_micro_batches`).
Shape legend: B batch (rows), T tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zerorl.core.logprobs import entropy, shift_right, token_logprobs
from zerorl.core.losses import (
    Aggregation,
    aggregation_units,
    kl_to_reference,
    logprob_mismatch_sums,
    masked_mean,
    policy_loss,
    value_loss,
)
from zerorl.core.packing import repack, sample_minibatches
from zerorl.distributed import fsdp
from zerorl.models import DTYPES
from zerorl.types import PackedBatch

OPTIM_FILE = "optimizer.pt"


@dataclass(frozen=True)
class OptimSpec:
    lr: float
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.0
    warmup_steps: int = 50
    grad_clip: float = 1.0
    warmup_from_zero: bool = True


def warmup_multiplier(k: int, warmup_steps: int, from_zero: bool = True) -> float:
    """Learning-rate multiplier before optimiser step ``k`` (0-based): linear warm-up, then 1.

    ``from_zero`` is ORZ's code (transformers' ``constant_with_warmup``): k / N, so the first
    update has lr 0 and the full lr arrives at k = N. Otherwise (k + 1) / N: the first update
    already moves the weights and the full lr arrives at k = N - 1.
    """
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (k if from_zero else k + 1) / warmup_steps)


@dataclass(frozen=True)
class WorkerSpec:
    """How a worker trains, and its place: ``world`` ranks on ``device`` ("cpu" or "cuda")."""

    optim: OptimSpec
    steps: int = 1  # optimiser steps per train call (ppo.policy_steps / ppo.critic_steps)
    micro_rows: int = 1
    world: int = 1
    device: str = "cpu"


@dataclass(frozen=True)
class PolicyLossSpec:
    """How the policy loss is formed: PPO clip, its aggregation, and the (off) ablation terms."""

    clip_eps: float = 0.2
    aggregation: Aggregation = "row-mean"
    clip_eps_high: float | None = None  # DAPO's clip-higher; None: clip_eps
    kl_loss_coef: float = 0.0
    entropy_coef: float = 0.0


@dataclass(frozen=True)
class ValueLossSpec:
    """How the critic loss is formed: the value clip and the aggregation."""

    value_clip: float = 0.2
    aggregation: Aggregation = "row-mean"


def init_threads(n: int) -> int:
    """Give torch ``n`` CPU threads (0: its default count) in this process; returns the count.

    Every process that runs a worker or an engine calls it, the local one and each Ray actor,
    even when ``n`` is already the count: ``torch.set_num_threads`` does more than set the count
    (it also pins MKL's threads and turns its dynamic threading off), and some CPU kernels then
    sum in another order. On a Xeon with AMX the flash-attention backward gives other dK bits in
    a process that never called it, so the local and Ray backends drifted apart in the 8th digit.
    """
    n = n or torch.get_num_threads()
    torch.set_num_threads(n)
    return n


def make_optimizer(
    params: Any, s: OptimSpec
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW and a schedule: linear warm-up over ``warmup_steps`` optimiser steps, then constant."""
    opt = torch.optim.AdamW(params, lr=s.lr, betas=s.betas, weight_decay=s.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: warmup_multiplier(k, s.warmup_steps, s.warmup_from_zero)
    )
    return opt, sched


@dataclass
class PolicyOutput:
    """Per-token outputs of the policy at rollout time, aligned with ``input_ids`` (B, T)."""

    logprobs: torch.Tensor
    entropy: torch.Tensor


@dataclass
class PolicyStats:
    loss: float
    clip_frac: float
    approx_kl: float
    grad_norm: float
    lr: float
    kl_loss: float = 0.0
    entropy: float = 0.0
    # The engine's log-probs against this update's forward (``rollout_logprobs`` given): the
    # parts of ``core.losses.logprob_mismatch_sums`` (ranks sum them, the max is the max).
    mismatch_abs_sum: float = 0.0
    mismatch_kl_sum: float = 0.0
    mismatch_tokens: float = 0.0
    mismatch_abs_max: float = 0.0

    def mismatch_sums(self) -> dict[str, float]:
        return {
            k: getattr(self, f"mismatch_{k}") for k in ("abs_sum", "kl_sum", "tokens", "abs_max")
        }


@dataclass
class CriticStats:
    loss: float
    clip_frac: float
    grad_norm: float
    lr: float


@contextmanager
def configured_hyperparameters(optimizer, scheduler) -> Iterator[None]:
    """Loading saved optimiser and schedule states inside this block keeps their moments and
    step counts but the configured hyperparameters (lr, betas, weight decay), so that a resume
    may change them; unchanged, every number is the saved one."""
    groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    base_lrs = list(scheduler.base_lrs)
    yield
    scheduler.base_lrs = base_lrs
    lrs = [lr * f(scheduler.last_epoch) for lr, f in zip(base_lrs, scheduler.lr_lambdas)]
    for group, configured, lr in zip(optimizer.param_groups, groups, lrs):
        group.update(configured, lr=lr)
    scheduler._last_lr = lrs  # what get_last_lr() reports, as after the scheduler's own step


# Micro-batches of one optimiser step: (rows, loss weight); weight 0 marks a filler forward that
# a data-parallel rank runs only to keep FSDP's collectives in step.
WeightedMicroBatches = list[tuple[list[int], float]]
# A rank's micro-batches as (rows, real); real False marks a filler.
PaddedMicroBatches = list[tuple[list[int], bool]]


def split_rows(rows: list[int], world: int) -> list[list[int]]:
    """``rows`` in ``world`` contiguous blocks whose sizes differ by at most one."""
    q, r = divmod(len(rows), world)
    bounds = [k * q + min(k, r) for k in range(world + 1)]
    return [rows[bounds[k] : bounds[k + 1]] for k in range(world)]


def padded_micro_batches(
    parts: list[list[int]], rank: int, micro_rows: int, filler: int
) -> PaddedMicroBatches:
    """This rank's micro-batches as ``(rows, real)``, padded with ``([filler], False)`` to the
    largest count over ranks so that all ranks run the same number of forwards."""
    steps = max(math.ceil(len(p) / micro_rows) for p in parts)
    mine = parts[rank]
    out: PaddedMicroBatches = [
        (mine[i : i + micro_rows], True) for i in range(0, len(mine), micro_rows)
    ]
    return out + [([filler], False)] * (steps - len(out))


def accumulate_policy_grads(
    forward: Callable[[PackedBatch], torch.Tensor],
    batch: PackedBatch,
    micro: WeightedMicroBatches,
    advantages: torch.Tensor,
    old_logprobs: torch.Tensor | None,
    ref_logprobs: torch.Tensor | None,
    spec: PolicyLossSpec,
    rollout_logprobs: torch.Tensor | None = None,
) -> dict[str, float]:
    """Backpropagate ``sum(weight * loss(rows))`` over ``micro``; ``forward`` gives logits.

    The loss is the PPO clip loss aggregated over response tokens, plus ``kl_loss_coef`` times
    the k3 KL to ``ref_logprobs`` and minus ``entropy_coef`` times the entropy when those are on.
    ``old_logprobs`` None: the weights are those that sampled the batch (the first optimiser step
    after generation), so the old log-probs are this forward's own, detached: the same numbers
    as a separate no-grad forward, without running it.
    Returns the weighted sums of loss, clip_frac, approx_kl, kl_loss and entropy (the policy's
    token entropy, aggregated as the loss; fillers excluded), and, with ``rollout_logprobs``
    (the engine's), the ``mismatch_*`` sums of this forward's log-probs against them.
    """
    totals = dict.fromkeys(("loss", "clip_frac", "approx_kl", "kl_loss", "entropy"), 0.0)
    if rollout_logprobs is not None:
        totals |= dict.fromkeys(("mismatch_abs_sum", "mismatch_kl_sum", "mismatch_tokens"), 0.0)
        totals["mismatch_abs_max"] = 0.0
    for rows, weight in micro:
        sub = batch.rows(rows)
        logits = forward(sub)
        dev = logits.device
        mask, seg, how = sub.response_mask.to(dev), sub.segment_ids.to(dev), spec.aggregation
        lp = token_logprobs(logits, sub.input_ids.to(dev))
        old = lp.detach() if old_logprobs is None else old_logprobs[rows].to(dev)
        loss, m = policy_loss(
            lp, old, advantages[rows].to(dev), mask, spec.clip_eps, how, spec.clip_eps_high, seg
        )
        with torch.set_grad_enabled(spec.entropy_coef > 0):  # a metric unless it is a bonus
            ent = masked_mean(shift_right(entropy(logits)), mask, how, seg)
        if spec.entropy_coef > 0:
            loss = loss - spec.entropy_coef * ent
        kl = None
        if ref_logprobs is not None and spec.kl_loss_coef > 0:
            kl = masked_mean(kl_to_reference(lp, ref_logprobs[rows].to(dev)), mask, how, seg)
            loss = loss + spec.kl_loss_coef * kl
        (loss * weight).backward()
        if weight and rollout_logprobs is not None:
            part = logprob_mismatch_sums(lp.detach(), rollout_logprobs[rows].to(dev), mask)
            for key in ("abs_sum", "kl_sum", "tokens"):
                totals[f"mismatch_{key}"] += part[key]
            totals["mismatch_abs_max"] = max(totals["mismatch_abs_max"], part["abs_max"])
        if weight:
            totals["loss"] += float(loss.detach()) * weight
            totals["clip_frac"] += m["clip_frac"] * weight
            totals["approx_kl"] += m["approx_kl"] * weight
            totals["kl_loss"] += float(kl.detach()) * weight if kl is not None else 0.0
            totals["entropy"] += float(ent.detach()) * weight
    return totals


def accumulate_value_grads(
    values_of: Callable[[PackedBatch], torch.Tensor],
    batch: PackedBatch,
    micro: WeightedMicroBatches,
    returns: torch.Tensor,
    old_values: torch.Tensor,
    spec: ValueLossSpec,
) -> tuple[float, float]:
    """Backpropagate ``sum(weight * value_loss(rows))`` over ``micro``; ``values_of`` gives
    values aligned with ``input_ids``. Returns the weighted sums of loss and clip_frac."""
    loss_sum = clip_sum = 0.0
    for rows, weight in micro:
        sub = batch.rows(rows)
        values = values_of(sub)
        dev = values.device
        loss, m = value_loss(
            values, old_values[rows].to(dev), returns[rows].to(dev), sub.response_mask.to(dev),
            spec.value_clip, spec.aggregation, sub.segment_ids.to(dev),
        )  # fmt: skip
        (loss * weight).backward()
        if weight:
            loss_sum += float(loss.detach()) * weight
            clip_sum += m["clip_frac"] * weight
    return loss_sum, clip_sum


def mean_policy_stats(parts: list[dict[str, float]]) -> PolicyStats:
    """One ``PolicyStats`` for several optimiser steps: means, the first step's lr (and its
    mismatch sums: only a first step measures them)."""
    mean = {k: sum(p[k] for p in parts) / len(parts) for k in parts[0]}
    first = {k: v for k, v in parts[0].items() if k.startswith("mismatch_")}
    return PolicyStats(**{**mean, **first, "lr": parts[0]["lr"]})


class _Worker:
    """What policy and critic workers share: the model, optimiser, schedule and checkpoints."""

    def __init__(self, model: nn.Module, spec: WorkerSpec, rank: int = 0) -> None:
        self.model = model
        self.spec = spec
        self.rank = rank
        self.sharded = fsdp.uses_fsdp(spec.world, spec.device)
        self.optimizer, self.scheduler = make_optimizer(model.parameters(), spec.optim)

    def _rank_micro_batches(self, n: int) -> PaddedMicroBatches:
        parts = split_rows(list(range(n)), self.spec.world)
        return padded_micro_batches(parts, self.rank, self.spec.micro_rows, filler=0)

    def _minibatches(
        self, batch: PackedBatch, tensors: list[torch.Tensor | None], seed: int
    ) -> Iterator[tuple[PackedBatch, list[torch.Tensor | None]]]:
        """The step's mini-batches, one per optimiser step, with ``tensors`` (B, T) moved along.

        One step: the batch as it is. More: its samples cut by ``sample_minibatches`` (seeded)
        and each part packed anew (``repack``), so every sample is trained on once per pass
        whatever the number of rows. Every rank cuts and packs alike, then takes its rows.
        """
        if self.spec.steps == 1:
            yield batch, tensors
            return
        present = [t for t in tensors if t is not None]
        ids = sorted(i for row in batch.sample_index for i in row)
        for part in sample_minibatches(len(ids), self.spec.steps, seed):
            sub, moved = repack(batch, [ids[k] for k in part], present)
            it = iter(moved)
            yield sub, [None if t is None else next(it) for t in tensors]

    def _weighted_micro_batches(self, mb: PackedBatch, how: Aggregation) -> WeightedMicroBatches:
        """This rank's micro-batches of the mini-batch ``mb`` with their loss weights: their share
        of its units under ``how`` (tokens, samples or rows: ``aggregation_units``), so that the
        weighted sum of micro-batch losses, over all ranks, is the mini-batch's loss; 0 for a
        filler."""
        total = max(aggregation_units(mb.response_mask, mb.segment_ids, how), 1)
        parts = split_rows(list(range(mb.num_rows)), self.spec.world)
        micro = padded_micro_batches(parts, self.rank, self.spec.micro_rows, 0)

        def share(rows: list[int]) -> float:
            sub = mb.rows(rows)
            return aggregation_units(sub.response_mask, sub.segment_ids, how) / total

        return [(rows, share(rows) if real else 0.0) for rows, real in micro]

    def _optimiser_step(self) -> tuple[float, float]:
        """Clip the gradients, step the optimiser and schedule; the norm before clipping and
        the learning rate the step used."""
        norm = fsdp.grad_norm(self.model, self.spec.optim.grad_clip)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        return norm, lr

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """All weights on rank 0 (empty elsewhere); every rank must call it."""
        return fsdp.full_state_dict(self.model, self.sharded)

    def save(self, directory: str | Path) -> None:
        """Hugging Face weights (the critic: backbone + value head) and ``optimizer.pt``,
        written by rank 0; every rank must call it."""
        state = self.full_state_dict()
        for name in fsdp.tied_aliases(self.model):
            state.pop(name, None)
        optim = fsdp.optimizer_state(self.model, self.optimizer, self.sharded)
        if fsdp.is_rank0():
            out = fsdp.ensure_dir(directory)
            self.model.save_pretrained(out, state_dict=state)
            payload = {"optimizer": optim, "scheduler": self.scheduler.state_dict()}
            torch.save(payload, out / OPTIM_FILE)

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
        """Free the device for the engines (colocation)."""
        fsdp.to_device(self.model, self.optimizer, "cpu")

    def reload(self) -> None:
        fsdp.to_device(self.model, self.optimizer, self.spec.device)


class PolicyWorker(_Worker):
    """Holds the policy (one rank of it); one ``train`` call = exactly ``steps`` optimiser steps
    (ORZ: 1)."""

    def __init__(
        self,
        model: nn.Module,
        spec: WorkerSpec,
        loss: PolicyLossSpec = PolicyLossSpec(),
        rank: int = 0,
    ) -> None:
        super().__init__(model, spec, rank)
        self.loss = loss

    def _forward(self, batch: PackedBatch) -> torch.Tensor:
        # attention_mask=None + restarting position ids: transformers isolates packed samples.
        device = self.spec.device
        return self.model(
            input_ids=batch.input_ids.to(device),
            position_ids=batch.position_ids.to(device),
            use_cache=False,
        ).logits

    @torch.no_grad()
    def logprobs(self, batch: PackedBatch) -> PolicyOutput:
        """Log-probabilities and entropies of every token of this rank's rows (in row order)
        under the current policy, each (B_rank, T); B_rank = B in a world of one."""
        self.model.eval()
        lps, ents = [], []
        for rows, real in self._rank_micro_batches(batch.num_rows):
            sub = batch.rows(rows)
            logits = self._forward(sub)
            if real:
                lps.append(token_logprobs(logits, sub.input_ids.to(logits.device)).cpu())
                ents.append(shift_right(entropy(logits)).cpu())
        empty = torch.zeros(0, batch.input_ids.shape[1])
        return PolicyOutput(torch.cat(lps) if lps else empty, torch.cat(ents) if ents else empty)

    def train(
        self,
        batch: PackedBatch,
        advantages: torch.Tensor,
        old_logprobs: torch.Tensor | None,
        ref_logprobs: torch.Tensor | None = None,
        seed: int = 0,
        rollout_logprobs: torch.Tensor | None = None,
    ) -> PolicyStats:
        """``steps`` optimiser steps over ``minibatches`` of the rows (ORZ: one over the whole
        batch), gradients accumulated over micro-batches of ``micro_rows`` rows.

        The loss is ``aggregation`` over response tokens (ORZ: each row's token mean, averaged over
        rows), plus the KL-loss and entropy ablation terms when on (``accumulate_policy_grads``).
        ``old_logprobs`` may be None only when ``steps`` is 1 (strictly on-policy); then
        ``rollout_logprobs`` (the engine's, (B, T)) are measured against this very forward, in
        the returned ``mismatch_*`` sums, with no forward of their own. Returned loss,
        clip_frac, approx_kl, kl_loss and entropy are this rank's parts of the batch means (a
        group sums them); grad_norm and lr are global.
        """
        if old_logprobs is None and self.spec.steps > 1:
            raise ValueError("old_logprobs are needed for more than one policy step")
        if rollout_logprobs is not None and old_logprobs is not None:
            raise ValueError("rollout_logprobs are compared with this update's own forward only")
        self.model.train()
        parts = []
        tensors = [advantages, old_logprobs, ref_logprobs, rollout_logprobs]
        for mb, (adv, old, ref, roll) in self._minibatches(batch, tensors, seed):
            self.optimizer.zero_grad(set_to_none=True)
            totals = accumulate_policy_grads(
                self._forward, mb, self._weighted_micro_batches(mb, self.loss.aggregation),
                adv, old, ref, self.loss, roll,  # type: ignore[arg-type]
            )  # fmt: skip
            norm, lr = self._optimiser_step()
            parts.append({**totals, "grad_norm": norm, "lr": lr})
        return mean_policy_stats(parts)

    def weights(self, dtype: str | None = None) -> dict[str, torch.Tensor]:
        """The full weights under their Hugging Face names, in ``dtype`` (None: as held), for
        the rollout engines' ``load_weights``: on rank 0 (empty elsewhere); every rank must call
        it. In a world of one on CPU the tensors are the model's own (no copy)."""
        state = self.full_state_dict()
        if dtype is None:
            return state
        return {k: v.to(DTYPES[dtype]) if v.is_floating_point() else v for k, v in state.items()}


class CriticWorker(_Worker):
    """Holds the critic (one rank of it); one ``train`` call = ``steps`` mini-batch optimiser
    steps (ORZ: 12)."""

    def __init__(
        self,
        model: nn.Module,
        spec: WorkerSpec,
        loss: ValueLossSpec = ValueLossSpec(),
        rank: int = 0,
    ) -> None:
        super().__init__(model, spec, rank)
        self.loss = loss

    def _values(self, batch: PackedBatch) -> torch.Tensor:
        device = self.spec.device
        out = self.model(batch.input_ids.to(device), batch.position_ids.to(device))
        return shift_right(out)

    @torch.no_grad()
    def values(self, batch: PackedBatch) -> torch.Tensor:
        """The critic's value before each token of this rank's rows (in row order), aligned
        with ``input_ids``: (B_rank, T)."""
        self.model.eval()
        parts = []
        for rows, real in self._rank_micro_batches(batch.num_rows):
            values = self._values(batch.rows(rows))
            if real:
                parts.append(values.cpu())
        return torch.cat(parts) if parts else torch.zeros(0, batch.input_ids.shape[1])

    def train(
        self, batch: PackedBatch, returns: torch.Tensor, old_values: torch.Tensor, seed: int
    ) -> CriticStats:
        """``steps`` optimiser steps, one per mini-batch of the samples (``_minibatches``;
        ``seed`` fixes the cut). Returned loss and clip_frac are this rank's parts of the means
        over the steps (a group sums them); grad_norm is their mean, lr the last step's."""
        self.model.train()
        losses, clips, norms, lrs = [], [], [], []
        for mb, (ret, old) in self._minibatches(batch, [returns, old_values], seed):
            self.optimizer.zero_grad(set_to_none=True)
            micro = self._weighted_micro_batches(mb, self.loss.aggregation)
            loss, clip = accumulate_value_grads(
                self._values,
                mb,
                micro,
                ret,
                old,
                self.loss,  # type: ignore[arg-type]
            )
            losses.append(loss)
            clips.append(clip)
            norm, lr = self._optimiser_step()
            norms.append(norm)
            lrs.append(lr)
        n = len(losses)
        return CriticStats(
            loss=sum(losses) / n, clip_frac=sum(clips) / n, grad_norm=sum(norms) / n, lr=lrs[-1]
        )
