"""Hub models as they come: a local directory with the conventions of ``gpt2`` (byte-level BPE, bos = eos = unk =
``<|endoftext|>``, no pad token), written here with ``save_pretrained``, trains with every method that takes a causal
LM; the framework adds a distinct pad token, grows the embeddings and says so."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from rlhf.data.corpora import bbc_news
from rlhf.data.tokenizer import PAD_TOKEN
from rlhf.train import run


def _check_repaired_export(run_dir: Path, hub_dir: Path) -> None:
    export = run_dir / "export"
    tokenizer = AutoTokenizer.from_pretrained(str(export))
    original = AutoTokenizer.from_pretrained(str(hub_dir))
    assert tokenizer.pad_token == PAD_TOKEN and tokenizer.pad_token_id == len(original)
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    config = json.loads((export / "config.json").read_text())
    assert config["pad_token_id"] == tokenizer.pad_token_id
    model = AutoModelForCausalLM.from_pretrained(str(export)) if "LMHead" in config["architectures"][0] else None
    if model is not None:
        assert model.get_input_embeddings().weight.shape[0] == len(original) + 1


PPO = ["experiment=ppo_tiny", "trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.limit_val_batches=1",
       "trainer.limit_test_batches=1", "data.loader.batch_size=4", "method.num_minibatches=2",
       "method.max_new_tokens=6", "method.ppo_epochs=1", "model.num_heads=2"]
PWP = ["experiment=pwp_tiny", "trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.limit_val_batches=1",
       "trainer.limit_test_batches=1", "data.source.max_documents=60", "data.loader.batch_size=4",
       "method.evaluation.num_samples=4", "method.evaluation.num_prompts=2", "method.evaluation.max_new_tokens=4"]
REWARD = ["experiment=reward_tiny", "trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.limit_val_batches=1",
          "trainer.limit_test_batches=1", "data.source.max_articles=40", "data.source.pairs_per_article=1",
          "data.loader.batch_size=4"]


@pytest.mark.parametrize("method", ["ppo", "pwp", "reward"])
def test_a_gpt2_style_hub_model_without_a_pad_token_trains_and_exports(method, gpt2_style_dir, make_cfg, caplog):
    overrides = {"ppo": PPO, "pwp": PWP, "reward": REWARD}[method]
    cfg = make_cfg(*overrides, "model=pretrained", f"model.name_or_path={gpt2_style_dir}", "logger=csv",
                   "callbacks.progress_bar=null", "trainer.enable_model_summary=false", fast=False)
    with caplog.at_level(logging.INFO):
        metrics = run(cfg)
    assert metrics["trainer/global_step"] == 2.0
    assert f"added a distinct pad token '{PAD_TOKEN}'" in caplog.text and "has no pad token" in caplog.text
    _check_repaired_export(Path(cfg.paths.output_dir), gpt2_style_dir)


def test_a_tokenizer_with_more_ordinary_tokens_than_the_model_is_still_refused(gpt2_style_dir, tmp_path):
    from rlhf.errors import ModelError
    from rlhf.models.policy import build_causal_lm

    small = tmp_path / "small"
    GPT2LMHeadModel(GPT2Config(vocab_size=100, n_embd=16, n_layer=1, n_head=2)).save_pretrained(str(small))
    tokenizer = AutoTokenizer.from_pretrained(str(gpt2_style_dir))
    tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    with pytest.raises(ModelError, match="tokenizer/model mismatch"):
        build_causal_lm({"source": "pretrained", "name_or_path": str(small)}, tokenizer)


LLAMA_CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
                       "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


@pytest.fixture(scope="module")
def llama_style_dir(tmp_path_factory) -> Path:
    """A tiny Llama with Llama's tokenizer conventions: bos ``<s>`` != eos ``</s>``, ``<unk>``, no pad token, BOS
    added by the post-processor, and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM

    directory = tmp_path_factory.mktemp("hub") / "llama-style"
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Metaspace()
    raw.decoder = decoders.Metaspace()
    texts = [doc["text"] for _, doc in zip(range(300), bbc_news())]
    raw.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=600, special_tokens=["<unk>", "<s>", "</s>"]))
    raw.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", raw.token_to_id("<s>"))])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tokenizer.chat_template = LLAMA_CHAT_TEMPLATE
    assert tokenizer.pad_token is None and tokenizer.bos_token_id != tokenizer.eos_token_id
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                         max_position_embeddings=256, bos_token_id=tokenizer.bos_token_id,
                                         eos_token_id=tokenizer.eos_token_id))
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="module")
def bert_style_dir(tmp_path_factory) -> Path:
    """A tiny BERT masked LM with BERT's WordPiece conventions ([PAD] [UNK] [CLS] [SEP] [MASK], lower-case)."""
    from transformers import BertConfig, BertForMaskedLM

    from rlhf.data.tokenizer import train_tokenizer

    directory = tmp_path_factory.mktemp("hub") / "bert-style"
    tokenizer = train_tokenizer([doc["text"] for _, doc in zip(range(300), bbc_news())], "wordpiece", 600, 2, True)
    assert tokenizer.pad_token == "[PAD]" and tokenizer.mask_token == "[MASK]"
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                       num_attention_heads=2, intermediate_size=64, max_position_embeddings=256,
                                       pad_token_id=tokenizer.pad_token_id))
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory


@pytest.mark.parametrize("method", ["ppo", "reward"])
def test_a_llama_style_hub_model_trains_and_exports(method, llama_style_dir, make_cfg, caplog):
    overrides = {"ppo": PPO, "reward": REWARD}[method]
    cfg = make_cfg(*overrides, "model=pretrained", f"model.name_or_path={llama_style_dir}", "logger=csv",
                   "callbacks.progress_bar=null", "trainer.enable_model_summary=false", fast=False)
    with caplog.at_level(logging.INFO):
        metrics = run(cfg)
    assert metrics["trainer/global_step"] == 2.0 and metrics["model/added_pad_token"] == 1.0
    assert f"added a distinct pad token '{PAD_TOKEN}'" in caplog.text
    export = Path(cfg.paths.output_dir) / "export"
    tokenizer = AutoTokenizer.from_pretrained(str(export))
    assert tokenizer.pad_token == PAD_TOKEN and tokenizer.bos_token == "<s>" and tokenizer.eos_token == "</s>"
    assert tokenizer.chat_template == LLAMA_CHAT_TEMPLATE  # the chat template travels with the export
    saved = json.loads((export / "tokenizer_config.json").read_text())
    assert saved["rlhf_pad_token_repair"] == "has no pad token" and len(tokenizer) == saved_len(llama_style_dir) + 1


@pytest.mark.parametrize("method", ["mlm", "reward", "classify"])
def test_a_bert_style_hub_encoder_trains_and_exports(method, bert_style_dir, make_cfg):
    overrides = {"mlm": ["trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.limit_val_batches=1",
                         "trainer.limit_test_batches=1", "data.source.max_documents=60", "data.block_size=32",
                         "data.loader.batch_size=4"], "reward": REWARD,
                 "classify": ["experiment=classify_bbc", "trainer.max_steps=2", "trainer.val_check_interval=2",
                              "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "data.max_length=64",
                              "data.loader.batch_size=4"]}[method]
    cfg = make_cfg(*overrides, "model=pretrained", f"model.name_or_path={bert_style_dir}", "logger=csv",
                   "callbacks.progress_bar=null", "trainer.enable_model_summary=false", fast=False)
    metrics = run(cfg)
    assert metrics["trainer/global_step"] == 2.0 and "model/added_pad_token" not in metrics
    tokenizer = AutoTokenizer.from_pretrained(str(Path(cfg.paths.output_dir) / "export"))
    assert tokenizer.pad_token == "[PAD]" and len(tokenizer) == len(AutoTokenizer.from_pretrained(str(bert_style_dir)))


def saved_len(directory: Path) -> int:
    return len(AutoTokenizer.from_pretrained(str(directory)))


def test_model_load_options_are_applied(llama_style_dir, monkeypatch):
    """model.dtype, attn_implementation and gradient_checkpointing change the model built; revision and
    trust_remote_code reach from_pretrained (a local directory has no revisions to check them against)."""
    from transformers import AutoModelForCausalLM as Auto

    from rlhf.models.policy import build_causal_lm

    tokenizer = AutoTokenizer.from_pretrained(str(llama_style_dir))
    tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    base = {"source": "pretrained", "name_or_path": str(llama_style_dir)}
    plain = build_causal_lm(base, tokenizer)
    assert plain.dtype == torch.float32 and not plain.is_gradient_checkpointing
    half = build_causal_lm({**base, "dtype": "bfloat16", "attn_implementation": "eager"}, tokenizer)
    assert half.dtype == torch.bfloat16 and half.config._attn_implementation == "eager"
    assert build_causal_lm({**base, "dtype": "auto"}, tokenizer).dtype == torch.float32  # as saved
    checkpointed = build_causal_lm({**base, "gradient_checkpointing": True}, tokenizer)
    assert checkpointed.is_gradient_checkpointing
    ids = torch.randint(0, len(tokenizer) - 1, (2, 12))
    losses = []
    for model in (plain, checkpointed):
        model.train()
        torch.manual_seed(0)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        losses.append((loss.item(), model.get_input_embeddings().weight.grad.norm().item()))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)  # the same loss and gradients, recomputed
    built = build_causal_lm({"source": "config", "arch": "gpt2", "dtype": "bfloat16"}, tokenizer)
    assert built.dtype == torch.bfloat16

    seen = {}
    real = Auto.from_pretrained.__func__

    def spy(cls, name, **kwargs):
        seen.update(kwargs)
        return real(cls, name, **{k: v for k, v in kwargs.items() if k != "revision"})

    monkeypatch.setattr(Auto, "from_pretrained", classmethod(spy))
    build_causal_lm({**base, "revision": "v1.0", "trust_remote_code": True}, tokenizer)
    assert seen["revision"] == "v1.0" and seen["trust_remote_code"] is True
