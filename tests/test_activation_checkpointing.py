"""Activation checkpointing (``model.gradient_checkpointing=true``) for every method on a 6-layer model: the same
training losses as without it, and fewer bytes of activations kept for the backward pass (counted exactly with
``torch.autograd.graph.saved_tensors_hooks`` over each training step, so the test does not depend on the allocator
or on timing)."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from test_classify import CLASSIFY
from test_dpo import DPO
from test_kto import KTO
from test_ppo import PPO_FAST
from test_reliability import _run_with_callback
from test_reward import REWARD_FAST
from test_sft import SFT

SIX_LAYERS = ["model.num_layers=6", "trainer.max_steps=2", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
              "model.dropout=0.1"]  # dropout on: the recomputed forward must draw the same masks
METHODS = {
    "mlm": ["experiment=mlm_tiny"],
    "reward": REWARD_FAST,
    "sft": SFT,
    "dpo": DPO,
    "kto": KTO,
    "pwp": ["experiment=pwp_tiny", "data.source.max_documents=60", "data.loader.batch_size=4",
            "method.evaluation.enabled=false"],
    "ppo": PPO_FAST,
    "classify": [*CLASSIFY, "data.source.max_documents=80"],
}


class SavedBytes(Callback):
    """Bytes of the tensors autograd saves for backward during each training step, and each step's loss."""

    def __init__(self):
        self.per_step, self.losses = [], []
        self._context = None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.per_step.append(0)

        def pack(tensor):
            self.per_step[-1] += tensor.numel() * tensor.element_size()
            return tensor

        self._context = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
        self._context.__enter__()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self._context.__exit__(None, None, None)
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:  # a method that steps its own optimizers (PPO) returns no loss: its logged losses
            self.losses.append(tuple(float(v) for k, v in sorted(trainer.callback_metrics.items())
                                     if k.startswith("train/") and k.endswith("_loss")))
            assert self.losses[-1], sorted(trainer.callback_metrics)
        else:
            self.losses.append(float(loss))


@pytest.mark.parametrize("method", list(METHODS))
def test_same_losses_and_fewer_saved_activations_with_checkpointing(method, make_cfg, monkeypatch):
    runs = {}
    for checkpointing in (False, True):
        cfg = make_cfg(*METHODS[method], *SIX_LAYERS, f"model.gradient_checkpointing={str(checkpointing).lower()}",
                       "test=false", "export=false", fast=method == "mlm", subdir=f"gc_{checkpointing}")
        counter = SavedBytes()
        _run_with_callback(cfg, counter, monkeypatch)
        runs[checkpointing] = counter
    plain, checkpointed = runs[False], runs[True]
    assert len(plain.losses) == len(checkpointed.losses) == 2
    for a, b in zip(checkpointed.losses, plain.losses):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6), method
    assert checkpointed.per_step[0] < 0.6 * plain.per_step[0], (method, plain.per_step, checkpointed.per_step)
