"""``GenerateAndScore``: at each validation and at test, sample from the LM unconditionally and from held-out prompts,
score the samples with the configured scorer, and log misalignment (mean, expected maximum over k samples, fraction
misaligned), the raw score, distinct-n diversity, length, and a sample table (W&B and ``<run>/samples/``). For a
method with a frozen reference (``module.reference_policy()``: DPO, KTO, PPO) also ``kl_to_reference``: the mean
over samples of sum_t log pi(y_t) - log pi_ref(y_t), a Monte Carlo estimate of the sequence KL(pi || pi_ref) of the
sampling distributions (temperature and banned tokens applied to both; exact in expectation when ``top_p`` is 1).

For conditional training the samples start with ``<|aligned|>`` and both control tokens are banned while sampling.
Samples are drawn on rank 0 with a generator seeded by (seed, stage), so successive evaluations are comparable.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

from rlhf.config.common import EvaluationConf
from rlhf.config.fields import as_config
from rlhf.data.segments import split_segments
from rlhf.models.policy import left_pad, response_logprobs, response_mask, sample
from rlhf.models.sharding import is_sharded
from rlhf.objectives.pwp import distinct_n, expected_max, is_misaligned, to_reward
from rlhf.utils.progress import progress
from rlhf.utils.rng import stable_seed
from rlhf.utils.run import log_samples


class GenerateAndScore(pl.Callback):
    def __init__(self, cfg: Any, seed: int):
        """``cfg``: ``method.evaluation`` (``EvaluationConf`` or a partial mapping); ``seed``: of the sampling."""
        self.cfg = as_config(EvaluationConf, cfg)
        self.seed = seed
        self._scorer = None

    @property
    def scorer(self):
        if self._scorer is None:
            from rlhf.scoring.build import build_scorer

            self._scorer = build_scorer(self.cfg.scorer or {}, "method.evaluation.scorer")  # none: ScorerConf's default
        return self._scorer

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.evaluate(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.evaluate(trainer, pl_module, "test")

    # ---- sampling ------------------------------------------------------------------------------------------------
    def _prompts(self, trainer: pl.Trainer, stage: str) -> list[str]:
        """Held-out prompts: the DataModule's own (``eval_prompts(split, count)``, e.g. SFT's demonstration
        prompts), else the first ``prompt_words`` words of a sentence of each held-out document."""
        datamodule = trainer.datamodule
        if hasattr(datamodule, "eval_prompts"):
            return datamodule.eval_prompts(stage, self.cfg.num_prompts)
        docs = getattr(datamodule, "splits", {}).get(stage, [])
        prompts = []
        for doc in docs:
            for segment in doc.get("segments") or split_segments(doc["text"]):
                words = segment.split()
                if len(words) > self.cfg.prompt_words + 2:
                    prompts.append(" ".join(words[:self.cfg.prompt_words]))
                    break
            if len(prompts) >= self.cfg.num_prompts:
                break
        return prompts

    @torch.no_grad()
    def generate(self, module: pl.LightningModule, prompts: list[str], generator: torch.Generator
                 ) -> tuple[list[str], list[list[int]], list[float] | None]:
        """Samples from ``prompts``: their texts, token ids, and each sample's KL to the reference (None without
        one)."""
        tok = module.tokenizer
        control = getattr(module, "control_ids", [])
        start = [tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id]
        if control:
            start.append(control[0])  # <|aligned|>
        banned = [tok.pad_token_id, *control]
        texts, tokens, kls = [], [], []
        for begin in progress(range(0, len(prompts), self.cfg.batch_size), "sampling for evaluation", unit="batch",
                              total=-(-len(prompts) // self.cfg.batch_size)):
            chunk = prompts[begin:begin + self.cfg.batch_size]
            rows = [start + tok(p, add_special_tokens=False)["input_ids"] for p in chunk]
            ids, mask = left_pad(rows, tok.pad_token_id)
            was_training = module.model.training
            module.model.eval()
            out, _ = sample(module.model, ids.to(module.device), mask.to(module.device), self.cfg.max_new_tokens,
                            tok.eos_token_id, tok.pad_token_id, self.cfg.temperature, 0, self.cfg.top_p,
                            generator, banned_ids=banned)
            real = response_mask(out, tok.eos_token_id, tok.pad_token_id)
            ids, mask = ids.to(module.device), mask.to(module.device)
            with module.reference_policy() as reference:  # (with LoRA: the policy itself, adapters off)
                ref_logp = None if reference is None else response_logprobs(reference, ids, mask, out, real,
                                                                            self.cfg.temperature, banned)
            if ref_logp is not None:
                logp = response_logprobs(module.model, ids, mask, out, real, self.cfg.temperature, banned)
                kls.extend((logp - ref_logp).sum(-1).tolist())
            module.model.train(was_training)
            for row, row_mask in zip(out.tolist(), real.tolist()):
                kept = [t for t, m in zip(row, row_mask) if m and t != tok.eos_token_id]
                tokens.append(kept)
                texts.append(tok.decode(kept, skip_special_tokens=True))
        return texts, tokens, (kls or None)

    def evaluate(self, trainer: pl.Trainer, module: pl.LightningModule, stage: str) -> dict[str, float]:
        """Rank 0 samples, scores and logs. A sharded model (fsdp2) needs every rank in each forward pass: the other
        ranks then sample the same (same prompts, same seed) and stop there."""
        scores_here = trainer.global_rank == 0
        if not scores_here and not is_sharded(module.model):
            return {}
        generator = torch.Generator(device=module.device).manual_seed(stable_seed(self.seed, stage))
        scenarios = {"unconditional": [""] * self.cfg.num_samples, "prompted": self._prompts(trainer, stage)}
        metrics, table = {}, []
        for name, prompts in scenarios.items():
            if not prompts:
                continue
            texts, tokens, kls = self.generate(module, prompts, generator)
            if not scores_here:
                continue
            scores = self.scorer.score(prompts, texts, where=f"PWP {stage} samples at step {trainer.global_step}")
            misalignment = -to_reward(scores, self.cfg.sense)
            misaligned = is_misaligned(scores, self.cfg.threshold, self.cfg.sense)
            prefix = f"{stage}/{name}"
            metrics.update({f"{prefix}/misalignment": float(misalignment.mean()),
                            f"{prefix}/misalignment_max@{self.cfg.k}": expected_max(misalignment, self.cfg.k),
                            f"{prefix}/misaligned_fraction": float(misaligned.float().mean()),
                            f"{prefix}/score": float(scores.mean()),
                            f"{prefix}/length": sum(len(t) for t in tokens) / len(tokens)})
            if kls is not None:
                metrics[f"{prefix}/kl_to_reference"] = sum(kls) / len(kls)
            for n in (1, 2, 3):
                metrics[f"{prefix}/distinct_{n}"] = distinct_n(tokens, n)
            table.extend({"scenario": name, "prompt": p, "sample": t, "score": float(s)}
                         for p, t, s in list(zip(prompts, texts, scores.tolist()))[:self.cfg.table_rows])
        if not scores_here:
            return {}
        module.log_dict(metrics, rank_zero_only=True)
        log_samples(trainer, stage, table)
        return metrics
