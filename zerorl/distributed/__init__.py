"""The Ray backend: policy, critic, rollout and reward roles as Ray actors, FSDP2 inside.

- ``specs``: the plain specs the actors are built from (placement reads the config's ``dist``)
- ``fsdp``: FSDP2 wrapping, full state dicts and checkpoints (torch.distributed only; the
  workers of ``zerorl.workers`` use its helpers, which do nothing special for one CPU rank)
- ``sharded``: how one rank loads its (shard of the) policy or critic (torch.distributed only)
- ``actors``: the Ray actor classes (a training actor is a ``zerorl.workers`` worker in a shell
  that joins its group's world); ``groups``: their driver-side handles, the ``PolicyRole`` and
  ``CriticRole`` of ``zerorl.roles``, with timeouts; ``placement``: colocated and separate layouts
- ``builder``: ``build_ray_roles(cfg, checkpoint) -> Roles``

``builder``, ``groups`` and ``actors`` need Ray; nothing on the single-process path imports them.
See docs/distributed.md.
"""
