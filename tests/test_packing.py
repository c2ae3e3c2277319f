"""Packing: layout, boundaries, and that a packed forward equals a padded one."""

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from zerorl.core.logprobs import token_logprobs
from zerorl.core.packing import first_fit_rows, pack, packing_efficiency


def test_plan_rows_first_fit_decreasing_respects_capacity():
    lengths = [5, 3, 8, 2, 7, 1]
    rows = first_fit_rows(lengths, 10)
    assert sorted(i for r in rows for i in r) == list(range(6))
    assert all(sum(lengths[i] for i in r) <= 10 for r in rows)
    assert len(rows) == 3  # 26 tokens cannot fit in 2 rows of 10


def test_plan_rows_rejects_oversized_sample():
    try:
        first_fit_rows([11], 10)
    except ValueError as e:
        assert "sample 0" in str(e)
    else:
        raise AssertionError("oversized sample accepted")


def test_pack_layout():
    prompts = [[1, 2], [3], [4, 5, 6]]
    responses = [[7, 8, 9], [10], [11]]
    batch = pack(prompts, responses, [1.0, 0.0, 0.5], pack_length=8)
    assert batch.num_rows == 2
    rebuilt = {}
    for b, (bounds, index) in enumerate(zip(batch.sample_bounds, batch.sample_index)):
        for (s, e), i in zip(bounds, index):
            rebuilt[i] = batch.input_ids[b, s:e].tolist()
            assert batch.position_ids[b, s:e].tolist() == list(range(e - s))
            n_prompt = len(prompts[i])
            assert batch.response_mask[b, s : s + n_prompt].sum() == 0
            assert batch.response_mask[b, s + n_prompt : e].sum() == len(responses[i])
            assert float(batch.token_rewards[b, e - 1]) == [1.0, 0.0, 0.5][i]
    assert rebuilt == {i: prompts[i] + responses[i] for i in range(3)}
    assert float(batch.token_rewards.sum()) == 1.5
    assert 0 < packing_efficiency(batch) <= 1


def test_packed_forward_equals_padded_forward():
    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=50,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    model = Qwen2ForCausalLM(cfg).eval()
    prompts = [[1, 2, 3], [4, 5], [6, 7, 8, 9]]
    responses = [[10, 11], [12, 13, 14], [15]]
    batch = pack(prompts, responses, [0, 0, 0], pack_length=32)
    assert batch.num_rows == 1
    with torch.no_grad():
        logits = model(
            input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False
        ).logits
        packed = token_logprobs(logits, batch.input_ids)
        for (s, e), i in zip(batch.sample_bounds[0], batch.sample_index[0]):
            ids = torch.tensor([prompts[i] + responses[i]])
            alone = token_logprobs(model(input_ids=ids).logits, ids)
            torch.testing.assert_close(packed[:, s + 1 : e], alone[:, 1:], atol=1e-5, rtol=1e-5)
