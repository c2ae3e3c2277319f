"""Reference tests for step-level loss aggregation and clip-higher: plain loops over samples, and
the invariance that matters: however a step is split into micro-batches, the loss and its
gradients equal those of one big batch."""

import random

import pytest
import torch

from zerorl.core.losses import aggregate_sum, aggregation_units, masked_mean, policy_loss

HOWS = ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "row-mean"]


def packed_case(seed, B=6, T=20):
    """Rows of packed samples: segment ids 1.. per row, 0 on padding; response tokens ragged."""
    rng = random.Random(seed)
    seg = torch.zeros(B, T, dtype=torch.long)
    mask = torch.zeros(B, T)
    for b in range(B):
        t, s = 0, 1
        while t < T - 2 and rng.random() < 0.85:
            length = rng.randint(2, 7)
            end = min(T, t + length)
            seg[b, t:end] = s
            prompt = rng.randint(0, end - t - 1)
            mask[b, t + prompt : end] = 1 if rng.random() < 0.9 else 0  # some samples all prompt
            t, s = end, s + 1
    x = torch.randn(B, T, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x, mask, seg


def loop_aggregate(x, mask, seg, how):
    """The aggregate as words say it, over Python lists."""
    units = []
    for b in range(x.shape[0]):
        row = [(int(seg[b, t]), float(x[b, t])) for t in range(x.shape[1]) if mask[b, t] > 0]
        if how == "token-mean":
            units += [v for _, v in row]
        elif how == "row-mean" and row:
            units.append(sum(v for _, v in row) / len(row))
        elif how.startswith("seq-mean"):
            for s in sorted({s for s, _ in row}):
                vals = [v for k, v in row if k == s]
                units.append(sum(vals) if how.endswith("sum") else sum(vals) / len(vals))
    return sum(units) / len(units)


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("seed", range(6))
def test_aggregate_matches_a_plain_loop(how, seed):
    x, mask, seg = packed_case(seed)
    got = aggregate_sum(x, mask, seg, how) / aggregation_units(mask, seg, how)
    assert float(got) == pytest.approx(loop_aggregate(x, mask, seg, how), rel=1e-12)


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("seed", range(6))
def test_micro_batches_give_the_big_batch_loss_and_gradients(how, seed):
    x, mask, seg = packed_case(seed)
    big = x.clone().requires_grad_(True)
    (aggregate_sum(big, mask, seg, how) / aggregation_units(mask, seg, how)).backward()

    rows = list(range(x.shape[0]))
    random.Random(seed).shuffle(rows)
    cuts = sorted(random.Random(seed + 1).sample(range(1, len(rows)), 2))
    parts = [rows[: cuts[0]], rows[cuts[0] : cuts[1]], rows[cuts[1] :]]
    step_units = sum(aggregation_units(mask[p], seg[p], how) for p in parts)
    small = x.clone().requires_grad_(True)
    total = sum(aggregate_sum(small[p], mask[p], seg[p], how) / step_units for p in parts)
    total.backward()
    assert total.item() == pytest.approx(loop_aggregate(x, mask, seg, how), rel=1e-12)
    assert torch.allclose(small.grad, big.grad, rtol=0, atol=1e-15)


@pytest.mark.parametrize("how", ["token-mean", "row-mean"])
def test_one_batch_agrees_with_masked_mean(how):
    x, mask, seg = packed_case(3)
    got = aggregate_sum(x, mask, seg, how) / aggregation_units(mask, seg, how)
    assert float(got) == pytest.approx(float(masked_mean(x, mask, how)), rel=1e-12)


def test_clip_higher_clips_only_the_upper_side_further():
    old = torch.zeros(1, 4)
    new = torch.log(torch.tensor([[0.7, 0.9, 1.25, 1.4]]))  # ratios
    adv, mask = torch.ones(1, 4), torch.ones(1, 4)
    loss, _ = policy_loss(new, old, adv, mask, clip_eps=0.2, clip_eps_high=0.28)
    # positive advantage: -min(r, clip(r, 0.8, 1.28)) per token
    expected = -(0.7 + 0.9 + 1.25 + 1.28) / 4
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    symmetric, _ = policy_loss(new, old, adv, mask, clip_eps=0.2)
    assert float(symmetric) == pytest.approx(-(0.7 + 0.9 + 1.2 + 1.2) / 4, rel=1e-6)
    lower, _ = policy_loss(new, old, -adv, mask, clip_eps=0.2, clip_eps_high=0.28)
    # negative advantage: max(r, clip(r, 0.8, 1.28)) per token: the low side still clips at 0.8
    assert float(lower) == pytest.approx((0.8 + 0.9 + 1.25 + 1.4) / 4, rel=1e-6)
