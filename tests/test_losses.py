"""The PPO losses against values worked out by hand."""

import math

import pytest
import torch

from zerorl.core.logprobs import entropy, gather_logprobs, shift_right, token_logprobs
from zerorl.core.losses import (
    explained_variance,
    kl_to_reference,
    logprob_mismatch,
    masked_mean,
    policy_loss,
    truncated_is_weights,
    value_loss,
)


def test_policy_loss_by_hand():
    # Four tokens, ratios e^{0.5}, e^{-0.5}, 1, e^{0.1}; eps 0.2; the last one is masked out.
    old = torch.zeros(1, 4)
    new = torch.tensor([[0.5, -0.5, 0.0, 0.1]])
    adv = torch.tensor([[1.0, 1.0, -2.0, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    loss, m = policy_loss(new, old, adv, mask, clip_eps=0.2)
    r0, r1 = math.exp(0.5), math.exp(-0.5)
    # token 0: A>0, r>1+eps -> max(-r, -1.2) = -1.2 (clipped); token 1: A>0, r<1-eps ->
    # max(-r1, -0.8) = -r1 (unclipped); token 2: r=1 -> 2.
    expected = (-1.2 + -r1 + 2.0) / 3
    assert math.isclose(float(loss), expected, rel_tol=1e-6)
    assert math.isclose(m["clip_frac"], 1 / 3, rel_tol=1e-6)
    k3 = [(r0 - 1) - 0.5, (r1 - 1) + 0.5, 0.0]
    assert math.isclose(m["approx_kl"], sum(k3) / 3, rel_tol=1e-6)


def test_policy_loss_on_policy_is_minus_mean_advantage_and_never_clips():
    lp = torch.randn(3, 5)
    adv = torch.randn(3, 5)
    mask = torch.ones(3, 5)
    loss, m = policy_loss(lp, lp.clone(), adv, mask, 0.2)
    assert math.isclose(float(loss), float(-adv.mean()), rel_tol=1e-5, abs_tol=1e-6)
    assert m["clip_frac"] == 0.0 and abs(m["approx_kl"]) < 1e-7


def test_policy_gradient_on_policy_is_advantage_weighted_score():
    lp = torch.randn(2, 4, requires_grad=True)
    adv = torch.randn(2, 4)
    mask = torch.ones(2, 4)
    loss, _ = policy_loss(lp, lp.detach(), adv, mask, 0.2)
    loss.backward()
    torch.testing.assert_close(lp.grad, -adv / 8)


def test_value_loss_by_hand():
    old = torch.tensor([[0.0, 0.0, 1.0]])
    new = torch.tensor([[0.5, -0.1, 1.0]])
    ret = torch.tensor([[1.0, 1.0, 0.0]])
    mask = torch.ones(1, 3)
    loss, m = value_loss(new, old, ret, mask, clip=0.2)
    # token 0: unclipped (0.5-1)^2=.25, clipped V=0.2 -> .64 -> .64; token 1: 1.21 both (within
    # clip) -> 1.21; token 2: 1.0 both.
    assert math.isclose(float(loss), 0.5 * (0.64 + 1.21 + 1.0) / 3, rel_tol=1e-6)
    assert math.isclose(m["clip_frac"], 1 / 3, rel_tol=1e-6)


def test_row_mean_is_mean_of_row_token_means():
    x = torch.tensor([[1.0, 2.0, 3.0, 0.0], [10.0, 0.0, 0.0, 0.0], [5.0, 5.0, 5.0, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    assert math.isclose(float(masked_mean(x, mask, "row-mean")), (2.0 + 10.0) / 2)
    assert math.isclose(float(masked_mean(x, mask, "token-mean")), 16.0 / 4)


def test_logprobs_and_entropy_match_direct_computation():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 7, 11, generator=g)
    ids = torch.randint(0, 11, (2, 7), generator=g)
    ref = logits.log_softmax(-1).gather(-1, ids[..., None]).squeeze(-1)
    torch.testing.assert_close(gather_logprobs(logits, ids, chunk=3), ref)
    p = logits.softmax(-1)
    torch.testing.assert_close(entropy(logits, chunk=2), -(p * p.log()).sum(-1))
    aligned = token_logprobs(logits, ids)
    assert aligned[:, 0].abs().sum() == 0
    shifted = logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    torch.testing.assert_close(aligned[:, 1:], shifted)
    torch.testing.assert_close(shift_right(ids.float())[:, 1:], ids[:, :-1].float())


def test_kl_estimators_and_explained_variance():
    lp = torch.tensor([[-1.0, -2.0]])
    ref = torch.tensor([[-1.5, -2.0]])
    torch.testing.assert_close(kl_to_reference(lp, ref, "k1"), torch.tensor([[0.5, 0.0]]))
    k3 = kl_to_reference(lp, ref, "k3")
    assert math.isclose(float(k3[0, 0]), math.exp(-0.5) + 0.5 - 1, rel_tol=1e-6)
    ret = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    mask = torch.ones(1, 4)
    assert explained_variance(ret.clone(), ret, mask) == pytest.approx(1.0)
    assert explained_variance(torch.full_like(ret, 0.5), ret, mask) == pytest.approx(0.0)


def test_logprob_mismatch_by_hand():
    train = torch.tensor([[0.0, -1.0, -2.0, -0.5]])
    engine = torch.tensor([[0.0, -1.5, -2.0, -3.0]])
    mask = torch.tensor([[0.0, 1.0, 1.0, 0.0]])  # only tokens 1 and 2 count
    m = logprob_mismatch(train, engine, mask)
    assert math.isclose(m["logprob_abs_mean"], 0.25)
    assert math.isclose(m["logprob_abs_max"], 0.5)
    # k3 of KL(engine || train) on engine samples: r - 1 - log r with r = p_train / p_engine.
    k3 = [math.exp(0.5) - 1 - 0.5, 0.0]
    assert math.isclose(m["kl"], sum(k3) / 2, rel_tol=1e-9)
    same = logprob_mismatch(train, train.clone(), torch.ones_like(train))
    assert same == {"logprob_abs_mean": 0.0, "logprob_abs_max": 0.0, "kl": 0.0}
    assert logprob_mismatch(train, engine, torch.zeros_like(mask))["kl"] == 0.0


def test_truncated_is_weights_against_a_loop():
    g = torch.Generator().manual_seed(0)
    train, engine = torch.randn(3, 6, generator=g), torch.randn(3, 6, generator=g)
    mask = (torch.rand(3, 6, generator=g) > 0.3).float()
    w = truncated_is_weights(train, engine, mask, cap=2.0)
    for b in range(3):
        for t in range(6):
            ratio = math.exp(float(train[b, t] - engine[b, t]))
            expected = min(ratio, 2.0) if mask[b, t] > 0 else 1.0
            assert math.isclose(float(w[b, t]), expected, rel_tol=1e-6)


def test_truncated_is_weights_on_advantages_weight_each_token_loss():
    # PPO's per-token max(-A r, -A clip(r)) times a positive weight w is the same expression
    # with A replaced by w A: the trainer's way of applying the weights.
    g = torch.Generator().manual_seed(1)
    lp, old, adv = (torch.randn(2, 5, generator=g) * 0.3 for _ in range(3))
    w = truncated_is_weights(old, torch.randn(2, 5, generator=g), torch.ones(2, 5), cap=2.0)
    one = torch.ones(1, 1)
    for b in range(2):
        for t in range(5):
            x, y, a, wt = (v[b : b + 1, t : t + 1] for v in (lp, old, adv, w))
            weighted, _ = policy_loss(x, y, a, one, 0.2)
            folded, _ = policy_loss(x, y, a * wt, one, 0.2)
            assert math.isclose(float(weighted) * float(wt), float(folded), rel_tol=1e-5)
