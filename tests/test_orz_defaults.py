"""ORZ's released code as zerorl's defaults: warm-up schedule and value-head initialisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from zerorl.config import Config
from zerorl.models import init_value_head
from zerorl.workers import OptimSpec, make_optimizer


def _lrs(settings: OptimSpec, steps: int) -> list[float]:
    """The lr each of the first ``steps`` optimiser steps runs with."""
    weight = nn.Parameter(torch.zeros(1))
    opt, sched = make_optimizer([weight], settings)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        weight.grad = torch.ones(1)
        opt.step()
        sched.step()
    return lrs


def test_warmup_from_zero_is_orz_constant_with_warmup() -> None:
    """ORZ (transformers' constant_with_warmup, N = 50): lr * k / 50, full lr from k = 50."""
    assert Config().optim.warmup_from_zero
    lrs = _lrs(OptimSpec(lr=1.0, warmup_steps=50), 52)
    expected = {0: 0.0, 1: 1 / 50, 49: 49 / 50, 50: 1.0, 51: 1.0}
    for k, value in expected.items():
        assert lrs[k] == pytest.approx(value, abs=1e-12), k


def test_warmup_from_one_reaches_full_lr_a_step_earlier() -> None:
    lrs = _lrs(OptimSpec(lr=1.0, warmup_steps=50, warmup_from_zero=False), 51)
    expected = {0: 1 / 50, 1: 2 / 50, 48: 49 / 50, 49: 1.0, 50: 1.0}
    for k, value in expected.items():
        assert lrs[k] == pytest.approx(value, abs=1e-12), k


def test_no_warmup_is_full_lr_at_once() -> None:
    assert _lrs(OptimSpec(lr=0.5, warmup_steps=0), 2) == [0.5, 0.5]


@pytest.mark.parametrize("hidden", [896, 1536])
def test_value_head_default_is_orz_normal(hidden: int) -> None:
    """ORZ: normal(0, 1/(H+1)), no bias; the sample std matches within sampling error."""
    assert Config().model.value_head_init == "normal"
    head = nn.Linear(hidden, 1, bias=False)
    init_value_head(head, "normal", torch.Generator().manual_seed(0))
    std = head.weight.std().item()
    target = 1 / (hidden + 1)
    # the sample std of H normals has a relative standard error of 1/sqrt(2H) < 2.4%
    assert abs(std / target - 1) < 5 / (2 * hidden) ** 0.5
    assert abs(head.weight.mean().item()) < 5 * target / hidden**0.5


def test_value_head_kaiming_option_is_uniform_1_over_sqrt_h() -> None:
    hidden = 1024
    head = nn.Linear(hidden, 1, bias=False)
    init_value_head(head, "kaiming", torch.Generator().manual_seed(0))
    bound = hidden**-0.5
    assert head.weight.abs().max().item() <= bound
    # U(-b, b) has std b / sqrt(3)
    assert head.weight.std().item() == pytest.approx(bound / 3**0.5, rel=0.1)


# ---------------------------------------------------------------- presets = ORZ's launch scripts

# Every training-relevant value of playground/orz_{0p5b,1p5b,7b,32b}_ppo.py (and the base config
# orz/exps/examples/ppo/ppo_base_exp.py they extend), as zerorl keys. Read off ORZ's repository;
# where zerorl has no such key the difference is in docs/orz-differences.md.
ORZ_COMMON = {
    "data.train_files": ["orz-math-57k"],  # prompt_data: data/orz_math_57k_collected.json
    "data.max_prompt_tokens": 2048,  # prompt_max_len
    "rollout.prompts_per_step": 128,  # rollout_batch_size
    "rollout.samples_per_prompt": 64,  # n_samples_per_prompt
    "rollout.temperature": 1.0,
    "rollout.top_p": 1.0,
    "rollout.max_new_tokens": 8000,  # generate_max_len
    "rollout.max_total_tokens": 8192,  # max_len (vLLM max_model_len)
    "rollout.vllm_max_num_seqs": 128,  # micro_rollout_batch_size, passed as max_num_seqs
    "rollout.engine": "vllm",
    "ppo.gamma": 1.0,
    "ppo.lam": 1.0,
    "ppo.clip_eps": 0.2,  # eps_clip
    "ppo.value_clip": 0.2,
    "ppo.normalize_advantages": True,  # advantage_normalize
    "ppo.policy_steps": 1,  # policy_update_steps
    "ppo.critic_steps": 12,  # critic_update_steps
    "ppo.kl_penalty_coef": 0.0,  # init_kl_coef
    "ppo.kl_loss_coef": 0.0,
    "optim.policy_lr": 1e-6,  # actor_learning_rate
    "optim.critic_lr": 5e-6,  # critic_learning_rate
    "optim.warmup_steps": 50,  # num_warmup_steps
    "optim.warmup_from_zero": True,  # transformers' constant_with_warmup
    "optim.betas": [0.9, 0.95],  # adam_betas
    "optim.weight_decay": 0.0,  # l2
    "optim.grad_clip": 1.0,  # max_norm
    "model.value_head_init": "normal",  # models.py: normal_(std=1/(hidden_size+1))
    "train.packing": "next-fit",  # _convert_prompts_outputs_to_batch_tensors_packing
    "train.seed": 42,
    "train.episodes": 20,  # num_episodes
    "train.save_interval": 50,
    "train.micro_rows": 1,  # micro_train_batch_size
    "eval.interval": 10,
    "eval.benchmarks": ["math500", "aime2024", "gpqa-diamond"],  # eval_prompt_data
    "reward.box_rule": "last",
}
ORZ_SCRIPTS = {
    "orz-0.5b": {
        "model.path": "Qwen/Qwen2.5-0.5B",
        "train.pack_length": 10048,  # generate_max_len + prompt_max_len
        "gpus": 8,
        "dist.colocate": True,
        "rollout.num_engines": 8,
        "rollout.vllm_tensor_parallel": 1,
        "rollout.vllm_gpu_memory_utilization": 0.75,
        "ranks": (8, 8),
    },
    "orz-1.5b": {
        "model.path": "Qwen/Qwen2.5-1.5B",
        "train.pack_length": 10048,
        "gpus": 16,
        "dist.colocate": True,
        "rollout.num_engines": 16,
        "rollout.vllm_tensor_parallel": 1,
        "rollout.vllm_gpu_memory_utilization": 0.7,
        "ranks": (16, 16),
    },
    "orz-7b": {
        "model.path": "Qwen/Qwen2.5-7B",
        "train.pack_length": 16384,  # packing_max_len
        "gpus": 32,
        "dist.colocate": True,
        "rollout.num_engines": 32,
        "rollout.vllm_tensor_parallel": 1,
        "rollout.vllm_gpu_memory_utilization": 0.7,
        "ranks": (32, 32),
    },
    "orz-32b": {
        "model.path": "Qwen/Qwen2.5-32B",
        "train.pack_length": 10048,
        "gpus": 128,
        "dist.colocate": False,  # colocate_all = False
        "rollout.num_engines": 16,
        "rollout.vllm_tensor_parallel": 4,
        "rollout.vllm_gpu_memory_utilization": 0.95,
        "ranks": (32, 32),  # actor_num_nodes, critic_num_nodes (1 GPU each)
    },
}


def _get(cfg: Config, key: str) -> object:
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


@pytest.mark.parametrize("preset", sorted(ORZ_SCRIPTS))
def test_preset_matches_orz_launch_script(preset: str) -> None:
    from zerorl.config import load_config
    from zerorl.distributed.placement import engine_count, group_sizes, layout

    cfg = load_config(preset)
    orz = {**ORZ_COMMON, **ORZ_SCRIPTS[preset]}
    gpus, ranks = orz.pop("gpus"), orz.pop("ranks")
    mismatches = {k: (_get(cfg, k), v) for k, v in orz.items() if _get(cfg, k) != v}
    assert mismatches == {}
    # The layout is ORZ's: its GPU count, its group sizes, its engines; no dist.* overrides.
    s = cfg.dist
    assert s.num_nodes * s.num_gpus_per_node == gpus
    assert group_sizes(s) == ranks
    tp = cfg.rollout.vllm_tensor_parallel
    engines = engine_count(s, cfg.rollout.num_engines, tp)
    assert engines == cfg.rollout.num_engines
    seats = layout(s, engines, tp, reference=False)
    assert len(seats.bundles) == gpus
    assert all(bundle["GPU"] == 1.0 for bundle in seats.bundles)


def test_prompt_plus_response_cap() -> None:
    """ORZ's engine cap: after a 200-token prompt at most 56 of 100 response tokens remain."""
    from zerorl.rollout.base import cap_total_length
    from zerorl.types import Completion

    long = Completion(0, [1] * 200, list(range(100)), "x", "stop", [0.5] * 100)
    short = Completion(0, [1] * 10, [7, 8], "y", "stop", None)
    [[cut, kept]] = cap_total_length([[long, short]], 256, lambda ids: f"{len(ids)} tokens")
    assert cut.token_ids == list(range(56)) and cut.logprobs == [0.5] * 56
    assert (cut.finish_reason, cut.text) == ("length", "56 tokens")
    assert kept == short
    assert cap_total_length([[long]], 0, str) == [[long]]
