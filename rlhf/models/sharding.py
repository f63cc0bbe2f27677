"""Sharded training: ``strategy=fsdp2`` (:class:`FSDP2Strategy`, which shards each method's networks with
:func:`shard_blocks`), sampling from sharded blocks gathered once (:func:`gathered_for_generation`), and the whole
weights an export needs from a model split across ranks (FSDP1, FSDP2, DeepSpeed ZeRO-3)."""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta

import torch
from lightning.pytorch.strategies import ModelParallelStrategy
from torch import nn
from torch.distributed.constants import default_pg_timeout


def is_sharded(model: nn.Module) -> bool:
    """Whether some parameter of ``model`` lives in pieces across ranks (a DTensor of FSDP2, an FSDP1 flat parameter,
    or a ZeRO-3 partitioned parameter)."""
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

    # (an FSDP2 module between its forward and backward holds whole, plain tensors: hence the FSDPModule test)
    return any(isinstance(p, DTensor) or hasattr(p, "ds_id") for p in model.parameters()) or any(
        isinstance(m, FSDPModule) or type(m).__name__ == "FullyShardedDataParallel" for m in model.modules())


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor] | None:
    """The whole weights of a sharded ``model``, gathered to CPU. A collective under a sharded strategy: every rank
    must call it (each gets the full dict). None when the parameters are already whole (single device, DDP): the
    model's own ``state_dict`` is then the export."""
    if not is_sharded(model):
        return None
    if any(hasattr(p, "ds_id") for p in model.parameters()):  # DeepSpeed ZeRO-3: gather, then read
        import deepspeed

        gather = deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None)
    else:
        gather = contextlib.nullcontext()
    with gather:
        if not any(hasattr(p, "ds_id") for p in model.parameters()):
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
            from torch.distributed.fsdp import FSDPModule

            for module in model.modules():  # FSDP2 leaves the root gathered after a forward without backward (test)
                if isinstance(module, FSDPModule):
                    module.reshard()

            state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
            return _tied_again(model, state)
        return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _tied_again(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with one tensor for the names of one parameter (tied embeddings): a gather across ranks returns a
    copy per name, and ``save_pretrained`` then writes the tied weight twice."""
    first: dict[int, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        owner = first.setdefault(id(param), name)
        if owner != name and owner in state and name in state:
            state[name] = state[owner]
    return state


@contextlib.contextmanager
def gathered_for_generation(model: nn.Module):
    """Under FSDP2, keep every block of ``model`` gathered through a loop of forward passes without backward (sampling
    a response token by token), instead of all-gathering it again for each new token; resharded after, and the root
    back to FSDP2's default (gathered until the backward). Whole models: nothing to do. Every rank must enter it."""
    from torch.distributed.fsdp import FSDPModule

    if not isinstance(model, FSDPModule):
        yield
        return
    model.set_reshard_after_forward(False)
    try:
        yield
    finally:
        model.set_reshard_after_forward(True)
        model.set_reshard_after_forward(False, recurse=False)
        for module in model.modules():
            if isinstance(module, FSDPModule):
                module.reshard()


def shard_blocks(network: nn.Module, mesh) -> nn.Module:
    """FSDP2 (``torch.distributed.fsdp.fully_shard``) over ``mesh``: each transformer block (the classes a
    ``transformers`` model names in ``_no_split_modules``) becomes its own unit, gathered for its forward and
    backward and freed after, then the rest of ``network`` (embeddings, heads) one unit. Frozen networks (a reference
    policy) are sharded the same way; their parameters simply get no gradients."""
    from torch.distributed.fsdp import fully_shard

    block_names = set()
    for module in network.modules():
        block_names.update(getattr(module, "_no_split_modules", None) or [])
    for module in network.modules():
        if type(module).__name__ in block_names:
            fully_shard(module, mesh=mesh)
    return fully_shard(network, mesh=mesh)


def built_on_meta_unless_rank_zero(strategy_kind: str) -> contextlib.AbstractContextManager:
    """Where a process builds the networks at construction: under ``strategy=fsdp2`` every process but global rank 0
    builds them on the meta device (shapes only, no memory), and :func:`shard_from_rank_zero` then gives it its
    shard of rank 0's weights; otherwise (and on rank 0) for real. The rank is read from the launcher's environment
    (Lightning's, torchrun's, SLURM's), as Lightning's ``rank_zero_only`` does."""
    from lightning.fabric.utilities.rank_zero import _get_rank

    if strategy_kind == "fsdp2" and (_get_rank() or 0) != 0:
        return torch.device("meta")
    return contextlib.nullcontext()


def shard_from_rank_zero(network: nn.Module, mesh, device: torch.device) -> None:
    """:func:`shard_blocks` ``network``, with global rank 0's weights on every rank: rank 0's whole state is taken
    before sharding, a copy built on the meta device gets real (empty) memory for its shard only, then every shard
    and every buffer (persistent or not) is filled from rank 0 by broadcast. So all ranks start from the one
    process's initialisation (or loaded weights), and no rank but 0 ever held the whole network."""
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    rank = dist.get_rank() if dist.is_initialized() else 0
    on_meta = any(t.is_meta for t in (*network.parameters(), *network.buffers()))
    if rank == 0 and on_meta:
        raise RuntimeError("global rank 0 built its networks on the meta device: it must hold the weights to share")
    whole = dict(network.state_dict()) if rank == 0 else {}
    name, total = type(network).__name__, sum(p.numel() for p in network.parameters())
    if total:
        shard_blocks(network, mesh)
    if on_meta:
        network.to_empty(device=device)
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return
    if total:
        set_model_state_dict(network, whole, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    for buffer in network.buffers():
        dist.broadcast(buffer.data, src=0)
    if on_meta:
        local = sum(p.to_local().numel() if hasattr(p, "to_local") else p.numel() for p in network.parameters())
        logging.getLogger("rlhf").info(f"[fsdp2] rank {rank}: {name} built on the meta device; it holds its shard "
                                       f"of rank 0's weights, {local:,} of {total:,} parameters")


class FSDP2Strategy(ModelParallelStrategy):
    """``strategy=fsdp2``: Lightning's ``ModelParallelStrategy`` as pure FSDP2 data parallelism. Every device of every
    node is a data-parallel rank (no tensor parallelism), and each method's networks are sharded by
    :func:`shard_blocks` in ``configure_model``. Runs on GPUs (nccl) and, for tests, on CPU processes (gloo).

    Checkpoints are whole (gathered on rank 0, one file, as under DDP), so they resume under any strategy."""

    def __init__(self, process_group_backend: str | None = None, timeout: timedelta = default_pg_timeout):
        super().__init__(data_parallel_size="auto", tensor_parallel_size=1, save_distributed_checkpoint=False,
                         process_group_backend=process_group_backend, timeout=timeout)

    def setup_environment(self) -> None:
        self._data_parallel_size = self.num_nodes * self.num_processes  # "auto" would be one rank per node
        super().setup_environment()
