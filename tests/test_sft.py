"""Supervised fine-tuning (``method=sft``): the example layout and loss mask by hand, packed == unpacked, it learns a
toy mapping, and the real command on user-style files (prompt/response rows, conversations, a pair format)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from rlhf.data.feedback import encode_pair
from rlhf.objectives import IGNORE_INDEX
from rlhf.objectives.sft import pack, packed_attention, response_mask, sft_labels, sft_loss
from rlhf.train import run

X = IGNORE_INDEX  # a position the loss does not read


LAYOUT = {"bos": [], "sep": [], "eos": [2]}


def sft_example(prompt: list[int], response: list[int], max_length: int):
    """As the DataModule lays an example out: ``(ids, response mask, prompt cut)``, or None."""
    out = encode_pair(prompt, [response], max_length, LAYOUT)
    if out is None:
        return None
    (ids,), truncated = out
    return ids, response_mask(len(ids), len(ids) - len(response) - 1), truncated


def test_example_layout_and_loss_mask_by_hand():
    ids, response, truncated = sft_example([5, 6, 7], [8, 9], max_length=10)
    assert (ids, response, truncated) == ([5, 6, 7, 8, 9, 2], [0, 0, 0, 1, 1, 1], False)
    # too long: the prompt is cut from the left, the response and EOS stay whole
    assert sft_example([5, 6, 7], [8, 9], max_length=4) == ([7, 8, 9, 2], [0, 1, 1, 1], True)
    assert sft_example([5], [8, 9, 10], max_length=3) is None  # the response alone does not fit
    x = torch.tensor([ids + [0, 0]])
    mask = torch.tensor([response + [0, 0]])
    attention = torch.tensor([[1] * 6 + [0, 0]])
    positions = torch.tensor([list(range(6)) + [0, 0]])
    assert sft_labels(x, mask, attention, positions, False).tolist() == [[X, X, X, 8, 9, 2, X, X]]
    assert sft_labels(x, mask, attention, positions, True).tolist() == [[X, 6, 7, 8, 9, 2, X, X]]  # never token 0


def test_the_loss_is_the_mean_nll_of_the_response_tokens():
    logits = torch.zeros(1, 4, 3)
    logits[0, 1, 2] = math.log(2.0)  # position 1 predicts token 2 with p = 2/4
    labels = torch.tensor([[X, X, 2, 1]])  # tokens 2 (predicted at position 1) and 1 (at position 2)
    loss, tokens = sft_loss(logits, labels)
    assert tokens == 2 and loss.item() == pytest.approx((-math.log(0.5) - math.log(1 / 3)) / 2)


def test_packing_keeps_examples_apart():
    blocks = pack([([1, 2, 3], [0, 1, 1]), ([4, 5], [0, 1]), ([6, 7, 8, 9], [0, 0, 1, 1])], block_size=6)
    assert blocks == [{"input_ids": [1, 2, 3, 4, 5], "response_mask": [0, 1, 1, 0, 1], "segment": [0, 0, 0, 1, 1],
                       "position_ids": [0, 1, 2, 0, 1]},
                      {"input_ids": [6, 7, 8, 9], "response_mask": [0, 0, 1, 1], "segment": [0, 0, 0, 0],
                       "position_ids": [0, 1, 2, 3]}]
    mask = packed_attention(torch.tensor([[0, 0, 1, 1, -1]]))[0, 0]
    allowed = (mask == 0).int().tolist()
    assert allowed == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 1]]


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_a_packed_batch_gives_the_loss_of_the_same_examples_unpacked(attn):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=40, n_embd=16, n_layer=2, n_head=2, n_positions=64,
                                       bos_token_id=1, eos_token_id=2)).eval()
    model.config._attn_implementation = attn
    examples = [sft_example(torch.randint(3, 40, (n,)).tolist(), torch.randint(3, 40, (m,)).tolist(), 32)[:2]
                for n, m in ((4, 3), (2, 5), (6, 2), (3, 3))]

    def batch_loss(rows):
        length = max(len(r["input_ids"]) for r in rows)
        get = lambda key, fill: torch.tensor([r[key] + [fill] * (length - len(r[key])) for r in rows])  # noqa: E731
        ids, response, positions, segment = get("input_ids", 0), get("response_mask", 0), get("position_ids", 0), \
            get("segment", -1)
        attention = (segment >= 0).long()
        packed = bool((segment > 0).any())
        mask = packed_attention(segment) if packed else attention
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
        return sft_loss(logits, sft_labels(ids, response, attention, positions, False))

    unpacked = [{"input_ids": i, "response_mask": r, "segment": [0] * len(i), "position_ids": list(range(len(i)))}
                for i, r in examples]
    loss_unpacked, tokens_unpacked = batch_loss(unpacked)
    blocks = pack(examples, block_size=20)
    assert len(blocks) < len(examples)  # several examples share a row
    loss_packed, tokens_packed = batch_loss(blocks)
    assert tokens_packed == tokens_unpacked and loss_packed.item() == pytest.approx(loss_unpacked.item(), abs=1e-5)


# ---- the real command ----------------------------------------------------------------------------------------------
SFT = ["experiment=sft_tiny", "model.hidden_size=32", "model.num_layers=1", "model.num_heads=2",
       "model.intermediate_size=64", "model.tokenizer.vocab_size=400", "data.loader.batch_size=8",
       "trainer.max_steps=4", "trainer.val_check_interval=4", "trainer.limit_val_batches=2",
       "trainer.limit_test_batches=2", "trainer.enable_model_summary=false", "callbacks.progress_bar=null",
       "logger=csv", "data.split.val_fraction=0.2", "data.split.test_fraction=0.2", "method.warmup_steps=1"]
COLOURS = ["red", "blue", "green", "black", "white", "yellow", "purple", "orange"]


def _mapping_rows(n: int):
    """A toy mapping: "colour of <thing> <i>?" -> "<colour> <colour> ." (the colour is a function of i)."""
    for i in range(n):
        colour = COLOURS[i % len(COLOURS)]
        yield {"prompt": f"what colour is item {i % len(COLOURS)} number {i} ?", "response": f" {colour} {colour} ."}


def test_sft_learns_a_toy_mapping_from_a_prompt_response_file(make_cfg, tmp_path):
    path = tmp_path / "demos.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _mapping_rows(400)))
    common = [*SFT, "data.source.kind=file", f"data.source.path={path}", "method.lr=3e-3"]
    before = run(make_cfg(*common, "train=false", subdir="before", fast=False))
    after = run(make_cfg(*common, "trainer.max_steps=150", "trainer.val_check_interval=150", "data.packing=true",
                         subdir="after", fast=False))
    print("SFT toy mapping, test/loss before -> after:", before["test/loss"], after["test/loss"])
    assert after["test/loss"] < 0.5 * before["test/loss"], (before["test/loss"], after["test/loss"])
    assert after["test/perplexity"] < 3.0  # a response of the mapping is nearly determined by its prompt


def test_sft_tiny_runs_offline_on_the_simulated_demonstrations_and_exports(make_cfg):
    from transformers import AutoModelForCausalLM

    cfg = make_cfg(*SFT, "data.source.max_articles=60", "method.evaluation.enabled=true",
                   "method.evaluation.num_samples=4", "method.evaluation.num_prompts=2",
                   "method.evaluation.max_new_tokens=4", fast=False)
    metrics = run(cfg)
    out = Path(cfg.paths.output_dir)
    assert metrics["trainer/global_step"] == 4.0 and math.isfinite(metrics["test/loss"])
    assert "val/prompted/score" in metrics  # held-out prompts sampled and scored (VADER)
    samples = [json.loads(line) for line in next((out / "samples").glob("val_*.jsonl")).read_text().splitlines()]
    assert samples and "score" in samples[0]
    model = AutoModelForCausalLM.from_pretrained(out / "export")
    assert model.config.pad_token_id != model.config.eos_token_id


def test_conversations_and_pair_formats_are_demonstrations(make_cfg, tmp_path):
    chats = tmp_path / "chats.jsonl"
    rows = [{"messages": [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["response"]}]}
            for r in _mapping_rows(200)]
    rows.append({"messages": [{"role": "user", "content": "no answer"}]})  # malformed: no assistant turn
    chats.write_text("".join(json.dumps(r) + "\n" for r in rows))
    metrics = run(make_cfg(*SFT, "data.source.kind=file", f"data.source.path={chats}", subdir="chats", fast=False))
    assert metrics["data/kept"] == 200.0 and metrics["data/dropped_malformed"] == 1.0
    hh = tmp_path / "hh.jsonl"
    hh.write_text("".join(json.dumps({"chosen": f"\n\nHuman: {r['prompt']}\n\nAssistant: {r['response']}",
                                      "rejected": f"\n\nHuman: {r['prompt']}\n\nAssistant: no"}) + "\n"
                          for r in _mapping_rows(200)))
    metrics = run(make_cfg(*SFT, "data.source.kind=file", f"data.source.path={hh}", "data.source.format=hh",
                           subdir="hh", fast=False))
    assert metrics["data/kept"] == 200.0 and metrics["trainer/global_step"] == 4.0
