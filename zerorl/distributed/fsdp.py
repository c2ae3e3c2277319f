"""FSDP2 (``torch.distributed.fsdp.fully_shard``) for the policy and critic, without Ray.

A training group is one torch.distributed world: gloo on CPU, nccl on GPU, every collective
bounded by the timeout given to :func:`init_world`. Models are sharded layer by layer (the
classes a Hugging Face model lists in ``_no_split_modules``) and then at the root. Only rank 0
reads the checkpoint; the other ranks build the network on the meta device and receive their
shards by broadcast, so a node holds one full copy of the weights in CPU memory, not one per rank.

Checkpoints are written in the local backend's layout: Hugging Face weights gathered on rank 0,
and ``optimizer.pt`` holding the *full* optimiser state keyed by parameter index, exactly as
``torch.optim.Optimizer.state_dict()`` of the unsharded model; so a run saved by one backend
resumes on the other, with any number of ranks.
"""

from __future__ import annotations

import datetime
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor

FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)
FROM_RANK0 = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)


def free_address() -> tuple[str, int]:
    """This host's address and a free TCP port, for rank 0 to offer as the rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    try:
        host = socket.gethostbyname(socket.gethostname())
    except OSError:
        host = "127.0.0.1"
    return host, port


def init_world(rank: int, world: int, address: tuple[str, int], device: str, timeout_s: float):
    """Join the group's torch.distributed world; any collective that waits longer than
    ``timeout_s`` raises instead of hanging."""
    backend = "nccl" if device == "cuda" else "gloo"
    if device == "cuda":
        # Ray exposes exactly the GPU(s) it assigned through CUDA_VISIBLE_DEVICES.
        torch.cuda.set_device(0)
    dist.init_process_group(
        backend,
        init_method=f"tcp://{address[0]}:{address[1]}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=timeout_s),
    )


def uses_fsdp(world: int, device: str) -> bool:
    """FSDP2 whenever there is something to shard, or bf16 mixed precision to apply on a GPU rank
    of a process group (a Ray group). A single rank without a group (the local backend, on CPU
    or GPU) runs the plain module: on CPU its numbers are bit-identical to a one-rank group's."""
    return world > 1 or (device == "cuda" and dist.is_initialized())


def mixed_precision(dtype: str, device: str) -> MixedPrecisionPolicy | None:
    """bf16 compute with fp32 master weights and fp32 gradient reduction, on GPU only."""
    if device == "cuda" and dtype == "bfloat16":
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return None


def shard(
    model: nn.Module,
    block_classes: set[str],
    world: int,
    device: str,
    mp: MixedPrecisionPolicy | None,
    fp32_modules: tuple[nn.Module, ...] = (),
) -> nn.Module:
    """Apply ``fully_shard`` bottom-up: each block, then ``fp32_modules`` (kept in fp32 under
    mixed precision, e.g. the value head), then the root.

    Gradients are *summed* across ranks (divide factor 1): every rank scales its loss by its
    share of the global batch, so the sum is the global mean even when ranks hold different
    numbers of rows. Sum-only reductions are also what gloo supports (it has neither AVG nor
    PREMUL_SUM).
    """
    mesh = init_device_mesh(device, (world,))
    kwargs: dict[str, Any] = {"mesh": mesh}
    if mp is not None:
        kwargs["mp_policy"] = mp
    for module in list(model.modules()):
        if type(module).__name__ in block_classes:
            fully_shard(module, **kwargs)
    for module in fp32_modules:
        fully_shard(module, mesh=mesh)
    fully_shard(model, **kwargs)
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)
    return model


def load_sharded(
    load_full: Callable[[], nn.Module],
    build_meta: Callable[[], nn.Module],
    wrap: Callable[[nn.Module], nn.Module],
    rank: int,
    device: str,
) -> nn.Module:
    """Rank 0 loads the real weights (``load_full``), the others build the same network on the
    meta device (``build_meta``); all wrap it (``wrap``) and rank 0 broadcasts the weights.

    Non-persistent buffers (e.g. rotary frequencies) are not in the state dict, so rank 0
    broadcasts them too."""
    if rank == 0:
        model = load_full()
        full = model.state_dict()
    else:
        with torch.device("meta"):
            model = build_meta()
        full = {}
    persistent = set(model.state_dict())
    model = wrap(model)
    target = torch.device("cuda", torch.cuda.current_device()) if device == "cuda" else "cpu"
    if rank == 0:
        model.to(target)
    else:
        model.to_empty(device=target)
    for name, buf in model.named_buffers():
        if name not in persistent:
            dist.broadcast(buf, src=0)
    set_model_state_dict(model, full, options=FROM_RANK0)
    return model


def full_state_dict(model: nn.Module, sharded: bool) -> dict[str, torch.Tensor]:
    """Every weight, unsharded, on CPU: on rank 0 (an empty dict on the other ranks).

    A collective when ``sharded``: every rank of the group must call it."""
    if sharded:
        return get_model_state_dict(model, options=FULL)
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def tied_aliases(model: nn.Module) -> set[str]:
    """Names under which an already listed parameter appears again (tied embeddings).

    Hugging Face's own ``save_pretrained`` writes a tied weight once; dropping these keeps the
    files of both backends the same."""
    every = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    return every - {n for n, _ in model.named_parameters()}


def grad_norm(model: nn.Module, max_norm: float) -> float:
    """Clip the gradients of every parameter to ``max_norm`` in total; the norm before clipping."""
    norm = nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    if isinstance(norm, DTensor):
        norm = norm.full_tensor()
    return float(norm)


def _param_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The name of each optimiser parameter, in the optimiser's (= state-dict index) order."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]


def optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, sharded: bool) -> dict:
    """The full optimiser state in ``Optimizer.state_dict()`` form (keys = parameter indices),
    on rank 0; a collective when ``sharded``."""
    if not sharded:
        return optimizer.state_dict()
    by_name = get_optimizer_state_dict(model, optimizer, options=FULL)
    if not by_name:
        return {}
    index = {name: i for i, name in enumerate(_param_names(model, optimizer))}
    groups = [
        {**g, "params": [index[name] for name in g["params"]]} for g in by_name["param_groups"]
    ]
    state = {index[name]: s for name, s in by_name["state"].items()}
    return {"state": state, "param_groups": groups}


def load_optimizer_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, state: dict | None, sharded: bool
) -> None:
    """Load an ``Optimizer.state_dict()``-form state (rank 0 passes it, the others None);
    a collective when ``sharded``."""
    if not sharded:
        optimizer.load_state_dict(state)
        return
    optimizer.zero_grad(set_to_none=True)  # torch initialises the state only when grads are None
    by_name: dict = {}
    if state is not None:
        names = _param_names(model, optimizer)
        by_name = {
            "state": {names[i]: s for i, s in state["state"].items()},
            "param_groups": [
                {**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]
            ],
        }
    set_optimizer_state_dict(model, optimizer, by_name, options=FROM_RANK0)


def broadcast_object(obj: Any, sharded: bool) -> Any:
    """Rank 0's ``obj`` on every rank (small Python objects: scheduler states)."""
    if not sharded:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def to_device(model: nn.Module, optimizer: torch.optim.Optimizer, device: str) -> None:
    """Move a model and its optimiser state (colocation: free the GPU while engines generate,
    take it back for training). A no-op for CPU workers."""
    if not torch.cuda.is_available():
        return
    target = torch.device("cuda", torch.cuda.current_device()) if device == "cuda" else "cpu"
    model.to(target)
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.dim() > 0:
                    state[key] = value.to(target, non_blocking=True)
    if device == "cpu":
        torch.cuda.empty_cache()


def is_rank0() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def ensure_dir(directory: str | Path) -> Path:
    path = Path(directory)
    os.makedirs(path, exist_ok=True)
    return path
