"""``PPOModule``: RLHF of a causal-LM policy against any Scorer, with a KL penalty to a frozen reference.

One ``training_step`` is one PPO iteration, read top to bottom: :meth:`rollout` (sample responses to a batch of
prompts, score them, the frozen passes: old logprobs, reference logprobs, values), :meth:`advantages` (shape the
scores and the KL into per-token advantages: GAE, or RLOO sharing the same rollout), :meth:`ppo_update`
(``ppo_epochs`` passes over ``num_minibatches`` minibatches, each accumulated over micro-batches), then logging.
``global_step`` counts iterations, so ``trainer.max_steps``, ``val_check_interval`` and checkpoints are in
iterations. The records passed along are in ``rollout.py``, every formula in ``rlhf/objectives/ppo.py``, the metrics
in ``metrics.py``. (Over 400 lines on purpose: the iteration is one straight read, rollout to logging, rather than
split across files a reader would have to jump between.)
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torchmetrics import CatMetric

from rlhf.errors import ConfigError
from rlhf.methods.base import TrainableModule, adamw, decay_groups, lr_scheduler
from rlhf.methods.ppo import monitors
from rlhf.methods.ppo.config import PPOMethodConf
from rlhf.methods.ppo.lightning_compat import count_iteration, one_optimizer
from rlhf.methods.ppo.metrics import SampleMeans, UpdateStats, k1_per_response, rollout_stats, sample_values
from rlhf.methods.ppo.rollout import Advantages, Rollout, minibatches, sample_row_keys, timed, trim_padding
from rlhf.models.lora import is_lora, reference_of
from rlhf.models.policy import (
    ValueHead,
    build_causal_lm,
    build_critic,
    disable_dropout,
    forward_logits,
    frozen_copy,
    response_mask,
    sample,
    scaled_logits,
    token_logprobs,
)
from rlhf.models.sharding import is_sharded
from rlhf.objectives.ppo import (
    AdaptiveKLController,
    FixedKLController,
    Moments,
    batch_standardise,
    gae,
    global_whiten,
    grpo_token_advantages,
    kl_estimate,
    logprobs_and_entropy,
    masked,
    masked_mean,
    masked_sum,
    penalise_missing_eos,
    policy_loss_sum,
    rloo_token_advantages,
    running_standardise,
    shape_rewards,
    token_denominator,
    update_moments,
    value_loss_sum,
)
from rlhf.scoring.build import build_scorer
from rlhf.utils.rng import stable_seed
from rlhf.utils.run import log_samples

PHASES = ("generate", "score", "reference", "value", "update")


class PPOModule(TrainableModule):
    schema = PPOMethodConf

    def __init__(self, cfg: Any, model: Any, tokenizer_dir: str):
        super().__init__(cfg, model, tokenizer_dir)
        cfg = self.cfg
        self.automatic_optimization = False
        self.banned_ids = [self.tokenizer.pad_token_id]  # never sampled, so masks built from pad stay exact
        self.ref = self.value_head = self.critic = None  # built with the policy by build_model
        self.kl_ctl = (AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon) if cfg.kl_target
                       else FixedKLController(cfg.kl_coef))
        # running statistics of the scores (reward_norm=running), in the state dict so a resume continues them
        self.register_buffer("score_count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("score_mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("score_m2", torch.zeros((), dtype=torch.float64))
        self.scorer = None
        self.gold_scorer = None
        self.update_stats = UpdateStats(with_entropy=bool(cfg.entropy_coef))
        self.val_metrics = SampleMeans()
        self.test_metrics = SampleMeans()
        self.val_gold = CatMetric()  # every gold score of a validation, for the standard error of val/gold
        self.eval_history: list[dict[str, float]] = []
        self._warned: set[str] = set()
        self._eval_samples: list[dict] = []

    def build_model(self) -> None:
        """The policy (``model``, so export() saves it), its frozen copy the reference, and the value head or the
        separate critic."""
        self.model = build_causal_lm(self.model_cfg, self.tokenizer)
        disable_dropout(self.model)
        # the frozen reference: a copy, or with LoRA the policy itself with its adapters off (no second copy)
        self.ref = None if is_lora(self.model) else frozen_copy(self.model)
        if self.cfg.value == "head":
            self.value_head = ValueHead(self.model.config.hidden_size)
        else:
            self.critic = build_critic(self.cfg.critic_init, self.model, self.tokenizer)

    def reference_policy(self) -> contextlib.AbstractContextManager[torch.nn.Module]:
        return reference_of(self.model, self.ref)

    # ---- setup ---------------------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if self.scorer is None:
            device = str(self.device) if self.device.type != "cpu" else "cpu"
            self.scorer = build_scorer(self.cfg.reward, "method.reward", device)
            self.gold_scorer = build_scorer(self.cfg.gold, "method.gold", device)
            if self.scorer is None:
                raise ConfigError("method.reward is not set: PPO needs a reward (kind=gold|reward_model|callable|"
                                  "weighted_sum)")

    def on_fit_start(self) -> None:
        precision = str(self.trainer.precision)
        if precision.startswith("16"):
            raise ConfigError(f"trainer.precision={precision}: PPO steps its optimizer itself and has no loss "
                              f"scaler; use 32-true or bf16-mixed")

    def configure_optimizers(self):
        """One optimizer (as DeepSpeed requires) with the policy's groups at ``lr`` and the value model's at
        ``critic_lr``: AdamW is per parameter, so this steps as two optimizers would."""
        hp = self.cfg
        groups = [*decay_groups(self.model.named_parameters(), hp.weight_decay, lr=hp.lr),
                  *decay_groups(self._value_module().named_parameters(), hp.weight_decay, lr=hp.critic_lr or hp.lr)]
        optimizer = adamw(groups, hp.lr, hp)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": lr_scheduler(optimizer, hp, self._trainer), "interval": "step"}}

    # ---- the PPO iteration ---------------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> None:
        start = time.perf_counter()
        generator = self._generator("train", self.global_step)
        rollout = self.rollout(batch, generator, key_tag=("train", self.global_step))
        adv = self.advantages(rollout)
        with timed(rollout.times, "update"):
            update = self.ppo_update(rollout, adv, generator, warmup=self.global_step < self.cfg.critic_warmup_steps)
        self.lr_schedulers().step()
        metrics = self._iteration_metrics(rollout, adv, update, start)
        self.log_dict(metrics, prog_bar=False, on_step=True, on_epoch=False)
        self.log("train/reward_mean", metrics["train/reward"], prog_bar=True, on_step=True, on_epoch=False)
        self.kl_ctl.update(metrics["train/kl"], rollout.size * self._world_size())
        self._check_health(k1_per_response(rollout), metrics["train/entropy"])
        count_iteration(self.trainer)

    @torch.no_grad()
    def rollout(self, batch: dict, generator: torch.Generator, key_tag: tuple = ()) -> Rollout:
        """Sample, score, and the frozen passes (old logprobs, reference logprobs, values), timed per phase.

        With ``key_tag`` and prompt indices in the batch, each response's randomness is keyed by (seed, tag, prompt
        index, sample number): the same responses on any number of ranks (see :func:`sample`)."""
        hp, tok, times = self.cfg, self.tokenizer, {}
        k = hp.samples_per_prompt
        input_ids = batch["input_ids"].repeat_interleave(k, 0)
        attention_mask = batch["attention_mask"].repeat_interleave(k, 0)
        prompts = [p for p in batch["prompt"] for _ in range(k)]
        row_keys, stream = None, 0
        if key_tag and "index" in batch:
            row_keys, stream = sample_row_keys(batch["index"], k), stable_seed(hp.seed, *key_tag)
        with timed(times, "generate"):
            responses, sample_logprobs = sample(self.model, batch["input_ids"], batch["attention_mask"],
                                                hp.max_new_tokens, tok.eos_token_id, tok.pad_token_id, hp.temperature,
                                                hp.top_k, hp.top_p, generator, banned_ids=self.banned_ids,
                                                row_keys=row_keys, stream=stream, repeats=k,
                                                compile_step=hp.compile_generation)
            mask = response_mask(responses, tok.eos_token_id, tok.pad_token_id)
        with timed(times, "score"):
            texts = self._decode(responses, mask)
            scores, gold = self._score(prompts, texts, f"PPO {key_tag[0] if key_tag else 'rollout'} at step "
                                                       f"{self.global_step}")
        prompt_len = input_ids.shape[1]
        seq = torch.cat([input_ids, responses], 1)
        seq_mask = torch.cat([attention_mask, mask], 1)
        with timed(times, "reference"):
            logprobs, token_entropy, values = self._policy_pass(seq, seq_mask, prompt_len, responses)
            with self.reference_policy() as reference:
                ref_logits, _ = forward_logits(reference, seq, seq_mask, prompt_len)
            ref_logprobs = token_logprobs(ref_logits, responses, hp.temperature, self.banned_ids)
        with timed(times, "value"):
            if values is None:
                values = self._critic_values(seq, seq_mask, prompt_len)
        return Rollout(prompts=prompts, texts=texts, seq=seq, seq_mask=seq_mask, prompt_len=prompt_len,
                       responses=responses, mask=mask.float(), scores=scores, gold=gold,
                       has_eos=(responses == tok.eos_token_id).any(-1), logprobs=masked(logprobs, mask),
                       sample_logprobs=sample_logprobs, ref_logprobs=masked(ref_logprobs, mask),
                       values=masked(values, mask), entropy=masked_mean(token_entropy, mask), times=times)

    @torch.no_grad()
    def advantages(self, rollout: Rollout) -> Advantages:
        """Scores (missing-EOS penalty, normalisation, clipping) and the KL to the reference, shaped into per-token
        advantages: GAE with the critic's values, or RLOO or GRPO over each prompt's samples; whitened if asked."""
        hp, mask = self.cfg, rollout.mask
        scores = self._normalise_scores(penalise_missing_eos(rollout.scores, rollout.has_eos, hp.missing_eos_penalty))
        kl = masked(kl_estimate(rollout.logprobs, rollout.ref_logprobs, hp.kl_estimator), mask)
        if hp.advantage == "gae":
            rewards = shape_rewards(scores, kl, mask, self.kl_ctl.value)
            advantages, returns = gae(rewards, rollout.values, mask, hp.gamma, hp.lam)
        elif hp.advantage == "rloo":
            rewards = None
            advantages = returns = rloo_token_advantages(scores, kl, mask, self.kl_ctl.value, hp.samples_per_prompt)
        else:
            rewards = None
            advantages = returns = grpo_token_advantages(scores, kl, mask, self.kl_ctl.value, hp.samples_per_prompt,
                                                         hp.grpo_std_normalise)
        if hp.whiten_advantages:
            advantages = global_whiten(advantages, mask, self._all_reduce())
        return Advantages(advantages=advantages, returns=returns, kl=kl, scores=scores, rewards=rewards)

    def ppo_update(self, rollout: Rollout, adv: Advantages, generator: torch.Generator,
                   warmup: bool) -> dict[str, float]:
        """``ppo_epochs`` x ``num_minibatches`` optimizer steps (in critic warm-up, of the value model only); each
        minibatch loss is the token mean over the minibatch, accumulated over micro-batches (the same gradient as one
        large batch). Returns the update's diagnostics (:class:`UpdateStats`)."""
        hp = self.cfg
        optimizer = self.optimizers(use_pl_optimizer=False)
        micro = hp.micro_batch_size or rollout.size // hp.num_minibatches
        value_name = "value_head" if self.value_head is not None else "critic"
        policy_params = list(self.model.named_parameters(prefix="model"))
        value_params = list(self._value_module().named_parameters(prefix=value_name))
        self.update_stats.reset()
        for epoch in range(hp.ppo_epochs):
            for i, rows in enumerate(minibatches(rollout.size, hp.num_minibatches, generator)):
                sums = self.minibatch_backward(rollout, adv, rows, micro, warmup)
                self.update_stats.update(sums, first=epoch == 0 and i == 0)
                self._step(optimizer, *([value_params] if warmup else [policy_params, value_params]))
        return {key: float(value) for key, value in self.update_stats.compute().items()}

    def minibatch_backward(self, rollout: Rollout, adv: Advantages, rows: torch.Tensor, micro: int,
                           warmup: bool = False) -> dict[str, torch.Tensor]:
        """Accumulate the gradient of one minibatch's loss (token sums / the minibatch's token count on all ranks)
        over micro-batches of ``micro`` rows. Returns the minibatch's token sums of the diagnostics, its ``tokens``
        and ``ratio_max`` (float64)."""
        denominator = token_denominator(rollout.mask[rows].sum(), self._all_reduce(), self._world_size())
        zero = torch.zeros((), dtype=torch.float64, device=self.device)
        summed = (*self.update_stats.sum_keys, "tokens")
        sums = dict.fromkeys((*summed, "ratio_max"), zero)
        for start in range(0, len(rows), micro):
            part = rows[start:start + micro]
            loss, logs = self._loss_sum(*trim_padding(rollout.select(part), adv.select(part)), warmup)
            if self._trainer is not None:
                self.manual_backward(loss / denominator)
            else:
                (loss / denominator).backward()
            sums.update({key: sums[key] + logs.get(key, zero).double() for key in summed})
            sums["ratio_max"] = torch.maximum(sums["ratio_max"], logs["ratio_max"].double())
        return sums

    def _loss_sum(self, part: Rollout, adv: Advantages, warmup: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """A micro-batch's loss as a token sum: the clipped policy loss (0 in critic warm-up), plus ``vf_coef`` x
        the clipped value loss (gae), less ``entropy_coef`` x the entropy; and its diagnostics (token sums)."""
        hp, mask = self.cfg, part.mask
        logprobs, entropy, values = self._policy_pass(part.seq, part.seq_mask, part.prompt_len, part.responses,
                                                      with_entropy=bool(hp.entropy_coef))
        if values is None:
            values = self._critic_values(part.seq, part.seq_mask, part.prompt_len)
        pg, logs = policy_loss_sum(logprobs, part.logprobs, adv.advantages, mask, hp.clip_range)
        logs = {**logs, "pg_loss": pg.detach(), "tokens": mask.sum()}
        loss = pg * (0.0 if warmup else 1.0)
        if hp.advantage == "gae":
            vf, vf_logs = value_loss_sum(values, part.values, adv.returns, mask, hp.value_clip)
            loss = loss + hp.vf_coef * vf
            logs.update(vf_logs, vf_loss=vf.detach())
        else:
            loss = loss + 0.0 * values.sum()  # keeps every parameter in the graph (DDP)
        if hp.entropy_coef:  # otherwise train/entropy is the rollout's (no extra pass over the vocabulary)
            entropy = masked_sum(entropy, mask)
            loss = loss - hp.entropy_coef * entropy
            logs["update_entropy"] = entropy.detach()
        return loss, logs

    def _iteration_metrics(self, rollout: Rollout, adv: Advantages, update: dict[str, float],
                           start: float) -> dict[str, float]:
        """``train/*``: the rollout's numbers (averaged over ranks), the update's and the KL coefficient; ``time/*``
        per phase; throughput."""
        stats = self._mean_over_ranks(rollout_stats(rollout, adv, with_critic=self.cfg.advantage == "gae"))
        metrics = {f"train/{k}": v for k, v in (stats | update).items()}
        metrics["train/kl_coef"] = self.kl_ctl.value
        elapsed = time.perf_counter() - start
        metrics.update({f"time/{phase}": rollout.times.get(phase, 0.0) for phase in PHASES})
        metrics["time/iteration"] = elapsed
        episodes = rollout.size * self._world_size()
        metrics["train/episodes_per_sec"] = episodes / max(elapsed, 1e-9)
        metrics["train/episodes"] = float((self.global_step + 1) * episodes)
        return metrics

    # ---- model passes --------------------------------------------------------------------------------------------
    def _policy_pass(self, seq: torch.Tensor, seq_mask: torch.Tensor, prompt_len: int, responses: torch.Tensor,
                     with_entropy: bool = True):
        """Logprobs of the response tokens, per-token entropy of the sampling distribution (if asked) and values
        (value=head) from one forward of the policy and one log-softmax."""
        logits, hidden = forward_logits(self.model, seq, seq_mask, prompt_len, output_hidden=self.value_head is not None)
        logprobs, entropy = logprobs_and_entropy(scaled_logits(logits, self.cfg.temperature, self.banned_ids),
                                                 responses, with_entropy)
        values = self.value_head(hidden) if self.value_head is not None else None
        return logprobs, entropy, values

    def _critic_values(self, seq: torch.Tensor, seq_mask: torch.Tensor, prompt_len: int) -> torch.Tensor:
        return self.critic(seq, seq_mask)[:, prompt_len - 1:-1]

    def _value_module(self) -> torch.nn.Module:
        return self.value_head if self.value_head is not None else self.critic

    def _score(self, prompts: list[str], texts: list[str], where: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The reward's scores (float32) and the gold scorer's (None without one)."""
        scores = self.scorer.score(prompts, texts, where=where).to(self.device, torch.float32)
        gold = self.gold_scorer.score(prompts, texts, where=where).to(self.device) \
            if self.gold_scorer is not None else None
        return scores, gold

    def _generator(self, *tag: Any) -> torch.Generator:
        gen = torch.Generator(device=self.device)
        gen.manual_seed(stable_seed(self.cfg.seed, self.global_rank, *tag))
        return gen

    def _decode(self, responses: torch.Tensor, mask: torch.Tensor) -> list[str]:
        return self.tokenizer.batch_decode((responses * mask + self.tokenizer.pad_token_id * (1 - mask)).tolist(),
                                           skip_special_tokens=True)

    # ---- scores and ranks ----------------------------------------------------------------------------------------
    def _normalise_scores(self, scores: torch.Tensor) -> torch.Tensor:
        hp = self.cfg
        if hp.reward_norm == "running":  # the moments of every score of every rank so far (buffers: resumable)
            moments = update_moments(Moments(self.score_count, self.score_mean, self.score_m2),
                                     self._all_gather_flat(scores).double())
            self.score_count, self.score_mean, self.score_m2 = moments
            scores = running_standardise(scores, moments)
        elif hp.reward_norm == "batch":
            scores = batch_standardise(scores, self._all_gather_flat(scores))
        if hp.reward_clip is not None:
            scores = scores.clamp(-hp.reward_clip, hp.reward_clip)
        return scores

    def _world_size(self) -> int:
        return self.trainer.world_size if self._trainer is not None else 1

    def _all_reduce(self):
        """``torch.distributed.all_reduce`` when several ranks train, else None (the objectives' one-process path)."""
        if self._world_size() > 1 and dist.is_available() and dist.is_initialized():
            return dist.all_reduce
        return None

    def _all_gather_flat(self, x: torch.Tensor) -> torch.Tensor:
        if self._world_size() == 1:
            return x
        return self.all_gather(x).reshape(-1)

    def _mean_over_ranks(self, stats: dict[str, torch.Tensor]) -> dict[str, float]:
        """Each value averaged over ranks (one all_gather for all)."""
        keys = list(stats)
        values = torch.stack([stats[k].float().to(self.device) for k in keys])
        if self._world_size() > 1:
            values = self.all_gather(values).float().mean(0)
        return {k: float(v) for k, v in zip(keys, values)}

    def _step(self, optimizer: torch.optim.Optimizer, *networks: list[tuple[str, torch.nn.Parameter]]) -> None:
        """One optimizer step of the parameters of ``networks`` (each a list of named parameters; the optimizer's
        other parameters lose their gradients and stay as they are): the non-finite check, clipping of each
        network's gradient norm on its own, the step."""
        stepped = {id(p) for named in networks for _, p in named}
        for group in optimizer.param_groups:
            for param in group["params"]:
                if id(param) not in stepped:
                    param.grad = None  # AdamW leaves a parameter without gradient (and its moments) unchanged
        if self.nonfinite_guard is not None and not self.nonfinite_guard.check(
                self, None, [pair for named in networks for pair in named]):
            optimizer.zero_grad(set_to_none=True)
            return
        if self.cfg.max_grad_norm:
            for named in networks:
                torch.nn.utils.clip_grad_norm_([p for _, p in named if p.grad is not None], self.cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    # ---- health --------------------------------------------------------------------------------------------------
    def _warn_once(self, kind: str, message: str | None) -> None:
        if message and kind not in self._warned:
            self._warned.add(kind)
            rank_zero_warn(f"[ppo step {self.global_step}] {message}")
        if message:
            self.log(f"monitor/{kind}", 1.0, on_step=True, on_epoch=False)

    def _check_health(self, kl_per_response: torch.Tensor, entropy: float) -> None:
        self._warn_once("negative_kl", monitors.negative_kl(kl_per_response.float()))
        self._warn_once("entropy_collapse", monitors.entropy_collapse(entropy, self.cfg.entropy_floor))

    def on_train_end(self) -> None:
        """Under DDP every rank must end with the same policy (gradients are averaged, steps identical): check it.
        (Sharded, each weight is held once, in pieces: nothing to compare.)"""
        world = self.trainer.world_size
        if world < 2 or is_sharded(self.model):
            return
        checksum = torch.stack([p.detach().double().sum() for p in self.model.parameters()]).sum().reshape(1)
        every = self.all_gather(checksum).reshape(-1)
        spread = float(every.max() - every.min())
        if spread > 1e-6 * max(1.0, float(every.abs().max())):
            rank_zero_warn(f"[ppo] policy weights differ across the {world} ranks (checksums {every.tolist()}): "
                           f"gradients were not synchronised")
        else:
            rank_zero_info(f"[ppo] policy weights identical on {world} ranks (checksum {float(every[0]):.6f})")

    # ---- evaluation ----------------------------------------------------------------------------------------------
    def _eval_step(self, batch: dict, batch_idx: int, stage: str) -> None:
        generator = self._generator(stage, batch_idx)
        rollout = self.rollout(batch, generator, key_tag=(stage,))  # the same samples at every evaluation of a policy
        values = sample_values(rollout)
        (self.val_metrics if stage == "val" else self.test_metrics).update(values)
        if stage == "val" and "gold" in values:
            self.val_gold.update(values["gold"])
        if batch_idx == 0:
            self._eval_samples.extend(rollout.table_rows(self.cfg.samples_to_log))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    def _end_eval(self, stage: str, metrics: SampleMeans) -> None:
        results = {f"{stage}/{k}": v for k, v in metrics.compute().items()}
        metrics.reset()
        self.log_dict(results, sync_dist=True)  # compute() has already reduced over ranks: averages identical values
        if stage == "val":
            if "val/gold" in results and not self.trainer.sanity_checking:
                self.eval_history.append({"step": float(self.global_step), "reward": float(results["val/reward"]),
                                          "gold": float(results["val/gold"]),
                                          "gold_stderr": monitors.standard_error(self.val_gold.compute())})
                self._warn_once("reward_hacking", monitors.reward_hacking(self.eval_history))
            self.val_gold.reset()
        samples, self._eval_samples = self._eval_samples, []
        if self.global_rank == 0:
            log_samples(self.trainer, stage, samples)

    def on_validation_epoch_end(self) -> None:
        self._end_eval("val", self.val_metrics)

    def on_test_epoch_end(self) -> None:
        self._end_eval("test", self.test_metrics)

    # ---- checkpoints ---------------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["ppo_state"] = {"kl_coef": float(self.kl_ctl.value),
                                   "eval_history": [dict(h) for h in self.eval_history]}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        one_optimizer(checkpoint)  # a checkpoint from when PPO had two optimizers: their states as one's
        state = checkpoint["ppo_state"]  # written by on_save_checkpoint; another method's checkpoint is refused earlier
        self.kl_ctl.value = float(state["kl_coef"])
        self.eval_history = [dict(h) for h in state["eval_history"]]
