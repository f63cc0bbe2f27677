"""Readers, validation, splits, tokenizer cache and packing: each malformed case gives the promised error or count."""

import json

import pytest

from rlhf.data.corpora import bbc_news, chatterbot_dialogues
from rlhf.data.documents import load_documents, split_documents, split_of
from rlhf.data.packing import pack_documents, truncate_documents
from rlhf.data.readers import DropReport, read_hf_dataset, read_records
from rlhf.data.tokenizer import build_tokenizer
from rlhf.errors import DataError


def _source(path, **kw):
    return {"kind": "file", "path": str(path), "file_type": "auto", "text_column": "text", "on_empty": "drop", **kw}


def test_bbc_news_and_chatterbot_are_read_deterministically():
    docs = bbc_news()
    assert len(docs) == 2225
    assert docs[0]["id"] == "business/001" and docs[0]["title"] == "Ad sales boost Time Warner profit"
    assert {d["topic"] for d in docs} == {"business", "entertainment", "politics", "sports", "tech"}
    dialogues = chatterbot_dialogues()
    assert len(dialogues) > 2000
    assert all(d["prompt"] and d["response"] for d in dialogues)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "txt"])
def test_each_file_format_reads_the_same_texts(tmp_path, fmt):
    texts = ["first document", "second, with a comma", "third \"quoted\""]
    path = tmp_path / f"corpus.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps({"body": t}) + "\n" for t in texts))
    elif fmt == "csv":
        import csv

        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["body"])
            writer.writerows([[t] for t in texts])
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"body": texts}), path)
    else:
        path.write_text("\n".join(texts) + "\n")
    docs = load_documents(_source(path, text_column="body"))
    assert [d["text"] for d in docs] == texts


def test_hf_dataset_saved_to_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"content": ["a b c", "d e f"]}).save_to_disk(str(tmp_path / "ds"))
    docs = load_documents({"kind": "hf", "path": str(tmp_path / "ds"), "text_column": "content",
                           "hf_split": "train"})
    assert [d["text"] for d in docs] == ["a b c", "d e f"]
    with pytest.raises(DataError, match="could not be loaded"):
        list(read_hf_dataset(str(tmp_path / "no_such_dataset")))


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(DataError, match=r"nothere\.jsonl: file not found"):
        load_documents(_source(tmp_path / "nothere.jsonl"))


def test_broken_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n{"text": "broken\n{"text": "ok"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl, line 2: broken JSON"):
        load_documents(_source(path))


def test_missing_column_names_row_and_columns_present(tmp_path):
    path = tmp_path / "cols.jsonl"
    path.write_text('{"text": "ok"}\n{"body": "wrong column"}\n')
    with pytest.raises(DataError, match=r"cols\.jsonl, row 2: missing column 'text' \(columns present: body\)"):
        load_documents(_source(path))


def test_wrong_type_names_row(tmp_path):
    path = tmp_path / "types.jsonl"
    path.write_text('{"text": 12}\n')
    with pytest.raises(DataError, match=r"row 1: column 'text' must be text, got int"):
        load_documents(_source(path))


def test_empty_texts_are_dropped_and_counted_or_raise(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text('{"text": "kept"}\n{"text": "   "}\n{"text": null}\n{"text": "also kept"}\n')
    report = DropReport(str(path))
    docs = load_documents(_source(path), report)
    assert [d["text"] for d in docs] == ["kept", "also kept"]
    assert report.dropped["empty"] == 2 and report.kept == 2
    assert report.metrics()["data/dropped_empty"] == 2.0
    assert "row 2" in report.summary()
    with pytest.raises(DataError, match=r"row 2: column 'text' is empty.*on_empty=drop"):
        load_documents(_source(path, on_empty="error"))


def test_all_rows_dropped_is_an_error(tmp_path):
    path = tmp_path / "blank.jsonl"
    path.write_text('{"text": ""}\n')
    with pytest.raises(DataError, match="no usable documents"):
        load_documents(_source(path))


def test_unknown_suffix_asks_for_format(tmp_path):
    path = tmp_path / "corpus.dat"
    path.write_text("x")
    with pytest.raises(DataError, match="set data.source.file_type"):
        list(read_records(path))


def test_splits_are_deterministic_disjoint_and_keep_duplicates_together():
    docs = [{"id": f"doc{i}", "text": f"text {i}"} for i in range(2000)]
    docs += [{"id": "doc5", "text": "text 5"}]  # a duplicate id
    a = split_documents(docs, "s", 0.1, 0.1)
    b = split_documents(list(reversed(docs)), "s", 0.1, 0.1)
    for name in ("train", "val", "test"):
        assert sorted(d["id"] for d in a[name]) == sorted(d["id"] for d in b[name])
    ids = {name: {d["id"] for d in a[name]} for name in a}
    assert not (ids["train"] & ids["val"]) and not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"])
    assert 150 < len(a["val"]) < 250 and 150 < len(a["test"]) < 250
    assert split_of("doc1", "s", 0.1, 0.1) == split_of("doc1", "s", 0.1, 0.1)
    with pytest.raises(DataError, match="val split is empty"):
        split_documents(docs[:2], "s", 0.01, 0.0)


def test_packing_counts_what_does_not_fit():
    blocks, stats = pack_documents([[1, 2, 3], [4, 5], [], [6, 7, 8, 9]], block_len=4, separator=0)
    # stream: 1 2 3 0 4 5 0 6 7 8 9 -> 11 tokens, 2 blocks, 3 dropped
    assert [b[0] for b in blocks] == [[1, 2, 3, 0], [4, 5, 0, 6]]
    assert stats == {"tokens": 11, "blocks": 2, "dropped_tokens": 3}
    blocks, stats = truncate_documents([[1, 2, 3, 4, 5], [], [6]], block_len=3)
    assert [b[0] for b in blocks] == [[1, 2, 3], [6]]
    assert stats["truncated_documents"] == 1 and stats["dropped_tokens"] == 2 and stats["empty_documents"] == 1


def test_tokenizer_is_trained_cached_and_reloaded(tmp_path):
    texts = [d["text"] for d in bbc_news()[:200]]
    spec = {"kind": "train", "algorithm": "wordpiece", "vocab_size": 800, "min_frequency": 2, "lowercase": True}
    first = build_tokenizer(spec, texts, tmp_path)
    entries = list(tmp_path.iterdir())
    assert len(entries) == 1 and (entries[0] / "tokenizer.json").exists()
    second = build_tokenizer(spec, texts, tmp_path)
    assert first.get_vocab() == second.get_vocab() and len(first) == 800
    encoded = first("Quarterly profits jumped")
    assert encoded.input_ids[0] == first.cls_token_id and encoded.input_ids[-1] == first.sep_token_id
    assert first.mask_token == "[MASK]" and first.pad_token_id is not None
    bpe = build_tokenizer({**spec, "algorithm": "bpe"}, texts, tmp_path)
    assert bpe.decode(bpe("Quarterly profits jumped").input_ids) == "Quarterly profits jumped"
    assert bpe.pad_token_id != bpe.eos_token_id
    assert len(list(tmp_path.iterdir())) == 2  # a different spec is a different cache entry


def test_trained_wordpiece_ids_are_the_same_in_every_process(tmp_path):
    """The tokenizers library numbers WordPiece pieces in hash-map order; ours are renumbered deterministically."""
    import subprocess
    import sys

    script = ("from rlhf.data.corpora import bbc_news; from rlhf.data.tokenizer import train_tokenizer; "
              "import hashlib, json; t = train_tokenizer([d['text'] for d in bbc_news()[:150]], 'wordpiece', 600); "
              "print(hashlib.sha1(json.dumps(sorted(t.get_vocab().items())).encode()).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
               .stdout.strip().splitlines()[-1] for _ in range(2)}
    assert len(digests) == 1
