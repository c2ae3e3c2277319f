"""Reference tests for GAE, packed GAE and whitening: plain loops, closed forms, invariances."""

import math
import random

import pytest
import torch

from zerorl.core.advantages import normalize, packed_gae
from zerorl.core.packing import pack


def gae(rewards, values, mask, gamma: float, lam: float):
    """``packed_gae`` with one episode per row (every row a single segment)."""
    one_segment = torch.zeros_like(mask, dtype=torch.long)
    return packed_gae(rewards, values, mask, one_segment, gamma, lam)


def loop_gae(rewards, values, mask, gamma, lam):
    """Textbook GAE over the masked tokens of each row, written as plain Python lists."""
    B, T = len(rewards), len(rewards[0])
    adv = [[0.0] * T for _ in range(B)]
    for b in range(B):
        idx = [t for t in range(T) if mask[b][t]]
        running, next_v = 0.0, 0.0
        for t in reversed(idx):
            delta = rewards[b][t] + gamma * next_v - values[b][t]
            running = delta + gamma * lam * running
            adv[b][t] = running
            next_v = values[b][t]
    ret = [[adv[b][t] + values[b][t] if mask[b][t] else 0.0 for t in range(T)] for b in range(B)]
    return adv, ret


def random_case(seed, B=4, T=17, ragged=True):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(B, T, generator=g)
    values = torch.randn(B, T, generator=g)
    if ragged:  # arbitrary holes inside the response, too
        mask = (torch.rand(B, T, generator=g) > 0.3).float()
    else:
        mask = torch.zeros(B, T)
        for b in range(B):
            s = int(torch.randint(0, T // 2, (1,), generator=g))
            e = int(torch.randint(s + 1, T + 1, (1,), generator=g))
            mask[b, s:e] = 1
    return rewards, values, mask


@pytest.mark.parametrize("seed", range(8))
def test_gae_matches_plain_loop(seed):
    rng = random.Random(seed)
    gamma, lam = rng.uniform(0.5, 1.0), rng.uniform(0.0, 1.0)
    rewards, values, mask = random_case(seed, ragged=seed % 2 == 0)
    adv, ret = gae(rewards, values, mask, gamma, lam)
    ref_adv, ref_ret = loop_gae(rewards.tolist(), values.tolist(), mask.tolist(), gamma, lam)
    torch.testing.assert_close(adv, torch.tensor(ref_adv), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ret, torch.tensor(ref_ret), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_gamma_lambda_one_closed_form_matches_loop(seed):
    rewards, values, mask = random_case(seed)
    adv, ret = gae(rewards, values, mask, 1.0, 1.0)
    ref_adv, ref_ret = loop_gae(rewards.tolist(), values.tolist(), mask.tolist(), 1.0, 1.0)
    torch.testing.assert_close(adv, torch.tensor(ref_adv), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ret, torch.tensor(ref_ret), atol=1e-5, rtol=1e-5)


def test_terminal_reward_gives_reward_minus_value():
    T = 10
    mask = torch.zeros(3, T)
    mask[:, 3:8] = 1
    rewards = torch.zeros(3, T)
    R = torch.tensor([1.0, 0.0, 1.0])
    rewards[:, 7] = R
    values = torch.randn(3, T)
    adv, ret = gae(rewards, values, mask, 1.0, 1.0)
    for b in range(3):
        for t in range(3, 8):
            assert math.isclose(float(adv[b, t]), float(R[b] - values[b, t]), abs_tol=1e-6)
            assert math.isclose(float(ret[b, t]), float(R[b]), abs_tol=1e-6)
    assert adv[mask == 0].abs().max() == 0 and ret[mask == 0].abs().max() == 0


@pytest.mark.parametrize("gamma,lam", [(1.0, 1.0), (0.9, 0.95)])
def test_masked_positions_do_not_matter(gamma, lam):
    rewards, values, mask = random_case(3)
    adv, ret = gae(rewards, values, mask, gamma, lam)
    junk_values = torch.where(mask > 0, values, torch.full_like(values, float("nan")))
    junk_rewards = torch.where(mask > 0, rewards, torch.full_like(rewards, 1e6))
    adv2, ret2 = gae(junk_rewards, junk_values, mask, gamma, lam)
    torch.testing.assert_close(adv, adv2)
    torch.testing.assert_close(ret, ret2)


@pytest.mark.parametrize("gamma,lam", [(1.0, 1.0), (0.97, 0.9), (0.8, 0.0)])
def test_packed_gae_equals_padded_gae(gamma, lam):
    g = torch.Generator().manual_seed(0)
    n = 9
    prompts = [list(range(int(torch.randint(1, 6, (1,), generator=g)))) for _ in range(n)]
    responses = [list(range(int(torch.randint(0, 8, (1,), generator=g)))) for _ in range(n)]
    rewards = [float(torch.rand(1, generator=g)) for _ in range(n)]
    batch = pack(prompts, responses, rewards, pack_length=16)
    assert batch.num_rows < n  # samples really share rows
    values = torch.randn(batch.input_ids.shape, generator=g)
    adv, ret = packed_gae(
        batch.token_rewards, values, batch.response_mask, batch.segment_ids, gamma, lam
    )
    for b, row_bounds in enumerate(batch.sample_bounds):
        for s, e in row_bounds:
            sl = slice(s, e)
            padded = gae(
                batch.token_rewards[b : b + 1, sl],
                values[b : b + 1, sl],
                batch.response_mask[b : b + 1, sl],
                gamma,
                lam,
            )
            torch.testing.assert_close(adv[b : b + 1, sl], padded[0], atol=1e-6, rtol=1e-6)
            torch.testing.assert_close(ret[b : b + 1, sl], padded[1], atol=1e-6, rtol=1e-6)


def test_normalize_whitens_over_masked_tokens_of_whole_batch():
    _, values, mask = random_case(5)
    x = values * 3 + 2
    out = normalize(x, mask)
    sel = out[mask > 0]
    assert abs(float(sel.mean())) < 1e-5
    assert abs(float(sel.var(correction=0)) - 1.0) < 1e-4
    assert out[mask == 0].abs().max() == 0
    # Batch-level, not per-row: the whitening constants are shared by all rows.
    ref = (x[mask > 0] - x[mask > 0].mean()) / x[mask > 0].std(correction=0)
    torch.testing.assert_close(sel, ref, atol=1e-4, rtol=1e-4)


def test_normalize_empty_mask_is_zero():
    assert normalize(torch.randn(2, 3), torch.zeros(2, 3)).abs().sum() == 0
