"""rlhf-label driven by scripted keyboard input: answers land in the reward data format, restart resumes, a kill
loses nothing."""

import json
import os
import signal
import subprocess
import sys
import time

from rlhf.data.feedback import Policy, validate_records
from rlhf.data.readers import DropReport, read_records

ITEMS = [{"prompt": f"headline {i}", "a": f"first answer {i}", "b": f"second answer {i}"} for i in range(4)]


def _label(tmp_path, keys: str, mode: str = "pairs", items=ITEMS, extra=()):
    source = tmp_path / "items.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in items))
    return subprocess.run([sys.executable, "-m", "rlhf.label", "--input", str(source), "--output",
                           str(tmp_path / "out.jsonl"), "--mode", mode, "--labeler", "tester", *extra],
                          input=keys, capture_output=True, text=True, timeout=60)


def _shown_first(stdout: str) -> list[str]:
    return [line[4:] for line in stdout.splitlines() if line.startswith("[1] ")]


def test_answers_skips_invalid_keys_and_quit(tmp_path):
    out = _label(tmp_path, "1\ns\nx\n2\nq\n")
    assert out.returncode == 0, out.stderr
    assert "'x' is not one of" in out.stdout
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(records) == 2 and len((tmp_path / "out.jsonl.skipped").read_text().splitlines()) == 1
    shown = _shown_first(out.stdout)
    assert records[0]["chosen"] == shown[0]  # "1" picks the response shown first
    assert records[1]["rejected"] == shown[2]  # item 3 (after the skip): "2" rejects the one shown first
    assert {records[0]["chosen"], records[0]["rejected"]} == {"first answer 0", "second answer 0"}
    # exactly the format the reward DataModule reads
    rows = read_records(tmp_path / "out.jsonl")
    clean = validate_records(rows, "pairs", {}, "out.jsonl", Policy(strict=True), DropReport("x"))
    assert [r["prompt"] for r in clean] == ["headline 0", "headline 2"]


def test_restart_resumes_where_it_stopped(tmp_path):
    _label(tmp_path, "1\ns\nq\n")
    again = _label(tmp_path, "2\n")
    assert "2 of 4 already done; 2 to go" in again.stdout
    prompts = [json.loads(line)["prompt"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert prompts == ["headline 0", "headline 2"]  # the skipped item 1 is not asked again; EOF ends the session


def test_ratings_mode(tmp_path):
    items = [{"prompt": "p", "response": f"r{i}"} for i in range(2)]
    out = _label(tmp_path, "4\n9\n2\n", mode="ratings", items=items, extra=["--scale", "1-5"])
    assert out.returncode == 0
    assert "'9' is not one of 1, 2, 3, 4, 5, u, s, q" in out.stdout
    rows = read_records(tmp_path / "out.jsonl")
    clean = validate_records(rows, "ratings", {}, "out.jsonl", Policy(strict=True), DropReport("x"))
    assert [r["rating"] for r in clean] == [4.0, 2.0]


def test_a_kill_after_an_answer_loses_nothing_and_a_torn_line_is_asked_again(tmp_path):
    source = tmp_path / "items.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in ITEMS))
    output = tmp_path / "out.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "rlhf.label", "--input", str(source), "--output", str(output)],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    proc.stdin.write("1\n")
    proc.stdin.flush()
    deadline = time.time() + 30
    while time.time() < deadline and not (output.exists() and output.read_text().endswith("\n")):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    lines = output.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["prompt"] == "headline 0"
    with open(output, "a") as handle:  # what a crash in the middle of a write would leave
        handle.write('{"prompt": "headline 1", "chos')
    again = _label(tmp_path, "2\nq\n")
    assert "1 of 4 already done" in again.stdout and "removed an incomplete last line" in again.stdout
    records = [json.loads(line) for line in output.read_text().splitlines()]  # valid JSONL again
    assert [r["prompt"] for r in records] == ["headline 0", "headline 1"]


def test_an_unwritable_output_is_reported_before_the_first_question(tmp_path):
    (tmp_path / "a_file").write_text("x")
    source = tmp_path / "items.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in ITEMS))
    out = subprocess.run([sys.executable, "-m", "rlhf.label", "--input", str(source), "--output",
                          str(tmp_path / "a_file" / "out.jsonl")], input="1\n", capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1
    assert f"Error: cannot write {tmp_path / 'a_file' / 'out.jsonl'} (" in out.stderr
    assert "); choose another --output" in out.stderr
    assert "PROMPT" not in out.stdout and "Traceback" not in out.stderr


def test_a_failed_write_says_which_answer_is_lost_and_keeps_the_earlier_ones(tmp_path, monkeypatch):
    import io

    import pytest

    from rlhf import label

    source = tmp_path / "items.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in ITEMS))
    labeller = label.Labeller("pairs", source, tmp_path / "out.jsonl", "tester", stdin=io.StringIO("1\n2\n"),
                              stdout=io.StringIO())
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(label.os, "fsync", fsync)
    with pytest.raises(label.OutputError, match=r"could not save the last answer to .*out.jsonl \(No space left on "
                                                r"device\); it is not saved. Every earlier answer is"):
        labeller.run()
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) >= 1
