"""The LightningModule spine every method shares (:class:`TrainableModule`): settings, tokenizer, model built in
``configure_model``, AdamW with warm-up and decay, the non-finite guard, RNG state in checkpoints, held-out metrics
logged at epoch end, and the Hugging Face export. The DataModule spine is ``rlhf.methods.data``."""

from __future__ import annotations

import contextlib
import math
import random
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torchmetrics import Metric
from transformers import AutoTokenizer

from rlhf.callbacks.reliability import NonFiniteGuard
from rlhf.config.common import BackboneConf
from rlhf.config.fields import as_config, to_plain
from rlhf.models.lora import export_model, is_lora, trainable_state
from rlhf.models.sharding import full_state_dict, is_sharded, shard_from_rank_zero


class TokenNLL(Metric):
    """Micro-averaged over the scored tokens of every batch and device: ``<loss_name>`` (the summed NLL over the
    summed count, not a mean of per-batch means) and ``perplexity``."""

    full_state_update = False

    def __init__(self, loss_name: str):
        super().__init__()
        self.loss_name = loss_name
        for name in ("nll", "count"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, nll_sum: torch.Tensor, count: torch.Tensor) -> None:
        self.nll = self.nll + nll_sum.detach().double()
        self.count = self.count + count.detach().double()

    def compute(self) -> dict[str, torch.Tensor]:
        loss = self.nll / self.count.clamp(min=1)
        return {self.loss_name: loss.float(), "perplexity": torch.exp(loss).float()}


class TrainableModule(pl.LightningModule):
    """The spine of every method: settings, tokenizer, optimiser and schedule, RNG state in checkpoints, HF export.

    ``cfg`` is the ``method`` settings (a ``schema`` object or a mapping; keys it leaves out take the schema's
    defaults), ``model`` the backbone settings (``BackboneConf``) and ``tokenizer_dir`` the tokenizer saved by the
    entry point. All three are saved as plain hyperparameters, so ``load_from_checkpoint`` rebuilds the module from
    its checkpoint alone. Subclasses build their networks in :meth:`build_model` (``self.model``: a ``transformers``
    model), called by :meth:`configure_model`.
    """

    schema: type  # the method.* schema this module reads (``rlhf/methods/<method>/config.py``)

    def __init__(self, cfg: Any, model: Any, tokenizer_dir: str):
        super().__init__()
        self.cfg = as_config(self.schema, cfg, "method")
        self.model_cfg = as_config(BackboneConf, model, "model")
        self.save_hyperparameters({"cfg": to_plain(self.cfg), "model": to_plain(self.model_cfg),
                                   "tokenizer_dir": str(tokenizer_dir)})
        self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
        self.model = None  # the transformers model: built by configure_model
        # held-out metrics (torchmetrics Metrics whose compute() is a dict), logged as <stage>/<name> at epoch end
        self.val_metrics: Metric | None = None
        self.test_metrics: Metric | None = None

    def configure_model(self) -> None:
        """Build the networks, once. Lightning calls this inside the strategy's context, so a sharded strategy (FSDP,
        DeepSpeed ZeRO-3) builds them sharded; under the other strategies the entry point calls it right after
        construction (``rlhf.train.build_data_and_module``), which keeps the order of random draws of building in
        ``__init__``. ``load_from_checkpoint`` calls it too."""
        if self.model is None:
            self.build_model()
            self.strict_loading = not self._base_left_out
        if self._device_mesh is not None and not is_sharded(self.model):  # strategy=fsdp2: shard every network
            mesh = self._device_mesh["data_parallel"]  # (the whole 2-D mesh would make fully_shard replicate)
            for network in self.children():
                if next(network.parameters(), None) is not None or next(network.buffers(), None) is not None:
                    shard_from_rank_zero(network, mesh, self.trainer.strategy.root_device)

    def checkpointed(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The part of ``state_dict`` a checkpoint holds: all of it, or, when the frozen base is left out (LoRA on a
        model from disk), the adapters, heads and the method's own state."""
        return trainable_state(self, state_dict) if self._base_left_out else state_dict

    @property
    def _base_left_out(self) -> bool:
        """LoRA on a model from disk: checkpoints hold the adapters and heads; the frozen base is reloaded from
        ``model.name_or_path`` (a base built from config is random, so its checkpoints keep it)."""
        return is_lora(self.model) and self.model_cfg.source == "pretrained"

    def reference_policy(self) -> contextlib.AbstractContextManager[torch.nn.Module | None]:
        """The frozen reference the policy is kept close to, inside a ``with`` block (``GenerateAndScore`` reports
        the KL of its samples to it); None for methods without one."""
        return contextlib.nullcontext(None)

    def build_model(self) -> None:  # pragma: no cover - abstract
        """Set ``self.model`` (and any other network of the method) from ``self.model_cfg`` and ``self.tokenizer``."""
        raise NotImplementedError

    # ---- held-out metrics ------------------------------------------------------------------------------------------
    def _log_eval(self, stage: str) -> None:
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        if metrics is None:
            return
        values = metrics.compute()  # already reduced across devices; sync_dist only averages identical values
        self.log_dict({f"{stage}/{k}": v for k, v in values.items()}, prog_bar=stage == "val", sync_dist=True)
        metrics.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val")

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")

    # ---- optimisation --------------------------------------------------------------------------------------------
    def configure_optimizers(self):
        cfg = self.cfg
        optimizer = adamw(self.named_parameters(), cfg.lr, cfg)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": lr_scheduler(optimizer, cfg, self._trainer),
                                                         "interval": "step"}}

    # ---- the non-finite guard ------------------------------------------------------------------------------------
    @property
    def nonfinite_guard(self) -> NonFiniteGuard | None:
        """The run's :class:`NonFiniteGuard` (``callbacks.nonfinite``), found among the trainer's callbacks."""
        trainer = self._trainer
        return next((c for c in trainer.callbacks if isinstance(c, NonFiniteGuard)), None) if trainer else None

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer, optimizer_closure=None) -> None:
        """Forward and backward (the closure), then the optimizer step only if the loss and every gradient are finite
        (see ``callbacks.nonfinite``); Lightning's gradient clipping still runs inside ``optimizer.step``."""
        guard = self.nonfinite_guard
        if guard is None or optimizer_closure is None:
            return super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        loss = optimizer_closure()
        if guard.check(self, loss, self.named_parameters()):
            optimizer.step(closure=lambda: loss)
        else:
            optimizer.zero_grad(set_to_none=True)

    # ---- data parallelism ----------------------------------------------------------------------------------------
    def global_mean(self, local_mean: torch.Tensor, count: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss to backpropagate, the mean over all ranks)`` for a loss averaged over ``count`` items (tokens,
        pairs) on this rank. DDP averages gradients over ranks, so with unequal counts (MLM masks, padding) the
        plain per-rank mean would weight tokens unequally; ``local_mean * count * world / total_count`` makes the
        averaged gradient that of the mean over every item of the global batch, as one process with that batch
        computes. One all-reduce of two scalars per step; nothing changes on one process."""
        world = self.trainer.world_size if self._trainer is not None else 1
        if world == 1 or not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return local_mean, local_mean.detach()
        count = torch.as_tensor(count, device=local_mean.device).to(torch.float64)
        both = torch.stack([local_mean.detach().double() * count, count])
        torch.distributed.all_reduce(both)
        total = both[1].clamp(min=1)
        return local_mean * (count * world / total).to(local_mean.dtype), (both[0] / total).to(local_mean.dtype)

    # ---- exact resume --------------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # tensors, ints and tuples only, so the checkpoint loads with torch.load(weights_only=True)
        checkpoint["rlhf_module"] = type(self).__name__  # so a resume with another method is refused clearly
        checkpoint["state_dict"] = self.checkpointed(checkpoint["state_dict"])
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("rng_states")
        if not states:
            return
        rank = self.trainer.global_rank if self._trainer is not None else 0
        if rank == 0:
            torch.set_rng_state(states["torch"])
            kind, keys, pos, has_gauss, gauss = states["numpy"]
            np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
            random.setstate(states["python"])
            if states.get("cuda") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(states["cuda"])
        else:  # only rank 0's state is saved: give other ranks a distinct, deterministic stream
            seed = int(checkpoint["global_step"]) * 1_000_003 + rank
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)

    # ---- export --------------------------------------------------------------------------------------------------
    def export(self, directory: str | Path) -> Path | None:
        """``save_pretrained`` of the model and its tokenizer: loads with plain ``transformers``. Called on every rank:
        under a sharded strategy the whole weights are gathered first (a collective), then rank 0 writes them.
        Returns the directory on rank 0, None elsewhere."""
        state = full_state_dict(self.model)
        if self._trainer is not None and not self.trainer.is_global_zero:
            return None
        exported = export_model(self.model, self.model_cfg.lora.export, state)
        return save_export(exported, self.tokenizer, directory, state if exported is self.model else None)


def save_export(model: Any, tokenizer: Any, directory: str | Path, state: dict[str, torch.Tensor] | None = None) -> Path:
    """``model.save_pretrained`` (with ``state``, the gathered whole weights, when the model is sharded) and the
    tokenizer's ``save_pretrained`` into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory), state_dict=state)
    tokenizer.save_pretrained(str(directory))
    return directory


def decay_groups(named_parameters, weight_decay: float, **settings: Any) -> list[dict[str, Any]]:
    """The trainable parameters as two optimizer groups: with ``weight_decay``, and without it (biases and norms);
    ``settings`` (e.g. the group's own ``lr``) go into both."""
    decay, no_decay = [], []
    for name, param in named_parameters:
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay, **settings},
            {"params": no_decay, "weight_decay": 0.0, **settings}]


def adamw(parameters, lr: float, hp: Any) -> torch.optim.Optimizer:
    """The optimizer of ``hp`` (an ``OptimConf``) over the trainable ``parameters`` (named parameters, or groups
    already made by :func:`decay_groups`, e.g. of several networks with their own lr), with no weight decay on biases
    and norms: AdamW with ``betas``/``eps``, or ``hp.optimizer``, a ``_partial_`` ``_target_`` node (e.g.
    ``{_target_: torch.optim.SGD, _partial_: true, momentum: 0.9}``) called with the same groups and ``lr``."""
    parameters = list(parameters)
    groups = parameters if parameters and isinstance(parameters[0], dict) else decay_groups(parameters, hp.weight_decay)
    if hp.optimizer is not None:
        from hydra.utils import instantiate

        return instantiate(hp.optimizer)(groups, lr=lr)
    # The fused kernel (CPU and CUDA, floating-point parameters) is ~5x faster than the default per-tensor loop.
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(hp.betas), eps=hp.eps, fused=fused or None)


def lr_scheduler(optimizer: torch.optim.Optimizer, hp: Any, trainer: pl.Trainer | None):
    """The scheduler of ``hp`` (an ``OptimConf``), stepped every optimizer step: ``hp.lr_scheduler`` (a ``_partial_``
    ``_target_`` node called with the optimizer), else warm-up then decay to the trainer's last step."""
    if hp.lr_scheduler is not None:
        from hydra.utils import instantiate

        return instantiate(hp.lr_scheduler)(optimizer)
    total = max(1, int(trainer.estimated_stepping_batches)) if trainer is not None else 1
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(hp.scheduler, hp.warmup_steps, total,
                                                                    hp.min_lr_ratio))


def lr_schedule(kind: str, warmup_steps: int, total_steps: int, min_lr_ratio: float):
    """Multiplier of the peak lr at each optimizer step: linear warm-up, then constant, linear or cosine decay."""

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if kind == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if kind == "linear":
            return 1.0 - (1.0 - min_lr_ratio) * progress
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor
