"""PPO losses. Shape legend: B batch (rows), T tokens; ``mask`` is 1 on response tokens;
``segment_ids`` (B, T) number the samples within each row (``zerorl.types.PackedBatch``).

Every loss aggregates with ``masked_mean`` over *units*: response tokens (``token-mean``), samples
(``seq-mean-token-mean``: each sample's token mean; ``seq-mean-token-sum``: each sample's token
sum) or packed rows (``row-mean``, each row's token mean: with one packed row per micro-batch
exactly ORZ's "token mean within a packed sequence, averaged over the packed sequences"). A step
split into micro-batches (and ranks) weights each part by its share of the step's units
(:func:`aggregation_units`), which gives the loss and gradients of one big batch.
"""

from __future__ import annotations

from typing import Literal

import torch

Aggregation = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "row-mean"]
AGGREGATIONS: tuple[Aggregation, ...] = (
    "token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "row-mean",
)  # fmt: skip


def _per_sample(x: torch.Tensor, mask: torch.Tensor, segment_ids: torch.Tensor):
    """Masked sums and token counts of each sample (a row's segment), samples with tokens only."""
    B, T = x.shape
    key = (torch.arange(B, device=x.device)[:, None] * (T + 1) + segment_ids).flatten()
    m = mask.to(x.dtype).flatten()
    sums = x.new_zeros(B * (T + 1)).index_add(0, key, x.flatten() * m)
    counts = x.new_zeros(B * (T + 1)).index_add(0, key, m)
    has = counts > 0
    return sums[has], counts[has]


def aggregation_units(
    mask: torch.Tensor, segment_ids: torch.Tensor | None, how: Aggregation
) -> int:
    """How many units ``how`` averages over in (B, T): response tokens (``token-mean``), samples
    with a response token (the ``seq-mean-*`` forms) or rows with one (``row-mean``). Summed over a
    step's micro-batches (and ranks) it is the denominator of :func:`aggregate_sum`."""
    if how == "token-mean":
        return int((mask > 0).sum())
    if how == "row-mean":
        return int(((mask > 0).sum(-1) > 0).sum())
    if segment_ids is None:
        raise ValueError(f"{how} needs segment_ids")
    _, counts = _per_sample(mask.float(), mask, segment_ids)
    return int(counts.numel())


def aggregate_sum(
    x: torch.Tensor, mask: torch.Tensor, segment_ids: torch.Tensor | None, how: Aggregation
) -> torch.Tensor:
    """The sum over units of each unit's value of ``x`` (B, T), for a loss aggregated over a whole
    step: ``sum over micro-batches of aggregate_sum(mb) / step_units`` (``step_units`` the sum of
    :func:`aggregation_units` over the step) equals the aggregate of one big batch, and so do its
    gradients, however the step is split. A unit's value is its token sum for ``token-mean`` and
    ``seq-mean-token-sum``, its token mean for ``seq-mean-token-mean`` and ``row-mean``."""
    if how == "token-mean":
        return (x * mask.to(x.dtype)).sum()
    if how == "row-mean":
        m = mask.to(x.dtype)
        per_row = m.sum(-1)
        return ((x * m).sum(-1) / per_row.clamp(min=1.0)).sum()
    if segment_ids is None:
        raise ValueError(f"{how} needs segment_ids")
    sums, counts = _per_sample(x, mask, segment_ids)
    return sums.sum() if how == "seq-mean-token-sum" else (sums / counts).sum()


def masked_mean(
    x: torch.Tensor,
    mask: torch.Tensor,
    how: Aggregation = "token-mean",
    segment_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """``how``'s aggregate of ``x`` (B, T) over masked tokens: the mean over units of each unit's
    value (:func:`aggregate_sum`); units without a masked token are skipped. The ``seq-mean-*``
    forms need ``segment_ids``."""
    mask = mask.to(x.dtype)
    if how == "token-mean":
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    if how == "row-mean":
        per_row = mask.sum(-1)
        row_means = (x * mask).sum(-1) / per_row.clamp(min=1.0)
        has_tokens = (per_row > 0).to(x.dtype)
        return (row_means * has_tokens).sum() / has_tokens.sum().clamp(min=1.0)
    units = aggregation_units(mask, segment_ids, how)
    return aggregate_sum(x, mask, segment_ids, how) / max(units, 1)


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float,
    how: Aggregation = "token-mean",
    clip_eps_high: float | None = None,
    segment_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO clipped surrogate ``-min(r A, clip(r, 1-ε, 1+ε_high) A)``, aggregated over masked
    tokens; ``ε_high`` is ``clip_eps`` unless given (DAPO's clip-higher raises it alone).

    Metrics: ``clip_frac`` (share of tokens where the clipped branch is taken) and ``approx_kl``
    (the k3 estimator ``(r - 1) - log r`` of KL(old || new)).
    """
    log_ratio = logprobs - old_logprobs
    ratio = log_ratio.exp()
    unclipped = -advantages * ratio
    high = clip_eps if clip_eps_high is None else clip_eps_high
    clipped = -advantages * ratio.clamp(1.0 - clip_eps, 1.0 + high)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask, how, segment_ids)
    with torch.no_grad():
        clip_frac = masked_mean((clipped > unclipped).to(logprobs.dtype), mask)
        approx_kl = masked_mean((ratio - 1.0) - log_ratio, mask)
    return loss, {"clip_frac": float(clip_frac), "approx_kl": float(approx_kl)}


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
    how: Aggregation = "token-mean",
    segment_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped value loss ``0.5 * max((V - R)^2, (V_clip - R)^2)`` with
    ``V_clip = V_old + clip(V - V_old, -clip, clip)``, aggregated over masked tokens.

    Metrics: ``clip_frac`` (share of tokens where the clipped error is the larger one).
    """
    clipped_values = old_values + (values - old_values).clamp(-clip, clip)
    err = (values - returns) ** 2
    err_clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(err, err_clipped), mask, how, segment_ids)
    with torch.no_grad():
        clip_frac = masked_mean((err_clipped > err).to(values.dtype), mask)
    return loss, {"clip_frac": float(clip_frac)}


def kl_to_reference(
    logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: Literal["k1", "k3"] = "k3"
) -> torch.Tensor:
    """Per-token KL(new || ref) estimate, (B, T): ``k1 = log p - log q`` or the unbiased,
    non-negative ``k3 = exp(q - p) - (q - p) - 1``. Used only by the KL ablations."""
    diff = ref_logprobs - logprobs
    if kind == "k1":
        return -diff
    return diff.exp() - diff - 1.0


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """``1 - Var(R - V) / Var(R)`` over masked tokens (1 is a perfect critic, 0 a constant one)."""
    valid = mask > 0
    r, v = returns[valid].double(), values[valid].double()
    if r.numel() < 2:
        return 0.0
    var_r = r.var(correction=0)
    if var_r <= 0:
        return 0.0
    return float(1.0 - (r - v).var(correction=0) / var_r)


def logprob_mismatch_sums(
    logprobs: torch.Tensor, rollout_logprobs: torch.Tensor, mask: torch.Tensor
) -> dict[str, float]:
    """The parts of :func:`logprob_mismatch` that add up across micro-batches and ranks:
    ``abs_sum`` and ``kl_sum`` over the masked tokens, their count ``tokens``, and ``abs_max``."""
    valid = mask > 0
    lp, roll = logprobs[valid].double(), rollout_logprobs[valid].double()
    gap = (lp - roll).abs()
    kl = kl_to_reference(roll, lp, "k3")
    return {
        "abs_sum": float(gap.sum()),
        "kl_sum": float(kl.sum()),
        "tokens": float(valid.sum()),
        "abs_max": float(gap.max()) if gap.numel() else 0.0,
    }


def logprob_mismatch(
    logprobs: torch.Tensor, rollout_logprobs: torch.Tensor, mask: torch.Tensor
) -> dict[str, float]:
    """How far the engine's log-probs of its sampled tokens are from the trainer's own forward.

    All (B, T), compared where ``mask`` is 1. ``logprob_abs_mean``/``logprob_abs_max``: mean and
    max of ``|logprobs - rollout_logprobs|`` over tokens; ``kl``: the k3 estimate of
    KL(rollout || trainer) per token (the tokens were drawn by the engine), averaged over tokens.
    Equal numerics (same weights, precision and kernels) give 0 for all three.
    """
    return mismatch_from_sums(logprob_mismatch_sums(logprobs, rollout_logprobs, mask))


def mismatch_from_sums(sums: dict[str, float]) -> dict[str, float]:
    """:func:`logprob_mismatch`'s metrics from (summed) :func:`logprob_mismatch_sums`."""
    n = max(sums["tokens"], 1.0)
    return {
        "logprob_abs_mean": sums["abs_sum"] / n,
        "logprob_abs_max": sums["abs_max"],
        "kl": sums["kl_sum"] / n,
    }


def truncated_is_weights(
    logprobs: torch.Tensor, rollout_logprobs: torch.Tensor, mask: torch.Tensor, cap: float
) -> torch.Tensor:
    """Truncated importance-sampling weights ``min(π_train / π_rollout, cap)`` per token, (B, T);
    1 where ``mask`` is 0. ``logprobs`` are the trainer's log-probs of the tokens before the
    update, ``rollout_logprobs`` the engine's.

    They correct PPO for sampling from an engine whose numbers differ from the trainer's: every
    token's clipped surrogate is multiplied by its (detached) weight. A positive per-token weight
    commutes with PPO's ``max(-A r, -A clip(r))``, so multiplying the advantages by it is the same.
    """
    ratio = (logprobs - rollout_logprobs).exp().clamp(max=cap)
    return torch.where(mask > 0, ratio, torch.ones_like(ratio)).detach()
