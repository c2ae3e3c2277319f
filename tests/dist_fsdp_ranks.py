"""Two gloo ranks of FSDP2 policy and critic groups on CPU; run by tests/test_fsdp2.py.

``python tests/dist_fsdp_ranks.py WORKDIR PORT`` reads ``WORKDIR/case.pt`` (a batch, its
targets and the paths of a tiny model and of a local-backend checkpoint), runs every step on two
ranks and writes ``WORKDIR/result.pt`` from rank 0:

- ``logprobs``, ``values``: the groups' outputs for the batch, in row order;
- ``policy_stats``, ``critic_stats``: one train call each, summed over ranks like the Ray groups;
- ``policy_params``, ``critic_params``: every weight after that train call;
- ``saved``: where the sharded checkpoint (HF weights + optimizer.pt) went;
- ``resumed_params``: a fresh group loaded from the local checkpoint (weights + optimiser)
  after one more train call.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from zerorl.distributed import fsdp
from zerorl.distributed.sharded import load_critic_rank, load_policy_rank
from zerorl.distributed.specs import ModelSpec
from zerorl.workers import CriticWorker, OptimSpec, PolicyWorker, WorkerSpec

WORLD = 2


def specs(critic_steps: int) -> tuple[WorkerSpec, WorkerSpec]:
    policy = WorkerSpec(OptimSpec(lr=1e-3, warmup_steps=0), world=WORLD)  # full lr at once
    return policy, dataclasses.replace(policy, steps=critic_steps)


def gather_rows(part: torch.Tensor) -> torch.Tensor:
    parts: list = [None] * WORLD
    dist.all_gather_object(parts, part)
    return torch.cat(parts)


def summed(stats) -> dict[str, float]:
    parts: list = [None] * WORLD
    dist.all_gather_object(parts, vars(stats))
    keep = {"grad_norm", "lr"}  # global on every rank; the rest are per-rank parts
    return {k: v if k in keep else sum(p[k] for p in parts) for k, v in parts[0].items()}


def run(rank: int, workdir: str, port: int) -> None:
    torch.set_num_threads(1)
    case = torch.load(Path(workdir) / "case.pt", weights_only=False)
    fsdp.init_world(rank, WORLD, ("127.0.0.1", port), "cpu", timeout_s=120)
    model = ModelSpec(case["model_dir"], "float32", "sdpa", gradient_checkpointing=False, seed=42)
    p_spec, c_spec = specs(case["critic_steps"])
    batch = case["batch"]
    p_loss, v_loss = case["policy_loss"], case["value_loss"]
    policy = PolicyWorker(load_policy_rank(model, rank, WORLD, "cpu"), p_spec, p_loss, rank)
    critic = CriticWorker(load_critic_rank(model, rank, WORLD, "cpu"), c_spec, v_loss, rank)
    out: dict = {"logprobs": gather_rows(policy.logprobs(batch).logprobs)}
    out["values"] = gather_rows(critic.values(batch))
    stats = policy.train(batch, case["advantages"], case["old_logprobs"])
    out["policy_stats"] = summed(stats)
    stats = critic.train(batch, case["returns"], case["old_values"], seed=7)
    out["critic_stats"] = summed(stats)
    out["policy_params"] = policy.full_state_dict()
    out["critic_params"] = critic.full_state_dict()
    saved = Path(workdir) / "sharded_ckpt"
    policy.save(saved / "policy")
    critic.save(saved / "critic")
    out["saved"] = str(saved)

    local = Path(case["local_checkpoint"])
    from_local = dataclasses.replace(model, path=str(local))
    resumed = PolicyWorker(load_policy_rank(from_local, rank, WORLD, "cpu"), p_spec, p_loss, rank)
    resumed.load_optim(local)
    resumed.train(batch, case["advantages"], case["old_logprobs"])
    out["resumed_params"] = resumed.full_state_dict()
    if rank == 0:
        torch.save(out, Path(workdir) / "result.pt")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(run, args=(sys.argv[1], int(sys.argv[2])), nprocs=WORLD)
