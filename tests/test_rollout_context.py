"""Both in-process engines stay inside the model's context (``max_position_embeddings``): a
prompt that fills it gets an empty, cut response; the others get no more tokens than it leaves."""

from __future__ import annotations

import pytest

from zerorl.models import load_policy, load_tokenizer
from zerorl.rollout import local_engine
from zerorl.rollout.base import context_room
from zerorl.types import SamplingParams

CONTEXT = 40


@pytest.mark.parametrize("kind", ["hf", "fast"])
def test_generation_stops_at_the_models_context(tiny_model_dir, kind):
    model = load_policy(str(tiny_model_dir))
    model.config.max_position_embeddings = CONTEXT
    engine = local_engine(kind, model, load_tokenizer(str(tiny_model_dir)), batch_size=8)
    prompts = ["x" * 50, "y" * 30, "z" * 10]  # one character per token
    params = SamplingParams(n=2, temperature=1.0, max_new_tokens=100, seed=3)
    out = engine.generate(prompts, params)
    assert [[c.prompt_index for c in group] for group in out] == [[0, 0], [1, 1], [2, 2]]
    for c in out[0]:  # fills the context by itself
        assert (c.token_ids, c.text, c.finish_reason) == ([], "", "length")
    for group in out[1:]:
        for c in group:
            assert len(c.prompt_ids) + len(c.token_ids) <= CONTEXT
            assert len(c.logprobs) == len(c.token_ids)
            if c.finish_reason == "length":
                assert len(c.prompt_ids) + len(c.token_ids) >= CONTEXT - 20  # cut near the end
    assert any(c.token_ids for group in out[1:] for c in group)


def test_context_room():
    class Config:
        max_position_embeddings = 100

    class Model:
        config = Config()

    assert context_room(Model(), 30, 50) == 50
    assert context_room(Model(), 80, 50) == 20
    assert context_room(Model(), 100, 50) == 0
    Config.max_position_embeddings = None
    assert context_room(Model(), 10_000, 50) == 50
