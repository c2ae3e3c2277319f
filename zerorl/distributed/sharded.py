"""How one rank of a policy or critic group loads its network (torch.distributed only, no Ray).

A world of one on CPU loads the plain module (what the local backend runs); otherwise every rank
builds its FSDP2 shard, from weights that only rank 0 reads (``fsdp.load_sharded``).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from zerorl.distributed import fsdp
from zerorl.distributed.specs import ModelSpec
from zerorl.models import DTYPES, Critic, load_critic, load_policy


def _spec_dtype(spec: ModelSpec, world: int, device: str) -> str:
    # Under FSDP2's bf16 mixed precision the sharded master weights stay in fp32; a plain module
    # (no process group) holds the configured dtype.
    mixed = fsdp.uses_fsdp(world, device) and fsdp.mixed_precision(spec.dtype, device)
    return "float32" if mixed else spec.dtype


def _checkpointing(model: nn.Module, on: bool) -> None:
    if on:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def load_policy_rank(spec: ModelSpec, rank: int, world: int, device: str) -> nn.Module:
    """The policy for one rank: the plain model, or its FSDP2 shard."""
    dtype = _spec_dtype(spec, world, device)
    if not fsdp.uses_fsdp(world, device):
        model = load_policy(spec.path, dtype, spec.attn_implementation)
        _checkpointing(model, spec.gradient_checkpointing)
        return model.to(device)

    def build_meta() -> nn.Module:
        config = AutoConfig.from_pretrained(spec.path)
        lm = AutoModelForCausalLM.from_config(config, attn_implementation=spec.attn_implementation)
        return lm.to(DTYPES[dtype])

    def wrap(model: nn.Module) -> nn.Module:
        _checkpointing(model, spec.gradient_checkpointing)
        blocks = set(model._no_split_modules or ())
        return fsdp.shard(model, blocks, world, device, fsdp.mixed_precision(spec.dtype, device))

    def load_full() -> nn.Module:
        return load_policy(spec.path, dtype, spec.attn_implementation)

    return fsdp.load_sharded(load_full, build_meta, wrap, rank, device)


def load_critic_rank(spec: ModelSpec, rank: int, world: int, device: str) -> Critic:
    """The critic (backbone + fp32 value head) for one rank: plain, or its FSDP2 shard."""
    dtype = _spec_dtype(spec, world, device)

    def load_full() -> Critic:
        return load_critic(
            spec.path, dtype, spec.attn_implementation, spec.value_head_init, seed=spec.seed
        )

    if not fsdp.uses_fsdp(world, device):
        critic = load_full()
        _checkpointing(critic.backbone, spec.gradient_checkpointing)
        return critic.to(device)

    def build_meta() -> Critic:
        config = AutoConfig.from_pretrained(spec.path)
        backbone = AutoModel.from_config(config, attn_implementation=spec.attn_implementation)
        hidden = backbone.config.get_text_config().hidden_size
        head = nn.Linear(hidden, 1, bias=False, dtype=torch.float32)
        return Critic(backbone.to(DTYPES[dtype]), head)

    def wrap(critic: Critic) -> Critic:
        _checkpointing(critic.backbone, spec.gradient_checkpointing)
        blocks = set(critic.backbone._no_split_modules or ())
        mp = fsdp.mixed_precision(spec.dtype, device)
        return fsdp.shard(critic, blocks, world, device, mp, fp32_modules=(critic.value_head,))

    return fsdp.load_sharded(load_full, build_meta, wrap, rank, device)
