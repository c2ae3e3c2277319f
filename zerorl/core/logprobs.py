"""Token log-probabilities and entropies from logits, in chunks to bound memory.

Shape legend: B batch (rows), T tokens, V vocabulary. Position t of the outputs scores token
``input_ids[:, t]`` given the tokens before it; position 0 has no prediction and is 0.
"""

from __future__ import annotations

import torch


def gather_logprobs(logits: torch.Tensor, targets: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """``log softmax(logits)[..., target]`` for logits (B, T, V) and targets (B, T) -> (B, T).

    Computed ``chunk`` positions at a time so that the (B, T, V) log-softmax is never materialised
    in float32 at once; ``logsumexp`` keeps it exact.
    """
    out = torch.empty(targets.shape, dtype=torch.float32, device=logits.device)
    for s in range(0, logits.shape[1], chunk):
        part = logits[:, s : s + chunk].float()
        picked = part.gather(-1, targets[:, s : s + chunk, None]).squeeze(-1)
        out[:, s : s + chunk] = picked - part.logsumexp(-1)
    return out


def entropy(logits: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Entropy of the softmax over the last dim: (B, T, V) -> (B, T), chunked as above."""
    out = torch.empty(logits.shape[:-1], dtype=torch.float32, device=logits.device)
    for s in range(0, logits.shape[1], chunk):
        part = logits[:, s : s + chunk].float()
        logp = part.log_softmax(-1)
        out[:, s : s + chunk] = -(logp.exp() * logp).sum(-1)
    return out


def shift_right(x: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """(B, T) -> (B, T) with ``out[:, t] = x[:, t-1]`` and ``out[:, 0] = fill``.

    Aligns a model's per-position outputs (made after reading token t-1) with the token they
    predict (token t), the convention of every (B, T) tensor in a PackedBatch.
    """
    return torch.cat([torch.full_like(x[:, :1], fill), x[:, :-1]], dim=1)


def token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Log-probability of each input token under the model, aligned with ``input_ids``: (B, T).

    ``logits`` (B, T, V) are the model outputs for ``input_ids`` (B, T).
    """
    predicted = gather_logprobs(logits[:, :-1], input_ids[:, 1:])
    return torch.cat([torch.zeros_like(predicted[:, :1]), predicted], dim=1)
