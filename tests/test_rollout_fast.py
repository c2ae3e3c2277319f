"""FastEngine: same outputs as Hugging Face ``generate`` (greedy), the model's distribution
(sampled), stop strings, finish reasons, seeds, logprobs, and the fallback for other models."""

from __future__ import annotations

import pytest
import torch
from conftest import char_tokenizer
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from zerorl.core.logprobs import token_logprobs
from zerorl.models import load_policy, load_tokenizer
from zerorl.rollout import decoders
from zerorl.rollout.fast import FastEngine
from zerorl.types import SamplingParams

PROMPTS = ["abc", "a much longer prompt", "x", "hello there"]


@pytest.fixture(scope="module")
def qwen2(tiny_model_dir):
    return load_policy(str(tiny_model_dir)).eval(), load_tokenizer(str(tiny_model_dir))


def other_model(kind: str):
    """Tiny random Llama/Qwen3 (native backend) and GPT-2 (hf fallback), char tokenizer."""
    tok = char_tokenizer()
    common = {"vocab_size": len(tok), "eos_token_id": tok.eos_token_id, "pad_token_id": 0}
    torch.manual_seed(1)
    if kind == "gpt2":
        return GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, **common)).eval(), tok
    shape = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2}
    heads = {"num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8}
    cls, cfg = {"llama": (LlamaForCausalLM, LlamaConfig), "qwen3": (Qwen3ForCausalLM, Qwen3Config)}[
        kind
    ]
    return cls(cfg(**shape, **heads, **common)).eval(), tok


def hf_greedy(model, tok, prompt: str, max_new: int) -> list[int]:
    """``generate(do_sample=False)`` on the prompt alone, cut after the first EOS."""
    ids = torch.tensor([tok.encode(prompt, add_special_tokens=False)])
    out = model.generate(
        ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=max_new,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
    )[0, ids.shape[1] :].tolist()  # fmt: skip
    return out[: out.index(tok.eos_token_id) + 1] if tok.eos_token_id in out else out


@pytest.mark.parametrize("backend", ["native", "native-shared", "hf"])
def test_greedy_equals_hf_generate(qwen2, backend, monkeypatch):
    model, tok = qwen2
    if backend == "native-shared":  # prompt KV shared by the rows of a group, not copied
        monkeypatch.setattr(decoders, "SHARE_MIN_WIDTH", 1)
        backend = "native"
    engine = FastEngine(model, tok, batch_size=5, backend=backend, compact_fraction=0.01)
    out = engine.generate(PROMPTS, SamplingParams(n=3, temperature=0, max_new_tokens=24))
    for prompt, completions in zip(PROMPTS, out):
        expected = hf_greedy(model, tok, prompt, 24)
        assert [c.token_ids for c in completions] == [expected] * 3


@pytest.mark.parametrize("kind", ["llama", "qwen3", "gpt2"])
def test_other_families_greedy_equal_hf(kind):
    model, tok = other_model(kind)
    engine = FastEngine(model, tok, batch_size=8)
    assert engine.backend == ("hf" if kind == "gpt2" else "native")
    out = engine.generate(PROMPTS, SamplingParams(n=2, temperature=0, max_new_tokens=16))
    for prompt, completions in zip(PROMPTS, out):
        assert completions[0].token_ids == hf_greedy(model, tok, prompt, 16)
    if kind == "gpt2":
        with pytest.raises(ValueError, match="cannot run"):
            FastEngine(model, tok, backend="native")


def test_first_token_frequencies_follow_the_softmax(qwen2):
    model, tok = qwen2
    prompt = "the model speaks: "
    ids = torch.tensor([tok.encode(prompt, add_special_tokens=False)])
    for temperature, top_p in [(1.0, 1.0), (0.7, 0.9)]:
        with torch.no_grad():
            logits = model(ids).logits[0, -1] / temperature
        probs = torch.softmax(logits, -1)
        sorted_p, order = probs.sort(descending=True)
        keep = order[(sorted_p.cumsum(0) - sorted_p) < top_p]  # the top-p nucleus
        probs = torch.zeros_like(probs).index_fill_(0, keep, 1.0) * probs
        probs = probs / probs.sum()
        n = 4000
        engine = FastEngine(model, tok, batch_size=n)
        params = SamplingParams(n=n, temperature=temperature, top_p=top_p, max_new_tokens=1)
        first = [c.token_ids[0] for c in engine.generate([prompt], params)[0]]
        counts = torch.bincount(torch.tensor(first), minlength=len(probs)).float()
        assert counts[probs == 0].sum() == 0, "sampled a token outside the nucleus"
        expected = probs * n
        bins = expected >= 5  # chi-square needs >= 5 expected per bin; pool the rest
        stat = ((counts[bins] - expected[bins]) ** 2 / expected[bins]).sum()
        rest_e, rest_c = expected[~bins].sum(), counts[~bins].sum()
        if rest_e > 0:
            stat = stat + (rest_c - rest_e) ** 2 / rest_e
        df = int(bins.sum()) - (0 if rest_e > 0 else 1)
        # Wilson-Hilferty 1e-4 upper quantile of chi-square(df): a wrong distribution of this
        # size lands far above it; a right one only one time in ten thousand.
        z, k = 3.72, df
        bound = k * (1 - 2 / (9 * k) + z * (2 / (9 * k)) ** 0.5) ** 3
        assert float(stat) < bound, (temperature, float(stat), bound)


@pytest.mark.parametrize("share_min_width", [1, 10**6])
def test_logprobs_match_a_forward_pass(qwen2, share_min_width, monkeypatch):
    monkeypatch.setattr(decoders, "SHARE_MIN_WIDTH", share_min_width)
    model, tok = qwen2
    engine = FastEngine(model, tok, batch_size=8, compact_fraction=0.01)
    out = engine.generate(PROMPTS[:2], SamplingParams(n=2, max_new_tokens=20, seed=4))
    for completions in out:
        for c in completions:
            ids = torch.tensor([c.prompt_ids + c.token_ids])
            with torch.no_grad():
                ref = token_logprobs(model(ids).logits, ids)[0, len(c.prompt_ids) :]
            assert torch.allclose(torch.tensor(c.logprobs), ref, atol=1e-4)


def test_same_seed_same_samples_and_global_rng_untouched(qwen2):
    model, tok = qwen2
    engine = FastEngine(model, tok, batch_size=8)
    params = SamplingParams(n=3, max_new_tokens=8, seed=7)
    state, threads = torch.get_rng_state(), torch.get_num_threads()
    a = engine.generate(["hello"], params)
    assert torch.equal(state, torch.get_rng_state())
    assert torch.get_num_threads() == threads  # workers run single-threaded, then restore
    b = engine.generate(["hello"], params)
    c = engine.generate(["hello"], SamplingParams(n=3, max_new_tokens=8, seed=8))
    ids = lambda out: [x.token_ids for x in out[0]]  # noqa: E731
    assert ids(a) == ids(b)
    assert ids(a) != ids(c)
    assert len(set(map(tuple, ids(a)))) > 1, "the n samples of a prompt should differ"


@pytest.mark.parametrize("share_min_width", [1, 10**6])
def test_stop_strings_eos_and_finish_reasons(qwen2, share_min_width, monkeypatch):
    monkeypatch.setattr(decoders, "SHARE_MIN_WIDTH", share_min_width)
    model, tok = qwen2
    engine = FastEngine(model, tok, batch_size=6, compact_fraction=0.01)
    stops = ("e", "ab", "xyz")
    params = SamplingParams(n=16, max_new_tokens=40, seed=3, stop=stops)
    out = engine.generate(["z", "qq"], params)
    reasons = set()
    for i, completions in enumerate(out):
        assert len(completions) == 16
        for c in completions:
            assert c.prompt_index == i and len(c.logprobs) == len(c.token_ids)
            assert c.text == tok.decode(c.token_ids, skip_special_tokens=True)
            hit = [c.text.find(s) + len(s) for s in stops if s in c.text]
            reasons.add(c.finish_reason)
            if hit:  # the first stop string ends the response, and is kept
                assert c.finish_reason == "stop" and min(hit) == len(c.text)
            elif c.finish_reason == "stop":
                assert c.token_ids[-1] == tok.eos_token_id
                assert tok.eos_token_id not in c.token_ids[:-1]
            else:
                assert len(c.token_ids) == 40
    assert "stop" in reasons
    short = engine.generate(["z"], SamplingParams(n=4, max_new_tokens=2, seed=1))
    for c in short[0]:
        ended = c.token_ids[-1] == tok.eos_token_id
        assert c.finish_reason == ("stop" if ended else "length")
        assert ended or len(c.token_ids) == 2


def test_min_new_tokens_generates_fixed_lengths(qwen2):
    model, tok = qwen2
    engine = FastEngine(model, tok, batch_size=4, min_new_tokens=12)
    out = engine.generate(["ab", "c"], SamplingParams(n=2, max_new_tokens=12, stop=("e",)))
    assert all(len(c.token_ids) == 12 for cs in out for c in cs)


def test_segment_attention_matches_the_dense_mask(tiny_model_dir):
    """Per-sample attention on packed rows: same logits and gradients as transformers' sdpa."""
    from benchmarks.segment_attention import use_segment_attention
    from zerorl.core.packing import pack

    dense = load_policy(str(tiny_model_dir))
    segmented = use_segment_attention(load_policy(str(tiny_model_dir)))
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(2, 30, (12, 2), generator=g).tolist()
    prompts = [torch.randint(2, 90, (a,), generator=g).tolist() for a, _ in lengths]
    responses = [torch.randint(2, 90, (b,), generator=g).tolist() for _, b in lengths]
    batch = pack(prompts, responses, [1.0] * 12, 96)
    assert batch.num_rows > 1 and max(len(r) for r in batch.sample_bounds) > 1
    real = batch.attention_mask.bool()
    outs = []
    for model in (dense, segmented):
        logits = model(input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False)
        logits.logits[real].square().mean().backward()
        outs.append((logits.logits[real], model.model.layers[0].self_attn.q_proj.weight.grad))
    assert torch.allclose(outs[0][0], outs[1][0], atol=1e-5)
    assert torch.allclose(outs[0][1], outs[1][1], atol=1e-5)
