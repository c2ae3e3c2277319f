"""Batched incremental decoders behind ``FastEngine``: a native Llama-family one, and HF forward.

Both take *groups* (distinct prompts, left-padded) and *rows* (the sequences sampled from them,
``n`` per prompt), prefill each prompt once with the model's own forward, and keep a KV cache
that rows can leave when they finish. Shape legend: G groups, S rows per group slot grid, B rows,
W prompt width, V vocabulary, H hidden, D head dim.

``NativeDecoder`` covers the Llama family (Llama, Qwen2, Qwen3): each decoding step runs fused
projections and attention by ``bmm``-softmax-``bmm`` over a contiguous cache (on CPU, decoding a
big batch is bound by reading that cache). Prompts of ``SHARE_MIN_WIDTH`` tokens or more stay
shared: their keys are read once per *group* by a matrix product over its rows instead of ``n``
matrix-vector products; shorter prompts are copied into each row's cache (fewer ops).
``HFForwardDecoder`` drives any causal LM's own forward with a ``DynamicCache`` expanded to rows
and pruned as they finish: the fallback for other architectures.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import DynamicCache, PreTrainedModel

NATIVE_TYPES = ("llama", "qwen2", "qwen3")
# Generated-token cache growth step: attention reads the whole cache (unwritten tail masked), so
# a small step wastes little; each growth copies the cache, so not too small either.
GROW = 32
# Prompts at least this long (in tokens) are shared by their rows rather than copied into each.
SHARE_MIN_WIDTH = 32


class Decoder(Protocol):
    """Prefill groups, then decode one token per row per step; rows may leave between steps."""

    def prefill(self, ids: Tensor, mask: Tensor, row_group: Tensor) -> Tensor:
        """Left-padded prompts ``ids``/``mask`` (G, W), the group of each row (B,) (sorted) ->
        next-token logits (B, V) of every row."""
        ...

    def step(self, tokens: Tensor) -> Tensor:
        """Feed one token per row (B,) -> next-token logits (B, V)."""
        ...

    def keep(self, rows: Tensor) -> None:
        """Keep only ``rows`` (indices into the current rows, ascending)."""
        ...


def native_unsupported(model: PreTrainedModel) -> str | None:
    """Why ``NativeDecoder`` cannot run ``model`` (None if it can)."""
    cfg = model.config
    if cfg.model_type not in NATIVE_TYPES:
        return f"model_type {cfg.model_type!r} is not one of {NATIVE_TYPES}"
    if getattr(cfg, "hidden_act", "silu") != "silu":
        return f"hidden_act {cfg.hidden_act!r} is not silu"
    if any(t != "full_attention" for t in getattr(cfg, "layer_types", None) or []):
        return "sliding-window layers are not supported"
    if getattr(cfg, "mlp_bias", False):
        return "mlp_bias is not supported"
    return None


def prefill_positions(mask: Tensor) -> Tensor:
    """Position ids of left-padded rows, as ``generate`` makes them (pads get 1)."""
    pos = mask.long().cumsum(-1) - 1
    return pos.masked_fill(mask == 0, 1)


def hf_prefill(model: PreTrainedModel, ids: Tensor, mask: Tensor) -> tuple[Tensor, DynamicCache]:
    """The model's own forward over the prompts: last-position logits (G, V) and the cache."""
    out = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=prefill_positions(mask),
        past_key_values=DynamicCache(config=model.config),
        use_cache=True,
        logits_to_keep=1,
    )
    return out.logits[:, -1].float(), out.past_key_values


class HFForwardDecoder:
    """Any causal LM: its forward with a ``DynamicCache`` that is expanded and pruned by row."""

    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model

    def prefill(self, ids: Tensor, mask: Tensor, row_group: Tensor) -> Tensor:
        logits, cache = hf_prefill(self.model, ids, mask)
        cache.batch_select_indices(row_group)
        self.cache = cache
        self.mask = mask[row_group]
        self.pos = mask.sum(-1)[row_group]
        return logits[row_group]

    def step(self, tokens: Tensor) -> Tensor:
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(tokens), 1)], dim=1)
        out = self.model(
            input_ids=tokens[:, None],
            attention_mask=self.mask,
            position_ids=self.pos[:, None],
            past_key_values=self.cache,
            use_cache=True,
        )
        self.pos = self.pos + 1
        return out.logits[:, -1].float()

    def keep(self, rows: Tensor) -> None:
        self.cache.batch_select_indices(rows)
        self.mask, self.pos = self.mask[rows], self.pos[rows]


class _Layer:
    """One decoder layer's weights, with q/k/v and gate/up fused into single matmuls."""

    def __init__(self, layer: torch.nn.Module) -> None:
        att, mlp = layer.self_attn, layer.mlp
        self.ln1 = layer.input_layernorm.weight.detach()
        self.ln2 = layer.post_attention_layernorm.weight.detach()
        self.eps = _eps(layer.input_layernorm)
        projections = (att.q_proj, att.k_proj, att.v_proj)
        self.wqkv = torch.cat([p.weight.detach() for p in projections])
        biased = att.q_proj.bias is not None
        self.bqkv = torch.cat([p.bias.detach() for p in projections]) if biased else None
        self.wo = att.o_proj.weight.detach()
        self.bo = att.o_proj.bias.detach() if att.o_proj.bias is not None else None
        self.q_norm = getattr(att, "q_norm", None)  # Qwen3: RMSNorm over each head
        self.k_norm = getattr(att, "k_norm", None)
        self.wgu = torch.cat([mlp.gate_proj.weight.detach(), mlp.up_proj.weight.detach()])
        self.wd = mlp.down_proj.weight.detach()


def _eps(norm: torch.nn.Module) -> float:
    return float(getattr(norm, "variance_epsilon", getattr(norm, "eps", 1e-6)))


def _rms(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    return F.rms_norm(x, (x.shape[-1],), weight, eps)


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """RoPE on (B, heads, D) with per-row cos/sin (B, 1, D), as ``apply_rotary_pos_emb``."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class NativeWeights:
    """A Llama-family model's weights as ``NativeDecoder`` uses them (q/k/v and gate/up fused).

    The fused matrices are copies: build new ones after the model's weights change. One instance
    serves any number of decoders (read only).
    """

    def __init__(self, model: PreTrainedModel) -> None:
        reason = native_unsupported(model)
        if reason:
            raise ValueError(f"NativeDecoder cannot run this model: {reason}")
        cfg = model.config
        base = getattr(model, model.base_model_prefix)
        self.nq = cfg.num_attention_heads
        self.nkv = getattr(cfg, "num_key_value_heads", None) or self.nq
        self.rep = self.nq // self.nkv
        self.hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.nq
        self.scale = self.hd**-0.5
        self.embed = base.embed_tokens.weight.detach()
        self.layers = [_Layer(layer) for layer in base.layers]
        self.norm, self.norm_eps = base.norm.weight.detach(), _eps(base.norm)
        self.lm_head = model.get_output_embeddings().weight.detach()
        self.rotary = base.rotary_emb


class NativeDecoder:
    """Llama-family decoding; long prompts' KV cache shared by the rows of their group."""

    def __init__(self, model: PreTrainedModel, weights: NativeWeights | None = None) -> None:
        w = weights or NativeWeights(model)
        self.model = model
        self.nq, self.nkv, self.rep, self.hd, self.scale = w.nq, w.nkv, w.rep, w.hd, w.scale
        self.embed, self.layers, self.lm_head, self.rotary = w.embed, w.layers, w.lm_head, w.rotary
        self.norm, self.norm_eps = w.norm, w.norm_eps
        self.cos = self.sin = torch.empty(0)

    def prefill(self, ids: Tensor, mask: Tensor, row_group: Tensor) -> Tensor:
        logits, cache = hf_prefill(self.model, ids, mask)
        keys = [layer.keys for layer in cache.layers]
        values = [layer.values for layer in cache.layers]
        pad_bias = keys[0].new_zeros(ids.shape).masked_fill_(mask == 0, -torch.inf)
        counts = torch.bincount(row_group, minlength=len(ids))
        self.S = int(counts.max())
        # Short prompts: copying them into every row costs less than the grid's extra ops.
        self.shared = self.S > 1 and ids.shape[1] >= SHARE_MIN_WIDTH
        if self.shared:
            self.kp = [k.transpose(-1, -2).contiguous() for k in keys]
            self.vp, self.group_bias = values, pad_bias
            first = counts.cumsum(0) - counts
            within = torch.arange(len(row_group), device=row_group.device) - first[row_group]
            self._set_rows(row_group, row_group * self.S + within, len(ids))
            self.ks = [k.new_zeros((len(row_group), *k.shape[1:2], 0, k.shape[3])) for k in keys]
            self.vs = [torch.zeros_like(k) for k in self.ks]
            self.cache_bias = pad_bias.new_zeros(1, 1, 0)
        else:
            self.ks = [k.index_select(0, row_group) for k in keys]
            self.vs = [v.index_select(0, row_group) for v in values]
            self.cache_bias = pad_bias.index_select(0, row_group)[:, None]
        self.length = self.ks[0].shape[2]  # next write position in ks/vs
        self.pos = mask.sum(-1)[row_group]
        self.max_pos = int(self.pos.max()) - 1
        return logits[row_group]

    def _set_rows(self, row_group: Tensor, slot: Tensor, n_groups: int) -> None:
        self.row_group, self.slot, self.G = row_group, slot, n_groups
        self.dense = n_groups * self.S == len(slot) and bool(
            (slot == torch.arange(len(slot), device=slot.device)).all()
        )
        self.bias = self.group_bias[row_group][:, None]  # (B, 1, W)

    def keep(self, rows: Tensor) -> None:
        if self.shared:
            groups, row_group = torch.unique(self.row_group[rows], return_inverse=True)
            if len(groups) < self.G:  # whole groups finished: drop their prompt cache too
                self.kp = [k.index_select(0, groups) for k in self.kp]
                self.vp = [v.index_select(0, groups) for v in self.vp]
                self.group_bias = self.group_bias.index_select(0, groups)
            self._set_rows(row_group, row_group * self.S + self.slot[rows] % self.S, len(groups))
        else:
            self.cache_bias = self.cache_bias.index_select(0, rows)
        self.pos = self.pos[rows]
        self.ks = [k.index_select(0, rows) for k in self.ks]
        self.vs = [v.index_select(0, rows) for v in self.vs]

    def step(self, tokens: Tensor) -> Tensor:
        if self.length == self.ks[0].shape[2]:
            self._grow()
        self.cache_bias[..., self.length] = 0.0
        cos, sin = self._rope(self.pos)
        x = F.embedding(tokens, self.embed)
        for i, layer in enumerate(self.layers):
            x = x + self._attention(i, layer, _rms(x, layer.ln1, layer.eps), cos, sin)
            gate, up = F.linear(_rms(x, layer.ln2, layer.eps), layer.wgu).chunk(2, dim=-1)
            x = x + F.linear(F.silu(gate) * up, layer.wd)
        self.length += 1
        self.pos = self.pos + 1
        return F.linear(_rms(x, self.norm, self.norm_eps), self.lm_head).float()

    def _attention(self, i: int, layer: _Layer, h: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        B, nq, nkv, D = h.shape[0], self.nq, self.nkv, self.hd
        qkv = F.linear(h, layer.wqkv, layer.bqkv)
        if layer.q_norm is None:  # rotate q and k in one go
            qk = _rotate(qkv[:, : (nq + nkv) * D].view(B, nq + nkv, D), cos, sin)
            q, k = qk[:, :nq], qk[:, nq:]
        else:
            q = _rotate(layer.q_norm(qkv[:, : nq * D].view(B, nq, D)), cos, sin)
            k = _rotate(layer.k_norm(qkv[:, nq * D : (nq + nkv) * D].view(B, nkv, D)), cos, sin)
        self.ks[i][:, :, self.length] = k
        self.vs[i][:, :, self.length] = qkv[:, (nq + nkv) * D :].view(B, nkv, D)
        q = q * self.scale
        # The whole (contiguous) cache, its unwritten tail masked: slicing it to the written
        # length would make every matmul copy it first, which costs more than the masked tail.
        keys, values, L = self.ks[i], self.vs[i], self.ks[i].shape[2]
        scores = (q.view(B, nkv, self.rep, D) @ keys.transpose(-1, -2)).view(B, nq, L)
        scores = scores + self.cache_bias
        if not self.shared:
            p = scores.softmax(dim=-1).view(B, nkv, self.rep, L)
            return F.linear((p @ values).view(B, nq * D), layer.wo, layer.bo)
        prompt_scores = self._from_grid(self._to_grid(q) @ self.kp[i]) + self.bias
        p = torch.cat([prompt_scores, scores], dim=-1).softmax(dim=-1)
        W = prompt_scores.shape[-1]
        out = self._from_grid(self._to_grid(p[..., :W]) @ self.vp[i])
        out = out + (p[..., W:].reshape(B, nkv, self.rep, L) @ values).view(B, nq, D)
        return F.linear(out.view(B, nq * D), layer.wo, layer.bo)

    def _to_grid(self, x: Tensor) -> Tensor:
        """Rows (B, nq, E) -> group grid (G, nkv, S * rep, E); empty slots are 0."""
        G, S, E = self.G, self.S, x.shape[-1]
        if not self.dense:
            x = x.new_zeros(G * S, self.nq, E).index_copy_(0, self.slot, x)
        return x.view(G, S, self.nkv, self.rep, E).transpose(1, 2).reshape(G, self.nkv, -1, E)

    def _from_grid(self, y: Tensor) -> Tensor:
        """Group grid (G, nkv, S * rep, E) -> rows (B, nq, E)."""
        G, S, E = self.G, self.S, y.shape[-1]
        y = y.view(G, self.nkv, S, self.rep, E).transpose(1, 2).reshape(G * S, self.nq, E)
        return y if self.dense else y[self.slot]

    def _grow(self) -> None:
        """Extend the generated-token cache by ``GROW`` zeroed, masked positions."""
        for cache in (self.ks, self.vs):
            for i, old in enumerate(cache):
                new = old.new_empty((*old.shape[:2], old.shape[2] + GROW, old.shape[3]))
                new[:, :, : old.shape[2]] = old
                new[:, :, old.shape[2] :] = 0  # masked, but 0 x NaN garbage would still be NaN
                cache[i] = new
        tail = self.cache_bias.new_full((*self.cache_bias.shape[:2], GROW), -torch.inf)
        self.cache_bias = torch.cat([self.cache_bias, tail], dim=-1)

    def _rope(self, pos: Tensor) -> tuple[Tensor, Tensor]:
        """Per-row cos/sin (B, 1, D) from a table computed by the model's own rotary module."""
        self.max_pos += 1  # positions only grow: no tensor max (a sync) per step
        need = self.max_pos + 1
        if need > len(self.cos):
            size = max(need, 2 * len(self.cos), 512)
            ref = self.ks[0]
            cos, sin = self.rotary(ref, torch.arange(size, device=ref.device)[None])
            self.cos, self.sin = cos[0].to(ref.dtype), sin[0].to(ref.dtype)
        return self.cos[pos][:, None], self.sin[pos][:, None]
