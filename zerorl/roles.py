"""The four roles of a PPO step, and their builder for the single-process (local) backend.

This is where the config is read; the roles below it take plain arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from zerorl.config import Config
from zerorl.models import load_critic, load_policy, load_tokenizer, resolve_device
from zerorl.reward import RewardPool
from zerorl.rollout import local_engine
from zerorl.rollout.base import RolloutEngine
from zerorl.workers import CriticWorker, OptimSettings, PolicyWorker


@dataclass
class Roles:
    """What the trainer drives; it never learns which backend built them."""

    engine: RolloutEngine
    reward: RewardPool
    policy: PolicyWorker
    critic: CriticWorker
    tokenizer: PreTrainedTokenizerBase
    reference: PolicyWorker | None = None  # only for the KL ablations

    def close(self) -> None:
        self.reward.close()


def optim_settings(cfg: Config, lr: float) -> OptimSettings:
    o = cfg.optim
    return OptimSettings(
        lr=lr,
        betas=(o.betas[0], o.betas[1]),
        weight_decay=o.weight_decay,
        warmup_steps=o.warmup_steps,
        warmup_from_zero=o.warmup_from_zero,
        grad_clip=o.grad_clip,
    )


def build_local_roles(cfg: Config, checkpoint: Path | None = None) -> Roles:
    """Build every role in this process; from ``checkpoint`` (policy/, critic/) when resuming."""
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    m, device = cfg.model, resolve_device(cfg.train.device)
    policy_path = str(checkpoint / "policy") if checkpoint else m.path
    critic_path = str(checkpoint / "critic") if checkpoint else (m.critic_path or m.path)
    tokenizer = load_tokenizer(policy_path)
    policy_model = load_policy(policy_path, m.dtype, m.attn_implementation).to(device)
    critic_model = load_critic(
        critic_path, m.dtype, m.attn_implementation, m.value_head_init, seed=cfg.train.seed
    ).to(device)
    if m.gradient_checkpointing:
        policy_model.gradient_checkpointing_enable()
        critic_model.backbone.gradient_checkpointing_enable()
    p = cfg.ppo
    policy = PolicyWorker(
        policy_model,
        optim_settings(cfg, cfg.optim.policy_lr),
        clip_eps=p.clip_eps,
        micro_rows=cfg.train.micro_rows,
        aggregation=p.loss_aggregation,
        kl_loss_coef=p.kl_loss_coef,
        entropy_coef=p.entropy_coef,
        steps=p.policy_steps,
    )
    critic = CriticWorker(
        critic_model,
        optim_settings(cfg, cfg.optim.critic_lr),
        value_clip=p.value_clip,
        steps=p.critic_steps,
        micro_rows=cfg.train.micro_rows,
        aggregation=p.loss_aggregation,
    )
    reference = None
    if p.kl_loss_coef > 0 or p.kl_penalty_coef > 0:
        # The reference is the *initial* policy, also when resuming.
        ref_model = load_policy(m.path, m.dtype, m.attn_implementation).to(device)
        ref_model = ref_model.eval().requires_grad_(False)
        reference = PolicyWorker(
            ref_model, optim_settings(cfg, 0.0), micro_rows=cfg.train.micro_rows
        )
    engine = local_engine(cfg.rollout.engine, policy_model, tokenizer, cfg.rollout.batch_size)
    r = cfg.reward
    pool = RewardPool(
        r.num_workers, r.timeout_s, r.memory_mb, call_budget_s=r.call_budget_s, box_rule=r.box_rule
    )
    return Roles(engine, pool, policy, critic, tokenizer, reference)
