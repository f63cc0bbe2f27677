"""Shared fixtures: offline environment, config composition from the real rlhf/conf/ tree, small fast overrides."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ["WANDB_MODE"] = "offline"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import open_dict  # noqa: E402

from rlhf.train import CONFIG_DIR  # noqa: E402  (registers schemas and resolvers)

torch.set_num_threads(min(2, torch.get_num_threads()))
REPO = Path(__file__).resolve().parents[1]

# A configuration small enough for tests: tiny BERT, 400 BBC articles, short blocks, no W&B.
FAST = [
    "model.hidden_size=64", "model.num_layers=2", "model.num_heads=2", "model.intermediate_size=128",
    "model.tokenizer.vocab_size=1024", "data.source.max_documents=400", "data.block_size=32",
    "data.loader.batch_size=16", "data.split.val_fraction=0.1", "data.split.test_fraction=0.1",
    "trainer.max_steps=10", "trainer.val_check_interval=5", "trainer.limit_val_batches=4",
    "trainer.limit_test_batches=4", "trainer.log_every_n_steps=1", "trainer.enable_model_summary=false",
    "callbacks.progress_bar=null", "logger=csv", "method.warmup_steps=2",
]


def compose_config(tmp_path: Path, overrides: list[str] = (), name: str = "train"):
    """The real config tree composed as ``rlhf-train`` would, with run/log/cache dirs under ``tmp_path``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose(name, overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.paths.log_dir = str(tmp_path / "logs")
        cfg.paths.cache_dir = str(tmp_path.parent / "rlhf-test-cache")
        cfg.hydra.runtime.output_dir = str(tmp_path / "run")
    HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.fixture
def make_cfg(tmp_path):
    def factory(*overrides: str, fast: bool = True, subdir: str = ""):
        base = tmp_path / subdir if subdir else tmp_path
        base.mkdir(parents=True, exist_ok=True)
        return compose_config(base, [*(FAST if fast else []), *overrides])

    yield factory
    GlobalHydra.instance().clear()


@pytest.fixture(scope="session")
def gpt2_style_dir(tmp_path_factory) -> Path:
    """A tiny GPT-2 with GPT-2's tokenizer conventions (no pad; bos = eos = unk), as ``save_pretrained`` writes it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from rlhf.data.corpora import bbc_news

    eot = "<|endoftext|>"

    directory = tmp_path_factory.mktemp("hub") / "gpt2-style"
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    texts = [doc["text"] for _, doc in zip(range(300), bbc_news())]
    raw.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=600, special_tokens=[eot],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token=eot, eos_token=eot, unk_token=eot)
    assert tokenizer.pad_token is None and tokenizer.bos_token_id == tokenizer.eos_token_id
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=128,
                                       bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id))
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory
