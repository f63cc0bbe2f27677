"""Documents for language modelling: read a configured source, validate each text, split deterministically."""

from __future__ import annotations

import hashlib
from typing import Any

from rlhf.config.common import SourceConf
from rlhf.config.fields import as_config
from rlhf.data.corpora import bbc_news, chatterbot_dialogues
from rlhf.data.readers import DropReport, read_hf_dataset, read_records, require_text
from rlhf.errors import DataError

SPLITS = ("train", "val", "test")


def load_documents(source: Any, report: DropReport | None = None) -> list[dict]:
    """Read ``{"id", "text"}`` documents from a source config (``rlhf.config.common.SourceConf``: a schema object or a partial mapping).

    Empty or whitespace-only texts are dropped and counted (``on_empty=drop``) or raise (``on_empty=error``).
    """
    source = as_config(SourceConf, source)
    kind = source.kind
    text_column = source.text_column
    id_column = source.id_column
    limit = source.max_documents
    on_empty = source.on_empty
    if kind == "bbc_news":
        origin, rows = "bbc_news", enumerate(bbc_news(), start=1)
        text_column, id_column = "text", "id"
    elif kind == "chatterbot":
        origin, rows = "chatterbot", enumerate(chatterbot_dialogues(), start=1)
        text_column, id_column = "text", "id"
    elif kind == "file":
        origin = str(source.path)
        rows = read_records(origin, source.file_type, text_column)
    elif kind == "hf":
        origin = f"hf:{source.path}"
        rows = read_hf_dataset(source.path, source.hf_split, source.hf_config)
    else:
        raise DataError(f"data.source.kind={kind!r} is not known; use bbc_news, chatterbot, file or hf")
    report = report if report is not None else DropReport(origin)
    documents = []
    for row, record in rows:
        where = f"{origin}, row {row}"
        value = record.get(text_column) if text_column in record else require_text(record, text_column, where)
        if value is None or (isinstance(value, str) and not value.strip()):
            if on_empty == "error":
                raise DataError(f"{where}: column '{text_column}' is empty; remove the row or set "
                                f"data.source.on_empty=drop")
            report.drop("empty", where)
            continue
        text = require_text(record, text_column, where)
        doc_id = str(record[id_column]) if id_column else text
        if id_column and id_column not in record:
            raise DataError(f"{where}: missing id column '{id_column}'; set data.source.id_column=null to use the text")
        document = {"id": doc_id, "text": text}
        if source.label_column:
            if record.get(source.label_column) in (None, ""):
                raise DataError(f"{where}: missing label column '{source.label_column}' (data.source.label_column)")
            document["label"] = str(record[source.label_column])
        documents.append(document)
        if limit and len(documents) >= limit:
            break
    report.kept = len(documents)
    if not documents:
        raise DataError(f"{origin}: no usable documents ({report.summary()}); check the path and text_column")
    return documents


def split_of(doc_id: str, salt: str, val_fraction: float, test_fraction: float) -> str:
    """Deterministic split by a hash of the id: stable across machines, orders and corpus growth.

    Documents with equal ids (or equal texts, when the id is the text) always land in the same split, so duplicates
    never leak from train into val/test.
    """
    digest = hashlib.sha256(f"{salt}\x00{doc_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def split_documents(documents: list[dict], salt: str, val_fraction: float, test_fraction: float
                    ) -> dict[str, list[dict]]:
    splits: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for doc in documents:
        splits[split_of(doc["id"], salt, val_fraction, test_fraction)].append(doc)
    for name, fraction in (("val", val_fraction), ("test", test_fraction)):
        if fraction > 0 and not splits[name]:
            raise DataError(f"the {name} split is empty ({len(documents)} documents, {name}_fraction={fraction}); "
                            f"use more documents or a larger data.split.{name}_fraction")
    if not splits["train"]:
        raise DataError(f"the train split is empty ({len(documents)} documents); lower the val/test fractions")
    return splits
