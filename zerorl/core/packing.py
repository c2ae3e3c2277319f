"""Sample packing: many prompt+response samples laid end to end in a few rows.

Shape legend: B batch (rows), T tokens. See ``zerorl.types.PackedBatch`` for the layout; position
ids restart at 0 for every sample so that attention (transformers detects packed sequences from
position ids) and GAE (``packed_gae`` on ``segment_ids``) both stop at sample boundaries.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Literal

import torch

from zerorl.types import PackedBatch

Packing = Literal["next-fit", "first-fit-decreasing"]


def shuffled_order(n: int, seed: int) -> list[int]:
    """ORZ's sample order: ``random.Random(seed).shuffle`` of 0..n-1 (ORZ: seed 42, every step)."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order


def _check_fits(lengths: Sequence[int], pack_length: int) -> None:
    for i, n in enumerate(lengths):
        if n > pack_length:
            raise ValueError(f"sample {i} has {n} tokens > pack_length {pack_length}")


def next_fit_rows(
    lengths: Sequence[int], pack_length: int, order: Sequence[int]
) -> list[list[int]]:
    """Fill rows in ``order``: a sample that does not fit in the current row starts the next.

    ORZ's ``_convert_prompts_outputs_to_batch_tensors_packing``. Within a row, samples keep
    ``order``. Raises ``ValueError`` if a sample is longer than ``pack_length``.
    """
    _check_fits(lengths, pack_length)
    rows: list[list[int]] = []
    room = 0
    for i in order:
        if not rows or lengths[i] > room:
            rows.append([])
            room = pack_length
        rows[-1].append(i)
        room -= lengths[i]
    return rows


def first_fit_decreasing_rows(lengths: Sequence[int], pack_length: int) -> list[list[int]]:
    """Assign samples to rows of at most ``pack_length`` tokens by first-fit decreasing.

    Deterministic (ties keep input order); within a row, samples keep ascending index order.
    Raises ``ValueError`` if a sample is longer than ``pack_length``.
    """
    _check_fits(lengths, pack_length)
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []
    free: list[int] = []
    for i in order:
        for r, room in enumerate(free):
            if lengths[i] <= room:
                rows[r].append(i)
                free[r] -= lengths[i]
                break
        else:
            rows.append([i])
            free.append(pack_length - lengths[i])
    return [sorted(r) for r in rows]


def pack_rows(
    lengths: Sequence[int],
    pack_length: int,
    packing: Packing = "first-fit-decreasing",
    seed: int = 42,
) -> list[list[int]]:
    """Sample indices per row: ORZ's next-fit in ``shuffled_order(n, seed)``, or first-fit
    decreasing (fewer rows, less padding; different rows, so different per-row loss weights)."""
    if packing == "next-fit":
        return next_fit_rows(lengths, pack_length, shuffled_order(len(lengths), seed))
    return first_fit_decreasing_rows(lengths, pack_length)


def pack(
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    rewards: Sequence[float],
    pack_length: int,
    pad_id: int = 0,
    packing: Packing = "first-fit-decreasing",
    seed: int = 42,
) -> PackedBatch:
    """Pack sample i = ``prompts[i] + responses[i]`` into rows; reward i sits on its last token.

    Rows are planned by :func:`pack_rows` (``packing``, ``seed``).

    Rows are trimmed to the longest one (at most ``pack_length``); the tail of shorter rows is
    padding with its own position ids (0, 1, ...) and ``segment_ids`` 0.
    """
    lengths = [len(p) + len(r) for p, r in zip(prompts, responses, strict=True)]
    rows = pack_rows(lengths, pack_length, packing, seed)
    T = max(sum(lengths[i] for i in row) for row in rows) if rows else 0
    B = len(rows)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    position_ids = torch.zeros((B, T), dtype=torch.long)
    segment_ids = torch.zeros((B, T), dtype=torch.long)
    response_mask = torch.zeros((B, T))
    token_rewards = torch.zeros((B, T))
    bounds: list[list[tuple[int, int]]] = []
    for b, row in enumerate(rows):
        start, row_bounds = 0, []
        for k, i in enumerate(row):
            n_prompt, end = len(prompts[i]), start + lengths[i]
            input_ids[b, start:end] = torch.tensor([*prompts[i], *responses[i]], dtype=torch.long)
            position_ids[b, start:end] = torch.arange(lengths[i])
            segment_ids[b, start:end] = k + 1
            response_mask[b, start + n_prompt : end] = 1.0
            if len(responses[i]) > 0:
                token_rewards[b, end - 1] = float(rewards[i])
            row_bounds.append((start, end))
            start = end
        position_ids[b, start:] = torch.arange(T - start)
        bounds.append(row_bounds)
    return PackedBatch(
        input_ids=input_ids,
        position_ids=position_ids,
        attention_mask=(segment_ids > 0).long(),
        segment_ids=segment_ids,
        response_mask=response_mask,
        token_rewards=token_rewards,
        sample_bounds=bounds,
        sample_index=rows,
    )


def sample_minibatches(n_samples: int, steps: int, seed: int) -> list[list[int]]:
    """The samples of each of a step's mini-batches (one optimiser step each).

    One step: every sample, in order. More: the samples shuffled (seeded) and cut into
    ``min(steps, n_samples)`` contiguous parts whose sizes differ by at most one, so every sample
    is used exactly once per pass whatever the row count (ORZ cuts *rows* instead and leaves
    ``rows % steps`` of them out).
    """
    if steps == 1:
        return [list(range(n_samples))]
    perm = torch.randperm(n_samples, generator=torch.Generator().manual_seed(seed)).tolist()
    k = min(steps, n_samples)
    q, r = divmod(n_samples, k)
    bounds = [i * q + min(i, r) for i in range(k + 1)]
    return [perm[bounds[i] : bounds[i + 1]] for i in range(k)]


def repack(
    batch: PackedBatch,
    samples: Sequence[int],
    tensors: Sequence[torch.Tensor] = (),
    packing: Packing = "next-fit",
    pad_id: int = 0,
) -> tuple[PackedBatch, list[torch.Tensor]]:
    """The batch made of ``samples`` only (indices as in ``batch.sample_index``), packed anew
    into rows no longer than ``batch``'s, with each of ``tensors`` (B, T), aligned with ``batch``,
    moved along with its samples' tokens (0 on the new padding).

    ``next-fit`` fills rows in the order of ``samples``; ``first-fit-decreasing`` as
    :func:`pack_rows`. Every token of a sample keeps its ids, position ids, masks and reward, so
    a per-sample quantity of the new batch equals that of the old one.
    """
    where = {
        i: (b, start, end)
        for b, (bounds, index) in enumerate(zip(batch.sample_bounds, batch.sample_index))
        for (start, end), i in zip(bounds, index)
    }
    spans = [where[i] for i in samples]
    lengths = [end - start for _, start, end in spans]
    width = batch.input_ids.shape[1]
    if packing == "next-fit":
        plan = next_fit_rows(lengths, width, range(len(samples)))
    else:
        plan = first_fit_decreasing_rows(lengths, width)
    T = max((sum(lengths[k] for k in row) for row in plan), default=0)
    sources = [batch.input_ids, batch.position_ids, batch.response_mask, batch.token_rewards]
    out = [torch.zeros((len(plan), T), dtype=x.dtype) for x in (*sources, *tensors)]
    out[0].fill_(pad_id)
    segment_ids = torch.zeros((len(plan), T), dtype=torch.long)
    new_bounds: list[list[tuple[int, int]]] = []
    for r, row in enumerate(plan):
        at, row_bounds = 0, []
        for k in row:
            b, start, end = spans[k]
            for dst, src in zip(out, (*sources, *tensors)):
                dst[r, at : at + lengths[k]] = src[b, start:end]
            segment_ids[r, at : at + lengths[k]] = len(row_bounds) + 1
            row_bounds.append((at, at + lengths[k]))
            at += lengths[k]
        out[1][r, at:] = torch.arange(T - at)
        new_bounds.append(row_bounds)
    packed = PackedBatch(
        input_ids=out[0],
        position_ids=out[1],
        attention_mask=(segment_ids > 0).long(),
        segment_ids=segment_ids,
        response_mask=out[2],
        token_rewards=out[3],
        sample_bounds=new_bounds,
        sample_index=[[samples[k] for k in row] for row in plan],
    )
    return packed, out[4:]


def scatter_responses(values: Sequence[Sequence[float]], batch: PackedBatch) -> torch.Tensor:
    """Per-sample response-token values laid out like the batch :
    (B, T), ``values[i]`` on sample i's response tokens, 0 elsewhere. ``values[i]`` must hold one
    number per response token of sample i."""
    out = torch.zeros(batch.response_mask.shape)
    for b, (row_bounds, row_index) in enumerate(zip(batch.sample_bounds, batch.sample_index)):
        for (start, end), i in zip(row_bounds, row_index):
            n = int(batch.response_mask[b, start:end].sum())
            if len(values[i]) != n:
                raise ValueError(f"sample {i}: {len(values[i])} values for {n} response tokens")
            out[b, end - n : end] = torch.tensor(values[i], dtype=out.dtype)
    return out


def packing_efficiency(batch: PackedBatch) -> float:
    """Share of the (B, T) grid holding real tokens (1.0 = no padding)."""
    total = batch.attention_mask.numel()
    return float(batch.attention_mask.sum()) / total if total else 1.0
