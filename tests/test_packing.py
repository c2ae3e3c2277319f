"""Packing: layout, boundaries, and that a packed forward equals a padded one."""

import random

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from zerorl.core.logprobs import token_logprobs
from zerorl.core.packing import (
    first_fit_decreasing_rows,
    next_fit_rows,
    pack,
    pack_rows,
    packing_efficiency,
    repack,
    sample_minibatches,
    scatter_responses,
    shuffled_order,
)
from zerorl.types import PackedBatch


def per_sample(x: torch.Tensor, batch: PackedBatch) -> dict[int, torch.Tensor]:
    """Each sample's response-token values of a (B, T) tensor, keyed by sample index."""
    out: dict[int, torch.Tensor] = {}
    for b, (row_bounds, row_index) in enumerate(zip(batch.sample_bounds, batch.sample_index)):
        for (start, end), i in zip(row_bounds, row_index):
            out[i] = x[b, start:end][batch.response_mask[b, start:end] > 0]
    return out


def test_pack_rows_first_fit_decreasing_respects_capacity():
    lengths = [5, 3, 8, 2, 7, 1]
    rows = first_fit_decreasing_rows(lengths, 10)
    assert sorted(i for r in rows for i in r) == list(range(6))
    assert all(sum(lengths[i] for i in r) <= 10 for r in rows)
    assert len(rows) == 3  # 26 tokens cannot fit in 2 rows of 10


def test_pack_rows_rejects_oversized_sample():
    try:
        first_fit_decreasing_rows([11], 10)
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


def test_scatter_responses_is_the_inverse_of_per_sample():
    prompts = [[1, 2], [3], [4, 5, 6], [7]]
    responses = [[8, 9, 10], [11], [12, 13], [14, 15, 16, 17]]
    batch = pack(prompts, responses, [0.0] * 4, pack_length=7)
    values = [[float(10 * i + k) for k in range(len(r))] for i, r in enumerate(responses)]
    grid = scatter_responses(values, batch)
    assert float(grid[batch.response_mask == 0].abs().sum()) == 0.0
    back = per_sample(grid, batch)
    assert {i: v.tolist() for i, v in back.items()} == dict(enumerate(values))
    with pytest.raises(ValueError, match="response tokens"):
        scatter_responses([[0.0]] * 4, batch)


def test_next_fit_matches_its_definition():
    """Next-fit (ORZ): rows are consecutive runs of the order, each full enough that the next
    row's first sample would not have fitted."""
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 40, (200,), generator=gen).tolist()
    order = shuffled_order(len(lengths), 42)
    rows = next_fit_rows(lengths, 64, order)
    assert [i for r in rows for i in r] == order
    loads = [sum(lengths[i] for i in r) for r in rows]
    assert all(load <= 64 for load in loads)
    assert all(loads[k] + lengths[rows[k + 1][0]] > 64 for k in range(len(rows) - 1))


def test_next_fit_by_hand_and_against_first_fit_decreasing():
    lengths = [6, 5, 4, 5]
    assert next_fit_rows(lengths, 10, [0, 1, 2, 3]) == [[0], [1, 2], [3]]
    assert pack_rows(lengths, 10, "first-fit-decreasing") == [[0, 2], [1, 3]]


def test_shuffled_order_is_orzs_python_shuffle():
    """ORZ's make_experience: ``random.Random(42).shuffle`` of the sample indices."""
    expected = list(range(50))
    random.Random(42).shuffle(expected)
    assert shuffled_order(50, 42) == expected
    assert pack_rows([3] * 50, 9, "next-fit", seed=42) == [
        expected[k : k + 3] for k in range(0, 50, 3)
    ]


def test_pack_next_fit_keeps_every_sample_and_reward():
    prompts = [[1, 2], [3], [4, 5, 6], [7]]
    responses = [[8], [9, 10], [11], [12, 13, 14]]
    batch = pack(prompts, responses, [1.0, 0.0, 0.5, 0.25], 6, packing="next-fit", seed=3)
    index = [i for row in batch.sample_index for i in row]
    assert index == shuffled_order(4, 3)
    values = per_sample(batch.token_rewards, batch)
    assert {i: float(v[-1]) for i, v in values.items()} == {0: 1.0, 1: 0.0, 2: 0.5, 3: 0.25}


def random_batch(seed: int, n: int = 9, pack_length: int = 24):
    rng = random.Random(seed)
    prompts = [[rng.randrange(2, 50) for _ in range(rng.randint(1, 6))] for _ in range(n)]
    responses = [[rng.randrange(2, 50) for _ in range(rng.randint(1, 8))] for _ in range(n)]
    rewards = [float(rng.random() < 0.5) for _ in range(n)]
    return pack(prompts, responses, rewards, pack_length, packing="next-fit", seed=seed)


def per_sample_tokens(x: torch.Tensor, batch: PackedBatch) -> dict[int, list]:
    """Every token of each sample (prompt and response), keyed by sample index."""
    out = {}
    for b, (row_bounds, row_index) in enumerate(zip(batch.sample_bounds, batch.sample_index)):
        for (start, end), i in zip(row_bounds, row_index):
            out[i] = x[b, start:end].tolist()
    return out


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("packing", ["next-fit", "first-fit-decreasing"])
def test_repack_moves_each_chosen_sample_whole(seed, packing):
    batch = random_batch(seed)
    extra = torch.randn(batch.input_ids.shape)
    chosen = random.Random(seed).sample(range(9), 5)
    sub, (moved,) = repack(batch, chosen, [extra], packing)
    assert sorted(i for row in sub.sample_index for i in row) == sorted(chosen)
    assert sub.input_ids.shape[1] <= batch.input_ids.shape[1]
    for field in ("input_ids", "position_ids", "response_mask", "token_rewards"):
        old = per_sample_tokens(getattr(batch, field), batch)
        new = per_sample_tokens(getattr(sub, field), sub)
        assert new == {i: old[i] for i in chosen}, field
    assert per_sample_tokens(moved, sub) == {
        i: v for i, v in per_sample_tokens(extra, batch).items() if i in chosen
    }
    # the new layout is a valid packing: segments numbered 1.. per row, masks from them
    for b, row_bounds in enumerate(sub.sample_bounds):
        for k, (start, end) in enumerate(row_bounds):
            assert (sub.segment_ids[b, start:end] == k + 1).all()
        assert (sub.segment_ids[b, row_bounds[-1][1] :] == 0).all()
    assert torch.equal(sub.attention_mask, (sub.segment_ids > 0).long())
    assert float(moved[sub.attention_mask == 0].abs().sum()) == 0.0
    if packing == "next-fit":  # rows filled in the order given
        assert [i for row in sub.sample_index for i in row] == chosen


def test_repack_of_every_sample_in_order_rebuilds_the_batch():
    batch = random_batch(3)
    order = [i for row in batch.sample_index for i in row]
    sub, _ = repack(batch, order)
    for field in ("input_ids", "position_ids", "segment_ids", "response_mask", "token_rewards"):
        assert torch.equal(getattr(sub, field), getattr(batch, field)), field


@pytest.mark.parametrize("n, steps", [(100, 12), (7, 12), (12, 12), (13, 12), (5, 1)])
def test_sample_minibatches_use_every_sample_once(n, steps):
    parts = sample_minibatches(n, steps, seed=4)
    assert sorted(i for p in parts for i in p) == list(range(n))
    assert len(parts) == min(steps, n)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert parts == sample_minibatches(n, steps, seed=4)
    if steps == 1:
        assert parts == [list(range(n))]
