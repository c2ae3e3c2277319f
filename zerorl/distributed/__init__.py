"""The Ray backend: policy, critic, rollout and reward roles as Ray actors, FSDP2 inside.

- ``settings``: the ``dist`` settings and the plain specs the actors are built from
- ``fsdp``: FSDP2 wrapping, full state dicts and checkpoints (torch.distributed only)
- ``sharded``: one data-parallel rank of the policy or critic (torch.distributed only)
- ``actors``: the Ray actor classes; ``groups``: their driver-side handles, typed like the
  local workers, with timeouts; ``placement``: colocated and separate layouts
- ``builder``: ``build_ray_roles(cfg, checkpoint) -> Roles``

The single-process path imports none of this; ``builder``, ``groups`` and ``actors`` need Ray.
See docs/distributed.md.
"""
