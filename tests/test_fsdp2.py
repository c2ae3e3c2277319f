"""FSDP2 policy and critic groups on CPU (gloo, two processes) against the single-process workers.

One train call of a two-rank group must move every weight as a world of one does on the same
batch (within 1e-5), its checkpoints must be the local backend's files, and a group must resume
from a local checkpoint. A rank of a world of one loaded as the Ray actors load it
(``load_policy_rank``: the plain module on CPU) must be bit-identical to a worker on the model
loaded as the local backend loads it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from zerorl.core.losses import masked_mean
from zerorl.core.packing import pack
from zerorl.distributed import fsdp
from zerorl.distributed.sharded import load_critic_rank, load_policy_rank
from zerorl.distributed.specs import ModelSpec
from zerorl.models import load_critic, load_policy
from zerorl.workers import (
    OPTIM_FILE,
    CriticWorker,
    OptimSpec,
    PolicyLossSpec,
    PolicyWorker,
    ValueLossSpec,
    WorkerSpec,
    padded_micro_batches,
    split_rows,
)

HERE = Path(__file__).parent
OPTIM = OptimSpec(lr=1e-3, warmup_steps=0)  # full lr from the first step
CRITIC_STEPS = 3
TOL = 1e-5
# The two-rank case aggregates over the units of the whole (mini-)batch across ranks.
POLICY_LOSS = PolicyLossSpec(aggregation="token-mean")
VALUE_LOSS = ValueLossSpec(aggregation="seq-mean-token-mean")


def make_batch(seed: int = 0):
    """Five samples packed into three rows: uneven over two ranks, so padding forwards run."""
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(2, 90, (n,), generator=g).tolist() for n in (9, 7, 11, 8, 6)]
    responses = [torch.randint(2, 90, (n,), generator=g).tolist() for n in (12, 15, 6, 9, 14)]
    batch = pack(prompts, responses, [1.0, 0.0, 1.0, 0.0, 1.0], pack_length=44)
    assert batch.num_rows == 3
    mask = batch.response_mask
    advantages = torch.randn(mask.shape, generator=g) * mask
    returns = torch.randint(0, 2, mask.shape, generator=g).float() * mask
    return batch, advantages, returns


def workers(
    model_dir: Path,
    policy_loss: PolicyLossSpec | None = None,
    value_loss: ValueLossSpec | None = None,
) -> tuple[PolicyWorker, CriticWorker]:
    policy_loss, value_loss = policy_loss or PolicyLossSpec(), value_loss or ValueLossSpec()
    policy = PolicyWorker(load_policy(str(model_dir)), WorkerSpec(OPTIM), policy_loss)
    critic = CriticWorker(
        load_critic(str(model_dir), seed=42), WorkerSpec(OPTIM, CRITIC_STEPS), value_loss
    )
    return policy, critic


def model_spec(model_dir: Path) -> ModelSpec:
    return ModelSpec(str(model_dir), "float32", "sdpa", gradient_checkpointing=False, seed=42)


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert set(a) == set(b)
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def test_row_split_and_padding_plan():
    assert split_rows(list(range(5)), 2) == [[0, 1, 2], [3, 4]]
    assert split_rows([7], 2) == [[7], []]
    parts = split_rows([4, 1, 3], 2)
    assert padded_micro_batches(parts, 1, 1, filler=4) == [([3], True), ([4], False)]
    assert padded_micro_batches(split_rows([4], 2), 1, 1, filler=4) == [([4], False)]


def test_one_rank_is_bit_identical_to_the_workers(tiny_model_dir):
    batch, advantages, returns = make_batch()
    policy, critic = workers(tiny_model_dir)
    spec = model_spec(tiny_model_dir)
    p1 = PolicyWorker(load_policy_rank(spec, 0, 1, "cpu"), WorkerSpec(OPTIM))
    c1 = CriticWorker(load_critic_rank(spec, 0, 1, "cpu"), WorkerSpec(OPTIM, CRITIC_STEPS))
    old = policy.logprobs(batch)
    assert torch.equal(old.logprobs, p1.logprobs(batch).logprobs)
    values = critic.values(batch)
    assert torch.equal(values, c1.values(batch))
    assert vars(policy.train(batch, advantages, old.logprobs)) == vars(
        p1.train(batch, advantages, old.logprobs)
    )
    assert vars(critic.train(batch, returns, values, seed=7)) == vars(
        c1.train(batch, returns, values, seed=7)
    )
    assert max_diff(policy.model.state_dict(), p1.full_state_dict()) == 0.0
    assert max_diff(critic.model.state_dict(), c1.full_state_dict()) == 0.0


def test_on_policy_step_needs_no_separate_logprob_forward(tiny_model_dir):
    """One step right after generation: the update's own detached log-probs are the old ones, so
    skipping the no-grad forward (``old_logprobs=None``) changes no number."""
    batch, advantages, _ = make_batch()
    a, _ = workers(tiny_model_dir)
    b, _ = workers(tiny_model_dir)
    old = a.logprobs(batch)
    with_old, without = a.train(batch, advantages, old.logprobs), b.train(batch, advantages, None)
    assert vars(with_old) == vars(without)
    assert max_diff(a.model.state_dict(), b.model.state_dict()) == 0.0
    assert with_old.clip_frac == 0.0 and abs(with_old.approx_kl) < 1e-12
    assert with_old.entropy == pytest.approx(
        float(masked_mean(old.entropy, batch.response_mask, "row-mean")), rel=1e-6
    )


def test_entropy_bonus_enters_the_loss(tiny_model_dir):
    """``entropy_coef`` (an ablation, off in ORZ) subtracts coef x entropy from the loss, and its
    gradient moves the weights differently."""
    batch, advantages, _ = make_batch()
    plain = PolicyWorker(load_policy(str(tiny_model_dir)), WorkerSpec(OPTIM))
    bonus = PolicyWorker(
        load_policy(str(tiny_model_dir)), WorkerSpec(OPTIM), PolicyLossSpec(entropy_coef=0.5)
    )
    a, b = plain.train(batch, advantages, None), bonus.train(batch, advantages, None)
    assert a.entropy == b.entropy > 0
    assert b.loss == pytest.approx(a.loss - 0.5 * a.entropy, rel=1e-5, abs=1e-7)
    assert max_diff(plain.model.state_dict(), bonus.model.state_dict()) > 0


def test_several_policy_steps_match_between_worker_and_rank(tiny_model_dir):
    """``ppo.policy_steps`` > 1: seeded mini-batches, one optimiser step each, the same on the
    local worker and a one-rank group; off-policy after the first, so old log-probs are needed."""
    batch, advantages, _ = make_batch()
    policy = PolicyWorker(load_policy(str(tiny_model_dir)), WorkerSpec(OPTIM, steps=3))
    rank_model = load_policy_rank(model_spec(tiny_model_dir), 0, 1, "cpu")
    p1 = PolicyWorker(rank_model, WorkerSpec(OPTIM, steps=3))
    old = policy.logprobs(batch).logprobs
    local, ranked = (
        policy.train(batch, advantages, old, seed=5),
        p1.train(batch, advantages, old, seed=5),
    )
    assert vars(local) == vars(ranked)
    assert max_diff(policy.model.state_dict(), p1.full_state_dict()) == 0.0
    assert policy.scheduler.last_epoch == 3  # three optimiser steps
    assert local.clip_frac > 0 or local.approx_kl != 0  # later mini-batches are off-policy
    with pytest.raises(ValueError, match="old_logprobs"):
        policy.train(batch, advantages, None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tiny_model_dir, tmp_path_factory):
    """The single-process reference and the two-rank results for the same batch."""
    workdir = tmp_path_factory.mktemp("fsdp2")
    batch, advantages, returns = make_batch()
    policy, critic = workers(tiny_model_dir, POLICY_LOSS, VALUE_LOSS)
    old = policy.logprobs(batch)
    values = critic.values(batch)
    ref = {"logprobs": old.logprobs, "values": values}
    ref["policy_stats"] = vars(policy.train(batch, advantages, old.logprobs))
    ref["critic_stats"] = vars(critic.train(batch, returns, values, seed=7))
    ref["policy_params"] = {k: v.clone() for k, v in policy.model.state_dict().items()}
    ref["critic_params"] = {k: v.clone() for k, v in critic.model.state_dict().items()}
    local = workdir / "local_ckpt"
    policy.save(local)
    policy.train(batch, advantages, old.logprobs)
    ref["resumed_params"] = policy.model.state_dict()
    case = {
        "batch": batch, "advantages": advantages, "returns": returns,
        "old_logprobs": old.logprobs, "old_values": values, "critic_steps": CRITIC_STEPS,
        "model_dir": str(tiny_model_dir), "local_checkpoint": str(local),
        "policy_loss": POLICY_LOSS, "value_loss": VALUE_LOSS,
    }  # fmt: skip
    torch.save(case, workdir / "case.pt")
    script = [sys.executable, str(HERE / "dist_fsdp_ranks.py"), str(workdir), str(free_port())]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(script, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return ref, torch.load(workdir / "result.pt", weights_only=False), local


def test_two_rank_outputs_match_single_process(two_ranks):
    ref, got, _ = two_ranks
    assert float((ref["logprobs"] - got["logprobs"]).abs().max()) < TOL
    assert float((ref["values"] - got["values"]).abs().max()) < TOL
    for key in ("policy_stats", "critic_stats"):
        for name, value in ref[key].items():
            assert got[key][name] == pytest.approx(value, abs=TOL), (key, name)


def test_two_rank_update_matches_single_process(two_ranks):
    ref, got, _ = two_ranks
    assert max_diff(ref["policy_params"], got["policy_params"]) < TOL
    assert max_diff(ref["critic_params"], got["critic_params"]) < TOL


def test_sharded_checkpoint_is_the_local_layout(two_ranks):
    ref, got, local = two_ranks
    saved = Path(got["saved"])
    reloaded = load_policy(str(saved / "policy")).state_dict()
    assert max_diff(ref["policy_params"], reloaded) < TOL
    critic = load_critic(str(saved / "critic")).state_dict()
    assert max_diff(ref["critic_params"], critic) < TOL
    mine = torch.load(saved / "policy" / OPTIM_FILE, weights_only=False)
    theirs = torch.load(local / OPTIM_FILE, weights_only=False)
    assert mine["scheduler"] == theirs["scheduler"]
    assert mine["optimizer"]["param_groups"] == theirs["optimizer"]["param_groups"]
    for i, state in theirs["optimizer"]["state"].items():
        for name in ("exp_avg", "exp_avg_sq"):
            assert float((mine["optimizer"]["state"][i][name] - state[name]).abs().max()) < TOL


def test_two_ranks_resume_from_a_local_checkpoint(two_ranks):
    ref, got, _ = two_ranks
    assert max_diff(ref["resumed_params"], got["resumed_params"]) < TOL


def test_tied_aliases_are_dropped_from_saved_weights(tiny_model_dir):
    model = load_policy(str(tiny_model_dir))
    assert fsdp.tied_aliases(model) == {"lm_head.weight"}
