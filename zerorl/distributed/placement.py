"""Where the actors run: placement-group layouts for colocated and separate training.

:func:`layout` is pure (no Ray): it turns the ``dist`` config into bundles (one per device, or per
CPU slot) and a seat for every actor. Colocated (ORZ up to 7B): every bundle is shared by one
policy rank, one critic rank (one reference rank in the KL ablations) and one engine, each with
an equal fraction of the device; the phases take turns (``groups.Phases``). Separate (32B style):
each actor gets whole bundles of its own. :func:`shortfall` (pure) says whether demands can ever
be met by a cluster's nodes; :func:`check_cluster` asks Ray for the nodes before any actor starts.
:func:`reserve` creates the placement group and waits for it, with a timeout and an error that
says what was missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zerorl.config import DistConfig


class LayoutError(ValueError):
    """Settings that no layout can satisfy; the message names the keys."""


@dataclass(frozen=True)
class Seat:
    """One actor's share: its bundle(s) in the placement group, GPUs and CPUs it requests."""

    bundles: tuple[int, ...]
    gpus: float
    cpus: float


@dataclass
class Layout:
    bundles: list[dict[str, float]]
    policy: list[Seat] = field(default_factory=list)
    critic: list[Seat] = field(default_factory=list)
    reference: list[Seat] = field(default_factory=list)
    engines: list[Seat] = field(default_factory=list)


def group_sizes(s: DistConfig) -> tuple[int, int]:
    """Policy and critic ranks: 0 means one per device when colocated on GPUs, else 1."""
    devices = s.num_nodes * s.num_gpus_per_node
    auto = devices if (s.colocate and devices) else 1
    return s.policy_ranks or auto, s.critic_ranks or auto


def engine_count(s: DistConfig, configured: int, tensor_parallel: int) -> int:
    """Colocated on GPUs every device generates (devices / tensor_parallel engines); otherwise the
    configured number of engines."""
    devices = s.num_nodes * s.num_gpus_per_node
    if s.colocate and devices:
        return devices // tensor_parallel
    return configured


def layout(
    s: DistConfig, engines: int, tensor_parallel: int, reference: bool, critic: bool = True
) -> Layout:
    """Bundles and seats for every actor (see the module docstring); no critic seats when the
    advantage estimator needs none (``critic`` False)."""
    policy, critic_ranks = group_sizes(s)
    critic = critic_ranks if critic else 0
    refs = policy if reference else 0
    gpu = s.num_gpus_per_node > 0
    devices = s.num_nodes * s.num_gpus_per_node
    tp = tensor_parallel if gpu else 1
    if gpu and s.colocate and max(policy, critic, engines * tp) > devices:
        raise LayoutError(
            f"colocated: dist.policy_ranks={policy}, dist.critic_ranks={critic} and "
            f"{engines} engines x tensor parallel {tp} must each fit on the {devices} devices of "
            "dist.num_nodes x dist.num_gpus_per_node"
        )
    if s.colocate:
        return _colocated(s, policy, critic, refs, engines, tp, gpu)
    out = _separate(s, policy, critic, refs, engines, tp, gpu)
    if gpu and len(out.bundles) > devices:
        raise LayoutError(
            f"separate layout needs {len(out.bundles)} GPUs (policy {policy} + critic {critic} "
            f"+ reference {refs} + {engines} engines x {tp}); the cluster settings give {devices}"
        )
    return out


def _colocated(s, policy, critic, refs, engines, tp, gpu) -> Layout:
    slots = max(policy, critic, refs, engines * tp)
    members = 2 + (critic > 0) + (refs > 0)  # policy, engine, (critic), (reference) per bundle
    share = 1.0 / members
    bundle = {"CPU": s.cpus_per_slot, **({"GPU": 1.0} if gpu else {})}
    cpus = s.cpus_per_slot * share
    gpus = share if gpu else 0.0
    out = Layout([dict(bundle) for _ in range(slots)])
    out.policy = [Seat((i,), gpus, cpus) for i in range(policy)]
    out.critic = [Seat((i,), gpus, cpus) for i in range(critic)]
    out.reference = [Seat((i,), gpus, cpus) for i in range(refs)]
    # With tensor parallelism the engine's own GPU workers take the bundles; the actor needs none.
    engine_gpus = gpus if tp == 1 else 0.0
    out.engines = [
        Seat(tuple(range(i * tp, (i + 1) * tp)), engine_gpus, cpus) for i in range(engines)
    ]
    return out


def _separate(s, policy, critic, refs, engines, tp, gpu) -> Layout:
    bundle = {"CPU": s.cpus_per_slot, **({"GPU": 1.0} if gpu else {})}
    gpus = 1.0 if gpu else 0.0
    out = Layout([])

    def take(n: int) -> tuple[int, ...]:
        start = len(out.bundles)
        out.bundles.extend(dict(bundle) for _ in range(n))
        return tuple(range(start, start + n))

    out.policy = [Seat(take(1), gpus, s.cpus_per_slot) for _ in range(policy)]
    out.critic = [Seat(take(1), gpus, s.cpus_per_slot) for _ in range(critic)]
    out.reference = [Seat(take(1), gpus, s.cpus_per_slot) for _ in range(refs)]
    out.engines = [
        Seat(take(tp), gpus if tp == 1 else 0.0, s.cpus_per_slot) for _ in range(engines)
    ]
    return out


def shortfall(demands: list[dict[str, float]], nodes: list[dict[str, float]]) -> str | None:
    """Why ``demands`` (one resource dict per bundle or actor) can never be placed on ``nodes``
    (each node's total resources), or None. Never: a resource asked beyond the nodes' sum, or a
    bundle larger than every node (a bundle lives on one node)."""
    asked = _total(demands)
    have = _total(nodes)
    over = [f"{k} {v:g} (the cluster has {have.get(k, 0.0):g})" for k, v in asked.items()
            if v > have.get(k, 0.0) + 1e-9]  # fmt: skip
    if over:
        return f"the layout asks for {', '.join(over)} in all"
    for bundle in demands:
        if not any(all(n.get(k, 0.0) + 1e-9 >= v for k, v in bundle.items()) for n in nodes):
            return f"no node can hold the bundle {bundle}; the nodes have {nodes}"
    return None


def check_cluster(
    chosen: Layout, reward_cpus: float, can_grow: bool, on_info: Callable[[str], None] = print
) -> None:
    """Before any actor starts: fail at once when the cluster can never hold the layout (this
    process's own Ray instance cannot grow); on a cluster that may grow (joined by address, where
    an autoscaler may add nodes) say what is missing while the placement waits."""
    import ray

    demands = [*chosen.bundles, {"CPU": reward_cpus}]
    nodes = [
        {k: v for k, v in n["Resources"].items() if k in ("CPU", "GPU")}
        for n in ray.nodes()
        if n.get("Alive")
    ]
    problem = shortfall(demands, nodes)
    if problem is None:
        return
    keys = "dist.cpus_per_slot, dist.reward_cpus, the group sizes or the number of engines"
    if not can_grow:
        raise LayoutError(f"{problem}; it can never be placed here. Lower {keys}, or add nodes")
    on_info(f"{problem}; waiting for the cluster to grow (an autoscaler may add nodes)")


def _total(resources: list[dict[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for r in resources:
        for k, v in r.items():
            total[k] = total.get(k, 0.0) + v
    return total


def reserve(chosen: Layout, timeout_s: float) -> Any:
    """Create the placement group (PACK: as few nodes as possible) and wait until it is placed."""
    import ray
    from ray.exceptions import GetTimeoutError
    from ray.util.placement_group import placement_group, remove_placement_group

    pg = placement_group(chosen.bundles, strategy="PACK")
    try:
        ray.get(pg.ready(), timeout=timeout_s)
    except GetTimeoutError:
        remove_placement_group(pg)
        need = _total(chosen.bundles)
        raise LayoutError(
            f"the placement group ({len(chosen.bundles)} bundles, {need} in all) was not placed "
            f"within {timeout_s:.0f} s; the cluster has {ray.cluster_resources()}. Lower "
            "dist.cpus_per_slot or the group sizes, or add nodes"
        ) from None
    return pg


def actor_options(pg: Any, seat: Seat) -> dict[str, Any]:
    """``.options(...)`` that put an actor on its seat's first bundle."""
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    strategy = PlacementGroupSchedulingStrategy(
        placement_group=pg, placement_group_bundle_index=seat.bundles[0]
    )
    return {"num_cpus": seat.cpus, "num_gpus": seat.gpus, "scheduling_strategy": strategy}
