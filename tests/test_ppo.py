"""PPO: the maths on hand-computed values and plain loops, the records and metrics, the Lightning step counter, the
rollout's logprob identity, gradient accumulation, monitors, the run end to end, learning on a toy reward, and resume
parity."""

import csv
import json
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from transformers import AutoModelForCausalLM

from rlhf.config import validate_config
from rlhf.errors import ConfigError
from rlhf.methods.ppo import monitors
from rlhf.methods.ppo.lightning_compat import count_iteration
from rlhf.methods.ppo.metrics import SampleMeans, UpdateStats
from rlhf.methods.ppo.rollout import Advantages, Rollout, minibatches, sample_row_keys, trim_padding
from rlhf.models.policy import position_ids, response_logprobs, response_mask, sample, token_logprobs
from rlhf.objectives.ppo import (
    AdaptiveKLController,
    Moments,
    batch_standardise,
    entropy_from_logits,
    gae,
    global_whiten,
    grpo_advantages,
    grpo_token_advantages,
    kl_estimate,
    logprobs_and_entropy,
    masked_whiten,
    penalise_missing_eos,
    policy_loss_sum,
    rloo_advantages,
    rloo_token_advantages,
    running_standardise,
    shape_rewards,
    token_denominator,
    update_moments,
    value_loss_sum,
)
from rlhf.train import build_data_and_module, run

PPO_FAST = ["experiment=ppo_tiny", "model.hidden_size=32", "model.num_layers=1", "model.num_heads=2",
            "model.intermediate_size=64", "model.tokenizer.vocab_size=512", "data.source.max_documents=200",
            "data.split.val_fraction=0.1", "data.split.test_fraction=0.1", "data.loader.batch_size=8",
            "method.max_new_tokens=6", "method.num_minibatches=2", "method.ppo_epochs=2",
            "trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.limit_val_batches=2",
            "trainer.limit_test_batches=2", "trainer.log_every_n_steps=1", "trainer.enable_model_summary=false",
            "callbacks.progress_bar=null", "logger=csv"]


# ---- maths --------------------------------------------------------------------------------------------------------
def test_gae_matches_a_plain_loop_and_stops_at_the_last_real_token():
    torch.manual_seed(0)
    rewards, values = torch.randn(3, 5), torch.randn(3, 5)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.float)
    gamma, lam = 0.9, 0.8
    adv, returns = gae(rewards, values, mask, gamma, lam)
    for row in range(3):
        n = int(mask[row].sum())
        expected, running = [0.0] * n, 0.0
        for t in reversed(range(n)):
            next_value = float(values[row, t + 1]) if t + 1 < n else 0.0  # no bootstrap after the last real token
            delta = float(rewards[row, t]) + gamma * next_value - float(values[row, t])
            running = delta + gamma * lam * running
            expected[t] = running
        assert torch.allclose(adv[row, :n], torch.tensor(expected), atol=1e-6)
        assert torch.all(adv[row, n:] == 0) and torch.all(returns[row, n:] == 0)
        assert torch.allclose(returns[row, :n], adv[row, :n] + values[row, :n], atol=1e-6)


def test_gae_with_lambda_one_gamma_one_is_reward_to_go_minus_value():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.25, 0.0]])
    adv, returns = gae(rewards, values, torch.ones(1, 3), 1.0, 1.0)
    assert torch.allclose(returns, torch.tensor([[1.0, 1.0, 1.0]]))
    assert torch.allclose(adv, torch.tensor([[0.5, 0.75, 1.0]]))


def test_kl_estimators_by_hand():
    logp, ref = torch.tensor([math.log(0.5), math.log(0.2)]), torch.tensor([math.log(0.25), math.log(0.4)])
    k1 = kl_estimate(logp, ref, "k1")
    assert torch.allclose(k1, torch.tensor([math.log(2.0), math.log(0.5)]))
    k3 = kl_estimate(logp, ref, "k3")  # (q/p - 1) - log(q/p)
    assert torch.allclose(k3, torch.tensor([(0.5 - 1) - math.log(0.5), (2.0 - 1) - math.log(2.0)]), atol=1e-6)
    assert torch.all(k3 >= 0)
    with pytest.raises(ValueError, match="k1 or k3"):
        kl_estimate(logp, ref, "k2")


def test_rewards_are_minus_kl_per_token_plus_the_score_at_the_last_real_token():
    kl = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.float)
    rewards = shape_rewards(torch.tensor([1.0, 2.0]), kl, mask, kl_coef=0.5)
    expected = torch.tensor([[-0.05, -0.1, -0.15, -0.2 + 1.0], [-0.25, -0.3 + 2.0, 0.0, 0.0]])
    assert torch.allclose(rewards, expected)


def test_adaptive_kl_controller_updates_by_hand():
    ctl = AdaptiveKLController(0.2, target=6.0, horizon=10000)
    ctl.update(current_kl=9.0, n_episodes=1000)  # error = clip(9/6 - 1) = 0.2 (clipped from 0.5)
    assert ctl.value == pytest.approx(0.2 * (1 + 0.2 * 0.1))
    ctl.update(current_kl=5.4, n_episodes=500)  # error = -0.1
    assert ctl.value == pytest.approx(0.2 * 1.02 * (1 - 0.1 * 0.05))
    state = ctl.state_dict()
    other = AdaptiveKLController(1.0, 6.0, 10000)
    other.load_state_dict(state)
    assert other.value == ctl.value


def test_clipped_policy_loss_by_hand():
    old = torch.zeros(1, 3)
    new = torch.log(torch.tensor([[1.5, 0.5, 1.1]]))
    adv = torch.tensor([[1.0, 1.0, -2.0]])
    loss, logs = policy_loss_sum(new, old, adv, torch.ones(1, 3), clip=0.2)
    # token 1: max(-1.5, -1.2) = -1.2 (clipped); token 2: max(-0.5, -0.8) = -0.5; token 3: max(2.2, 2.2) = 2.2
    assert float(loss) == pytest.approx(-1.2 - 0.5 + 2.2, abs=1e-6)
    assert float(logs["clipfrac"]) == 1.0  # only token 1
    assert float(logs["ratio_max"]) == pytest.approx(1.5)


def test_clipped_value_loss_by_hand():
    values, old = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    returns = torch.tensor([[2.0, 1.0]])
    loss, logs = value_loss_sum(values, old, returns, torch.ones(1, 2), clip=0.2)
    # token 1: max((1-2)^2, (0.2-2)^2) = 3.24; token 2: max(1, 1) = 1
    assert float(loss) == pytest.approx(0.5 * (3.24 + 1.0))
    assert float(logs["vf_clipfrac"]) == 1.0
    plain, _ = value_loss_sum(values, old, returns, torch.ones(1, 2), clip=None)
    assert float(plain) == pytest.approx(0.5 * (1.0 + 1.0))


def test_whitening_and_rloo_by_hand():
    x = torch.tensor([[1.0, 2.0, 3.0, 99.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    w = masked_whiten(x, mask)
    assert torch.allclose(w, torch.tensor([[-1.0, 0.0, 1.0, 0.0]]), atol=1e-4)  # unbiased std of 1,2,3 is 1
    # prompt 1: scores 1, 2, 6 -> baselines 4, 3.5, 1.5; prompt 2: 0, 0, 3 -> 1.5, 1.5, 0
    adv = rloo_advantages(torch.tensor([1.0, 2.0, 6.0, 0.0, 0.0, 3.0]), group_size=3)
    assert torch.allclose(adv, torch.tensor([-3.0, -1.5, 4.5, -1.5, -1.5, 3.0]))


def test_grpo_advantages_by_hand():
    # group (1, 2, 6): mean 3, unbiased std sqrt(((-2)^2 + (-1)^2 + 3^2) / 2) = sqrt(7); group (0, 0, 3): mean 1, std sqrt(3)
    adv = grpo_advantages(torch.tensor([1.0, 2.0, 6.0, 0.0, 0.0, 3.0]), group_size=3, eps=0.0)
    s7, s3 = math.sqrt(7.0), math.sqrt(3.0)
    assert adv.tolist() == pytest.approx([-2 / s7, -1 / s7, 3 / s7, -1 / s3, -1 / s3, 2 / s3])
    dr = grpo_advantages(torch.tensor([1.0, 2.0, 6.0, 0.0, 0.0, 3.0]), group_size=3, std_normalise=False)
    assert dr.tolist() == pytest.approx([-2.0, -1.0, 3.0, -1.0, -1.0, 2.0])  # Dr. GRPO: no std division
    assert grpo_advantages(torch.tensor([4.0, 4.0]), group_size=2).tolist() == [0.0, 0.0]  # a tie: no signal, no NaN
    kl = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    # returns 1 - (0.5 + 0.5) = 0 and 3 - 1 = 2: mean 1, std sqrt(2); advantages -/+ 1/sqrt(2) on every real token
    token = grpo_token_advantages(torch.tensor([1.0, 3.0]), kl, mask, kl_coef=1.0, group_size=2)
    r = 1 / math.sqrt(2.0)
    assert torch.allclose(token, torch.tensor([[-r, -r, 0.0], [r, 0.0, 0.0]]), atol=1e-3)


def test_rloo_token_advantages_by_hand():
    kl = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    # returns 1 - 1 * (0.5 + 0.5) = 0 and 3 - 1 * 1 = 2; each one's baseline is the other's: advantages -2 and 2
    adv = rloo_token_advantages(torch.tensor([1.0, 3.0]), kl, mask, kl_coef=1.0, group_size=2)
    assert torch.equal(adv, torch.tensor([[-2.0, -2.0, 0.0], [2.0, 0.0, 0.0]]))


class OtherRank:
    """A stand-in for ``torch.distributed.all_reduce`` over two ranks: adds the other rank's tensor in place."""

    def __init__(self, other: float | list[float]):
        self.other = other

    def __call__(self, tensor: torch.Tensor) -> None:
        tensor.add_(torch.tensor(self.other, dtype=tensor.dtype))


def test_whitening_over_ranks_by_hand():
    x = torch.tensor([[1.0, 2.0, 99.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    # the other rank holds one token, 3: sums of x, x^2 and the count are 3, 9, 1. Over 1, 2, 3: mean 2, unbiased
    # variance ((1 + 4 + 9) / 3 - 4) * 3 / 2 = 1, so this rank's tokens whiten to -1 and 0 (the pad stays 0)
    w = global_whiten(x, mask, OtherRank([3.0, 9.0, 1.0]))
    assert torch.allclose(w, torch.tensor([[-1.0, 0.0, 0.0]]), atol=1e-6)
    assert torch.equal(global_whiten(x, mask), masked_whiten(x, mask))  # one process: the plain masked whitening


def test_token_denominator_by_hand():
    tokens = torch.tensor(6.0)
    assert float(token_denominator(tokens)) == 6.0
    assert float(token_denominator(tokens, OtherRank(10.0), world_size=2)) == 8.0  # (6 + 10) tokens / 2 ranks
    assert float(tokens) == 6.0  # the count given is left alone
    assert float(token_denominator(torch.tensor(0.0))) == 1.0


def test_running_score_moments_by_hand():
    zero = torch.zeros((), dtype=torch.float64)
    moments = update_moments(Moments(zero, zero, zero), torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    assert [float(m) for m in moments] == [3.0, 2.0, 2.0]  # count, mean, squared deviations 1 + 0 + 1
    moments = update_moments(moments, torch.tensor([5.0], dtype=torch.float64))
    # 1, 2, 3, 5: mean 11 / 4 = 2.75; deviations -1.75, -0.75, 0.25, 2.25 square to 3.0625 + 0.5625 + 0.0625 + 5.0625
    assert [float(m) for m in moments] == [4.0, 2.75, 8.75]
    scores = running_standardise(torch.tensor([5.0, 2.75]), moments)  # unbiased std sqrt(8.75 / 3)
    assert scores.dtype == torch.float32
    assert torch.allclose(scores, torch.tensor([2.25 / math.sqrt(8.75 / 3), 0.0]))
    one = update_moments(Moments(zero, zero, zero), torch.tensor([4.0], dtype=torch.float64))
    assert float(running_standardise(torch.tensor([4.0]), one)[0]) == 0.0  # std 0, clamped to 1e-6: no division by 0


def test_batch_score_standardisation_and_missing_eos_penalty_by_hand():
    # every rank's scores 1, 3, 5, 7: mean 4, unbiased std sqrt((9 + 1 + 1 + 9) / 3)
    scores = batch_standardise(torch.tensor([1.0, 3.0]), torch.tensor([1.0, 3.0, 5.0, 7.0]))
    assert torch.allclose(scores, torch.tensor([-3.0, -1.0]) / math.sqrt(20 / 3))
    assert torch.equal(batch_standardise(torch.tensor([2.0]), torch.tensor([2.0, 2.0])), torch.tensor([0.0]))
    has_eos = torch.tensor([True, False])
    assert torch.equal(penalise_missing_eos(torch.tensor([1.0, 1.0]), has_eos, 0.5), torch.tensor([1.0, 0.5]))
    assert torch.equal(penalise_missing_eos(torch.tensor([1.0, 1.0]), has_eos, None), torch.tensor([1.0, 1.0]))


def test_entropy_and_logprobs_by_hand():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.5, 0.5, 0.0]]))  # the 0 is a banned token (-inf)
    # row 1: 0.5 ln 2 + 2 x 0.25 ln 4 = 1.5 ln 2; row 2: ln 2 (the banned token contributes 0, not nan)
    expected = torch.tensor([1.5 * math.log(2.0), math.log(2.0)])
    assert torch.allclose(entropy_from_logits(logits), expected)
    logprobs, entropy = logprobs_and_entropy(logits, torch.tensor([1, 0]))
    assert torch.allclose(logprobs, torch.log(torch.tensor([0.25, 0.5])))
    assert torch.allclose(entropy, expected)
    assert logprobs_and_entropy(logits, torch.tensor([1, 0]), with_entropy=False)[1] is None


def test_monitors():
    assert monitors.negative_kl(torch.tensor([-1.0, -1.1, -0.9, -1.0])) is not None
    assert monitors.negative_kl(torch.tensor([-0.1, 0.2, -0.15, 0.1])) is None
    assert monitors.entropy_collapse(0.01, 0.05) and monitors.entropy_collapse(1.0, 0.05) is None
    history = [{"step": 10, "reward": 0.1, "gold": 0.5, "gold_stderr": 0.01},
               {"step": 20, "reward": 0.5, "gold": 0.45, "gold_stderr": 0.01}]
    assert "reward hacking" in monitors.reward_hacking(history)
    history[-1]["gold"] = 0.49  # within 2 standard errors: noise
    assert monitors.reward_hacking(history) is None
    # 1, 2, 3, 4: unbiased std sqrt((2.25 + 0.25 + 0.25 + 2.25) / 3), over sqrt(4)
    assert monitors.standard_error(torch.tensor([1.0, 2.0, 3.0, 4.0])) == pytest.approx(math.sqrt(5 / 3) / 2)
    assert monitors.standard_error(torch.tensor([1.0])) == 0.0


# ---- records and metrics ------------------------------------------------------------------------------------------
def _rollout(size: int = 3) -> Rollout:
    rows = torch.arange(size, dtype=torch.float32)[:, None]
    tokens = rows.expand(size, 2)
    return Rollout(prompts=[f"p{i}" for i in range(size)], texts=[f"t{i}" for i in range(size)],
                   seq=tokens.long(), seq_mask=torch.ones(size, 2), prompt_len=1, responses=tokens[:, 1:].long(),
                   mask=torch.ones(size, 1), scores=rows[:, 0], gold=None, has_eos=rows[:, 0] > 0,
                   logprobs=-tokens, sample_logprobs=-tokens, ref_logprobs=tokens, values=2 * tokens,
                   entropy=torch.tensor(0.5), times={"generate": 1.0})


def test_rollout_and_advantages_select_rows():
    rollout = _rollout()
    part = rollout.select(torch.tensor([2, 0]))
    assert part.prompts == ["p2", "p0"] and part.texts == ["t2", "t0"] and part.size == 2
    assert torch.equal(part.scores, torch.tensor([2.0, 0.0])) and torch.equal(part.values[:, 0], torch.tensor([4.0, 0.0]))
    assert torch.equal(part.has_eos, torch.tensor([True, False])) and part.gold is None
    assert part.prompt_len == 1 and float(part.entropy) == 0.5 and part.times == {"generate": 1.0}  # per batch: kept
    adv = Advantages(advantages=torch.tensor([[1.0], [2.0], [3.0]]), returns=torch.zeros(3, 1), kl=torch.zeros(3, 1),
                     scores=torch.tensor([7.0, 8.0, 9.0]), rewards=None)
    picked = adv.select(torch.tensor([1]))
    assert torch.equal(picked.advantages, torch.tensor([[2.0]])) and torch.equal(picked.scores, torch.tensor([8.0]))
    assert picked.rewards is None
    assert rollout.table_rows(2) == [{"prompt": "p0", "response": "t0", "reward": 0.0},
                                     {"prompt": "p1", "response": "t1", "reward": 1.0}]


def test_row_keys_and_minibatches():
    # prompts 5 and 9, 2 samples each: keys 5 * 2 + 0, 5 * 2 + 1, 9 * 2 + 0, 9 * 2 + 1
    assert sample_row_keys(torch.tensor([5, 9]), 2).tolist() == [10, 11, 18, 19]
    assert sample_row_keys(torch.tensor([5, 9]), 1).tolist() == [5, 9]
    order = torch.randperm(7, generator=torch.Generator().manual_seed(3))
    batches = list(minibatches(7, 3, torch.Generator().manual_seed(3)))  # 3 x 2 rows of a permutation; 1 left out
    assert [b.tolist() for b in batches] == [order[0:2].tolist(), order[2:4].tolist(), order[4:6].tolist()]


def test_sample_means_sum_over_batches_and_devices():
    device0, device1 = SampleMeans(("reward", "gold")), SampleMeans(("reward", "gold"))
    device0.update({"reward": torch.tensor([1.0, 2.0])})
    device0.update({"reward": torch.tensor([3.0])})
    device1.update({"reward": torch.tensor([4.0, 5.0, 6.0, 9.0])})
    device0.merge_state(device1)  # what the sync across devices does
    # (1 + 2 + 3 + 4 + 5 + 6 + 9) / 7 = 30 / 7 over every sample (not the mean of the means 2 and 6); gold never came
    assert device0.compute() == {"reward": pytest.approx(30 / 7)}


def test_sample_means_reset_under_inference_mode_update_afterwards():
    """evaluate_at_start: a test (inference mode) resets the states before a fit's validation (no inference mode)."""
    means = SampleMeans(("reward",))
    with torch.inference_mode():
        means.update({"reward": torch.tensor([1.0, 2.0])})
        means.compute()
        means.reset()
    means.update({"reward": torch.tensor([3.0, 5.0])})  # an in-place update of an inference tensor would raise here
    assert float(means.compute()["reward"]) == 4.0


def test_update_stats_by_hand():
    def sums(pg_loss, ratio, tokens, ratio_max):
        values = {"pg_loss": pg_loss, "vf_loss": 1.0, "vf_clipfrac": 0.0, "clipfrac": 1.0, "approx_kl": 0.5,
                  "ratio": ratio, "tokens": tokens, "ratio_max": ratio_max}
        return {k: torch.tensor(v, dtype=torch.float64) for k, v in values.items()}

    def two_minibatches() -> UpdateStats:
        stats = UpdateStats(with_entropy=False)
        stats.update(sums(2.0, 4.2, 4.0, 1.2), first=True)
        stats.update(sums(3.0, 6.0, 6.0, 1.1), first=False)
        return stats

    out = two_minibatches().compute()
    assert float(out["pg_loss"]) == pytest.approx((2 + 3) / 10) and float(out["vf_loss"]) == pytest.approx(2 / 10)
    assert float(out["ratio_max"]) == 1.2 and float(out["first_minibatch_ratio"]) == pytest.approx(4.2 / 4)
    assert "update_entropy" not in out
    stats, other = two_minibatches(), UpdateStats(with_entropy=False)
    other.update(sums(5.0, 9.9, 10.0, 1.3), first=True)  # another device
    stats.merge_state(other)
    out = stats.compute()
    assert float(out["pg_loss"]) == pytest.approx(10 / 20) and float(out["clipfrac"]) == pytest.approx(3 / 20)
    assert float(out["ratio_max"]) == 1.3 and float(out["first_minibatch_ratio"]) == pytest.approx((4.2 + 9.9) / 14)


class ManualSteps(pl.LightningModule):
    """Steps its raw optimizer twice per batch, as PPO does, and counts one step per batch."""

    def __init__(self):
        super().__init__()
        self.automatic_optimization = False
        self.layer = torch.nn.Linear(2, 1)
        self.batches = 0

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers(use_pl_optimizer=False)
        for _ in range(2):
            self.layer(batch).sum().backward()
            optimizer.step()
            optimizer.zero_grad()
        self.batches += 1
        count_iteration(self.trainer)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.randn(10, 2), batch_size=1)


def test_count_iteration_makes_global_step_count_batches():
    """Fails when Lightning moves ``fit_loop.epoch_loop.manual_optimization.optim_step_progress`` (AttributeError)
    or stops reading global_step from it (the fit would run all 10 batches): then fix ``lightning_compat.py``."""
    module = ManualSteps()
    trainer = pl.Trainer(max_steps=3, max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module)
    assert module.batches == 3 and trainer.global_step == 3


# ---- rollout ------------------------------------------------------------------------------------------------------
@pytest.fixture
def ppo_parts(make_cfg, tmp_path):
    def factory(*overrides):
        cfg = make_cfg(*PPO_FAST, *overrides, fast=False)
        datamodule, module = build_data_and_module(cfg, tmp_path / "tokenizer")
        datamodule.setup("fit")
        module.setup("fit")
        batch = datamodule.collate([datamodule.datasets["train"][i] for i in range(8)])
        return cfg, datamodule, module, batch

    return factory


def test_left_padded_prompts_give_the_logprobs_of_unpadded_ones(ppo_parts):
    _, datamodule, module, batch = ppo_parts()
    model = module.model
    assert batch["attention_mask"][:, 0].eq(0).any(), "the batch should contain left padding"
    for row in range(4):
        real = batch["attention_mask"][row].bool()
        alone = batch["input_ids"][row][real][None]
        ref = model(input_ids=alone).logits[0, -1]
        padded = model(input_ids=batch["input_ids"][row:row + 1], attention_mask=batch["attention_mask"][row:row + 1],
                       position_ids=position_ids(batch["attention_mask"][row:row + 1])).logits[0, -1]
        assert torch.allclose(ref, padded, atol=1e-5)


def test_response_logprobs_are_those_of_each_unpadded_sequence(ppo_parts):
    """The KL of evaluation samples to the reference is built on these: each real response token's log-prob at
    temperature T, computed row by row without padding; 0 after EOS."""
    _, _, module, batch = ppo_parts()
    model, tok = module.model.eval(), module.tokenizer
    responses = torch.randint(3, 300, (8, 5), generator=torch.Generator().manual_seed(0))
    responses[0, 2] = tok.eos_token_id  # row 0 ends at its third token
    real = response_mask(responses, tok.eos_token_id, tok.pad_token_id)
    got = response_logprobs(model, batch["input_ids"], batch["attention_mask"], responses, real, 0.7)
    assert got[0, 3:].eq(0).all() and real[0].tolist() == [1, 1, 1, 0, 0]
    for row in range(4):
        prompt = batch["input_ids"][row][batch["attention_mask"][row].bool()]
        n = int(real[row].sum())
        seq = torch.cat([prompt, responses[row, :n]])[None]
        logp = torch.log_softmax(model(input_ids=seq).logits[0, len(prompt) - 1:-1].float() / 0.7, -1)
        expected = logp.gather(-1, responses[row, :n, None]).squeeze(-1)
        assert torch.allclose(got[row, :n], expected, atol=1e-5)


def test_rollout_logprobs_equal_the_recomputed_ones_and_the_first_ratio_is_one(ppo_parts):
    _, _, module, batch = ppo_parts("model.dropout=0.3", "model.attention_dropout=0.3", "method.temperature=0.7")
    module.train()
    roll = module.rollout(batch, torch.Generator().manual_seed(0))
    assert torch.allclose(roll.sample_logprobs * roll.mask, roll.logprobs, atol=1e-5)
    assert torch.allclose(roll.logprobs, roll.ref_logprobs, atol=1e-6)  # the reference is the initial policy
    adv = module.advantages(roll)
    stats = module.minibatch_backward(roll, adv, torch.arange(4), micro=2)
    assert float(stats["ratio"] / stats["tokens"]) == pytest.approx(1.0, abs=1e-6)
    assert float(stats["ratio_max"]) == pytest.approx(1.0, abs=1e-5) and float(stats["clipfrac"]) == 0.0


def test_sampling_is_pure_and_truncates_after_the_first_eos():
    torch.manual_seed(0)
    logits = torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4]))  # token 3 is EOS, 0 is pad (banned)

    class Fixed(torch.nn.Module):
        def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=None):
            out = type("Out", (), {})()
            out.logits = logits.expand(input_ids.shape[0], input_ids.shape[1], 4)
            out.past_key_values = None
            return out

    ids = torch.ones(4000, 1, dtype=torch.long)
    tokens, logp = sample(Fixed(), ids, torch.ones_like(ids), 3, eos_token_id=3, pad_token_id=0,
                          generator=torch.Generator().manual_seed(1), stop_early=False, banned_ids=[0])
    first = tokens[:, 0]
    freq = torch.bincount(first, minlength=4).float() / len(first)
    assert torch.allclose(freq, torch.tensor([0.0, 2 / 9, 3 / 9, 4 / 9]), atol=0.03)  # softmax without the pad
    mask = response_mask(tokens, eos_token_id=3, pad_token_id=0)
    for row in range(50):
        eos = (tokens[row] == 3).nonzero()
        if len(eos):
            end = int(eos[0]) + 1
            assert mask[row, :end].all() and not mask[row, end:].any() and (tokens[row, end:] == 0).all()
    assert torch.allclose(logp[:, 0], torch.log(torch.tensor([0.0, 2 / 9, 3 / 9, 4 / 9]))[first])
    assert torch.allclose(token_logprobs(logits.expand(1, 1, 4), torch.tensor([[2]]), 1.0, [0]),
                          torch.tensor([[math.log(3 / 9)]]))


def test_keyed_sampling_follows_the_softmax_and_ignores_the_batch_around_a_row():
    logits = torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4]))

    class Fixed(torch.nn.Module):
        def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=None):
            out = type("Out", (), {})()
            out.logits = logits.expand(input_ids.shape[0], input_ids.shape[1], 4)
            out.past_key_values = None
            return out

    ids = torch.ones(4000, 1, dtype=torch.long)
    keys = torch.arange(4000)
    tokens, logp = sample(Fixed(), ids, torch.ones_like(ids), 3, eos_token_id=3, pad_token_id=0, stop_early=False,
                          banned_ids=[0], row_keys=keys, stream=5)
    freq = torch.bincount(tokens[:, 0], minlength=4).float() / 4000
    assert torch.allclose(freq, torch.tensor([0.0, 2 / 9, 3 / 9, 4 / 9]), atol=0.03)  # the pad is never drawn
    assert torch.allclose(logp[:, 0], torch.log(torch.tensor([0.0, 2 / 9, 3 / 9, 4 / 9]))[tokens[:, 0]])
    # the rows of keys 10..19 sampled on their own (as on another rank) give the same tokens
    alone, _ = sample(Fixed(), ids[:10], torch.ones_like(ids[:10]), 3, eos_token_id=3, pad_token_id=0,
                      stop_early=False, banned_ids=[0], row_keys=keys[10:20], stream=5)
    assert torch.equal(alone, tokens[10:20])
    other_stream, _ = sample(Fixed(), ids, torch.ones_like(ids), 3, eos_token_id=3, pad_token_id=0,
                             stop_early=False, banned_ids=[0], row_keys=keys, stream=6)
    assert not torch.equal(other_stream, tokens)


def test_one_prompt_encoding_for_k_samples_samples_what_the_repeated_prompts_would():
    """repeats=k (PPO's samples_per_prompt): the prompts' pass and KV cache computed once and repeated give the
    tokens and logprobs of sampling the prompts repeated k times, keyed or from a generator."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from rlhf.models.policy import left_pad

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=64, n_positions=64)).eval()
    ids, mask = left_pad([[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]], pad_token_id=0)  # different lengths: padding
    k, settings = 4, dict(max_new_tokens=10, eos_token_id=1, pad_token_id=0, banned_ids=[0], stop_early=False)
    keys = torch.arange(3 * k)
    repeated = (ids.repeat_interleave(k, 0), mask.repeat_interleave(k, 0))
    for randomness in (lambda: dict(row_keys=keys, stream=3), lambda: dict(generator=torch.Generator().manual_seed(7))):
        once, once_logp = sample(model, ids, mask, repeats=k, **settings, **randomness())
        each, each_logp = sample(model, *repeated, **settings, **randomness())
        assert once.shape == (3 * k, 10) and torch.equal(once, each)
        assert torch.allclose(once_logp, each_logp, atol=1e-5)
    assert not torch.equal(once[0], once[1])  # the k samples of a prompt differ


def _tiny_causal_lms():
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=64, n_positions=64))
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2))  # rotary, grouped queries
    return {"gpt2": gpt2.eval(), "llama": llama.eval()}


def _sampled_with_and_without_the_static_cache(model, monkeypatch, compile_step=False):
    from rlhf.models import policy
    from rlhf.models.policy import left_pad

    ids, mask = left_pad([[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]], pad_token_id=0)  # left padding
    settings = dict(max_new_tokens=12, eos_token_id=1, pad_token_id=0, banned_ids=[0], stop_early=False,
                    row_keys=torch.arange(12), stream=3, repeats=4)
    static = sample(model, ids, mask, compile_step=compile_step, **settings)
    with monkeypatch.context() as patch:
        patch.setattr(policy, "_static_cache", lambda model, length: None)  # the cache grown token by token
        grown = sample(model, ids, mask, **settings)
    return ids.repeat_interleave(4, 0), mask.repeat_interleave(4, 0), static, grown


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_the_static_cache_samples_what_the_grown_cache_does(arch, monkeypatch):
    """Compilable architectures decode into a cache allocated once (StaticCache), not one concatenated at every token:
    the same tokens, and log-probs equal to those the policy's teacher-forced pass gives (what PPO's ratio needs)."""
    from rlhf.models import policy

    model = _tiny_causal_lms()[arch]
    assert policy._static_cache(model, 16) is not None
    ids, mask, (tokens, logp), (grown_tokens, grown_logp) = _sampled_with_and_without_the_static_cache(model,
                                                                                                      monkeypatch)
    assert torch.equal(tokens, grown_tokens) and torch.allclose(logp, grown_logp, atol=1e-5)
    real = response_mask(tokens, 1, 0)
    assert torch.allclose(logp, response_logprobs(model, ids, mask, tokens, real, 1.0, [0]), atol=1e-5)


def test_models_that_cannot_take_a_static_cache_keep_the_grown_one():
    """Sliding-window attention (Mistral with a window, Gemma 2's alternating layers) and architectures transformers
    does not mark compilable keep the cache grown token by token."""
    from transformers import Gemma2Config, Gemma2ForCausalLM, MistralConfig, MistralForCausalLM

    from rlhf.models.policy import _static_cache

    small = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=2)
    assert _static_cache(MistralForCausalLM(MistralConfig(**small, sliding_window=4)), 16) is None
    assert _static_cache(Gemma2ForCausalLM(Gemma2Config(**small, head_dim=8)), 16) is None
    assert _static_cache(MistralForCausalLM(MistralConfig(**small, sliding_window=None)), 16) is not None
    assert _static_cache(torch.nn.Linear(2, 2), 16) is None


def test_compile_generation_on_a_model_without_a_static_cache_says_so_and_samples_uncompiled():
    from transformers import MistralConfig, MistralForCausalLM

    from rlhf.models.policy import _warn_not_compiled, sample

    torch.manual_seed(0)
    model = MistralForCausalLM(MistralConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                             num_attention_heads=2, num_key_value_heads=2, sliding_window=4)).eval()
    ids = torch.randint(2, 64, (2, 5))
    args = (model, ids, torch.ones_like(ids), 6, 1, 0)
    _warn_not_compiled.cache_clear()
    with pytest.warns(UserWarning, match="compile_generation: MistralForCausalLM cannot decode into a static KV "
                                         "cache .* runs uncompiled"):
        compiled, _ = sample(*args, generator=torch.Generator().manual_seed(3), compile_step=True)
    plain, _ = sample(*args, generator=torch.Generator().manual_seed(3))
    assert torch.equal(compiled, plain)


@pytest.mark.slow
def test_the_compiled_decoding_step_samples_what_the_eager_one_does(monkeypatch):
    """method.compile_generation: the one-token step through torch.compile (about 20 s to compile on 2 CPU cores)."""
    from torch._dynamo.utils import counters

    model = _tiny_causal_lms()["gpt2"]
    counters.clear()
    _, _, (tokens, logp), (grown_tokens, grown_logp) = _sampled_with_and_without_the_static_cache(
        model, monkeypatch, compile_step=True)
    assert torch.equal(tokens, grown_tokens) and torch.allclose(logp, grown_logp, atol=1e-5)
    assert counters["stats"]["unique_graphs"] >= 1, "nothing was compiled"  # (not a silent fallback to eager)
    assert not counters["graph_break"], dict(counters["graph_break"])  # the step is one graph


def test_gradient_accumulation_equals_the_large_batch(ppo_parts):
    _, _, module, batch = ppo_parts("method.value=separate")
    roll = module.rollout(batch, torch.Generator().manual_seed(0))
    adv = module.advantages(roll)
    # perturb the policy so ratios differ from 1 and clipping is active
    with torch.no_grad():
        for p in module.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    grads = {}
    for micro in (8, 3, 1):
        module.zero_grad(set_to_none=True)
        module.minibatch_backward(roll, adv, torch.arange(8), micro=micro)
        grads[micro] = [p.grad.clone() for p in module.parameters() if p.grad is not None]
    for micro in (3, 1):
        for a, b in zip(grads[8], grads[micro]):
            assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("value", ["head", "separate"])
def test_the_update_drops_padding_columns_and_computes_the_same_loss_and_gradient(ppo_parts, value):
    """A micro-batch's passes skip the prompt columns that are left padding in every row and the response columns
    after every row has ended; the loss and every gradient are those of the padded micro-batch."""
    from dataclasses import replace

    _, _, module, batch = ppo_parts(f"method.value={value}", "method.max_new_tokens=8")
    roll = module.rollout(batch, torch.Generator().manual_seed(0))
    cut = torch.zeros_like(roll.mask)  # every response ends by its 5th token, row 0 after its 2nd
    cut[:, :5], cut[0, 2:] = 1.0, 0.0
    pad = module.tokenizer.pad_token_id
    responses = torch.where(cut.bool(), roll.responses, pad)
    roll = replace(roll, responses=responses, mask=roll.mask * cut, seq=torch.cat([roll.seq[:, :roll.prompt_len],
                   responses], 1), seq_mask=torch.cat([roll.seq_mask[:, :roll.prompt_len], cut.long()], 1))
    with torch.no_grad():  # ratios away from 1, so the clipped terms are live
        for p in module.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    adv = module.advantages(roll)
    rows = roll.seq_mask[:, :roll.prompt_len].sum(1).argsort()[:3]  # the shortest prompts: shared left padding
    rows = torch.cat([torch.tensor([0]), rows[rows != 0][:2]])
    part, part_adv = roll.select(rows), adv.select(rows)
    trimmed, trimmed_adv = trim_padding(part, part_adv)
    lead = part.seq.shape[1] - part.responses.shape[1] - trimmed.prompt_len
    assert lead > 0 and trimmed.responses.shape[1] == 5 and trimmed_adv.advantages.shape[1] == 5
    assert trimmed.seq.shape[1] == part.seq.shape[1] - lead - 3
    results = []
    for record, record_adv in ((part, part_adv), (trimmed, trimmed_adv)):
        module.zero_grad(set_to_none=True)
        loss, logs = module._loss_sum(record, record_adv, warmup=False)
        loss.backward()
        results.append((loss.detach(), logs, [p.grad.clone() for p in module.parameters() if p.grad is not None]))
    (loss, logs, grads), (loss_t, logs_t, grads_t) = results
    assert torch.allclose(loss, loss_t, atol=1e-5) and float(logs["tokens"]) == float(logs_t["tokens"]) == 2 + 5 + 5
    assert len(grads) == len(grads_t)
    for a, b in zip(grads, grads_t):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


def test_batch_sizes_must_divide_and_lightning_accumulation_is_refused(make_cfg):
    with pytest.raises(ConfigError, match="num_minibatches=3 must divide the rollout batch of 8"):
        validate_config(make_cfg(*PPO_FAST, "method.num_minibatches=3", fast=False))
    with pytest.raises(ConfigError, match="micro_batch_size=3 must divide the minibatch of 4"):
        validate_config(make_cfg(*PPO_FAST, "method.micro_batch_size=3", fast=False))
    with pytest.raises(ConfigError, match="accumulate_grad_batches must be 1"):
        validate_config(make_cfg(*PPO_FAST, "trainer.accumulate_grad_batches=2", fast=False))
    with pytest.raises(ConfigError, match="samples_per_prompt=1 must be >= 2 with advantage=rloo"):
        validate_config(make_cfg(*PPO_FAST, "method.advantage=rloo", fast=False))


# ---- end to end ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", [["method.value=head"],
                                     ["method.value=separate", "method.kl_target=1.0", "method.kl_estimator=k3",
                                      "method.reward_norm=running", "method.missing_eos_penalty=1.0"],
                                     ["method.advantage=rloo", "method.samples_per_prompt=2"],
                                     ["method.advantage=grpo", "method.samples_per_prompt=2",
                                      "method.grpo_std_normalise=false"]],
                         ids=["head", "separate-adaptive-k3", "rloo", "grpo"])
def test_ppo_run_end_to_end_exports_a_causal_lm(make_cfg, variant):
    cfg = make_cfg(*PPO_FAST, *variant, fast=False)
    metrics = run(cfg)
    out = Path(cfg.paths.output_dir)
    for key in ("train/reward", "train/kl", "train/kl_coef", "train/entropy", "train/approx_kl", "train/clipfrac",
                "train/ratio_max", "train/response_length", "train/eos_rate", "train/episodes_per_sec",
                "time/generate", "time/score", "time/reference", "time/value", "time/update", "val/reward", "val/gold",
                "val/kl", "test/gold"):
        assert key in metrics and math.isfinite(metrics[key]), key
    assert metrics["trainer/global_step"] == 4.0  # global_step counts PPO iterations
    if "method.kl_target=1.0" in variant:
        assert metrics["train/kl_coef"] != 0.05  # the adaptive controller moved it
    samples = [json.loads(line) for line in (out / "samples" / "val_step000004.jsonl").read_text().splitlines()]
    assert samples and {"prompt", "response", "reward", "gold"} <= set(samples[0])
    policy = AutoModelForCausalLM.from_pretrained(out / "export")
    assert policy.config.pad_token_id != policy.config.eos_token_id


def test_ppo_resume_parity(make_cfg):
    common = [*PPO_FAST, "trainer.max_steps=6", "trainer.val_check_interval=3", "test=false", "export=false",
              "method.reward_norm=running", "method.kl_target=2.0"]
    full = run(make_cfg(*common, subdir="full", fast=False))
    first = make_cfg(*common, "callbacks=[default,stop_at_step]", "callbacks.stop_at_step.step=3", subdir="first", fast=False)
    run(first)
    ckpt = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    resumed = run(make_cfg(*common, f"ckpt_path={ckpt}", subdir="resumed", fast=False))
    # a checkpoint of the two optimizers PPO had up to 2026-11-30 (the policy's, the value model's) resumes the same
    old = _as_two_optimizers(ckpt, Path(first.paths.output_dir) / "two_optimizers.ckpt")
    resumed_old = run(make_cfg(*common, f"ckpt_path={old}", subdir="resumed_old", fast=False))
    for key in ("train/reward", "train/kl", "train/kl_coef", "train/pg_loss", "train/vf_loss", "val/reward",
                "val/kl"):
        assert resumed[key] == pytest.approx(full[key], abs=1e-6), key
        assert resumed_old[key] == resumed[key], key


def _as_two_optimizers(path: Path, target: Path) -> Path:
    """``path`` as PPO wrote it with two optimizers: the policy's two groups (decay, no decay) in one optimizer and
    the value model's in another, each numbering its parameters from 0, each with its own scheduler."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    (state,) = checkpoint["optimizer_states"]
    (scheduler,) = checkpoint["lr_schedulers"]
    assert len(state["param_groups"]) == 4
    n = sum(len(group["params"]) for group in state["param_groups"][:2])
    checkpoint["optimizer_states"] = [
        {"state": {i: v for i, v in state["state"].items() if i < n}, "param_groups": state["param_groups"][:2]},
        {"state": {i - n: v for i, v in state["state"].items() if i >= n},
         "param_groups": [{**g, "params": [i - n for i in g["params"]]} for g in state["param_groups"][2:]]}]
    checkpoint["lr_schedulers"] = [{k: v[part] if isinstance(v, list) else v for k, v in scheduler.items()}
                                   for part in (slice(0, 2), slice(2, 4))]
    torch.save(checkpoint, target)
    return target


class CountLetter:
    """A dense toy reward: the number of letters 'e' in the response (many tokens have some, so even a random
    policy gets a signal)."""

    def score(self, prompts, completions):
        return torch.tensor([float(c.count("e")) for c in completions])


@pytest.mark.parametrize("advantage", ["gae", "grpo"])
def test_ppo_learns_a_toy_reward(make_cfg, advantage):
    variant = {"gae": ["data.loader.batch_size=16"],
               "grpo": ["method.advantage=grpo", "method.samples_per_prompt=4", "data.loader.batch_size=4"]}[advantage]
    cfg = make_cfg(*PPO_FAST, "method.reward.kind=callable", "method.reward.target=test_ppo.CountLetter",
                   "method.gold.kind=none", "optimized_metric=val/reward", "method.lr=3e-3", "method.kl_coef=0.01",
                   "trainer.max_steps=40", "trainer.val_check_interval=40", "trainer.limit_val_batches=4",
                   *variant, "method.max_new_tokens=8", "test=false", "export=false", fast=False)
    after = run(cfg)
    rows = list(csv.DictReader(open(next(Path(cfg.paths.output_dir).glob("csv/*/metrics.csv")))))
    first = [float(r["train/reward"]) for r in rows if r.get("train/reward")][:3]
    before = sum(first) / len(first)  # the initial policy's samples
    assert after["val/reward"] > before + 1.0, (before, after["val/reward"])  # on held-out prompts
    assert after["train/kl"] < 20.0


def test_ppo_against_a_reward_model_with_its_own_tokenizer(make_cfg):
    """The chain reward model -> PPO: a BERT reward model (WordPiece) scores a GPT-2 policy (byte-level BPE)."""
    from test_reward import REWARD_FAST

    rm_cfg = make_cfg(*REWARD_FAST, "trainer.max_steps=3", "test=false", subdir="rm", fast=False)
    run(rm_cfg)
    export = Path(rm_cfg.paths.output_dir) / "export"
    cfg = make_cfg(*PPO_FAST, "method.reward.kind=reward_model", f"method.reward.path={export}",
                   "trainer.max_steps=2", "test=false", "export=false", subdir="ppo", fast=False)
    metrics = run(cfg)
    assert math.isfinite(metrics["train/reward"]) and math.isfinite(metrics["val/reward"])
    assert "val/gold" in metrics  # VADER stays the gold scorer next to the learned reward


def test_a_missing_reward_model_is_a_config_error(make_cfg, tmp_path):
    cfg = make_cfg(*PPO_FAST, "method.reward.kind=reward_model", f"method.reward.path={tmp_path}/nope",
                   "trainer.max_steps=1", fast=False)
    with pytest.raises(ConfigError, match="method.reward.path=.*is not a reward-model export"):
        run(cfg)


def test_separate_critic_starts_from_a_causal_reward_model_sharing_the_tokenizer(ppo_parts, tmp_path):
    from transformers import GPT2ForSequenceClassification

    from rlhf.errors import ModelError
    from rlhf.models.policy import build_critic

    _, datamodule, module, _ = ppo_parts()
    reward_model = GPT2ForSequenceClassification(module.model.config.__class__(**{
        **module.model.config.to_dict(), "num_labels": 1}))
    torch.nn.init.normal_(reward_model.score.weight)
    reward_model.save_pretrained(tmp_path / "rm")
    critic = build_critic(str(tmp_path / "rm"), module.model, module.tokenizer)
    assert torch.equal(critic.head.linear.weight, reward_model.score.weight.detach())  # the RM head starts the critic
    body = reward_model.transformer.wte.weight.detach()
    assert torch.equal(critic.body.wte.weight.detach(), body)
    other = GPT2ForSequenceClassification(module.model.config.__class__(**{
        **module.model.config.to_dict(), "num_labels": 1, "vocab_size": len(module.tokenizer) + 7}))
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(ModelError, match="differs from the policy's"):
        build_critic(str(tmp_path / "other"), module.model, module.tokenizer)
