"""``PPOModule``: RLHF of a causal-LM policy against any Scorer, with a KL penalty to a frozen reference.

One ``training_step`` is one PPO iteration: sample responses to a batch of prompts, score them, compute reference
logprobs and values, shape per-token rewards, estimate advantages (GAE, or RLOO sharing the same rollout), then run
``ppo_epochs`` passes over ``num_minibatches`` minibatches, each accumulated over micro-batches. ``global_step``
counts iterations, so ``trainer.max_steps``, ``val_check_interval`` and checkpoints are in iterations.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torchmetrics import MeanMetric

from rlhf.errors import ConfigError
from rlhf.methods.base import TrainableModule, adamw, lr_schedule, stable_seed
from rlhf.methods.ppo import monitors
from rlhf.methods.ppo.config import PPOMethodConf
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
from rlhf.objectives.ppo import (
    AdaptiveKLController,
    FixedKLController,
    explained_variance,
    gae,
    kl_estimate,
    masked,
    masked_mean,
    masked_sum,
    masked_whiten,
    policy_loss_sum,
    rloo_advantages,
    shape_rewards,
    value_loss_sum,
)
from rlhf.scoring.build import build_scorer
from rlhf.utils.run import log_samples

PHASES = ("generate", "score", "reference", "value", "update")


class PPOModule(TrainableModule):
    schema = PPOMethodConf

    def __init__(self, cfg: Any, model: Any, tokenizer_dir: str):
        super().__init__(cfg, model, tokenizer_dir)
        cfg = self.cfg
        self.automatic_optimization = False
        self.model = build_causal_lm(self.model_cfg, self.tokenizer)  # the policy; ``model`` so export() saves it
        disable_dropout(self.model)
        self.banned_ids = [self.tokenizer.pad_token_id]  # never sampled, so masks built from pad stay exact
        self.ref = frozen_copy(self.model)
        hidden = self.model.config.hidden_size
        self.value_head = ValueHead(hidden) if cfg.value == "head" else None
        self.critic = build_critic(cfg.critic_init, self.model, self.tokenizer) if cfg.value == "separate" else None
        self.kl_ctl = (AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon) if cfg.kl_target
                       else FixedKLController(cfg.kl_coef))
        # running statistics of the scores (reward_norm=running), in the state dict so a resume continues them
        self.register_buffer("score_count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("score_mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("score_m2", torch.zeros((), dtype=torch.float64))
        self.scorer = None
        self.gold_scorer = None
        self.eval_history: list[dict[str, float]] = []
        self._warned: set[str] = set()
        self._eval: dict[str, MeanMetric] = {}
        self._eval_samples: list[dict] = []
        self._eval_gold: list[torch.Tensor] = []

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
            raise ConfigError(f"trainer.precision={precision}: PPO steps its optimizers itself and has no loss "
                              f"scaler; use 32-true or bf16-mixed")

    def configure_optimizers(self):
        hp = self.cfg
        policy = adamw(self.model.named_parameters(), hp.lr, hp)
        value_module = self.value_head if self.value_head is not None else self.critic
        value = adamw(value_module.named_parameters(), hp.critic_lr or hp.lr, hp)
        total = max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer is not None else 1
        schedule = lr_schedule(hp.scheduler, hp.warmup_steps, total, hp.min_lr_ratio)
        schedulers = [torch.optim.lr_scheduler.LambdaLR(o, schedule) for o in (policy, value)]
        return [policy, value], [{"scheduler": s, "interval": "step"} for s in schedulers]

    # ---- model passes --------------------------------------------------------------------------------------------
    def _policy_pass(self, seq: torch.Tensor, seq_mask: torch.Tensor, prompt_len: int, responses: torch.Tensor,
                     with_entropy: bool = True):
        """Logprobs of the response tokens, per-token entropy of the sampling distribution (if asked) and values
        (value=head) from one forward of the policy and one log-softmax."""
        logits, hidden = forward_logits(self.model, seq, seq_mask, prompt_len, output_hidden=self.value_head is not None)
        log_dist = torch.log_softmax(scaled_logits(logits, self.cfg.temperature, self.banned_ids), dim=-1)
        logprobs = log_dist.gather(-1, responses[..., None]).squeeze(-1)
        entropy = None
        if with_entropy:
            entropy = -(log_dist.exp() * log_dist.masked_fill(torch.isinf(log_dist), 0.0)).sum(-1)
        values = self.value_head(hidden) if self.value_head is not None else None
        return entropy, logprobs, values

    def _critic_values(self, seq: torch.Tensor, seq_mask: torch.Tensor, prompt_len: int) -> torch.Tensor:
        return self.critic(seq, seq_mask)[:, prompt_len - 1:-1]

    def _generator(self, *tag: Any) -> torch.Generator:
        gen = torch.Generator(device=self.device)
        gen.manual_seed(stable_seed(self.cfg.seed, self.global_rank, *tag))
        return gen

    def _decode(self, responses: torch.Tensor, mask: torch.Tensor) -> list[str]:
        return self.tokenizer.batch_decode((responses * mask + self.tokenizer.pad_token_id * (1 - mask)).tolist(),
                                           skip_special_tokens=True)

    # ---- rollout -------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def rollout(self, batch: dict, generator: torch.Generator, key_tag: tuple = ()) -> dict[str, Any]:
        """Sample, score, and the frozen passes (old logprobs, reference logprobs, values), timed per phase.

        With ``key_tag`` and prompt indices in the batch, each response's randomness is keyed by (seed, tag, prompt
        index, sample number): the same responses on any number of ranks (see :func:`sample`)."""
        hp = self.cfg
        times = {}
        k = hp.samples_per_prompt
        input_ids = batch["input_ids"].repeat_interleave(k, 0)
        attention_mask = batch["attention_mask"].repeat_interleave(k, 0)
        prompts = [p for p in batch["prompt"] for _ in range(k)]
        tok = self.tokenizer

        row_keys, stream = None, 0
        if key_tag and "index" in batch:
            row_keys = batch["index"].to(torch.int64).repeat_interleave(k, 0) * k + torch.arange(k).repeat(
                batch["index"].shape[0]).to(batch["index"].device)
            stream = stable_seed(hp.seed, *key_tag)
        t = time.perf_counter()
        responses, sample_logprobs = sample(self.model, input_ids, attention_mask, hp.max_new_tokens,
                                            tok.eos_token_id, tok.pad_token_id, hp.temperature, hp.top_k, hp.top_p,
                                            generator, banned_ids=self.banned_ids, row_keys=row_keys, stream=stream)
        mask = response_mask(responses, tok.eos_token_id, tok.pad_token_id)
        times["generate"] = time.perf_counter() - t

        t = time.perf_counter()
        texts = self._decode(responses, mask)
        where = f"PPO {key_tag[0] if key_tag else 'rollout'} at step {self.global_step}"
        scores = self.scorer.score(prompts, texts, where=where).to(self.device, torch.float32)
        has_eos = (responses == tok.eos_token_id).any(-1)
        gold = self.gold_scorer.score(prompts, texts, where=where).to(self.device) \
            if self.gold_scorer is not None else None
        times["score"] = time.perf_counter() - t

        t = time.perf_counter()
        prompt_len = input_ids.shape[1]
        seq = torch.cat([input_ids, responses], 1)
        seq_mask = torch.cat([attention_mask, mask], 1)
        token_entropy, logprobs, values = self._policy_pass(seq, seq_mask, prompt_len, responses)
        ref_logits, _ = forward_logits(self.ref, seq, seq_mask, prompt_len)
        ref_logprobs = token_logprobs(ref_logits, responses, hp.temperature, self.banned_ids)
        entropy = masked_mean(token_entropy, mask)
        times["reference"] = time.perf_counter() - t

        t = time.perf_counter()
        if values is None:
            values = self._critic_values(seq, seq_mask, prompt_len)
        times["value"] = time.perf_counter() - t
        return {"prompts": prompts, "texts": texts, "seq": seq, "seq_mask": seq_mask, "prompt_len": prompt_len,
                "responses": responses, "mask": mask.float(), "scores": scores, "gold": gold, "has_eos": has_eos,
                "logprobs": masked(logprobs, mask), "sample_logprobs": sample_logprobs,
                "ref_logprobs": masked(ref_logprobs, mask), "values": masked(values, mask), "entropy": entropy, "times": times}

    # ---- rewards and advantages ----------------------------------------------------------------------------------
    def _all_gather_flat(self, x: torch.Tensor) -> torch.Tensor:
        if self._trainer is None or self.trainer.world_size == 1:
            return x
        return self.all_gather(x).reshape(-1)

    def _normalise_scores(self, scores: torch.Tensor) -> torch.Tensor:
        hp = self.cfg
        if hp.reward_norm == "running":
            every = self._all_gather_flat(scores).double()
            count, mean, m2 = self.score_count, self.score_mean, self.score_m2
            n = every.numel()
            batch_mean = every.mean()
            delta = batch_mean - mean
            total = count + n
            self.score_mean = mean + delta * n / total
            self.score_m2 = m2 + ((every - batch_mean) ** 2).sum() + delta ** 2 * count * n / total
            self.score_count = total
            std = torch.sqrt(self.score_m2 / (self.score_count - 1).clamp(min=1)).clamp(min=1e-6)
            scores = ((scores.double() - self.score_mean) / std).float()
        elif hp.reward_norm == "batch":
            every = self._all_gather_flat(scores)
            scores = (scores - every.mean()) / every.std().clamp(min=1e-6)
        if hp.reward_clip is not None:
            scores = scores.clamp(-hp.reward_clip, hp.reward_clip)
        return scores

    def advantages(self, roll: dict) -> dict[str, torch.Tensor]:
        hp = self.cfg
        mask = roll["mask"]
        scores = roll["scores"]
        if hp.missing_eos_penalty is not None:
            scores = scores - hp.missing_eos_penalty * (~roll["has_eos"]).float()
        scores = self._normalise_scores(scores)
        kl = masked(kl_estimate(roll["logprobs"], roll["ref_logprobs"], hp.kl_estimator), mask)
        if hp.advantage == "gae":
            rewards = shape_rewards(scores, kl, mask, self.kl_ctl.value)
            adv, returns = gae(rewards, roll["values"], mask, hp.gamma, hp.lam)
        else:  # rloo: one sequence-level return per sample, its leave-one-out baseline from the prompt's other samples
            total = scores - self.kl_ctl.value * kl.sum(-1)
            adv = masked(rloo_advantages(total, hp.samples_per_prompt)[:, None].expand_as(mask), mask)
            returns = adv
            rewards = None
        if hp.whiten_advantages:
            adv = self._whiten(adv, mask)
        return {"advantages": adv, "returns": returns, "kl": kl, "shaped_scores": scores, "rewards": rewards}

    def _whiten(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Advantage whitening with the statistics of the global batch (all ranks), as one process would compute."""
        world = self.trainer.world_size if self._trainer is not None else 1
        if world == 1 or not (dist.is_available() and dist.is_initialized()):
            return masked_whiten(x, mask)
        stats = torch.stack([(x * mask).sum(), (x * x * mask).sum(), mask.sum()]).double()
        dist.all_reduce(stats)
        n = stats[2].clamp(min=2)
        mean = stats[0] / n
        var = (stats[1] / n - mean ** 2) * n / (n - 1)
        return masked(((x.double() - mean) * torch.rsqrt(var.clamp(min=0) + 1e-8)).to(x.dtype), mask)

    # ---- the PPO iteration ---------------------------------------------------------------------------------------
    def _token_denominator(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens of the minibatch on all ranks / world size: DDP averages gradients over ranks, so dividing each
        rank's token sum by this gives the gradient of the global token mean."""
        tokens = tokens.detach().clone().float()
        world = self.trainer.world_size if self._trainer is not None else 1
        if world > 1 and dist.is_available() and dist.is_initialized():
            dist.all_reduce(tokens)
            tokens = tokens / world
        return tokens.clamp(min=1.0)

    def ppo_update(self, roll: dict, adv: dict, generator: torch.Generator, warmup: bool) -> dict[str, float]:
        """``ppo_epochs`` x ``num_minibatches`` optimizer steps; each minibatch loss is the token mean over the
        minibatch, accumulated over micro-batches (the same gradient as one large batch)."""
        hp = self.cfg
        policy_opt, value_opt = self.optimizers(use_pl_optimizer=False)
        n = roll["seq"].shape[0]
        minibatch = n // hp.num_minibatches
        value_module = self.value_head if self.value_head is not None else self.critic
        totals: dict[str, float] = {}
        ratio_max, first_ratio = 0.0, None
        for _ in range(hp.ppo_epochs):
            order = torch.randperm(n, generator=generator, device=self.device)
            for start in range(0, minibatch * hp.num_minibatches, minibatch):
                stats = self.minibatch_backward(roll, adv, order[start:start + minibatch],
                                                hp.micro_batch_size or minibatch, warmup)
                if first_ratio is None:
                    first_ratio = stats["ratio"] / max(stats["tokens"], 1.0)
                ratio_max = max(ratio_max, stats.pop("ratio_max"))
                for key, value in stats.items():
                    totals[key] = totals.get(key, 0.0) + value
                self._step(value_opt, value_module.parameters())
                if warmup:
                    policy_opt.zero_grad(set_to_none=True)
                else:
                    self._step(policy_opt, self.model.parameters())
        tokens = max(totals.pop("tokens", 0.0), 1.0)
        out = {k: v / tokens for k, v in totals.items()}
        out["ratio_max"] = ratio_max
        out["first_minibatch_ratio"] = first_ratio if first_ratio is not None else 1.0
        return out

    def minibatch_backward(self, roll: dict, adv: dict, rows: torch.Tensor, micro: int,
                           warmup: bool = False) -> dict[str, float]:
        """Accumulate the gradient of one minibatch's loss (token sums / the minibatch's token count) over
        micro-batches of ``micro`` rows. Returns token sums of the diagnostics."""
        hp = self.cfg
        mask = roll["mask"]
        denominator = self._token_denominator(mask[rows].sum())
        sums = {k: 0.0 for k in ("pg_loss", "vf_loss", "vf_clipfrac", "clipfrac", "approx_kl", "ratio", "tokens")}
        if hp.entropy_coef:
            sums["update_entropy"] = 0.0
        ratio_max = 0.0
        for mstart in range(0, len(rows), micro):
            idx = rows[mstart:mstart + micro]
            m = mask[idx]
            token_entropy, logprobs, values = self._policy_pass(roll["seq"][idx], roll["seq_mask"][idx],
                                                                roll["prompt_len"], roll["responses"][idx],
                                                                with_entropy=bool(hp.entropy_coef))
            if values is None:
                values = self._critic_values(roll["seq"][idx], roll["seq_mask"][idx], roll["prompt_len"])
            pg, pg_logs = policy_loss_sum(logprobs, roll["logprobs"][idx], adv["advantages"][idx], m, hp.clip_range)
            loss = pg * (0.0 if warmup else 1.0)
            if hp.advantage == "gae":
                vf, vf_logs = value_loss_sum(values, roll["values"][idx], adv["returns"][idx], m, hp.value_clip)
                loss = loss + hp.vf_coef * vf
                sums["vf_loss"] += float(vf.detach())
                sums["vf_clipfrac"] += float(vf_logs.get("vf_clipfrac", 0.0))
            else:
                loss = loss + 0.0 * values.sum()  # keeps every parameter in the graph (DDP)
            if hp.entropy_coef:  # otherwise train/entropy is the rollout's (no extra pass over the vocabulary)
                entropy = masked_sum(token_entropy, m)
                loss = loss - hp.entropy_coef * entropy
                sums["update_entropy"] += float(entropy.detach())
            loss = loss / denominator
            if self._trainer is not None:
                self.manual_backward(loss)
            else:
                loss.backward()
            sums["pg_loss"] += float(pg.detach())
            sums["tokens"] += float(m.sum())
            for key in ("clipfrac", "approx_kl", "ratio"):
                sums[key] += float(pg_logs[key])
            ratio_max = max(ratio_max, float(pg_logs["ratio_max"]))
        sums["ratio_max"] = ratio_max
        return sums

    def _step(self, optimizer: torch.optim.Optimizer, params) -> None:
        params = list(params)
        if self.nonfinite_guard is not None:
            owned = {id(p) for p in params}
            named = [(n, p) for n, p in self.named_parameters() if id(p) in owned]
            if not self.nonfinite_guard.check(self, None, named):
                optimizer.zero_grad(set_to_none=True)
                return
        if self.cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], self.cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def training_step(self, batch: dict, batch_idx: int) -> None:
        hp = self.cfg
        start = time.perf_counter()
        generator = self._generator("train", self.global_step)
        roll = self.rollout(batch, generator, key_tag=("train", self.global_step))
        times = roll["times"]
        with torch.no_grad():
            adv = self.advantages(roll)
        t = time.perf_counter()
        warmup = self.global_step < hp.critic_warmup_steps
        stats = self.ppo_update(roll, adv, generator, warmup)
        times["update"] = time.perf_counter() - t
        for scheduler in self.lr_schedulers():
            scheduler.step()

        mask = roll["mask"]
        kl_per_response = adv["kl"].sum(-1)
        k1_per_response = (roll["logprobs"] - roll["ref_logprobs"]).sum(-1)
        local = {
            "reward": roll["scores"].mean(), "reward_shaped": adv["shaped_scores"].mean(),
            "kl": kl_per_response.mean(), "entropy": roll["entropy"],
            "response_length": mask.sum(-1).mean(), "eos_rate": roll["has_eos"].float().mean(),
            "advantage_mean": masked_mean(adv["advantages"], mask), "returns_mean": masked_mean(adv["returns"], mask),
            "values_mean": masked_mean(roll["values"], mask),
            "rollout_logprob_gap": masked(roll["sample_logprobs"] - roll["logprobs"], mask).abs().max(),
        }
        if roll["gold"] is not None:
            local["gold"] = roll["gold"].float().mean()
        if hp.advantage == "gae":
            local["value_explained_variance"] = torch.tensor(explained_variance(roll["values"], adv["returns"], mask))
        keys = list(local)
        values = torch.stack([local[k].float().to(self.device) for k in keys])
        if self.trainer.world_size > 1:
            values = self.all_gather(values).float().mean(0)
        metrics = {f"train/{k}": float(v) for k, v in zip(keys, values)}
        metrics.update({f"train/{k}": v for k, v in stats.items()})
        metrics["train/kl_coef"] = self.kl_ctl.value
        elapsed = time.perf_counter() - start
        metrics.update({f"time/{phase}": times.get(phase, 0.0) for phase in PHASES})
        metrics["time/iteration"] = elapsed
        episodes = roll["seq"].shape[0] * self.trainer.world_size
        metrics["train/episodes_per_sec"] = episodes / max(elapsed, 1e-9)
        metrics["train/episodes"] = float((self.global_step + 1) * episodes)
        self.log_dict(metrics, prog_bar=False, on_step=True, on_epoch=False)
        self.log("train/reward_mean", metrics["train/reward"], prog_bar=True, on_step=True, on_epoch=False)

        self.kl_ctl.update(metrics["train/kl"], episodes)
        self._check_health(kl_per_response if hp.kl_estimator == "k1" else k1_per_response, metrics["train/entropy"])
        self._count_iteration()

    def _count_iteration(self) -> None:
        """One iteration = one ``global_step``: the optimizers were stepped directly (several times), so tell
        Lightning's progress tracking about one step."""
        loop = self.trainer.fit_loop.epoch_loop.manual_optimization
        loop.optim_step_progress.increment_ready()
        loop.optim_step_progress.increment_completed()

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
        """Under DDP every rank must end with the same policy (gradients are averaged, steps identical): check it."""
        world = self.trainer.world_size
        if world < 2:
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
        roll = self.rollout(batch, generator, key_tag=(stage,))  # the same samples at every evaluation of a policy
        k1 = (roll["logprobs"] - roll["ref_logprobs"]).sum(-1)
        values = {"reward": roll["scores"], "kl": k1, "response_length": roll["mask"].sum(-1),
                  "eos_rate": roll["has_eos"].float()}
        if roll["gold"] is not None:
            values["gold"] = roll["gold"].float()
            self._eval_gold.append(roll["gold"].float())
        for key, value in values.items():
            if key not in self._eval:
                self._eval[key] = MeanMetric().to(self.device)
            self._eval[key].update(value)
        if batch_idx == 0:
            for i in range(min(self.cfg.samples_to_log, len(roll["texts"]))):
                row = {"prompt": roll["prompts"][i], "response": roll["texts"][i], "reward": float(roll["scores"][i])}
                if roll["gold"] is not None:
                    row["gold"] = float(roll["gold"][i])
                self._eval_samples.append(row)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    def _end_eval(self, stage: str) -> None:
        results = {f"{stage}/{k}": m.compute() for k, m in self._eval.items()}
        self._eval = {}  # fresh metrics next time: a test under inference mode (evaluate_at_start) before a fit's
        # validation would otherwise leave states that cannot be updated in place outside inference mode
        self.log_dict(results, sync_dist=True)  # MeanMetric already reduced over ranks: averages identical values
        gold = torch.cat(self._eval_gold) if self._eval_gold else None
        self._eval_gold = []
        if stage == "val" and gold is not None and not self.trainer.sanity_checking:
            stderr = float(gold.std() / math.sqrt(max(1, gold.numel()))) if gold.numel() > 1 else 0.0
            self.eval_history.append({"step": float(self.global_step), "reward": float(results["val/reward"]),
                                      "gold": float(results["val/gold"]), "gold_stderr": stderr})
            self._warn_once("reward_hacking", monitors.reward_hacking(self.eval_history))
        self._log_samples(stage)

    def _log_samples(self, stage: str) -> None:
        samples, self._eval_samples = self._eval_samples, []
        if self.global_rank == 0:
            log_samples(self.trainer, stage, samples)

    def on_validation_epoch_end(self) -> None:
        self._end_eval("val")

    def on_test_epoch_end(self) -> None:
        self._end_eval("test")

    # ---- checkpoints ---------------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["ppo_state"] = {"kl_coef": float(self.kl_ctl.value),
                                   "eval_history": [dict(h) for h in self.eval_history]}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("ppo_state") or {}
        if "kl_coef" in state:
            self.kl_ctl.value = float(state["kl_coef"])
        self.eval_history = [dict(h) for h in state.get("eval_history", [])]
