"""``build_ray_roles``: the four roles as Ray actors, read from the config (the edge).

The trainer gets the same ``Roles`` as from ``build_local_roles``; it never learns which backend
built them. ``RayRoles.close()`` stops every actor, frees the placement group, and shuts Ray down
if this process started it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import torch
from ray.util.placement_group import remove_placement_group

from zerorl.config import Config
from zerorl.distributed.actors import CriticActor, PolicyActor, RewardActor, RolloutActor
from zerorl.distributed.groups import (
    CriticGroup,
    Member,
    Phases,
    PolicyGroup,
    RewardClient,
    RolloutClient,
    wait_all,
)
from zerorl.distributed.placement import (
    Seat,
    actor_options,
    check_cluster,
    engine_count,
    plan_layout,
    reserve,
)
from zerorl.distributed.settings import DistSettings, EngineSpec, ModelSpec, RankSpec, dist_settings
from zerorl.models import load_tokenizer, resolve_model_path
from zerorl.roles import Roles, optim_settings

PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


@dataclass
class RayCluster:
    """What ``build_ray_roles`` started, so that ``close`` stops exactly that."""

    owns_ray: bool
    tag: str  # prefix of the actors' names, unique per build
    actors: list[Any] = field(default_factory=list)
    placement_group: Any = None

    def close(self) -> None:
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        if self.placement_group is not None:
            remove_placement_group(self.placement_group)
        if self.owns_ray:
            ray.shutdown()


@dataclass
class RayRoles(Roles):
    """``Roles`` whose ``close`` also stops the Ray actors."""

    cluster: RayCluster | None = None

    def close(self) -> None:
        try:
            self.reward.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()


def connect(s: DistSettings) -> bool:
    """Join ``dist.address`` or start a Ray instance here; True if this process started it."""
    if ray.is_initialized():
        return False
    if s.address:
        ray.init(address=s.address)
        return False
    # Local workers import zerorl from this checkout even when it is not installed.
    ray.init(runtime_env={"env_vars": {"PYTHONPATH": PACKAGE_ROOT}}, include_dashboard=False)
    return True


def threads(cfg: Config) -> int:
    """Torch threads per actor: the local backend's number, so that CPU results match it."""
    return cfg.train.num_threads or torch.get_num_threads()


def rank_spec(
    cfg: Config, s: DistSettings, path: str, lr: float, clip: float, steps: int, world: int
) -> RankSpec:
    """A training group's spec: ``clip`` and ``steps`` are the policy's ratio clip and steps or
    the critic's value clip and steps; ``lr`` 0 for the (never trained) reference."""
    m, p, t = cfg.model, cfg.ppo, cfg.train
    model = ModelSpec(
        resolve_model_path(path)[0], m.dtype, m.attn_implementation, m.gradient_checkpointing,
        m.value_head_init, t.seed,
    )  # fmt: skip
    return RankSpec(
        model, optim_settings(cfg, lr), world, "cuda" if s.num_gpus_per_node else "cpu",
        threads(cfg), s.call_timeout_s, t.micro_rows, p.loss_aggregation,
        clip, p.kl_loss_coef, p.entropy_coef, steps,
    )  # fmt: skip


def spawn(
    actor_cls: type,
    spec: Any,
    seats: list[Seat],
    pg: Any,
    cluster: RayCluster,
    name: str,
    label: str,
) -> list[Member]:
    """One actor ``actor_cls(spec, i)`` per seat, named ``<tag>-<name>-<i>`` in Ray and
    ``<label> <i>`` in errors, registered with ``cluster`` for shutdown."""
    remote = ray.remote(actor_cls)
    members = []
    for i, seat in enumerate(seats):
        options = actor_options(pg, seat)
        actor = remote.options(name=f"{cluster.tag}-{name}-{i}", **options).remote(spec, i)
        cluster.actors.append(actor)
        members.append(Member(f"{label} {i}", actor))
    return members


def start_group(
    actor_cls: type,
    name: str,
    spec: RankSpec,
    seats: list[Seat],
    pg: Any,
    cluster: RayCluster,
    timeout_s: float,
) -> list[Member]:
    """Create a group's actors, let rank 0 pick the rendezvous, and load every rank at once
    (within ``timeout_s``)."""
    members = spawn(actor_cls, spec, seats, pg, cluster, name, f"{name} rank")
    first = members[0]
    address = wait_all([(first, first.actor.rendezvous.remote())], "start", timeout_s)[0]
    wait_all([(m, m.actor.setup.remote(address)) for m in members], "setup", timeout_s)
    return members


def start_engines(
    cfg: Config, s: DistSettings, path: str, seats: list[Seat], pg: Any, cluster: RayCluster
) -> list[Member]:
    r, m = cfg.rollout, cfg.model
    device = "cuda" if s.num_gpus_per_node else "cpu"
    spec = EngineSpec(
        r.engine, resolve_model_path(path)[0], m.dtype, m.attn_implementation, device,
        threads(cfg), r.batch_size, r.vllm_tensor_parallel, r.vllm_gpu_memory_utilization,
        r.max_total_tokens, r.vllm_max_num_seqs,
    )  # fmt: skip
    return spawn(RolloutActor, spec, seats, pg, cluster, "engine", "rollout engine")


def build_ray_roles(
    cfg: Config, checkpoint: Path | None = None, settings: DistSettings | None = None
) -> RayRoles:
    """Every role as Ray actors, placed by ``settings`` (default: the config's ``dist`` section);
    from ``checkpoint`` (policy/, critic/) when resuming. A failure stops whatever was started."""
    s = settings or dist_settings(cfg)
    cluster = RayCluster(connect(s), f"zerorl-{uuid.uuid4().hex[:8]}")
    try:
        return _build(cfg, checkpoint, s, cluster)
    except BaseException:
        cluster.close()
        raise


def _build(cfg: Config, checkpoint: Path | None, s: DistSettings, cluster: RayCluster) -> RayRoles:
    m, r, p = cfg.model, cfg.rollout, cfg.ppo
    policy_path = str(checkpoint / "policy") if checkpoint else m.path
    critic_path = str(checkpoint / "critic") if checkpoint else (m.critic_path or m.path)
    with_reference = p.kl_loss_coef > 0 or p.kl_penalty_coef > 0
    tp = r.vllm_tensor_parallel
    plan = plan_layout(s, engine_count(s, r.vllm_num_engines, tp), tp, with_reference)
    check_cluster(plan, s.reward_cpus, can_grow=bool(s.address))
    cluster.placement_group = pg = reserve(plan, s.start_timeout_s)
    options = {"num_cpus": s.reward_cpus, "name": f"{cluster.tag}-reward"}
    reward_actor = (
        ray.remote(RewardActor)
        .options(**options)
        .remote(
            cfg.reward.num_workers,
            cfg.reward.timeout_s,
            cfg.reward.memory_mb,
            cfg.reward.call_budget_s,
            cfg.reward.box_rule,
        )
    )
    cluster.actors.append(reward_actor)
    reward = Member("reward pool", reward_actor)
    engines = start_engines(cfg, s, policy_path, plan.engines, pg, cluster)
    phases = Phases(enabled=s.colocate)

    def group(cls, name: str, path: str, lr: float, clip: float, steps: int, seats: list[Seat]):
        spec = rank_spec(cfg, s, path, lr, clip, steps, len(seats))
        return start_group(cls, name, spec, seats, pg, cluster, s.start_timeout_s)

    o = cfg.optim
    policy_members = group(
        PolicyActor, "policy", policy_path, o.policy_lr, p.clip_eps, p.policy_steps, plan.policy
    )
    policy = PolicyGroup(policy_members, s.call_timeout_s, phases)
    critic_members = group(
        CriticActor, "critic", critic_path, o.critic_lr, p.value_clip, p.critic_steps, plan.critic
    )
    critic = CriticGroup(critic_members, s.call_timeout_s, phases)
    reference = None
    if with_reference:  # the initial policy, also when resuming
        members = group(PolicyActor, "reference", m.path, 0.0, p.clip_eps, 1, plan.reference)
        reference = PolicyGroup(members, s.call_timeout_s, phases)
    ready = [(e, e.actor.ready.remote()) for e in engines] + [(reward, reward_actor.ready.remote())]
    wait_all(ready, "start", s.start_timeout_s)
    engine = RolloutClient(engines, s.call_timeout_s, phases, m.dtype)
    phases.groups = [g for g in (policy, critic, reference) if g is not None]
    phases.engines = engine
    if s.colocate:
        engine.sleep()  # the phase starts as "training": the groups hold the devices
    return RayRoles(
        engine=engine,
        reward=RewardClient(reward, s.call_timeout_s),
        policy=policy,
        critic=critic,
        tokenizer=load_tokenizer(policy_path),
        reference=reference,
        cluster=cluster,
    )
