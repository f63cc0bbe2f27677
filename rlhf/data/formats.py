"""Public preference formats, read as our pair records (``data.source.format=<name>``).

Each reader turns one raw row into ``{"prompt", "chosen", "rejected"}`` (and ``"margin"`` where the format carries
scores). ``prompt`` is text, or a list of ``{"role", "content"}`` messages for conversational formats, rendered with
the model's chat template by :func:`render_prompt`; ``chosen``/``rejected`` are the two final responses as text.

| format | rows | prompt | preference |
|---|---|---|---|
| ``pairs`` | ``prompt``, ``chosen``, ``rejected`` (names in ``data.source.columns``), optional ``margin`` | text | as given |
| ``hh`` | Anthropic HH-RLHF: ``chosen``/``rejected`` whole transcripts (``\\n\\nHuman:`` / ``\\n\\nAssistant:``) | the turns through the last ``Assistant:`` (messages) | chosen |
| ``ultrafeedback`` | UltraFeedback-binarized: ``chosen``/``rejected`` message lists, ``score_chosen``/``score_rejected`` | every message but the last (messages) | chosen; margin = score difference |
| ``tldr`` | OpenAI summarize-from-feedback comparisons: ``info`` (``post`` or ``article``, ``title``, ``subreddit``), ``summaries[*].text``, ``choice`` | ``SUBREDDIT/TITLE/POST ... TL;DR:`` text | ``summaries[choice]`` |
| ``shp`` | Stanford SHP: ``history``, ``human_ref_A``/``human_ref_B``, ``labels`` (1: A preferred) | ``history`` text | by ``labels`` |

A row without a field its format needs is an error naming the row (the file is not in that format); a row whose
fields disagree (an HH pair whose transcripts differ before the last ``Assistant:``, message lists with different
prompts, a ``choice`` that is not 0 or 1) is ``malformed``: dropped and counted (``data/dropped_malformed``), or an
error with ``data.policy.malformed=error``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from rlhf.errors import DataError

HUMAN, ASSISTANT = "\n\nHuman:", "\n\nAssistant:"


class Malformed(ValueError):
    """A row whose fields disagree with each other (counted drop under the ``malformed`` policy)."""


def _field(row: Mapping, path: str, where: str) -> Any:
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, Mapping) or value.get(part) is None:
            present = ", ".join(sorted(map(str, row.keys())))
            raise DataError(f"{where}: missing field '{path}' (fields present: {present}); is this file in the "
                            f"format given by data.source.format?")
        value = value[part]
    return value


def _text(row: Mapping, path: str, where: str) -> str:
    value = _field(row, path, where)
    if not isinstance(value, str):
        raise DataError(f"{where}: field '{path}' must be text, got {type(value).__name__}")
    return value


def hh_turns(transcript: str) -> list[dict[str, str]]:
    """``"\\n\\nHuman: a\\n\\nAssistant: b"`` -> ``[{"role": "user", "content": "a"}, {"role": "assistant", ...}]``."""
    turns: list[dict[str, str]] = []
    rest = transcript
    while rest:
        starts = [(rest.find(marker), marker) for marker in (HUMAN, ASSISTANT) if rest.find(marker) >= 0]
        if not starts:
            raise Malformed(f"text outside a Human:/Assistant: turn: {rest[:40]!r}")
        at, marker = min(starts)
        if at > 0:
            if not turns:
                raise Malformed(f"the transcript does not start with a Human: turn: {rest[:40]!r}")
            turns[-1]["content"] += rest[:at]
        body = rest[at + len(marker):]
        following = [body.find(m) for m in (HUMAN, ASSISTANT) if body.find(m) >= 0]
        end = min(following) if following else len(body)
        turns.append({"role": "user" if marker == HUMAN else "assistant", "content": body[:end].strip()})
        rest = body[end:]
    return turns


def read_hh(row: Mapping, where: str) -> dict:
    chosen, rejected = _text(row, "chosen", where), _text(row, "rejected", where)
    cut = chosen.rfind(ASSISTANT)
    if cut < 0:
        raise Malformed("the chosen transcript has no Assistant: turn")
    prefix = chosen[:cut + len(ASSISTANT)]
    if not rejected.startswith(prefix):
        raise Malformed("chosen and rejected differ before the last Assistant: turn")
    prompt = hh_turns(prefix[: -len(ASSISTANT)])
    if not prompt or prompt[-1]["role"] != "user":
        raise Malformed("the last turn before the response is not a Human: turn")
    return {"prompt": prompt, "chosen": chosen[len(prefix):].strip(), "rejected": rejected[len(prefix):].strip()}


def _messages(row: Mapping, key: str, where: str) -> list[dict[str, str]]:
    value = _field(row, key, where)
    if not isinstance(value, list) or not all(isinstance(m, Mapping) and isinstance(m.get("content"), str)
                                              and isinstance(m.get("role"), str) for m in value):
        raise DataError(f"{where}: field '{key}' must be a list of {{role, content}} messages")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def read_ultrafeedback(row: Mapping, where: str) -> dict:
    chosen, rejected = _messages(row, "chosen", where), _messages(row, "rejected", where)
    if not chosen or not rejected or chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        raise Malformed("chosen and rejected must each end with an assistant message")
    if chosen[:-1] != rejected[:-1]:
        raise Malformed("chosen and rejected have different prompts")
    prompt = chosen[:-1] or [{"role": "user", "content": _text(row, "prompt", where)}]
    record = {"prompt": prompt, "chosen": chosen[-1]["content"], "rejected": rejected[-1]["content"]}
    scores = [row.get("score_chosen"), row.get("score_rejected")]
    if all(isinstance(s, (int, float)) and math.isfinite(s) for s in scores):
        record["margin"] = float(scores[0]) - float(scores[1])
    return record


TLDR_PROMPT = "SUBREDDIT: r/{subreddit}\nTITLE: {title}\nPOST: {post}\n\nTL;DR:"


def read_tldr(row: Mapping, where: str) -> dict:
    info = _field(row, "info", where)
    summaries = _field(row, "summaries", where)
    choice = _field(row, "choice", where)
    post = info.get("post") or info.get("article") if isinstance(info, Mapping) else None
    if not isinstance(post, str):
        raise DataError(f"{where}: field 'info.post' (or 'info.article') is missing")
    if choice not in (0, 1) or not isinstance(summaries, list) or len(summaries) != 2:
        raise Malformed(f"choice={choice!r} must be 0 or 1 over exactly two summaries")
    texts = [s.get("text") if isinstance(s, Mapping) else None for s in summaries]
    if not all(isinstance(t, str) for t in texts):
        raise DataError(f"{where}: every summaries[*] needs a 'text'")
    prompt = TLDR_PROMPT.format(subreddit=info.get("subreddit") or "", title=info.get("title") or "",
                                post=post.strip())
    return {"prompt": prompt, "chosen": texts[choice].strip(), "rejected": texts[1 - choice].strip()}


def read_shp(row: Mapping, where: str) -> dict:
    history = _text(row, "history", where)
    a, b = _text(row, "human_ref_A", where), _text(row, "human_ref_B", where)
    label = _field(row, "labels", where)
    if label not in (0, 1):
        raise Malformed(f"labels={label!r} must be 1 (A preferred) or 0 (B preferred)")
    chosen, rejected = (a, b) if label == 1 else (b, a)
    return {"prompt": history, "chosen": chosen, "rejected": rejected}


PAIR_FORMATS: dict[str, Callable[[Mapping, str], dict]] = {
    "hh": read_hh, "ultrafeedback": read_ultrafeedback, "tldr": read_tldr, "shp": read_shp,
}


def render_prompt(tokenizer: Any, prompt: str | list[dict[str, str]]) -> str:
    """A prompt as the text the model sees: text as it is; messages through the tokenizer's chat template (with the
    assistant's generation prompt), or, for a tokenizer without one (or ``None``), the plain ``Human:``/``Assistant:``
    template (HH-RLHF's own: ``\\n\\nHuman: ...\\n\\nAssistant:``)."""
    if isinstance(prompt, str):
        return prompt
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    return plain_template(prompt)


def plain_template(messages: list[dict[str, str]]) -> str:
    markers = {"user": HUMAN, "assistant": ASSISTANT, "system": "\n\nSystem:"}
    return "".join(f"{markers.get(m['role'], HUMAN)} {m['content']}" for m in messages) + ASSISTANT


def prompt_key(prompt: str | list[dict[str, str]]) -> str:
    """The text a prompt is identified by (split hashing, messages): itself, or its plain-template rendering."""
    return prompt if isinstance(prompt, str) else plain_template(prompt)
