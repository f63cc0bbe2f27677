"""Schemas of preference-weighted pretraining (Korbak et al. 2023): ``method=pwp`` and its scored text."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from rlhf.config.common import EvaluationConf, LoaderConf, OptimConf, ScorerConf, SourceConf, SplitConf
from rlhf.config.fields import spec
from rlhf.objectives.pwp import OBJECTIVES


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
    objective: str = spec("mle", choices=list(OBJECTIVES),
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
class PWPMethodConf(OptimConf):
    _target_: str = "rlhf.methods.pwp.PreferenceWeightedLMModule"
    objective: str = spec("mle", choices=list(OBJECTIVES),
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
