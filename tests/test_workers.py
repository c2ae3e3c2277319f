"""Workers: the critic's mini-batches use every sample once, and a step's loss aggregation is
that of one big batch however the step is cut into micro-batches."""

from __future__ import annotations

import pytest
import torch

from zerorl.core.losses import AGGREGATIONS
from zerorl.core.packing import pack
from zerorl.models import load_critic, load_policy
from zerorl.workers import (
    CriticWorker,
    OptimSpec,
    PolicyLossSpec,
    PolicyWorker,
    ValueLossSpec,
    WorkerSpec,
)

OPTIM = OptimSpec(lr=1e-3, warmup_steps=0)


def make_batch(n: int = 20, pack_length: int = 120, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 12, (2, n), generator=g).tolist()
    prompts = [torch.randint(2, 90, (k,), generator=g).tolist() for k in lengths[0]]
    responses = [torch.randint(2, 90, (k,), generator=g).tolist() for k in lengths[1]]
    rewards = torch.randint(0, 2, (n,), generator=g).float().tolist()
    batch = pack(prompts, responses, rewards, pack_length, packing="next-fit", seed=seed)
    mask = batch.response_mask
    return batch, torch.randn(mask.shape, generator=g) * mask, batch.token_rewards.clone()


def test_critic_steps_use_every_sample_once(tiny_model_dir):
    """12 steps over a batch of 3 rows: 12 mini-batches of the 20 samples, each sample in exactly
    one (the row split went over the 3 rows 4 times)."""
    batch, _, returns = make_batch()
    assert batch.num_rows < 12
    critic = CriticWorker(load_critic(str(tiny_model_dir), seed=1), WorkerSpec(OPTIM, steps=12))
    values = critic.values(batch)
    seen: list[list[int]] = []
    inner = critic._values

    def recording(sub):
        if critic.model.training:
            seen.append([i for row in sub.sample_index for i in row])
        return inner(sub)

    critic._values = recording  # type: ignore[method-assign]
    stats = critic.train(batch, returns, values, seed=3)
    assert critic.scheduler.last_epoch == 12 and len(seen) == 12
    assert sorted(i for part in seen for i in part) == list(range(20))
    assert stats.loss > 0


def test_fewer_samples_than_steps_is_one_step_per_sample(tiny_model_dir):
    batch, _, returns = make_batch(n=5)
    critic = CriticWorker(load_critic(str(tiny_model_dir), seed=1), WorkerSpec(OPTIM, steps=12))
    critic.train(batch, returns, critic.values(batch), seed=3)
    assert critic.scheduler.last_epoch == 5


def grads(model) -> dict[str, torch.Tensor]:
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("how", AGGREGATIONS)
def test_micro_batches_give_the_one_batch_gradients(tiny_model_dir, how):
    """One row per micro-batch and all rows in one micro-batch: the same loss and gradients,
    for the policy and the critic, under every aggregation."""
    batch, advantages, returns = make_batch(pack_length=40)
    assert batch.num_rows >= 3
    out = {}
    for micro_rows in (1, batch.num_rows):
        spec = WorkerSpec(OPTIM, micro_rows=micro_rows)
        policy = PolicyWorker(
            load_policy(str(tiny_model_dir)), spec, PolicyLossSpec(aggregation=how)
        )
        p_stats = policy.train(batch, advantages, None)
        critic = CriticWorker(
            load_critic(str(tiny_model_dir), seed=1), spec, ValueLossSpec(aggregation=how)
        )
        c_stats = critic.train(batch, returns, critic.values(batch), seed=0)
        out[micro_rows] = (p_stats, c_stats, grads(policy.model), grads(critic.model))
    (p1, c1, gp1, gc1), (p2, c2, gp2, gc2) = out.values()
    assert p1.loss == pytest.approx(p2.loss, rel=1e-5, abs=1e-7)
    assert c1.loss == pytest.approx(c2.loss, rel=1e-5)
    for a, b in ((gp1, gp2), (gc1, gc2)):
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)


def test_token_mean_weighs_tokens_not_rows(tiny_model_dir):
    """token-mean and row-mean differ when rows hold different numbers of response tokens."""
    batch, advantages, _ = make_batch(pack_length=40)
    losses = {}
    for how in ("token-mean", "row-mean"):
        policy = PolicyWorker(
            load_policy(str(tiny_model_dir)), WorkerSpec(OPTIM), PolicyLossSpec(aggregation=how)
        )
        policy.train(batch, advantages, None)
        losses[how] = grads(policy.model)
    k = next(iter(losses["row-mean"]))
    assert not torch.allclose(losses["token-mean"][k], losses["row-mean"][k])


def test_the_update_forward_measures_the_engine_mismatch(tiny_model_dir):
    """Given the engine's log-probs, one on-policy update reports the same mismatch as a
    separate forward before it (``logprob_mismatch``), from its own forward, micro-batch by
    micro-batch."""
    from zerorl.core.losses import logprob_mismatch, mismatch_from_sums

    batch, advantages, _ = make_batch(pack_length=40)
    g = torch.Generator().manual_seed(5)
    spec = WorkerSpec(OPTIM, micro_rows=2)
    policy = PolicyWorker(load_policy(str(tiny_model_dir)), spec)
    before = policy.logprobs(batch).logprobs
    engine = before + 0.01 * torch.randn(before.shape, generator=g)
    expected = logprob_mismatch(before, engine, batch.response_mask)
    stats = policy.train(batch, advantages, None, rollout_logprobs=engine)
    got = mismatch_from_sums(stats.mismatch_sums())
    assert got.keys() == expected.keys()
    for key in got:
        assert got[key] == pytest.approx(expected[key], rel=1e-4), key
    assert stats.mismatch_tokens == float(batch.response_mask.sum())
    with pytest.raises(ValueError, match="rollout_logprobs"):
        policy.train(batch, advantages, before, rollout_logprobs=engine)
