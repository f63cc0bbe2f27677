"""Append-only answers files (``rlhf-label``'s and ``rlhf-loop``'s labels): each answer is one JSON line, written,
flushed and fsynced before the next question, keyed by the item's ``id`` so a restart asks only what is missing; a
torn last line (a crash mid-write) is cut; undo rewrites the file atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from rlhf.errors import OutputError


def answered_ids(path: Path) -> set[str]:
    """The ids of the items answered in ``path`` (none if it does not exist yet)."""
    done: set[str] = set()
    if not path.exists():
        return done
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                done.add(str(json.loads(line)["id"]))
            except (json.JSONDecodeError, KeyError):
                continue  # a torn last line from a crash is ignored; its item is asked again
    return done


def repair_tail(path: Path) -> bool:
    """Cut an incomplete last line (a crash in the middle of a write) so the next answer starts on a fresh line."""
    if not path.exists() or path.stat().st_size == 0:
        return False
    with open(path, "rb+") as handle:
        data = handle.read()
        if data.endswith(b"\n"):
            return False
        handle.truncate(data.rfind(b"\n") + 1)
        handle.flush()
        os.fsync(handle.fileno())
    return True


def open_for_answers(path: Path):
    """Open (create) an answers file for appending before the first question, so an unwritable path is reported
    before anyone spends time labelling."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "a", encoding="utf-8")
    except OSError as err:
        raise OutputError(f"cannot write {path} ({err.strerror or err}); choose another --output") from None


def append_answer(handle, record: dict) -> None:
    """One answer, flushed and fsynced before the next question is shown."""
    try:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    except OSError as err:
        raise OutputError(f"could not save the last answer to {handle.name} ({err.strerror or err}); it is not saved. "
                          f"Every earlier answer is. Fix the problem (disk space?) and run the same command to "
                          f"continue") from None


def drop_last_answer(path: Path, identifier: str) -> bool:
    """Remove the last line of ``path`` if it is the answer to ``identifier`` (undo): the file is rewritten to a
    temporary name and renamed, so a crash leaves the old or the new file, never half of one."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    if not lines or str(json.loads(lines[-1]).get("id")) != identifier:
        return False
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.writelines(lines[:-1])
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return True
