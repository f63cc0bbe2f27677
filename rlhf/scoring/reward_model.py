"""``RewardModelScorer``: a trained reward model (this project's export, or any one-label sequence classifier) as a
Scorer. It owns its tokenizer, so the policy being scored may use a different one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rlhf.data.feedback import encode_pair, sequence_layout
from rlhf.models.reward import reward_scores
from rlhf.scoring.base import _check_lengths


class RewardModelScorer:
    """``score(prompts, completions)`` -> rewards, batched, on ``device``.

    ``normalize=True`` centres and scales with the mean/std measured on held-out responses after training
    (``reward_mean``/``reward_std`` in the export's config.json), so PPO's KL coefficient keeps its meaning across
    reward models. Prompts are cut from the left when prompt+completion exceed ``max_length``.
    """

    def __init__(self, path: str | Path, batch_size: int = 32, normalize: bool = True, device: str = "cpu",
                 max_length: int | None = None):
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModelForSequenceClassification.from_pretrained(str(path)).to(device).eval()
        config = self.model.config
        self.mean = float(getattr(config, "reward_mean", 0.0)) if normalize else 0.0
        self.std = float(getattr(config, "reward_std", 1.0)) if normalize else 1.0
        self.batch_size = batch_size
        self.device = device
        self.max_length = max_length or getattr(config, "max_position_embeddings", None) or 512
        self.layout = sequence_layout(self.tokenizer)

    @torch.no_grad()
    def score(self, prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
        _check_lengths(prompts, completions)
        out = []
        for start in range(0, len(completions), self.batch_size):
            p = self.tokenizer(list(prompts[start:start + self.batch_size]), add_special_tokens=False)["input_ids"]
            c = self.tokenizer(list(completions[start:start + self.batch_size]), add_special_tokens=False)["input_ids"]
            rows = []
            for prompt_ids, completion_ids in zip(p, c):
                completion_ids = completion_ids[-(self.max_length - 3):]  # an over-long completion keeps its end
                rows.append(encode_pair(prompt_ids, [completion_ids], self.max_length, self.layout)[0][0])
            length = max(len(r) for r in rows)
            input_ids = torch.full((len(rows), length), self.tokenizer.pad_token_id, dtype=torch.long)
            attention_mask = torch.zeros_like(input_ids)
            for i, row in enumerate(rows):
                input_ids[i, :len(row)] = torch.tensor(row)
                attention_mask[i, :len(row)] = 1
            scores = reward_scores(self.model, input_ids.to(self.device), attention_mask.to(self.device))
            out.append(scores.float().cpu())
        rewards = torch.cat(out) if out else torch.zeros(0)
        return (rewards - self.mean) / self.std
