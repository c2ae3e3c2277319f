"""Attention that computes packed samples separately: no work on the masked-out blocks.

A packed training row of T tokens holding samples of lengths L_1..L_k needs sum(L_i^2) / 2
attention scores; Hugging Face's ``sdpa`` path builds a dense (T, T) block-diagonal mask from the
restarting position ids and computes all T^2 of them. With the tiny-cpu preset (rows of 2048
tokens, toy samples of ~30 tokens) that is ~60x the attention work needed, and attention then
costs more than all the matmuls of the forward. This module registers ``zerorl_segments``: for
full-length inputs with position ids, the samples of all rows are gathered into a few padded
batches (one per power-of-two length bucket) and run through causal SDPA (``is_causal=True``, no
mask: the fused CPU kernel; a sample's right padding is never attended by its real tokens), then
scattered back. Anything else (decoding with a cache) goes to the stock ``sdpa``.

Opt in with ``use_segment_attention(model)``; results equal the dense path up to float rounding
(tests/test_rollout_fast.py). ``benchmarks/bench_train.py`` measures it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "zerorl_segments"
MIN_BUCKET = 16


def segment_spans(position_ids: Tensor, rows: int) -> list[tuple[int, int, int]]:
    """(row, start, length) of every sample: spans start where ``position_ids`` is 0 (or at 0).

    ``position_ids`` is (rows, T) or (1, T) shared by all rows; the spans of a row tile it.
    """
    T = position_ids.shape[-1]
    spans = []
    for r in range(rows):
        row = position_ids[r if position_ids.shape[0] > 1 else 0]
        starts = (row == 0).nonzero().flatten().tolist()
        starts = starts if starts and starts[0] == 0 else [0, *starts]
        spans += [(r, s, e - s) for s, e in zip(starts, [*starts[1:], T])]
    return spans


def _buckets(spans: list[tuple[int, int, int]]) -> dict[int, list[tuple[int, int, int]]]:
    """Spans grouped by their length rounded up to a power of two (padding waste < 4x in area)."""
    out: dict[int, list[tuple[int, int, int]]] = {}
    for span in spans:
        size = max(MIN_BUCKET, 1 << (span[2] - 1).bit_length())
        out.setdefault(size, []).append(span)
    return out


def _gather_index(spans: list[tuple[int, int, int]], width: int, T: int, pad: int) -> Tensor:
    """(n, width) flat token indices (row * T + t) of each span, ``pad`` past its end."""
    index = torch.full((len(spans), width), pad, dtype=torch.long)
    for i, (r, s, n) in enumerate(spans):
        index[i, :n] = torch.arange(r * T + s, r * T + s + n)
    return index


def segment_attention_forward(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    position_ids: Tensor | None = None,
    **kwargs,
) -> tuple[Tensor, None]:
    """query (B, h, T, D), key/value (B, h_kv, T, D) -> (B, T, h, D), samples kept apart."""
    B, h, T, D = query.shape
    if position_ids is None or key.shape[2] != T or dropout > 0:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout, scaling, **kwargs
        )
    groups = h // key.shape[1]
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    # Token-major flat views with one zero row appended: padding gathers it.
    flat = [torch.cat([x.transpose(1, 2).reshape(B * T, h, D), x.new_zeros(1, h, D)]) for x in
            (query, key, value)]  # fmt: skip
    out = query.new_empty(B * T, h, D)
    for index in _plan(position_ids, B):
        q, k, v = (x[index].transpose(1, 2) for x in flat)  # (n, h, width, D)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling)
        real = index < B * T
        out = out.index_put((index[real],), o.transpose(1, 2)[real])
    return out.view(B, T, h, D), None


# The plan of the last call (rows, position ids, indices): every layer of a forward reuses it.
_last: dict[str, object] = {}


def _plan(position_ids: Tensor, rows: int) -> list[Tensor]:
    """One gather index (n, width) per length bucket; cached for the layers of one forward."""
    pos = _last.get("pos")
    if _last.get("rows") == rows and isinstance(pos, Tensor) and torch.equal(pos, position_ids):
        return _last["plan"]  # type: ignore[return-value]
    T = position_ids.shape[-1]
    plan = [_gather_index(spans, width, T, rows * T) for width, spans in
            _buckets(segment_spans(position_ids, rows)).items()]  # fmt: skip
    _last.update(rows=rows, pos=position_ids.clone(), plan=plan)
    return plan


AttentionInterface.register(NAME, segment_attention_forward)
AttentionMaskInterface.register(NAME, sdpa_mask)


def use_segment_attention(model: PreTrainedModel) -> PreTrainedModel:
    """Switch ``model`` (in place) to per-sample attention; returns it."""
    model.set_attn_implementation(NAME)
    return model
