"""``rlhf-label``: collect real human feedback in the terminal, in exactly the format the reward DataModule reads.

    rlhf-label --input candidates.jsonl --output prefs.jsonl                 # pairs: {"prompt", "a", "b"}
    rlhf-label --mode ratings --input responses.jsonl --output ratings.jsonl # ratings: {"prompt", "response"}

Pairs: the two responses are shown as [1] and [2] in an order drawn per item (so position bias averages out); press
1 or 2 for the better one, s to skip, q to quit. Ratings: type 1-5, s or q. Every answer is appended to the output
file, flushed and fsynced at once, so Ctrl-C, a crash or a closed terminal loses nothing; skips go to
``<output>.skipped``. Run the same command again to continue where you stopped. Output records:
``{"prompt", "chosen", "rejected", "id", "labeler", "time"}`` or ``{"prompt", "response", "rating", ...}``.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import TextIO

from rlhf.data.readers import read_records
from rlhf.errors import (
    DataError,
    OutputError,
)


def item_id(record: dict, row: int) -> str:
    if record.get("id") is not None:
        return str(record["id"])
    content = json.dumps([record.get(k) for k in ("prompt", "a", "b", "response")], ensure_ascii=False)
    return f"row{row}-" + hashlib.sha1(content.encode()).hexdigest()[:10]


def _answered(path: Path) -> set[str]:
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


def _repair_tail(path: Path) -> bool:
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


def _open_for_answers(path: Path):
    """Open (create) an answers file for appending before the first question, so an unwritable path is reported
    before anyone spends time labelling."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "a", encoding="utf-8")
    except OSError as err:
        raise OutputError(f"cannot write {path} ({err.strerror or err}); choose another --output") from None


def _append(handle, record: dict) -> None:
    """One answer, flushed and fsynced before the next question is shown."""
    try:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    except OSError as err:
        raise OutputError(f"could not save the last answer to {handle.name} ({err.strerror or err}); it is not saved. "
                          f"Every earlier answer is. Fix the problem (disk space?) and run the same command to "
                          f"continue") from None


class Labeller:
    def __init__(self, mode: str, input_path: Path, output_path: Path, labeler: str, seed: int = 0,
                 stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout):
        self.mode, self.output, self.labeler, self.seed = mode, output_path, labeler, seed
        self.skipped_path = output_path.with_name(output_path.name + ".skipped")
        self.stdin, self.stdout = stdin, stdout
        needed = ("prompt", "a", "b") if mode == "pairs" else ("prompt", "response")
        self.items = []
        for row, record in read_records(input_path):
            missing = [k for k in needed if not isinstance(record.get(k), str)]
            if missing:
                raise DataError(f"{input_path}, row {row}: missing text field(s) {missing}; a {mode} input needs "
                                f"{', '.join(needed)}")
            self.items.append((item_id(record, row), record))

    def say(self, text: str = "") -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def ask(self, prompt: str) -> str | None:
        self.stdout.write(prompt)
        self.stdout.flush()
        line = self.stdin.readline()
        return None if line == "" else line.strip().lower()  # "" = end of input: treat as quit

    def run(self) -> dict[str, int]:
        for path in (self.output, self.skipped_path):
            if _repair_tail(path):
                self.say(f"(removed an incomplete last line from {path}: a crash during a write; that item is "
                         f"asked again)")
        handles = {"output": _open_for_answers(self.output), "skipped": _open_for_answers(self.skipped_path)}
        try:
            return self._session(handles)
        finally:
            for handle in handles.values():
                handle.close()

    def _session(self, handles: dict) -> dict[str, int]:
        done = _answered(self.output) | _answered(self.skipped_path)
        todo = [(i, r) for i, r in self.items if i not in done]
        counts = {"answered": 0, "skipped": 0, "remaining": len(todo), "total": len(self.items)}
        self.say(f"{len(self.items) - len(todo)} of {len(self.items)} already done; {len(todo)} to go. "
                 f"Answers are saved as you go; q quits.")
        for n, (identifier, record) in enumerate(todo, start=1):
            self.say(f"\n--- {n}/{len(todo)} ---\nPROMPT: {record['prompt']}")
            if self.mode == "pairs":
                swap = random.Random(f"{self.seed}/{identifier}").random() < 0.5
                first, second = (record["b"], record["a"]) if swap else (record["a"], record["b"])
                self.say(f"[1] {first}\n[2] {second}")
                answer = self._read({"1", "2", "s", "q"}, "Better response (1/2), s skip, q quit: ")
            else:
                self.say(f"RESPONSE: {record['response']}")
                answer = self._read({"1", "2", "3", "4", "5", "s", "q"}, "Rating 1-5, s skip, q quit: ")
            if answer in (None, "q"):
                break
            base = {"id": identifier, "labeler": self.labeler, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
            if answer == "s":
                _append(handles["skipped"], base)
                counts["skipped"] += 1
            elif self.mode == "pairs":
                chosen, rejected = (first, second) if answer == "1" else (second, first)
                _append(handles["output"], {"prompt": record["prompt"], "chosen": chosen, "rejected": rejected, **base})
                counts["answered"] += 1
            else:
                _append(handles["output"], {"prompt": record["prompt"], "response": record["response"],
                                      "rating": float(answer), **base})
                counts["answered"] += 1
            counts["remaining"] -= 1
        self.say(f"\nSaved {counts['answered']} answers ({counts['skipped']} skipped) to {self.output}; "
                 f"{counts['remaining']} left.")
        return counts

    def _read(self, allowed: set[str], prompt: str) -> str | None:
        while True:
            answer = self.ask(prompt)
            if answer is None or answer in allowed:
                return answer
            self.say(f"  '{answer}' is not one of {', '.join(sorted(allowed))}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, type=Path, help="jsonl/csv/parquet of items to label")
    parser.add_argument("--output", required=True, type=Path, help="jsonl the answers are appended to")
    parser.add_argument("--mode", choices=["pairs", "ratings"], default="pairs")
    parser.add_argument("--labeler", default=None, help="your name in the output (default: the login name)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the per-item order of the two responses")
    args = parser.parse_args(argv)
    try:
        labeler = args.labeler or getpass.getuser()
    except Exception:
        labeler = "unknown"
    try:
        Labeller(args.mode, args.input, args.output, labeler, args.seed).run()
    except (DataError, OutputError) as err:
        print(f"Error: {err}", file=sys.stderr)
        raise SystemExit(1) from err
    except KeyboardInterrupt:
        print(f"\nInterrupted; every answer given so far is in {args.output}. Run the same command to continue.")
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
