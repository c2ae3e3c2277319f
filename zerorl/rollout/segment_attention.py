"""Attention that computes packed samples separately: no work on the masked-out blocks.

A packed training row of T tokens holding samples of lengths L_1..L_k needs sum(L_i^2) / 2
attention scores; Hugging Face's ``sdpa`` path builds a dense (T, T) block-diagonal mask from the
restarting position ids and computes all T^2 of them. With the tiny-cpu preset (rows of 2048
tokens, samples of ~150-360) that is 5-10x more attention work than needed, and attention is
then the largest cost of the training forward. This module registers ``zerorl_segments``: for
full-length inputs with position ids it runs causal SDPA once per sample (``is_causal=True``, no
mask: the fused CPU kernel); anything else (decoding with a cache) goes to the stock ``sdpa``.

Opt in with ``use_segment_attention(model)``. Used in training (``zerorl.workers``) it changes
no result beyond float rounding; ``benchmarks/bench_train.py`` measures it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "zerorl_segments"


def segment_bounds(position_ids: Tensor) -> list[list[tuple[int, int]]]:
    """Per row, the (start, end) spans that begin where ``position_ids`` is 0 (or at 0).

    ``position_ids`` (B, T) or (1, T); the spans of a row tile it exactly.
    """
    T = position_ids.shape[-1]
    out = []
    for row in position_ids:
        starts = (row == 0).nonzero().flatten().tolist()
        starts = starts if starts and starts[0] == 0 else [0, *starts]
        out.append(list(zip(starts, [*starts[1:], T])))
    return out


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
    T = query.shape[2]
    if position_ids is None or key.shape[2] != T or dropout > 0:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout, scaling, **kwargs
        )
    groups = query.shape[1] // key.shape[1]
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    bounds = segment_bounds(position_ids)
    if len(bounds) == 1 and query.shape[0] > 1:  # (1, T) position ids broadcast over rows
        bounds = bounds * query.shape[0]
    rows = []
    for b, spans in enumerate(bounds):
        parts = [
            F.scaled_dot_product_attention(
                query[b : b + 1, :, s:e],
                key[b : b + 1, :, s:e],
                value[b : b + 1, :, s:e],
                is_causal=True,
                scale=scaling,
            )
            for s, e in spans
        ]
        rows.append(torch.cat(parts, dim=2) if len(parts) > 1 else parts[0])
    return torch.cat(rows).transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, segment_attention_forward)
AttentionMaskInterface.register(NAME, sdpa_mask)


def use_segment_attention(model: PreTrainedModel) -> PreTrainedModel:
    """Switch ``model`` (in place) to per-sample attention; returns it."""
    model.set_attn_implementation(NAME)
    return model
