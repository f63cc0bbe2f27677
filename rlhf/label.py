"""``rlhf-label``: collect human feedback in the terminal, in the formats the data layer reads.

    rlhf-label --mode compare --input candidates.jsonl --output prefs.jsonl --annotator ana
    rlhf-label --mode rate --scale 1-3 --input singles.jsonl --output ratings.jsonl
    rlhf-label --mode rank --input sets.jsonl --output rankings.jsonl
    rlhf-label --mode correct --input singles.jsonl --output corrections.jsonl
    rlhf-label --report prefs.jsonl [more label files...]

Inputs are what ``rlhf-sample`` writes (or your own rows): compare ``{"prompt", "a", "b"}``, rate and correct
``{"prompt", "response"}``, rank ``{"prompt", "responses": [...]}``.

- compare: the two responses in an order drawn per item (position bias averages out); ``1``/``2`` picks the better,
  ``t`` a tie. Output ``{"prompt", "chosen", "rejected"}``, or ``{"prompt", "a", "b", "tie": true}`` (the data layer
  counts ties and leaves them out of training).
- rate: ``--scale 1-3`` (1 = unsatisfied, 2 = so-so, 3 = satisfied; the default), ``1-5``, or named labels
  (``--scale bad,ok,good``: keys 1..n). Output ``{"prompt", "response", "rating", "scale"}`` (+ ``"label"``).
- rank: the K responses numbered [1]..[K]; type them best first (e.g. ``3142``). Output ``{"prompt", "responses"``
  (best first), ``"ranking"`` (the input positions, best first)``}``.
- correct: write a critique and/or an improved response (one line each, or ``e`` to write the improved response in
  ``$EDITOR``). Output ``{"prompt", "response", "critique", "correction"}``; both empty is a counted skip.

Everywhere: ``u`` undoes the last answer (it is removed from the file and asked again), ``s`` skips (counted in
``<output>.skipped``), ``q`` quits. One keypress per decision where the terminal allows it (otherwise type the key
and Enter). A progress line shows n of N and the time per item. Every answer carries ``annotator`` and is appended,
flushed and fsynced before the next item is shown, so Ctrl-C, a crash or a closed terminal loses nothing; run the
same command again to continue where you stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import hashlib
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

from rlhf.data.answers import answered_ids, append_answer, drop_last_answer, open_for_answers, repair_tail
from rlhf.data.readers import read_records
from rlhf.errors import DataError, OutputError

NEEDS = {"compare": ("prompt", "a", "b"), "rate": ("prompt", "response"), "rank": ("prompt", "responses"),
         "correct": ("prompt", "response")}
OLD_NAMES = {"pairs": "compare", "ratings": "rate"}  # the modes' names before rank and correct existed
QUIT, UNDO, SKIP = "q", "u", "s"


def item_id(record: dict, row: int) -> str:
    if record.get("id") is not None:
        return str(record["id"])
    content = json.dumps([record.get(k) for k in ("prompt", "a", "b", "response", "responses")], ensure_ascii=False)
    return f"row{row}-" + hashlib.sha1(content.encode()).hexdigest()[:10]


def parse_scale(text: str) -> list[str]:
    """``"1-3"`` -> ["1", "2", "3"]; ``"bad,ok,good"`` -> the names (keys 1..n); 2 to 9 options."""
    if "," in text:
        names = [n.strip() for n in text.split(",")]
        if any(not n for n in names) or len(set(names)) != len(names):
            raise DataError(f"--scale {text!r}: named labels must be distinct and non-empty, e.g. bad,ok,good")
        options = names
    else:
        try:
            low, high = (int(x) for x in text.split("-"))
        except ValueError:
            raise DataError(f"--scale {text!r}: use a range like 1-3 or 1-5, or names like bad,ok,good") from None
        options = [str(v) for v in range(low, high + 1)]
        if low < 0 or high > 9:
            raise DataError(f"--scale {text!r}: a numeric scale uses the keys 0-9")
    if not 2 <= len(options) <= 9:
        raise DataError(f"--scale {text!r}: {len(options)} options; a scale has 2 to 9 (one key each)")
    return options


def check_item(record: dict, mode: str, where: str) -> None:
    """A clear message for a row that does not fit ``mode`` (another mode's file, missing or bad fields)."""
    if record.get("mode") in NEEDS and record["mode"] != mode:
        raise DataError(f"{where}: this is a {record['mode']} candidates file (written by rlhf-sample --mode "
                        f"{record['mode']}); label it with --mode {record['mode']}, or sample again with --mode {mode}")
    missing = [k for k in NEEDS[mode] if k not in record]
    if missing:
        fits = [m for m, needs in NEEDS.items() if all(k in record for k in needs)]
        hint = f"; it looks like a {fits[0]} file: use --mode {fits[0]}" if fits else ""
        raise DataError(f"{where}: missing field(s) {missing}; --mode {mode} needs {', '.join(NEEDS[mode])}{hint}")
    texts = record["responses"] if mode == "rank" else [record[k] for k in NEEDS[mode][1:]]
    if mode == "rank" and (not isinstance(texts, list) or not 2 <= len(texts) <= 9):
        raise DataError(f"{where}: 'responses' must be a list of 2 to 9 responses to rank")
    if not all(isinstance(t, str) for t in [*texts, record["prompt"]] if not isinstance(t, list)):
        raise DataError(f"{where}: the prompt and responses must be text")


# ---- the keyboard ------------------------------------------------------------------------------------------------
class Keyboard:
    """One keypress per answer on a terminal (cbreak mode: Ctrl-C still interrupts), a typed line otherwise."""

    def __init__(self, stdin: TextIO, stdout: TextIO):
        self.stdin, self.stdout = stdin, stdout
        try:
            import termios  # noqa: F401  (POSIX only)

            self.raw = stdin.isatty()
        except ImportError:
            self.raw = False

    def key(self, prompt: str) -> str | None:
        """One key (lower-cased), or None at the end of input."""
        self.stdout.write(prompt)
        self.stdout.flush()
        if not self.raw:
            line = self.stdin.readline()
            return None if line == "" else line.strip().lower()
        import termios
        import tty

        fd = self.stdin.fileno()
        saved = termios.tcgetattr(fd)
        try:
            tty.setcbreak(fd, termios.TCSANOW)  # (not TCSAFLUSH: a key typed before this point is kept)
            char = os.read(fd, 1).decode(errors="replace")
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        if char in ("", "\x04"):  # Ctrl-D
            return None
        self.stdout.write(char + "\n")
        self.stdout.flush()
        return char.lower()

    def line(self, prompt: str) -> str | None:
        """A typed line (Enter ends it), or None at the end of input."""
        self.stdout.write(prompt)
        self.stdout.flush()
        line = self.stdin.readline()
        return None if line == "" else line.rstrip("\n")


class Labeller:
    def __init__(self, mode: str, input_path: Path, output_path: Path, annotator: str, seed: int = 0,
                 stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout, scale: str = "1-3", editor: str | None = None):
        self.mode = OLD_NAMES.get(mode, mode)
        self.output, self.annotator, self.seed, self.scale_text = output_path, annotator, seed, scale
        self.scale = parse_scale(scale) if self.mode == "rate" else []
        self.editor = editor
        self.skipped_path = output_path.with_name(output_path.name + ".skipped")
        self.stdout = stdout
        self.keys = Keyboard(stdin, stdout)
        self.items = []
        for row, record in read_records(input_path):
            check_item(record, self.mode, f"{input_path}, row {row}")
            self.items.append((item_id(record, row), record))

    def say(self, text: str = "") -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def run(self) -> dict[str, int]:
        for path in (self.output, self.skipped_path):
            if repair_tail(path):
                self.say(f"(removed an incomplete last line from {path}: a crash during a write; that item is "
                         f"asked again)")
        handles = {"output": open_for_answers(self.output), "skipped": open_for_answers(self.skipped_path)}
        try:
            return self._session(handles)
        finally:
            for handle in handles.values():
                handle.close()

    def _session(self, handles: dict) -> dict[str, int]:
        done = answered_ids(self.output) | answered_ids(self.skipped_path)
        todo = [(i, r) for i, r in self.items if i not in done]
        counts = {"answered": 0, "skipped": 0, "ties": 0, "undone": 0, "remaining": len(todo), "total": len(self.items)}
        self.say(f"{len(self.items) - len(todo)} of {len(self.items)} already done; {len(todo)} to go. "
                 f"Answers are saved as you go; u undoes, s skips, q quits.")
        history: list[tuple[str, int, str]] = []  # (file, position in todo, kind) of this session's answers
        position, started = 0, time.monotonic()
        while position < len(todo):
            identifier, record = todo[position]
            timing = ""
            if history:
                timing = f" · {(time.monotonic() - started) / len(history):.1f} s per item"
            self.say(f"\n--- {len(self.items) - len(todo) + position + 1} of {len(self.items)}{timing} ---\n"
                     f"PROMPT: {record['prompt']}")
            answer = getattr(self, f"_ask_{self.mode}")(identifier, record)
            if answer == QUIT:
                break
            if answer == UNDO:
                if not history:
                    self.say("  nothing to undo in this session")
                    continue
                kind, position, what = history.pop()
                path = self.output if kind == "output" else self.skipped_path
                handles[kind].close()
                drop_last_answer(path, todo[position][0])
                handles[kind] = open_for_answers(path)
                counts[what] -= 1
                counts["remaining"] += 1
                counts["undone"] += 1
                self.say("  undone: asking that item again")
                continue
            base = {"id": identifier, "annotator": self.annotator, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
            if answer == SKIP:
                append_answer(handles["skipped"], base)
                history.append(("skipped", position, "skipped"))
                counts["skipped"] += 1
            else:
                kind = "ties" if answer.get("tie") else "answered"
                append_answer(handles["output"], {"prompt": record["prompt"], **answer, **base})
                history.append(("output", position, kind))
                counts[kind] += 1
            counts["remaining"] -= 1
            position += 1
        self.say(f"\nSaved {counts['answered']} answers ({counts['ties']} ties, {counts['skipped']} skipped) to "
                 f"{self.output}; {counts['remaining']} left.")
        return counts

    def _choose(self, allowed: list[str], prompt: str) -> str:
        """A key from ``allowed`` (+ u, s, q); None (end of input) quits."""
        while True:
            answer = self.keys.key(prompt)
            if answer is None:
                return QUIT
            if answer in allowed or answer in (UNDO, SKIP, QUIT):
                return answer
            self.say(f"  {answer!r} is not one of {', '.join([*allowed, UNDO, SKIP, QUIT])}")

    # ---- one item per mode: the fields of the answer, or u / s / q ---------------------------------------------
    def _ask_compare(self, identifier: str, record: dict) -> dict | str:
        swap = random.Random(f"{self.seed}/{identifier}").random() < 0.5
        first, second = (record["b"], record["a"]) if swap else (record["a"], record["b"])
        self.say(f"[1] {first}\n[2] {second}")
        answer = self._choose(["1", "2", "t"], "Better: 1 or 2, t tie, u undo, s skip, q quit: ")
        if answer == "t":
            return {"a": record["a"], "b": record["b"], "tie": True}
        if answer in ("1", "2"):
            chosen, rejected = (first, second) if answer == "1" else (second, first)
            return {"chosen": chosen, "rejected": rejected}
        return answer

    def _ask_rate(self, identifier: str, record: dict) -> dict | str:
        self.say(f"RESPONSE: {record['response']}")
        named = not self.scale[0].isdigit()
        keys = [str(i + 1) for i in range(len(self.scale))] if named else self.scale
        legend = ", ".join(f"{k} {name}" for k, name in zip(keys, self.scale)) if named else \
            f"{self.scale[0]}-{self.scale[-1]}"
        answer = self._choose(keys, f"Rating ({legend}), u undo, s skip, q quit: ")
        if answer not in keys:
            return answer
        out = {"response": record["response"], "rating": float(answer), "scale": self.scale_text}
        if named:
            out["label"] = self.scale[keys.index(answer)]
        return out

    def _ask_rank(self, identifier: str, record: dict) -> dict | str:
        responses = record["responses"]
        k = len(responses)
        for i, text in enumerate(responses, start=1):
            self.say(f"[{i}] {text}")
        digits = [str(i) for i in range(1, k + 1)]
        prompt = f"Best first: type all {k} numbers (e.g. {''.join(reversed(digits))}), u undo, s skip, q quit: "
        while True:
            if self.keys.raw:  # one key per number: the ranking ends with the k-th
                first = self._choose(digits, prompt)
                if first in (UNDO, SKIP, QUIT):
                    return first
                order = [first]
                while len(order) < k:
                    more = self.keys.key(f"  {''.join(order)}")
                    if more is None:
                        return QUIT
                    order.append(more)
                typed = "".join(order)
            else:
                line = self.keys.key(prompt)
                if line is None:
                    return QUIT
                if line in (UNDO, SKIP, QUIT):
                    return line
                typed = line.replace(" ", "").replace(",", "")
            problem = _ranking_problem(typed, k)
            if problem is None:
                ranking = [int(c) - 1 for c in typed]
                return {"responses": [responses[i] for i in ranking], "ranking": ranking}
            self.say(f"  {typed!r}: {problem}; type each of {''.join(digits)} once, best first")

    def _ask_correct(self, identifier: str, record: dict) -> dict | str:
        self.say(f"RESPONSE: {record['response']}")
        critique = self.keys.line("What is wrong (one line; Enter for nothing; u undo, s skip, q quit): ")
        if critique is None:
            return QUIT
        if critique.strip().lower() in (UNDO, SKIP, QUIT):
            return critique.strip().lower()
        improved = self.keys.line("How it should read (one line; e opens $EDITOR; Enter for nothing): ")
        if improved is None:
            return QUIT
        if improved.strip().lower() == "e":
            improved = self._edit(record["response"])
        critique, improved = critique.strip(), improved.strip()
        if not critique and not improved:
            self.say("  an empty correction (no critique, no improved response): counted as a skip")
            return SKIP
        return {"response": record["response"], "critique": critique or None, "correction": improved or None}

    def _edit(self, text: str) -> str:
        """The improved response written in ``$EDITOR`` (``--editor``, else $VISUAL/$EDITOR, else vi), starting from
        the original."""
        editor = self.editor or os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
        fd, path = tempfile.mkstemp(suffix=".txt", prefix="rlhf-correction-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
            subprocess.run([*shlex.split(editor), path], check=False)
            return Path(path).read_text(encoding="utf-8").strip()
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)


def _ranking_problem(typed: str, k: int) -> str | None:
    if not typed.isdigit():
        return "only numbers"
    numbers = [int(c) for c in typed]
    repeated = sorted({n for n in numbers if numbers.count(n) > 1})
    missing = sorted(set(range(1, k + 1)) - set(numbers))
    outside = sorted(n for n in set(numbers) if not 1 <= n <= k)
    if outside:
        return f"{', '.join(map(str, outside))} is not a response number"
    if repeated:
        return f"{', '.join(map(str, repeated))} repeated"
    if missing:
        return f"{', '.join(map(str, missing))} missing"
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, help="jsonl/csv/parquet of items to label (rlhf-sample writes them)")
    parser.add_argument("--output", type=Path, help="jsonl the answers are appended to")
    parser.add_argument("--mode", choices=[*NEEDS, *OLD_NAMES], default="compare",
                        help="compare (default), rate, rank or correct (pairs and ratings: the old names of compare "
                             "and rate)")
    parser.add_argument("--scale", default="1-3", help="rate: 1-3 (default), 1-5, or names like bad,ok,good")
    parser.add_argument("--annotator", "--labeler", dest="annotator", default=None,
                        help="your name on every row (default: the login name)")
    parser.add_argument("--editor", default=None, help="correct: the editor for improved responses (default "
                                                       "$VISUAL, $EDITOR, vi)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the per-item order of the two responses")
    parser.add_argument("--report", nargs="+", type=Path, metavar="LABELS",
                        help="print counts, ties and annotator agreement of label files instead of labelling")
    args = parser.parse_args(argv)
    try:
        if args.report:
            from rlhf.data.label_report import report

            print(report(args.report))
            return
        if args.input is None or args.output is None:
            parser.error("--input and --output are needed to label (or --report FILES)")
        try:
            annotator = args.annotator or getpass.getuser()
        except Exception:
            annotator = "unknown"
        Labeller(args.mode, args.input, args.output, annotator, args.seed, scale=args.scale, editor=args.editor).run()
    except (DataError, OutputError) as err:
        print(f"Error: {err}", file=sys.stderr)
        raise SystemExit(1) from err
    except KeyboardInterrupt:
        print(f"\nInterrupted; every answer given so far is in {args.output}. Run the same command to continue.")
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
