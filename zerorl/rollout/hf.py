"""A rollout engine on Hugging Face ``generate``: batched sampling with a KV cache.

Works on CPU and GPU with any causal LM; in the single-process setting it holds the policy module
itself, so weights never need copying.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from zerorl.rollout.base import (
    context_room,
    eos_ids,
    fitting_prompts,
    load_into,
    no_room,
    trim_at_stop,
)
from zerorl.types import Completion, SamplingParams


class SampledLogprobs(LogitsProcessor):
    """Records the model's log-probability of each token ``generate`` samples.

    ``generate`` applies the processors it is given before temperature and top-p, so these are
    the raw model's log-probs (what FastEngine and vLLM return). A call sees the token sampled
    after the previous call at the end of ``input_ids``; only the last step's (B, V) log-softmax
    is kept, so memory does not grow with the length.
    """

    def __init__(self) -> None:
        self.logp: torch.Tensor | None = None
        self.picked: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.logp is not None:
            self.picked.append(self.logp.gather(-1, input_ids[:, -1:]).squeeze(-1))
        self.logp = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def finish(self, new_tokens: torch.Tensor) -> torch.Tensor:
        """(B, N) generated tokens -> their log-probs (B, N), on CPU."""
        if self.logp is not None and len(self.picked) < new_tokens.shape[1]:
            last = new_tokens[:, len(self.picked), None]
            self.picked.append(self.logp.gather(-1, last).squeeze(-1))
        if not self.picked:
            return torch.zeros(new_tokens.shape)
        return torch.stack(self.picked, dim=1).cpu()


class HFEngine:
    """``generate`` over (prompt, sample) pairs in chunks of ``batch_size`` sequences; each
    completion carries its tokens' log-probs under the model (``SampledLogprobs``)."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        batch_size: int = 256,
        cache_implementation: str | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.cache_implementation = cache_implementation
        self.eos_ids = eos_ids(model, tokenizer)

    def encode(self, prompts: list[str]) -> list[list[int]]:
        """Prompt token ids, with no special tokens added (the ORZ template has no BOS)."""
        return [self.tokenizer.encode(p, add_special_tokens=False) for p in prompts]

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Completion]]:
        prompt_ids = self.encode(prompts)
        pairs = [(i, s) for i in fitting_prompts(self.model, prompt_ids) for s in range(params.n)]
        # Similar lengths together: less left padding per chunk.
        pairs.sort(key=lambda p: (len(prompt_ids[p[0]]), p))
        out: list[list[Completion | None]] = [
            [no_room(i, ids) for _ in range(params.n)] for i, ids in enumerate(prompt_ids)
        ]
        was_training = self.model.training
        self.model.eval()
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            torch.manual_seed(params.seed)
            for start in range(0, len(pairs), self.batch_size):
                chunk = pairs[start : start + self.batch_size]
                ids = [prompt_ids[i] for i, _ in chunk]
                for (i, s), completion in zip(chunk, self._generate_chunk(ids, params)):
                    completion.prompt_index = i
                    out[i][s] = completion
        self.model.train(was_training)
        return out  # type: ignore[return-value]

    def _generate_chunk(self, ids: list[list[int]], params: SamplingParams) -> list[Completion]:
        pad = self.tokenizer.pad_token_id
        width = max(len(x) for x in ids)
        params = replace(
            params, max_new_tokens=context_room(self.model, width, params.max_new_tokens)
        )
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids])
        attention = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])
        kwargs: dict[str, object] = {}
        if params.stop:
            kwargs = {"stop_strings": list(params.stop), "tokenizer": self.tokenizer}
        if params.temperature > 0:
            kwargs |= {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p}
        else:  # temperature 0 means greedy, as in vLLM and FastEngine
            kwargs |= {"do_sample": False, "temperature": None, "top_p": None}
        recorder = SampledLogprobs()
        sequences = self.model.generate(
            input_ids=input_ids.to(self.model.device),
            attention_mask=attention.to(self.model.device),
            top_k=0,
            max_new_tokens=params.max_new_tokens,
            pad_token_id=pad,
            eos_token_id=sorted(self.eos_ids),
            cache_implementation=self.cache_implementation,
            logits_processor=LogitsProcessorList([recorder]),
            **kwargs,
        )
        logprobs = recorder.finish(sequences[:, width:])
        results = []
        for row, prompt, row_lp in zip(sequences[:, width:].tolist(), ids, logprobs):
            tokens, stopped = trim_at_stop(row, self.eos_ids, params.stop, self._decode)
            if not stopped and len(tokens) < params.max_new_tokens:
                # Finished early without EOS/stop text: only padding follows (pad not in eos_ids).
                tokens, stopped = self._strip_padding(tokens), True
            results.append(
                Completion(
                    prompt_index=-1,
                    prompt_ids=prompt,
                    token_ids=tokens,
                    text=self._decode(tokens),
                    finish_reason="stop" if stopped else "length",
                    logprobs=row_lp[: len(tokens)].tolist(),
                )
            )
        return results

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _strip_padding(self, tokens: list[int]) -> list[int]:
        pad = self.tokenizer.pad_token_id
        while tokens and tokens[-1] == pad:
            tokens = tokens[:-1]
        return tokens

    def load_weights(self, weights: Mapping[str, torch.Tensor]) -> None:
        """Sample from ``weights``; nothing to copy when they are this very module's."""
        load_into(self.model, weights)

    def sleep(self) -> None:
        """Nothing to free: the engine is the policy module."""

    def wake(self) -> None:
        """Nothing to restore."""
