"""The Hugging Face rollout engine: shapes, stop strings, finish reasons, seeds."""

from __future__ import annotations

import pytest
import torch
from conftest import check_completions

from zerorl.core.logprobs import token_logprobs
from zerorl.models import load_policy, load_tokenizer
from zerorl.rollout.base import trim_at_stop
from zerorl.rollout.hf import HFEngine
from zerorl.types import SamplingParams


def make_engine(model_dir, batch_size=8):
    return HFEngine(load_policy(str(model_dir)), load_tokenizer(str(model_dir)), batch_size)


def test_generate_returns_n_completions_per_prompt_in_order(tiny_model_dir):
    engine = make_engine(tiny_model_dir, batch_size=3)
    prompts = ["abc", "a much longer prompt", "x"]
    out = engine.generate(prompts, SamplingParams(n=2, max_new_tokens=6, seed=1))
    check_completions(engine, prompts, out, n=2, max_new_tokens=6)


def test_same_seed_same_samples_and_global_rng_untouched(tiny_model_dir):
    engine = make_engine(tiny_model_dir)
    params = SamplingParams(n=3, max_new_tokens=8, seed=7)
    state = torch.get_rng_state()
    a = engine.generate(["hello"], params)
    assert torch.equal(state, torch.get_rng_state())
    b = engine.generate(["hello"], params)
    c = engine.generate(["hello"], SamplingParams(n=3, max_new_tokens=8, seed=8))
    ids = lambda out: [x.token_ids for x in out[0]]  # noqa: E731
    assert ids(a) == ids(b)
    assert ids(a) != ids(c)


def test_stop_string_is_kept_and_ends_the_response(tiny_model_dir):
    # A random char model emits a vowel quickly; use vowels as stop strings.
    engine = make_engine(tiny_model_dir)
    stops = tuple("aeiou")
    out = engine.generate(["z"], SamplingParams(n=8, max_new_tokens=64, seed=3, stop=stops))
    by_text = [c for c in out[0] if any(s in c.text for s in stops)]
    assert by_text, "no sample hit a stop string in 64 tokens"
    for c in out[0]:
        if any(s in c.text for s in stops):
            first = min(c.text.find(s) for s in stops if s in c.text)
            assert first == len(c.text) - 1  # the stop char is the last one, and kept
            assert c.finish_reason == "stop"
        elif c.finish_reason == "stop":
            assert c.token_ids[-1] == engine.tokenizer.eos_token_id


def test_trim_at_stop_cases():
    decode = lambda ids: "".join(chr(i) for i in ids)  # noqa: E731
    ids = [ord(ch) for ch in "abc</answer>tail"]
    kept, stopped = trim_at_stop(ids, set(), ("</answer>",), decode)
    assert decode(kept) == "abc</answer>" and stopped
    kept, stopped = trim_at_stop([1, 2, 99, 3], {99}, (), decode)
    assert kept == [1, 2, 99] and stopped
    kept, stopped = trim_at_stop(ids[:5], set(), ("</answer>",), decode)
    assert kept == ids[:5] and not stopped


def test_temperature_zero_is_greedy_and_matches_the_fast_engine(tiny_model_dir):
    """temperature 0 = greedy in every engine (vLLM's convention): identical samples, equal to
    ``generate(do_sample=False)`` and to ``FastEngine``."""
    from zerorl.rollout.fast import FastEngine

    engine = make_engine(tiny_model_dir)
    params = SamplingParams(n=2, max_new_tokens=8, temperature=0.0, seed=3)
    out = engine.generate(["abc", "hello there"], params)
    fast = FastEngine(engine.model, engine.tokenizer, batch_size=8).generate(
        ["abc", "hello there"], params
    )
    for i, prompt in enumerate(["abc", "hello there"]):
        ids = torch.tensor([engine.tokenizer.encode(prompt, add_special_tokens=False)])
        want = engine.model.generate(ids, do_sample=False, max_new_tokens=8, top_k=None)
        want = want[0, ids.shape[1] :].tolist()
        for completion in [*out[i], *fast[i]]:
            assert completion.token_ids == want[: len(completion.token_ids)]


def test_logprobs_match_a_forward_pass(tiny_model_dir):
    """Each completion's log-probs are the model's own for its tokens (sampled at T=1, cut at a
    stop string or padded after an early EOS in a batch)."""
    engine = make_engine(tiny_model_dir, batch_size=4)
    out = engine.generate(
        ["abc", "a much longer prompt"],
        SamplingParams(n=3, max_new_tokens=12, seed=5, stop=("e",)),
    )
    with torch.no_grad():
        for cs in out:
            for c in cs:
                assert len(c.logprobs) == len(c.token_ids)
                ids = torch.tensor([c.prompt_ids + c.token_ids])
                ref = token_logprobs(engine.model(ids).logits, ids)[0, len(c.prompt_ids) :]
                assert torch.allclose(torch.tensor(c.logprobs), ref, atol=1e-4)


def test_load_weights_copies_by_name_and_skips_the_modules_own(tiny_model_dir):
    """Engines take weights: another model's state dict is copied in by name; the engine's own
    state dict (the local engine holds the policy module) leaves it as it is; a state dict that
    misses a weight is refused."""
    from zerorl.rollout.base import load_into

    engine_model, other = load_policy(str(tiny_model_dir)), load_policy(str(tiny_model_dir))
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.5)
    load_into(engine_model, other.state_dict())
    for name, tensor in other.state_dict().items():
        assert torch.equal(engine_model.state_dict()[name], tensor), name
    before = {k: v.clone() for k, v in engine_model.state_dict().items()}
    load_into(engine_model, engine_model.state_dict())
    for name, tensor in engine_model.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    partial = dict(list(other.state_dict().items())[1:])
    with pytest.raises(KeyError, match="missing"):
        load_into(engine_model, partial)
