"""Tokenizers: trained on the corpus with the ``tokenizers`` library (cached by content), or loaded pretrained.

A trained tokenizer is wrapped in ``PreTrainedTokenizerFast`` with its special tokens, post-processor and decoder,
so ``save_pretrained`` exports it next to the model and plain ``transformers.AutoTokenizer`` loads it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_info
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from rlhf.config.common import TokenizerConf
from rlhf.config.fields import as_config
from rlhf.errors import DataError
from rlhf.utils.fields import missing_local_dir

BERT_SPECIALS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                 "mask_token": "[MASK]"}
GPT_SPECIALS = {"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
                "pad_token": "<|pad|>"}
_TOKENIZER_FORMAT = 3  # bump when the training recipe changes, so stale caches are not reused


def train_tokenizer(texts: Sequence[str], algorithm: str, vocab_size: int, min_frequency: int = 2,
                    lowercase: bool = True) -> PreTrainedTokenizerFast:
    """Fit WordPiece (BERT-style, with [CLS]/[SEP] templates) or byte-level BPE (GPT-2 style) on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    if algorithm == "wordpiece":
        specials = list(dict.fromkeys(BERT_SPECIALS.values()))
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase, clean_text=True, strip_accents=lowercase)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        pieces = _wordpiece_vocabulary(tok, texts, vocab_size - len(specials), min_frequency)
        vocab = {piece: i for i, piece in enumerate([*specials, *sorted(set(pieces) - set(specials))])}
        tok.model = models.WordPiece(vocab=vocab, unk_token="[UNK]", continuing_subword_prefix="##")
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
        tok.decoder = decoders.WordPiece(prefix="##")
        wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, **BERT_SPECIALS)
    elif algorithm == "bpe":
        specials = list(dict.fromkeys(GPT_SPECIALS.values()))
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(texts, trainer=trainer)
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        tok.decoder = decoders.ByteLevel()
        wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, **GPT_SPECIALS)
    else:
        raise DataError(f"model.tokenizer.algorithm={algorithm!r} is not known; use wordpiece or bpe")
    wrapped.model_max_length = 1_000_000
    return wrapped


_CONTINUATION = 0xF0000  # a private-use plane: continuation characters get their own (sorted) alphabet


def _wordpiece_vocabulary(tok, texts: Sequence[str], size: int, min_frequency: int) -> list[str]:
    """The pieces ``WordPieceTrainer`` would learn, but the same in every process.

    ``WordPieceTrainer`` numbers its ``##`` continuation characters in hash-map order, and merge ties are broken by
    those numbers, so two runs on the same text can learn different pieces (huggingface/tokenizers#1794). Here every
    non-initial character of a word is shifted into a private-use plane and a plain BPE trainer (whose alphabet is
    sorted, hence deterministic) learns the merges; shifted pieces become ``##`` pieces again afterwards.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    shift = {}

    def mark(word: str) -> str:
        return word[0] + "".join(shift.get(c) or shift.setdefault(c, chr(_CONTINUATION + ord(c)) if ord(c) < 0xFFFE
                                                                    else c) for c in word[1:])

    def words():
        for text in texts:
            normalized = tok.normalizer.normalize_str(text)
            yield " ".join(mark(w) for w, _ in tok.pre_tokenizer.pre_tokenize_str(normalized))

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    bpe.train_from_iterator(words(), trainer=trainers.BpeTrainer(vocab_size=size, min_frequency=min_frequency,
                                                                 show_progress=False))
    pieces = []
    for piece in bpe.get_vocab():
        plain = "".join(chr(ord(c) - _CONTINUATION) if ord(c) >= _CONTINUATION else c for c in piece)
        pieces.append("##" + plain if ord(piece[0]) >= _CONTINUATION else plain)
    return pieces


def tokenizer_cache_key(texts: Sequence[str], spec: Any) -> str:
    spec = as_config(TokenizerConf, spec)
    digest = hashlib.sha256()
    settings = {k: getattr(spec, k) for k in ("algorithm", "vocab_size", "min_frequency", "lowercase")}
    digest.update(json.dumps({"format": _TOKENIZER_FORMAT, **settings}, sort_keys=True).encode())
    for text in texts:
        digest.update(hashlib.sha1(text.encode()).digest())
    return f"{settings['algorithm']}-{settings['vocab_size']}-{digest.hexdigest()[:16]}"


def build_tokenizer(spec: Any, texts: Sequence[str] | None, cache_dir: str | os.PathLike | None
                    ) -> PreTrainedTokenizerBase:
    """The tokenizer a model config asks for (``rlhf.config.common.TokenizerConf``, or a partial mapping).

    ``kind=train``: fit on ``texts`` (capped at ``max_training_documents``), cached under ``cache_dir`` by a hash of
    the texts and settings; a cache entry is written to a temporary directory and renamed into place, so a crash never
    leaves a half-written tokenizer. ``kind=pretrained``: ``AutoTokenizer.from_pretrained(name_or_path)``.
    """
    spec = as_config(TokenizerConf, spec)
    kind = spec.kind
    if kind == "pretrained":
        name = spec.name_or_path
        missing = missing_local_dir(name, "model.tokenizer.name_or_path")
        if missing:
            raise DataError(missing)
        try:
            tokenizer = AutoTokenizer.from_pretrained(name, revision=spec.revision,
                                                      trust_remote_code=spec.trust_remote_code)
        except Exception as err:
            raise DataError(f"model.tokenizer.name_or_path={name!r}: no tokenizer could be loaded ({err}). Offline? "
                            f"Pass a local directory written by save_pretrained.") from err
        return ensure_pad_token(tokenizer, name)
    if not texts:
        raise DataError("cannot train a tokenizer on an empty corpus")
    limit = spec.max_training_documents
    texts = list(texts[:limit] if limit else texts)
    if cache_dir is None:
        return _train_from_spec(texts, spec)
    target = Path(cache_dir).expanduser() / tokenizer_cache_key(texts, spec)
    if (target / "tokenizer.json").exists():
        return PreTrainedTokenizerFast.from_pretrained(str(target))
    save_tokenizer(_train_from_spec(texts, spec), target)
    return PreTrainedTokenizerFast.from_pretrained(str(target))


PAD_TOKEN = "<|pad|>"
# Why the pad token was added, kept in tokenizer_config.json (not named *_token: transformers reads those as tokens)
ADDED_PAD_KEY = "rlhf_pad_token_repair"


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase, name: str) -> PreTrainedTokenizerBase:
    """A distinct pad token for a tokenizer that has none or pads with EOS, as GPT-2, Pythia, Llama and Mistral ship:
    padding with EOS would hide real EOS tokens and shift where rewards and values are read. The token is added as
    ``<|pad|>`` (one log line); the model's embeddings grow by its row when the model is built
    (``rlhf.models.backbones.fit_embeddings``), and both are saved with the run's tokenizer and its export. The repair
    is recorded under ``rlhf_pad_token_repair`` in ``tokenizer_config.json`` and as ``model/added_pad_token`` in the
    run's ``metrics.json``."""
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return tokenizer
    before = "has no pad token" if tokenizer.pad_token_id is None else f"pads with EOS ({tokenizer.pad_token!r})"
    tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    tokenizer.init_kwargs[ADDED_PAD_KEY] = before  # saved in tokenizer_config.json: the run's and the export's record
    rank_zero_info(f"[model] {name}: the tokenizer {before}; added a distinct pad token {PAD_TOKEN!r} (id "
                   f"{tokenizer.pad_token_id}); the model's embeddings get one more row for it")
    return tokenizer


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, target: str | os.PathLike) -> Path:
    """``save_pretrained`` into a temporary directory renamed into place: a crash never leaves a half-written
    tokenizer, and when several processes (DDP ranks) save the same one, the first complete copy wins."""
    target = Path(target)
    if (target / "tokenizer_config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        tokenizer.save_pretrained(str(staging))
        try:
            os.replace(staging, target)
        except OSError:  # another process renamed its complete copy first: use that one
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _train_from_spec(texts: list[str], spec: Any) -> PreTrainedTokenizerFast:
    return train_tokenizer(texts, spec.algorithm, int(spec.vocab_size),
                           int(spec.min_frequency), bool(spec.lowercase))
