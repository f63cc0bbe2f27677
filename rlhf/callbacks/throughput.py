"""``TokenThroughput``: tokens/s and samples/s of training (``train/tokens_per_sec``, ``train/samples_per_sec``), and
the peak memory so far: ``train/peak_gpu_memory_gb`` (the CUDA caching allocator's peak on this rank's device) or, on
CPU, ``train/peak_rss_gb`` (the process's peak resident set).

Lightning's ``ThroughputMonitor`` needs per-batch functions (batch size, token count) that a YAML ``_target_`` cannot
give, and logs under other names; this one reads the attention mask every method's batches carry.
"""

from __future__ import annotations

import time

from lightning.pytorch.callbacks import Callback


class TokenThroughput(Callback):
    """Logs ``train/tokens_per_sec`` and ``train/samples_per_sec`` (all ranks) over each logging window."""

    def __init__(self):
        self._t0: float | None = None
        self._tokens = 0
        self._samples = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._t0 is None:
            self._t0 = time.perf_counter()
        mask = batch.get("attention_mask") if isinstance(batch, dict) else None
        if mask is not None:
            self._tokens += int(mask.sum()) * trainer.world_size
            self._samples += mask.shape[0] * trainer.world_size

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (trainer.global_step % trainer.log_every_n_steps) or self._t0 is None or not self._tokens:
            return
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        pl_module.log_dict({"train/tokens_per_sec": self._tokens / elapsed,
                            "train/samples_per_sec": self._samples / elapsed, **peak_memory(pl_module.device)},
                           rank_zero_only=True)
        self._t0, self._tokens, self._samples = time.perf_counter(), 0, 0


def peak_memory(device) -> dict[str, float]:
    """The peak memory so far, in GiB: allocated on a CUDA device, else the process's resident set."""
    import torch

    if device.type == "cuda":
        return {"train/peak_gpu_memory_gb": torch.cuda.max_memory_allocated(device) / 2**30}
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return {"train/peak_rss_gb": rss / (2**30 if sys.platform == "darwin" else 2**20)}
