"""Schemas of PPO: ``method=ppo`` and its prompts (``data=prompts``), and the rules that tie them to the trainer
and strategy."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING, DictConfig

from rlhf.config.common import LoaderConf, OptimConf, ScorerConf, SourceConf, SplitConf
from rlhf.config.fields import spec
from rlhf.config.run import builds_in_context, strategy_kind


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
    compile_generation: bool = spec(False, help="Run the one-token decoding step through torch.compile (on the "
                                                "static KV cache): compiles once per batch shape (about 20 s on CPU), "
                                                "then decodes faster; for long runs, mainly on a GPU.")
    missing_eos_penalty: float | None = spec(None, help="Subtracted from the score of responses without EOS.")
    advantage: str = spec("gae", choices=["gae", "rloo", "grpo"],
                          help="gae: per-token GAE with a critic; rloo: REINFORCE with leave-one-out baseline; grpo: "
                               "the reward normalised within each prompt's group of samples (no critic).")
    grpo_std_normalise: bool = spec(True, help="advantage=grpo: divide by the group's std (false: Dr. GRPO, the "
                                               "difference from the group mean only).")
    samples_per_prompt: int = spec(1, ge=1, help="Responses sampled per prompt (>= 2 for rloo and grpo).")
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
    max_grad_norm: float | None = spec(1.0, gt=0.0, help="Clip each optimizer step's gradient norm (PPO steps its "
                                                       "optimizers itself; rlhf/conf/method/ppo.yaml sets it to "
                                                       "trainer.gradient_clip_val). null = off.")
    entropy_floor: float = spec(0.05, ge=0.0, help="Warn when the policy entropy (nats/token) falls below this.")
    samples_to_log: int = spec(8, ge=0, help="Prompt/response/reward rows in the sample table at each evaluation.")
    seed: int = spec(0, ge=0, help="Seed of sampling (set from the top-level seed).")

    def check(self) -> list[tuple[str, str]]:
        problems = super().check()
        if self.advantage in ("rloo", "grpo") and self.samples_per_prompt < 2:
            problems.append(("samples_per_prompt", f"={self.samples_per_prompt} must be >= 2 with "
                                                   f"advantage={self.advantage}"))
        if self.reward.kind in (None, "none"):
            problems.append(("reward.kind", "must name a reward: gold, reward_model, callable or weighted_sum"))
        return problems


def ppo_run_problems(cfg: DictConfig) -> list[str]:
    """PPO's rules across groups. Rollout batch -> minibatches -> micro-batches must divide evenly; Lightning's own
    accumulation is off (PPO accumulates over method.micro_batch_size itself); the strategy keeps whole weights on
    every rank (rollouts, the frozen reference and the value model need them)."""
    problems = []
    rollout = int(cfg.data.loader.batch_size) * int(cfg.method.samples_per_prompt)
    minibatches = int(cfg.method.num_minibatches)
    if rollout % minibatches:
        problems.append(f"method.num_minibatches={minibatches} must divide the rollout batch of {rollout} responses "
                        f"per device (data.loader.batch_size x method.samples_per_prompt)")
    elif cfg.method.micro_batch_size and (rollout // minibatches) % int(cfg.method.micro_batch_size):
        problems.append(f"method.micro_batch_size={cfg.method.micro_batch_size} must divide the minibatch of "
                        f"{rollout // minibatches} responses (rollout {rollout} / num_minibatches {minibatches})")
    if int(cfg.trainer.accumulate_grad_batches) != 1:
        problems.append("trainer.accumulate_grad_batches must be 1 for method=ppo; PPO accumulates gradients over "
                        "method.micro_batch_size itself")
    strategy = strategy_kind(cfg.strategy)
    if strategy == "deepspeed":
        problems.append("method=ppo does not support strategy=deepspeed (any stage): PPO steps its optimizer itself, "
                        "several times per batch, with its own gradient clipping, while DeepSpeed's engine owns the "
                        "gradients and the step (not run on a GPU yet); use strategy=fsdp2 (sharded policy, reference "
                        "and value model) or strategy=ddp")
    elif builds_in_context(cfg.strategy):
        problems.append(f"method=ppo does not support strategy={strategy}: it builds the networks in pieces before "
                        f"PPO can wrap them; use strategy=fsdp2 (FSDP2: sharded policy, reference and value model) or "
                        f"strategy=ddp")
    return problems
