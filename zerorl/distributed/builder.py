"""``build_ray_roles``: the four roles as Ray actors, read from the config (the edge).

The trainer gets the same ``Roles`` as from ``build_local_roles``; it never learns which backend
built them. ``RayRoles.close()`` stops every actor, frees the placement group, and shuts Ray down
if this process started it.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import torch
from ray.util.placement_group import remove_placement_group

from zerorl.config import Config, DistConfig
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
    layout,
    reserve,
)
from zerorl.distributed.specs import EngineSpec, RankSpec
from zerorl.models import load_tokenizer, resolve_model_path
from zerorl.roles import Roles, critic_specs, model_spec, policy_specs
from zerorl.workers import PolicyLossSpec, ValueLossSpec, WorkerSpec

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


def connect(s: DistConfig) -> bool:
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
    """Torch threads per actor: the local backend's number (``init_threads`` in this process),
    so that CPU results match it."""
    return cfg.train.num_threads or torch.get_num_threads()


def rank_spec(
    cfg: Config,
    path: str,
    specs: tuple[WorkerSpec, PolicyLossSpec | ValueLossSpec],
    world: int,
) -> RankSpec:
    """A training group's spec: the worker and loss specs of the local backend (``specs``), in a
    world of ``world`` ranks on the ``dist`` section's devices."""
    s = cfg.dist
    model = model_spec(cfg, resolve_model_path(path)[0])
    device = "cuda" if s.num_gpus_per_node else "cpu"
    worker = dataclasses.replace(specs[0], world=world, device=device)
    return RankSpec(model, worker, specs[1], threads(cfg), s.call_timeout_s)


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
    cfg: Config, s: DistConfig, path: str, seats: list[Seat], pg: Any, cluster: RayCluster
) -> list[Member]:
    r, m = cfg.rollout, cfg.model
    device = "cuda" if s.num_gpus_per_node else "cpu"
    spec = EngineSpec(
        r.engine, resolve_model_path(path)[0], m.dtype, m.attn_implementation, device,
        threads(cfg), r.batch_size, r.vllm_tensor_parallel, r.vllm_gpu_memory_utilization,
        r.max_total_tokens, r.vllm_max_num_seqs,
    )  # fmt: skip
    return spawn(RolloutActor, spec, seats, pg, cluster, "engine", "rollout engine")


def build_ray_roles(cfg: Config, checkpoint: Path | None = None) -> RayRoles:
    """Every role as Ray actors, placed by the config's ``dist`` section; from ``checkpoint``
    (policy/, critic/) when resuming. A failure stops whatever was started."""
    s = cfg.dist
    cluster = RayCluster(connect(s), f"zerorl-{uuid.uuid4().hex[:8]}")
    try:
        return _build(cfg, checkpoint, s, cluster)
    except BaseException:
        cluster.close()
        raise


def _build(cfg: Config, checkpoint: Path | None, s: DistConfig, cluster: RayCluster) -> RayRoles:
    m, r, p = cfg.model, cfg.rollout, cfg.ppo
    policy_path = str(checkpoint / "policy") if checkpoint else m.path
    critic_path = str(checkpoint / "critic") if checkpoint else (m.critic_path or m.path)
    with_reference = p.kl_loss_coef > 0 or p.kl_penalty_coef > 0
    tp = r.vllm_tensor_parallel
    seats = layout(s, engine_count(s, r.num_engines, tp), tp, with_reference, cfg.algo.needs_critic)
    check_cluster(seats, s.reward_cpus, can_grow=bool(s.address))
    cluster.placement_group = pg = reserve(seats, s.start_timeout_s)
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
    engines = start_engines(cfg, s, policy_path, seats.engines, pg, cluster)
    phases = Phases(enabled=s.colocate)

    def group(cls, name: str, path: str, specs, placed: list[Seat]) -> list[Member]:
        spec = rank_spec(cfg, path, specs, len(placed))
        return start_group(cls, name, spec, placed, pg, cluster, s.start_timeout_s)

    policy_members = group(PolicyActor, "policy", policy_path, policy_specs(cfg), seats.policy)
    policy = PolicyGroup(policy_members, s.call_timeout_s, phases, m.dtype)
    critic = None
    if cfg.algo.needs_critic:
        members = group(CriticActor, "critic", critic_path, critic_specs(cfg), seats.critic)
        critic = CriticGroup(members, s.call_timeout_s, phases)
    reference = None
    if with_reference:  # the initial policy, also when resuming
        ref_specs = policy_specs(cfg, reference=True)
        members = group(PolicyActor, "reference", m.path, ref_specs, seats.reference)
        reference = PolicyGroup(members, s.call_timeout_s, phases, m.dtype)
    ready = [(e, e.actor.ready.remote()) for e in engines] + [(reward, reward_actor.ready.remote())]
    wait_all(ready, "start", s.start_timeout_s)
    engine = RolloutClient(engines, s.call_timeout_s, phases)
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
