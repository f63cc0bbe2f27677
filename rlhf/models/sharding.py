"""Whole weights from a model a sharded strategy split across ranks: what an export needs under FSDP (Lightning's
``FSDPStrategy``, FSDP2's ``fully_shard`` / ``ModelParallelStrategy``) and DeepSpeed ZeRO-3."""

from __future__ import annotations

import contextlib

import torch
from torch import nn


def is_sharded(model: nn.Module) -> bool:
    """Whether some parameter of ``model`` lives in pieces across ranks (a DTensor of FSDP2, an FSDP1 flat parameter,
    or a ZeRO-3 partitioned parameter)."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) or hasattr(p, "ds_id") for p in model.parameters()) or any(
        type(m).__name__ == "FullyShardedDataParallel" for m in model.modules())


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

            return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
