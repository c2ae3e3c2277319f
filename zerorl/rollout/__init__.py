"""Rollout engines behind one interface (``base.RolloutEngine``): ``hf`` (Hugging Face
``generate``), ``fast`` (zerorl's CPU engine), ``vllm`` (vLLM's offline ``LLM``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from zerorl.rollout.base import RolloutEngine


def local_engine(
    kind: str, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch_size: int
) -> RolloutEngine:
    """An in-process engine on ``model`` (its weights shared, not copied): ``hf`` or ``fast``.

    vLLM engines own their weights and are built by ``zerorl.rollout.vllm.VLLMEngine``.
    """
    if kind == "fast":
        from zerorl.rollout.fast import FastEngine

        return FastEngine(model, tokenizer, batch_size=batch_size)
    if kind == "hf":
        from zerorl.rollout.hf import HFEngine

        return HFEngine(model, tokenizer, batch_size=batch_size)
    raise ValueError(f"no in-process rollout engine {kind!r}: choose hf or fast")
