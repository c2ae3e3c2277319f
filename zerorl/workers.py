"""Policy and critic workers: a model, its optimiser and schedule; log-probs, values, training.

Workers take and return typed records (``PackedBatch`` in; tensors and ``*Stats`` out), so the
trainer drives a local worker and a Ray actor group the same way.
Shape legend: B batch (rows), T tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from zerorl.core.logprobs import entropy, shift_right, token_logprobs
from zerorl.core.losses import Aggregation, kl_to_reference, masked_mean, policy_loss, value_loss
from zerorl.models import Critic
from zerorl.types import PackedBatch

OPTIM_FILE = "optimizer.pt"


@dataclass(frozen=True)
class OptimSettings:
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


def make_optimizer(
    params: Any, s: OptimSettings
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


@dataclass
class CriticStats:
    loss: float
    clip_frac: float
    grad_norm: float
    lr: float


def _save_optim(directory: Path, optimizer, scheduler) -> None:
    state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
    torch.save(state, Path(directory) / OPTIM_FILE)


def _load_optim(directory: Path, optimizer, scheduler) -> None:
    state = torch.load(Path(directory) / OPTIM_FILE, weights_only=False)  # our own file
    with configured_hyperparameters(optimizer, scheduler):
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])


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


def _micro_batches(rows: list[int], size: int) -> list[list[int]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


# Micro-batches of one optimiser step: (rows, loss weight); weight 0 marks a filler forward that
# a data-parallel rank runs only to keep FSDP's collectives in step (``distributed.sharded``).
Plan = list[tuple[list[int], float]]


@dataclass(frozen=True)
class PolicyLoss:
    """How the policy loss is formed: PPO clip, its aggregation, and the (off) ablation terms."""

    clip_eps: float = 0.2
    aggregation: Aggregation = "row-mean"
    kl_loss_coef: float = 0.0
    entropy_coef: float = 0.0


def accumulate_policy_grads(
    forward: Callable[[PackedBatch], torch.Tensor],
    batch: PackedBatch,
    plan: Plan,
    advantages: torch.Tensor,
    old_logprobs: torch.Tensor | None,
    ref_logprobs: torch.Tensor | None,
    spec: PolicyLoss,
) -> dict[str, float]:
    """Backpropagate ``sum(weight * loss(rows))`` over ``plan``; ``forward`` gives logits.

    The loss is the PPO clip loss aggregated over response tokens, plus ``kl_loss_coef`` times
    the k3 KL to ``ref_logprobs`` and minus ``entropy_coef`` times the entropy when those are on.
    ``old_logprobs`` None: the weights are those that sampled the batch (the first optimiser step
    after generation), so the old log-probs are this forward's own, detached: the same numbers
    as a separate no-grad forward, without running it.
    Returns the weighted sums of loss, clip_frac, approx_kl, kl_loss and entropy (the policy's
    token entropy, aggregated as the loss; fillers excluded). Shared by the local worker and the
    sharded ranks, so the two compute the same floats.
    """
    totals = dict.fromkeys(("loss", "clip_frac", "approx_kl", "kl_loss", "entropy"), 0.0)
    for rows, weight in plan:
        sub = batch.rows(rows)
        logits = forward(sub)
        dev = logits.device
        mask = sub.response_mask.to(dev)
        lp = token_logprobs(logits, sub.input_ids.to(dev))
        old = lp.detach() if old_logprobs is None else old_logprobs[rows].to(dev)
        loss, m = policy_loss(
            lp, old, advantages[rows].to(dev), mask, spec.clip_eps, spec.aggregation
        )
        with torch.set_grad_enabled(spec.entropy_coef > 0):  # a metric unless it is a bonus
            ent = masked_mean(shift_right(entropy(logits)), mask, spec.aggregation)
        if spec.entropy_coef > 0:
            loss = loss - spec.entropy_coef * ent
        kl = None
        if ref_logprobs is not None and spec.kl_loss_coef > 0:
            kl = masked_mean(
                kl_to_reference(lp, ref_logprobs[rows].to(dev)), mask, spec.aggregation
            )
            loss = loss + spec.kl_loss_coef * kl
        (loss * weight).backward()
        if weight:
            totals["loss"] += float(loss.detach()) * weight
            totals["clip_frac"] += m["clip_frac"] * weight
            totals["approx_kl"] += m["approx_kl"] * weight
            totals["kl_loss"] += float(kl) * weight if kl is not None else 0.0
            totals["entropy"] += float(ent.detach()) * weight
    return totals


def minibatches(n_rows: int, steps: int, seed: int) -> list[list[int]]:
    """The rows of each of ``steps`` mini-batches (one optimiser step each).

    One step: the whole batch, in order. More: a pass over the batch shuffles the rows (seeded)
    into ``min(steps, n_rows)`` mini-batches; with fewer rows than steps, a new pass (new
    shuffle) follows. ORZ's 12 critic steps are one pass: give the batch at least 12 rows
    (``train.pack_length``) to match it.
    """
    if steps == 1:
        return [list(range(n_rows))]
    g = torch.Generator().manual_seed(seed)
    out: list[list[int]] = []
    while len(out) < steps:
        perm = torch.randperm(n_rows, generator=g).tolist()
        k = min(steps, n_rows)
        out.extend(perm[i::k] for i in range(k))
    return out[:steps]


def accumulate_value_grads(
    values_of: Callable[[PackedBatch], torch.Tensor],
    batch: PackedBatch,
    plan: Plan,
    returns: torch.Tensor,
    old_values: torch.Tensor,
    value_clip: float,
    aggregation: Aggregation,
) -> tuple[float, float]:
    """Backpropagate ``sum(weight * value_loss(rows))`` over ``plan``; ``values_of`` gives
    values aligned with ``input_ids``. Returns the weighted sums of loss and clip_frac."""
    loss_sum = clip_sum = 0.0
    for rows, weight in plan:
        sub = batch.rows(rows)
        values = values_of(sub)
        dev = values.device
        loss, m = value_loss(
            values, old_values[rows].to(dev), returns[rows].to(dev),
            sub.response_mask.to(dev), value_clip, aggregation,
        )  # fmt: skip
        (loss * weight).backward()
        if weight:
            loss_sum += float(loss.detach()) * weight
            clip_sum += m["clip_frac"] * weight
    return loss_sum, clip_sum


def mean_policy_stats(parts: list[dict[str, float]]) -> PolicyStats:
    """One ``PolicyStats`` for several optimiser steps: means, and the first step's lr."""
    mean = {k: sum(p[k] for p in parts) / len(parts) for k in parts[0]}
    return PolicyStats(**{**mean, "lr": parts[0]["lr"]})


class PolicyWorker:
    """Holds the policy; one ``train`` call = exactly ``steps`` optimiser steps (ORZ: 1)."""

    def __init__(
        self,
        model: PreTrainedModel,
        optim: OptimSettings,
        clip_eps: float = 0.2,
        micro_rows: int = 1,
        aggregation: Aggregation = "row-mean",
        kl_loss_coef: float = 0.0,
        entropy_coef: float = 0.0,
        steps: int = 1,
    ) -> None:
        self.model = model
        self.settings = optim
        self.optimizer, self.scheduler = make_optimizer(model.parameters(), optim)
        self.micro_rows = micro_rows
        self.loss_spec = PolicyLoss(clip_eps, aggregation, kl_loss_coef, entropy_coef)
        self.steps = steps

    def _forward(self, batch: PackedBatch) -> torch.Tensor:
        # attention_mask=None + restarting position ids: transformers isolates packed samples.
        dev = self.model.device
        return self.model(
            input_ids=batch.input_ids.to(dev), position_ids=batch.position_ids.to(dev),
            use_cache=False,
        ).logits  # fmt: skip

    @torch.no_grad()
    def logprobs(self, batch: PackedBatch) -> PolicyOutput:
        """Log-probabilities and entropies of every token under the current policy, (B, T)."""
        self.model.eval()
        lps, ents = [], []
        for rows in _micro_batches(list(range(batch.num_rows)), self.micro_rows):
            sub = batch.rows(rows)
            logits = self._forward(sub)
            lps.append(token_logprobs(logits, sub.input_ids.to(logits.device)).cpu())
            ents.append(shift_right(entropy(logits)).cpu())
        return PolicyOutput(torch.cat(lps), torch.cat(ents))

    def train(
        self,
        batch: PackedBatch,
        advantages: torch.Tensor,
        old_logprobs: torch.Tensor | None,
        ref_logprobs: torch.Tensor | None = None,
        seed: int = 0,
    ) -> PolicyStats:
        """``steps`` optimiser steps over ``minibatches`` of the rows (ORZ: one over the whole
        batch), gradients accumulated over micro-batches of ``micro_rows`` rows.

        The loss is ``aggregation`` over response tokens (ORZ: each row's token mean, averaged over
        rows), plus the KL-loss and entropy ablation terms when on (``accumulate_policy_grads``).
        ``old_logprobs`` may be None only when ``steps`` is 1 (strictly on-policy).
        """
        if old_logprobs is None and self.steps > 1:
            raise ValueError("old_logprobs are needed for more than one policy step")
        self.model.train()
        parts = []
        for minibatch in minibatches(batch.num_rows, self.steps, seed):
            self.optimizer.zero_grad(set_to_none=True)
            # weight = the rows' share: a mean over rows == ORZ's average over packed sequences
            micro = _micro_batches(minibatch, self.micro_rows)
            plan = [(r, len(r) / len(minibatch)) for r in micro]
            totals = accumulate_policy_grads(
                self._forward, batch, plan, advantages, old_logprobs, ref_logprobs, self.loss_spec
            )
            norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
            lr = self.scheduler.get_last_lr()[0]
            parts.append({**totals, "grad_norm": float(norm), "lr": lr})
            self.optimizer.step()
            self.scheduler.step()
        return mean_policy_stats(parts)

    def save(self, directory: Path) -> None:
        """Weights in Hugging Face format plus the optimiser and schedule state."""
        self.model.save_pretrained(directory)
        _save_optim(directory, self.optimizer, self.scheduler)

    def load_optim(self, directory: Path) -> None:
        _load_optim(directory, self.optimizer, self.scheduler)


class CriticWorker:
    """Holds the critic; one ``train`` call = ``steps`` mini-batch optimiser steps (ORZ: 12)."""

    def __init__(
        self,
        critic: Critic,
        optim: OptimSettings,
        value_clip: float = 0.2,
        steps: int = 12,
        micro_rows: int = 1,
        aggregation: Aggregation = "row-mean",
    ) -> None:
        self.critic = critic
        self.settings = optim
        self.optimizer, self.scheduler = make_optimizer(critic.parameters(), optim)
        self.value_clip = value_clip
        self.steps = steps
        self.micro_rows = micro_rows
        self.aggregation: Aggregation = aggregation

    def _values(self, batch: PackedBatch) -> torch.Tensor:
        dev = self.critic.value_head.weight.device
        return shift_right(self.critic(batch.input_ids.to(dev), batch.position_ids.to(dev)))

    @torch.no_grad()
    def values(self, batch: PackedBatch) -> torch.Tensor:
        """The critic's value before each token, aligned with ``input_ids``: (B, T)."""
        self.critic.eval()
        parts = [
            self._values(batch.rows(rows)).cpu()
            for rows in _micro_batches(list(range(batch.num_rows)), self.micro_rows)
        ]
        return torch.cat(parts)

    def train(
        self, batch: PackedBatch, returns: torch.Tensor, old_values: torch.Tensor, seed: int
    ) -> CriticStats:
        """``steps`` optimiser steps over the mini-batches of ``critic_minibatches`` (``seed``
        fixes the shuffles)."""
        self.critic.train()
        losses, clips, norms, lrs = [], [], [], []
        for minibatch in minibatches(batch.num_rows, self.steps, seed):
            self.optimizer.zero_grad(set_to_none=True)
            plan = [
                (r, len(r) / len(minibatch)) for r in _micro_batches(minibatch, self.micro_rows)
            ]
            loss, clip = accumulate_value_grads(
                self._values, batch, plan, returns, old_values, self.value_clip, self.aggregation
            )
            losses.append(loss / self.steps)
            clips.append(clip / self.steps)
            norms.append(
                float(nn.utils.clip_grad_norm_(self.critic.parameters(), self.settings.grad_clip))
            )
            lrs.append(self.scheduler.get_last_lr()[0])
            self.optimizer.step()
            self.scheduler.step()
        return CriticStats(
            loss=sum(losses), clip_frac=sum(clips), grad_norm=sum(norms) / len(norms), lr=lrs[-1]
        )

    def save(self, directory: Path) -> None:
        """Backbone + value head (see ``Critic.save_pretrained``) plus optimiser and schedule."""
        self.critic.save_pretrained(directory)
        _save_optim(directory, self.optimizer, self.scheduler)

    def load_optim(self, directory: Path) -> None:
        _load_optim(directory, self.optimizer, self.scheduler)
