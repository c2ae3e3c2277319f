"""A fast rollout engine, built for CPUs (runs on CUDA too): prompt-shared prefill, fused
decoding, rows leave when they finish.

Same interface and outputs as ``HFEngine`` (``zerorl.rollout.base.RolloutEngine``), plus:
``temperature == 0`` is greedy (token-for-token what ``generate(do_sample=False)`` returns), and
every completion carries ``logprobs``: the model's log-probabilities of its tokens, taken from the
very logits it was sampled from, so PPO can skip a forward pass when they equal the policy's
(same weights, temperature 1, top-p 1). How each part earns its place: ``docs/performance.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import Literal

import torch
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from zerorl.rollout.base import (
    context_room,
    eos_ids,
    fitting_prompts,
    load_into,
    no_room,
    trim_at_stop,
)
from zerorl.rollout.decoders import (
    Decoder,
    HFForwardDecoder,
    NativeDecoder,
    NativeWeights,
    native_unsupported,
)
from zerorl.rollout.sampling import Sampler, StopDetector, token_texts
from zerorl.types import Completion, SamplingParams

log = logging.getLogger(__name__)
Backend = Literal["auto", "native", "hf"]


@dataclass
class _Chunk:
    """Rows decoded together: ``groups`` distinct prompts, ``row_group`` (B,) maps rows."""

    groups: list[list[int]]
    row_group: Tensor
    pairs: list[tuple[int, int]]
    seed: int


class FastEngine:
    """Batched sampling over (prompt, sample) pairs, ``batch_size`` rows at a time.

    ``backend``: ``native`` (Llama/Qwen2/Qwen3: fused projections, long prompts' KV shared by the
    ``n`` samples of a prompt), ``hf`` (the model's own forward with a pruned ``DynamicCache``:
    any causal LM), ``auto`` (native when supported, else hf with a log message).
    ``workers`` (0: one per torch thread) splits the batch into that many chunks decoded at once,
    each in its own Python thread on one core: on CPU this beats intra-op threading, which pays a
    barrier on every small op of a step, and one chunk's Python overhead overlaps the other's
    kernels. Torch's thread count is set to 1 during ``generate`` and restored after.
    Finished rows leave the batch once ``compact_fraction`` of it is finished.
    ``min_new_tokens``: rows never end before that many tokens (benchmarks use it to generate
    fixed lengths, as ``generate(min_new_tokens=...)`` does).
    Same seed and settings (prompts, ``batch_size``, ``workers``) give the same completions.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        batch_size: int = 256,
        backend: Backend = "auto",
        workers: int = 0,
        compact_fraction: float = 0.125,
        min_new_tokens: int = 0,
    ) -> None:
        reason = native_unsupported(model)
        if backend == "native" and reason:
            raise ValueError(f"backend='native' cannot run this model: {reason}")
        if backend == "auto" and reason:
            log.info("FastEngine: native decoder unavailable (%s); using the HF forward", reason)
        self.backend: Backend = "native" if backend == "native" or not reason else "hf"
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.workers = workers
        self.compact_fraction = compact_fraction
        self.min_new_tokens = min_new_tokens
        self.eos_ids = eos_ids(model, tokenizer)
        self.vocab_size = model.get_output_embeddings().weight.shape[0]
        self._texts: list[str] | None = None

    def encode(self, prompts: list[str]) -> list[list[int]]:
        """Prompt token ids, with no special tokens added (the ORZ template has no BOS)."""
        ids = [self.tokenizer.encode(p, add_special_tokens=False) for p in prompts]
        if any(not x for x in ids):
            raise ValueError("empty prompt: every prompt needs at least one token")
        return ids

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Completion]]:
        """``params.n`` completions per prompt, in prompt order (see ``RolloutEngine``)."""
        prompt_ids = self.encode(prompts)
        # On a GPU one chunk (one stream of kernels) decodes the whole batch.
        on_gpu = self.model.device.type == "cuda"
        workers = self.workers or (1 if on_gpu else torch.get_num_threads())
        fits = fitting_prompts(self.model, prompt_ids)
        out: list[list[Completion]] = [
            [no_room(i, ids) for _ in range(params.n)] for i, ids in enumerate(prompt_ids)
        ]
        if not fits:
            return out
        rows = min(self.batch_size, len(fits) * params.n)  # rows decoded at once, in all
        chunks = self._chunks(prompt_ids, fits, params, -(-rows // workers))
        workers = min(workers, len(chunks))
        # Built per call: the fused weights are copies, and training changes the model's.
        weights = NativeWeights(self.model) if self.backend == "native" else None
        run = partial(
            self._run_chunk, prompt_ids=prompt_ids, params=params,
            stopper=self._stopper(params), weights=weights,
        )  # fmt: skip
        was_training, threads = self.model.training, torch.get_num_threads()
        self.model.eval()
        try:
            if workers > 1:
                torch.set_num_threads(1)
                with ThreadPoolExecutor(workers, thread_name_prefix="zerorl-rollout") as pool:
                    results = list(pool.map(run, chunks))
            else:
                results = [run(chunk) for chunk in chunks]
        finally:
            torch.set_num_threads(threads)
            self.model.train(was_training)
        for chunk, completions in zip(chunks, results):
            for (i, s), completion in zip(chunk.pairs, completions):
                out[i][s] = completion
        return out

    def _stopper(self, params: SamplingParams) -> StopDetector:
        if params.stop and self._texts is None:
            self._texts = token_texts(self.tokenizer, self.vocab_size)
        return StopDetector(
            self._decode, self._texts or [], self.eos_ids, params.stop, self.vocab_size
        )

    def _chunks(
        self, prompt_ids: list[list[int]], indices: list[int], params: SamplingParams, size: int
    ) -> list[_Chunk]:
        """Pairs of the prompts ``indices``, sorted by prompt length (less padding), samples of a
        prompt kept together."""
        pairs = [(i, s) for i in indices for s in range(params.n)]
        pairs.sort(key=lambda p: (len(prompt_ids[p[0]]), p))
        chunks = []
        for start in range(0, len(pairs), size):
            part = pairs[start : start + size]
            order = list(dict.fromkeys(i for i, _ in part))
            index = {i: g for g, i in enumerate(order)}
            row_group = torch.tensor([index[i] for i, _ in part])
            seed = (params.seed * 1_000_003 + len(chunks)) % 2**63  # one stream per chunk
            chunks.append(_Chunk([prompt_ids[i] for i in order], row_group, part, seed))
        return chunks

    def _run_chunk(
        self,
        chunk: _Chunk,
        prompt_ids: list[list[int]],
        params: SamplingParams,
        stopper: StopDetector,
        weights: NativeWeights | None,
    ) -> list[Completion]:
        ids, mask = self._left_pad(chunk.groups)
        params = replace(
            params, max_new_tokens=context_room(self.model, ids.shape[1], params.max_new_tokens)
        )
        B, T = len(chunk.pairs), params.max_new_tokens
        tokens = torch.zeros(B, T, dtype=torch.long)
        logps = torch.zeros(B, T)
        with torch.inference_mode():  # thread-local: entered in the thread that decodes
            decoder = (
                NativeDecoder(self.model, weights) if weights else HFForwardDecoder(self.model)
            )
            sampler = Sampler(params, seed=chunk.seed, device=ids.device)
            row_group = chunk.row_group.to(ids.device)
            ends = self._decode_loop(
                decoder, ids, mask, row_group, T, sampler, stopper, tokens, logps
            )
        return [
            self._completion(i, prompt_ids[i], tokens[b], logps[b], ends[b], params)
            for b, (i, _) in enumerate(chunk.pairs)
        ]

    def _decode_loop(
        self,
        decoder: Decoder,
        ids: Tensor,
        mask: Tensor,
        row_group: Tensor,
        max_new: int,
        sampler: Sampler,
        stopper: StopDetector,
        tokens: Tensor,
        logps: Tensor,
    ) -> list[int]:
        """Fill ``tokens``/``logps`` (B, max_new, on CPU) in place; return each row's length
        (stop kept).

        ``rows`` maps the decoder's current rows to chunk rows; finished rows keep being decoded
        (their extra tokens are ignored) until enough of them have finished to pay for a compaction.
        The decoder's tensors live on the model's device; the bookkeeping stays on CPU.
        """
        ends = [max_new] * len(row_group)
        logits = decoder.prefill(ids, mask, row_group)
        rows = torch.arange(len(row_group))
        alive = torch.ones(len(rows), dtype=torch.bool)
        dead = 0
        for t in range(max_new):
            tok, lp = sampler(logits)
            tok_cpu = tok.cpu()
            tokens[rows, t] = tok_cpu
            logps[rows, t] = lp.cpu()
            if t + 1 >= self.min_new_tokens:
                done = stopper(tok_cpu, tokens, rows, t) & alive
                if done.any():
                    finished = done.nonzero().flatten()
                    for r in rows[finished].tolist():
                        ends[r] = t + 1
                    alive[finished] = False
                    dead += len(finished)
                    if dead == len(rows):
                        break
                    if dead >= max(1.0, self.compact_fraction * len(rows)):
                        keep = alive.nonzero().flatten()
                        decoder.keep(keep.to(tok.device))
                        rows, alive, dead = rows[keep], alive[keep], 0
                        tok = tok[keep.to(tok.device)]
            if t + 1 < max_new:
                logits = decoder.step(tok)
        return ends

    def _completion(
        self,
        prompt_index: int,
        prompt: list[int],
        tokens: Tensor,
        logps: Tensor,
        end: int,
        params: SamplingParams,
    ) -> Completion:
        raw = tokens[:end].tolist()
        if self.min_new_tokens:  # fixed-length benchmark runs: keep every generated token
            kept, stopped = raw, end < params.max_new_tokens
        else:  # the loop already ended each row at its first EOS/stop; this only re-checks
            kept, stopped = trim_at_stop(raw, self.eos_ids, params.stop, self._decode)
        return Completion(
            prompt_index=prompt_index,
            prompt_ids=prompt,
            token_ids=kept,
            text=self._decode(kept),
            finish_reason="stop" if stopped else "length",
            logprobs=logps[: len(kept)].tolist(),
        )

    def _left_pad(self, groups: list[list[int]]) -> tuple[Tensor, Tensor]:
        pad = self.tokenizer.pad_token_id
        pad = pad if pad is not None else min(self.eos_ids, default=0)
        width = max(len(x) for x in groups)
        ids = torch.tensor([[pad] * (width - len(x)) + x for x in groups])
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in groups])
        return ids.to(self.model.device), mask.to(self.model.device)

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def load_weights(self, weights: Mapping[str, torch.Tensor]) -> None:
        """Sample from ``weights``; nothing to copy when they are this very module's."""
        load_into(self.model, weights)

    def sleep(self) -> None:
        """Nothing to free: caches live only inside ``generate``."""

    def wake(self) -> None:
        """Nothing to restore."""
