"""The rollout engine interface: every generation backend implements this."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

import torch

from zerorl.types import Completion, SamplingParams

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class RolloutEngine(Protocol):
    """Generates ``params.n`` completions per prompt text.

    ``generate`` returns one list per prompt, in prompt order, each of ``params.n`` completions.
    ``load_weights`` makes the engine sample from ``weights`` (a state dict under the Hugging
    Face names, what ``PolicyRole.weights`` gives) from now on; ``sleep``/``wake`` free and
    restore the engine's memory between phases when generation and training share devices.
    """

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Completion]]: ...

    def load_weights(self, weights: Mapping[str, torch.Tensor]) -> None: ...

    def sleep(self) -> None: ...

    def wake(self) -> None: ...


def load_into(model: nn.Module, weights: Mapping[str, torch.Tensor]) -> None:
    """Copy ``weights`` into ``model``'s parameters and buffers by name (every one must be
    given). A tensor that already is the model's own (an in-process engine sampling from the
    policy module itself) is not copied."""
    own = model.state_dict()
    missing = own.keys() - weights.keys()
    if missing:
        raise KeyError(f"load_weights: {len(missing)} weights missing, e.g. {sorted(missing)[0]}")
    with torch.no_grad():
        for name, tensor in weights.items():
            target = own[name]
            if target.data_ptr() != tensor.data_ptr() or target.device != tensor.device:
                target.copy_(tensor)


def eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Every token that ends a response: the generation config's EOS id(s) and the tokenizer's."""
    eos = model.generation_config.eos_token_id
    eos = eos if isinstance(eos, list) else [eos]
    return {int(e) for e in [*eos, tokenizer.eos_token_id] if e is not None}


def context_room(model: PreTrainedModel, prompt_width: int, max_new_tokens: int) -> int:
    """How many tokens may follow a prompt of ``prompt_width`` tokens: ``max_new_tokens``, cut to
    what the model's context (``max_position_embeddings``) leaves; 0 when the prompt alone fills
    it. Positions past the context are not an error in a rotary model, only nonsense, and slow:
    so no engine generates there (vLLM refuses such prompts by itself, ``max_model_len``). A
    batch of prompts decoded together gets the room of its longest (``prompt_width`` is the
    padded width): engines batch prompts of similar lengths, so the cut is rarely below a
    prompt's own room, and a response cut by it is marked ``length``."""
    context = getattr(model.config, "max_position_embeddings", None)
    if not context:
        return max_new_tokens
    return max(0, min(max_new_tokens, context - prompt_width))


def no_room(prompt_index: int, prompt_ids: list[int]) -> Completion:
    """The completion of a prompt that leaves no room in the context: empty, cut (scores 0)."""
    return Completion(prompt_index, prompt_ids, [], "", "length", [])


def fitting_prompts(model: PreTrainedModel, prompt_ids: list[list[int]]) -> list[int]:
    """The indices of the prompts that leave room for at least one token in the model's context;
    an engine answers the others with :func:`no_room` so that they do not cut a batch's room."""
    return [i for i, ids in enumerate(prompt_ids) if context_room(model, len(ids), 1) > 0]


def trim_at_stop(
    token_ids: list[int], eos_ids: set[int], stops: tuple[str, ...], decode
) -> tuple[list[int], bool]:
    """Cut a raw generated sequence at its first EOS token or stop string (both kept).

    ``decode`` maps token ids to text. Returns ``(kept_ids, stopped)``; ``stopped`` is False when
    neither occurs, i.e. generation ran into the length limit. Stop strings are located by a binary
    search on the shortest prefix whose text contains one (text containment is monotone in the
    prefix length), so a long response costs O(log T) decodes.
    """
    for k, t in enumerate(token_ids):
        if t in eos_ids:
            token_ids, stopped = token_ids[: k + 1], True
            break
    else:
        stopped = False
    if not stops:
        return token_ids, stopped

    def has_stop(n: int) -> bool:
        text = decode(token_ids[:n])
        return any(s in text for s in stops)

    if not has_stop(len(token_ids)):
        return token_ids, stopped
    lo, hi = 1, len(token_ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if has_stop(mid):
            hi = mid
        else:
            lo = mid + 1
    return token_ids[:lo], True


def cap_total_length(
    completions: list[list[Completion]], max_total: int, decode: Callable[[list[int]], str]
) -> list[list[Completion]]:
    """Cut every response so that prompt + response holds at most ``max_total`` tokens.

    ORZ's vLLM engines run with ``max_model_len`` = 8192 (its ``max_len``), so a response after a
    long prompt ends before ``max_new_tokens``: it is cut, ``finish_reason`` ``length``, and
    scores 0. Engines without that cap (hf, fast) get the same result here; ``max_total`` 0 = off.
    """
    if max_total <= 0:
        return completions
    out = []
    for group in completions:
        kept = []
        for c in group:
            room = max(max_total - len(c.prompt_ids), 0)
            if len(c.token_ids) > room:
                ids = c.token_ids[:room]
                logprobs = c.logprobs[:room] if c.logprobs is not None else None
                c = replace(
                    c, token_ids=ids, text=decode(ids), finish_reason="length", logprobs=logprobs
                )
            kept.append(c)
        out.append(kept)
    return out
