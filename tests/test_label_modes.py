"""The feedback loop's front end as a person uses it: ``rlhf-sample`` writes candidates from a policy export,
``rlhf-label`` collects comparisons (tie, undo), ratings on a scale, rankings and corrections, one keypress at a
time in a real pseudo-terminal, survives a kill, and ``--report`` counts answers and annotator agreement."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlhf.data.feedback import Policy, validate_records
from rlhf.data.label_report import cohen_kappa, fleiss_kappa, report
from rlhf.data.readers import DropReport, read_records

ITEMS = [{"prompt": f"headline {i}", "a": f"first answer {i}", "b": f"second answer {i}"} for i in range(4)]
LABEL = [sys.executable, "-m", "rlhf.label"]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _label(tmp_path, keys: str, mode: str, items, *extra, output="out.jsonl"):
    source = _write(tmp_path / f"{mode}_items.jsonl", items)
    return subprocess.run([*LABEL, "--input", str(source), "--output", str(tmp_path / output), "--mode", mode,
                           "--annotator", "ana", *extra], input=keys, capture_output=True, text=True, timeout=60)


class Terminal:
    """``rlhf-label`` on a pseudo-terminal: keys are written one at a time, with no Enter."""

    def __init__(self, args: list[str]):
        master, slave = pty.openpty()
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
        os.close(slave)
        self.master, self.seen = master, ""

    def expect(self, text: str, timeout: float = 30) -> str:
        deadline = time.time() + timeout
        while text not in self.seen:
            if time.time() > deadline:
                raise AssertionError(f"{text!r} never shown; the screen so far:\n{self.seen[-2000:]}")
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    self.seen += os.read(self.master, 4096).decode(errors="replace")
                except OSError:  # the process has ended
                    break
        if text not in self.seen:
            raise AssertionError(f"{text!r} never shown; the screen:\n{self.seen[-2000:]}")
        return self.seen

    def press(self, key: str) -> None:
        os.write(self.master, key.encode())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        os.close(self.master)


def _shown(screen: str, item: int) -> tuple[str, str]:
    """The two responses of the item-th question (0-based), in the order shown."""
    firsts = [line[4:].strip() for line in screen.splitlines() if line.startswith("[1] ")]
    seconds = [line[4:].strip() for line in screen.splitlines() if line.startswith("[2] ")]
    return firsts[item], seconds[item]


def test_single_keypresses_with_undo_and_tie_in_a_terminal_and_a_kill_loses_nothing(tmp_path):
    source, output = _write(tmp_path / "items.jsonl", ITEMS), tmp_path / "prefs.jsonl"
    args = [*LABEL, "--mode", "compare", "--input", str(source), "--output", str(output), "--annotator", "ana"]
    term = Terminal(args)
    try:
        term.expect("Better: 1 or 2, t tie")
        term.press("1")  # no Enter: one key is the answer
        term.expect("--- 2 of 4")
        assert len(_rows(output)) == 1
        term.press("u")  # undo: the answer leaves the file and item 1 is asked again
        term.expect("undone: asking that item again")
        term.expect("--- 1 of 4")
        assert output.read_text() == ""
        term.press("2")
        term.expect("--- 2 of 4")
        term.press("t")
        screen = term.expect("--- 3 of 4")
        assert "s per item" in screen.split("--- 3 of 4")[1].splitlines()[0]  # the progress line times items
        first = _shown(screen, 0)
        assert len(_rows(output)) == 2
        term.proc.send_signal(signal.SIGKILL)  # a crash while item 3 waits for its answer
        term.proc.wait(timeout=30)
    finally:
        term.close()
    rows = _rows(output)
    assert rows[0]["chosen"] == first[1] and rows[0]["rejected"] == first[0]  # "2" after the undo
    assert rows[1]["tie"] is True and {rows[1]["a"], rows[1]["b"]} == {"first answer 1", "second answer 1"}
    assert all(r["annotator"] == "ana" for r in rows)
    term = Terminal(args)  # the same command again continues at item 3
    try:
        screen = term.expect("Better: 1 or 2")
        assert "2 of 4 already done; 2 to go" in screen
        term.press("1")
        term.expect("--- 4 of 4")
        term.press("q")
        term.expect("Saved 1 answers (0 ties, 0 skipped)")
        assert term.proc.wait(timeout=30) == 0
    finally:
        term.close()
    rows = _rows(output)
    assert [r["prompt"] for r in rows] == ["headline 0", "headline 1", "headline 2"]  # none lost, none twice
    report_ = DropReport("prefs")
    clean = validate_records(read_records(output), "pairs", {}, "prefs.jsonl", Policy(strict=True), report_)
    assert [r["prompt"] for r in clean] == ["headline 0", "headline 2"] and report_.dropped["tie"] == 1


def test_a_ranking_is_typed_key_by_key_and_repeats_or_gaps_are_refused(tmp_path):
    items = [{"prompt": "p0", "responses": ["r0", "r1", "r2"]}, {"prompt": "p1", "responses": ["x", "y", "z"]}]
    source, output = _write(tmp_path / "sets.jsonl", items), tmp_path / "rankings.jsonl"
    term = Terminal([*LABEL, "--mode", "rank", "--input", str(source), "--output", str(output)])
    try:
        term.expect("Best first: type all 3 numbers")
        for key in "311":  # a repeat: refused, asked again
            term.press(key)
        term.expect("'311': 1 repeated; type each of 123 once")
        for key in "312":
            term.press(key)
        term.expect("--- 2 of 2")
        term.press("q")
        term.proc.wait(timeout=30)
    finally:
        term.close()
    (row,) = _rows(output)
    assert row["ranking"] == [2, 0, 1] and row["responses"] == ["r2", "r0", "r1"]
    piped = _label(tmp_path, "12\n1 2 4\n2,3,1\n", "rank", items[1:], output="piped.jsonl")  # typed lines work too
    assert "'12': 3 missing" in piped.stdout and "'124': 4 is not a response number" in piped.stdout
    assert _rows(tmp_path / "piped.jsonl")[0]["responses"] == ["y", "z", "x"]


def test_ratings_on_the_founding_1_to_3_scale_and_on_named_labels(tmp_path):
    items = [{"prompt": "p", "response": f"r{i}"} for i in range(3)]
    out = _label(tmp_path, "3\n5\n1\ns\n", "rate", items)
    assert "'5' is not one of 1, 2, 3, u, s, q" in out.stdout
    rows = _rows(tmp_path / "out.jsonl")
    assert [(r["rating"], r["scale"]) for r in rows] == [(3.0, "1-3"), (1.0, "1-3")]
    named = _label(tmp_path, "2\n", "rate", items[:1], "--scale", "bad,ok,good", output="named.jsonl")
    assert "Rating (1 bad, 2 ok, 3 good)" in named.stdout
    assert _rows(tmp_path / "named.jsonl")[0] | {"time": None} == {
        "prompt": "p", "response": "r0", "rating": 2.0, "scale": "bad,ok,good", "label": "ok", "id": rows[0]["id"],
        "annotator": "ana", "time": None}
    bad = _label(tmp_path, "1\n", "rate", items, "--scale", "1-12")
    assert bad.returncode == 1 and "--scale '1-12': a numeric scale uses the keys 0-9" in bad.stderr


def test_corrections_inline_in_an_editor_and_an_empty_one_is_a_counted_skip(tmp_path):
    items = [{"prompt": "p", "response": f"draft {i}"} for i in range(3)]
    editor = tmp_path / "editor.sh"  # stands for $EDITOR: rewrites the file it is given
    editor.write_text('#!/bin/sh\necho "an edited better answer" > "$1"\n')
    editor.chmod(0o755)
    out = _label(tmp_path, "too vague\nsay what happened\n\n\nwrong tone\ne\n", "correct", items,
                 "--editor", str(editor))
    assert out.returncode == 0, out.stderr
    assert "an empty correction (no critique, no improved response): counted as a skip" in out.stdout
    rows = _rows(tmp_path / "out.jsonl")
    assert [(r["response"], r["critique"], r["correction"]) for r in rows] == [
        ("draft 0", "too vague", "say what happened"), ("draft 2", "wrong tone", "an edited better answer")]
    assert len(_rows(tmp_path / "out.jsonl.skipped")) == 1


def test_a_file_of_another_mode_is_refused_with_the_mode_to_use(tmp_path):
    out = _label(tmp_path, "1\n", "rate", ITEMS)
    assert out.returncode == 1
    assert "row 1: missing field(s) ['response']; --mode rate needs prompt, response; it looks like a compare " \
           "file: use --mode compare" in out.stderr
    sampled = [{"prompt": "p", "response": "r", "mode": "correct"}]
    out = _label(tmp_path, "3\n", "rate", sampled)
    assert "row 1: this is a correct candidates file (written by rlhf-sample --mode correct); label it with " \
           "--mode correct" in out.stderr


def test_kappas_by_hand():
    # Cohen: p_o = 3/4; p_e = 0.5 * 0.25 + 0.5 * 0.75 = 0.5; kappa = (0.75 - 0.5) / 0.5
    assert cohen_kappa([1, 1, 0, 0], [1, 0, 0, 0]) == pytest.approx(0.5)
    assert cohen_kappa(["a", "b"], ["a", "b"]) == pytest.approx(1.0)
    # Fleiss: P_i = 1, 1/3, 1 -> 7/9; p = 5/9, 4/9 -> p_e = 41/81; kappa = (63 - 41) / (81 - 41)
    assert fleiss_kappa([["a", "a", "a"], ["a", "a", "b"], ["b", "b", "b"]]) == pytest.approx(22 / 40)


def test_report_counts_ties_skips_and_the_agreement_of_two_annotators(tmp_path):
    def row(i, annotator, chosen=None, tie=False):
        base = {"id": f"i{i}", "prompt": f"p{i}", "annotator": annotator}
        return {**base, "a": "A", "b": "B", "tie": True} if tie else {**base, "chosen": chosen, "rejected": "-"}

    ana = _write(tmp_path / "ana.jsonl", [row(0, "ana", "A"), row(1, "ana", "A"), row(2, "ana", tie=True),
                                          row(3, "ana", "B")])
    ben = _write(tmp_path / "ben.jsonl", [row(0, "ben", "A"), row(1, "ben", "B"), row(2, "ben", tie=True),
                                          row(3, "ben", "B")])
    _write(tmp_path / "ben.jsonl.skipped", [{"id": "i9", "annotator": "ben"}])
    text = report([ana, ben])
    assert f"{ana}: 4 answers (3 comparison, 1 tie); 0 skipped; annotators: ana 4" in text
    assert f"{ben}: 4 answers (3 comparison, 1 tie); 1 skipped" in text
    # categories ana A A tie B, ben A B tie B: p_o = 3/4; p_e = (2*1 + 1*1 + 1*2) / 16 = 5/16
    assert f"Cohen's kappa {(0.75 - 5 / 16) / (1 - 5 / 16):.3f}" in text
    cli = subprocess.run([*LABEL, "--report", str(ana), str(ben)], capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0 and "agreement on 4 items answered by several of 2 annotators" in cli.stdout


@pytest.mark.parametrize("mode,k", [("compare", None), ("rate", 2), ("rank", 3), ("correct", None)])
def test_rlhf_sample_writes_candidates_rlhf_label_reads(mode, k, tmp_path, gpt2_style_dir):
    prompts = _write(tmp_path / "prompts.jsonl", [{"prompt": "The market"}, {"prompt": "Today the team"}])
    out = tmp_path / "candidates.jsonl"
    run = subprocess.run([sys.executable, "-m", "rlhf.sample", "--policy", str(gpt2_style_dir), "--prompts",
                          str(prompts), "--mode", mode, "--out", str(out), "--max-new-tokens", "6", "--seed", "3",
                          *(["--k", str(k)] if k else [])], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    rows = _rows(out)
    per_prompt = {"compare": 1, "rate": 2, "rank": 1, "correct": 1}[mode]
    assert len(rows) == 2 * per_prompt and len({r["id"] for r in rows}) == len(rows)
    assert all(r["policy"] == str(gpt2_style_dir) and r["revision"].startswith("sha256:") and r["mode"] == mode
               for r in rows)
    assert rows[0]["sampling"] == {"k": k or {"compare": 2, "correct": 1}[mode], "max_new_tokens": 6,
                                   "temperature": 1.0, "top_p": 1.0, "top_k": 0, "seed": 3}
    if mode == "rank":
        assert len(rows[0]["responses"]) == 3
    again = tmp_path / "again.jsonl"
    subprocess.run([sys.executable, "-m", "rlhf.sample", "--policy", str(gpt2_style_dir), "--prompts", str(prompts),
                    "--mode", mode, "--out", str(again), "--max-new-tokens", "6", "--seed", "3",
                    *(["--k", str(k)] if k else [])], check=True, capture_output=True, timeout=120)
    assert _rows(again) == rows  # the same seed samples the same candidates
    keys = {"compare": "1\n", "rate": "2\n", "rank": "321\n", "correct": "too short\n\n"}[mode]
    labelled = subprocess.run([*LABEL, "--mode", mode, "--input", str(out), "--output", str(tmp_path / "l.jsonl")],
                              input=keys + "q\n", capture_output=True, text=True, timeout=60)
    assert labelled.returncode == 0, labelled.stderr
    assert len(_rows(tmp_path / "l.jsonl")) == 1


def test_rlhf_sample_refuses_a_k_its_mode_cannot_use(tmp_path, gpt2_style_dir):
    prompts = _write(tmp_path / "prompts.jsonl", [{"text": "no prompt column"}])
    bad_k = subprocess.run([sys.executable, "-m", "rlhf.sample", "--policy", str(gpt2_style_dir), "--prompts",
                            str(prompts), "--mode", "compare", "--k", "3", "--out", str(tmp_path / "c.jsonl")],
                           capture_output=True, text=True, timeout=60)
    assert bad_k.returncode == 2 and "--mode compare shows two responses: --k must be 2 (got 3); use --mode rank" \
        in bad_k.stderr
    no_prompt = subprocess.run([sys.executable, "-m", "rlhf.sample", "--policy", str(gpt2_style_dir), "--prompts",
                                str(prompts), "--mode", "rate", "--out", str(tmp_path / "c.jsonl")],
                               capture_output=True, text=True, timeout=60)
    assert no_prompt.returncode == 1 and "prompts.jsonl, row 1: no 'prompt'" in no_prompt.stderr
    assert not (tmp_path / "c.jsonl").exists()


def test_k_samples_per_prompt_come_from_one_encoding_and_are_those_of_the_repeated_prompts(gpt2_style_dir):
    """rlhf-sample --k and the loop's held-out evaluation encode each prompt once for its k samples; with a batch
    size that is a multiple of k, the samples (and their KL to a reference) are those of the prompts repeated k
    times, as before."""
    import torch

    from rlhf.sample import load_policy, sample_texts

    tok, model = load_policy(str(gpt2_style_dir), "cpu")
    _, ref = load_policy(str(gpt2_style_dir), "cpu")
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.01)
    prompts = ["The market", "Today the team said", "A"]
    runs = []
    for given, repeats in (([p for p in prompts for _ in range(4)], 1), (prompts, 4)):
        generator = torch.Generator().manual_seed(5)
        runs.append(sample_texts(tok, model, given, 8, 1.0, 1.0, 0, generator, 8, ref, repeats=repeats))
    (texts, kls), (shared_texts, shared_kls) = runs
    assert shared_texts == texts and len(texts) == 12 and len(set(texts)) > 3
    assert torch.allclose(torch.tensor(shared_kls), torch.tensor(kls), atol=1e-5)
