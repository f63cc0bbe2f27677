"""Human-feedback records (pairs and ratings): reading with configurable columns, validation with an explicit policy
for every malformed case, and tokenization that keeps the end of every response.

Policies (``error`` or ``drop``; ``strict=True`` turns every drop into an error). Each drop is counted under
``data/dropped_<reason>``:

| reason | when | default |
|---|---|---|
| (missing field) | a required column is absent or null | always an error naming the row |
| ``empty`` | prompt-less responses or whitespace-only text | drop |
| ``identical`` | chosen == rejected (text) | drop |
| ``nonfinite`` | rating (or margin) is NaN/inf or not a number | drop |
| ``out_of_range`` | a rating outside ``data.rating_range`` (when set) | error |
| ``too_long`` | the response does not fit ``max_length`` even with no prompt | drop |
| ``identical_after_truncation`` | chosen and rejected give the same token ids | drop |
| ``malformed`` | a public-format row whose fields disagree (``rlhf.data.formats``) | drop |

Over-long prompts are truncated from the left (``too_long=truncate_prompt``, counted as ``data/truncated_prompt``)
so that both responses keep their tails, or dropped/refused with ``too_long=drop|error``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from rlhf.config.common import FeedbackColumnsConf, FeedbackPolicyConf
from rlhf.config.fields import as_config
from rlhf.data.formats import PAIR_FORMATS, Malformed
from rlhf.data.readers import DropReport
from rlhf.errors import DataError

PAIR_FIELDS = ("prompt", "chosen", "rejected")
RATING_FIELDS = ("prompt", "response", "rating")


class Policy:
    """What to do with each malformed case; ``strict`` turns every drop into an error."""

    def __init__(self, policy: Any = None, strict: bool = False):
        """``policy``: ``data.policy`` (``FeedbackPolicyConf`` or a partial mapping; unset cases take its defaults)."""
        self.rules = dataclasses.asdict(as_config(FeedbackPolicyConf, policy))
        self.strict = strict

    def handle(self, reason: str, where: str, message: str, report: DropReport) -> None:
        """Drop (count) or raise for one bad record."""
        rule = self.rules.get(reason, "error")
        if self.strict or rule == "error":
            switch = "data.strict=false and " if self.strict else ""
            raise DataError(f"{where}: {message} (set {switch}data.policy.{reason}=drop to drop such records)")
        report.drop(reason, where)


def _text(record: Mapping, column: str, where: str) -> str:
    if column not in record or record[column] is None:
        present = ", ".join(sorted(map(str, record.keys())))
        raise DataError(f"{where}: missing field '{column}' (fields present: {present}); fix the row or set the "
                        f"column name in data.source.columns")
    value = record[column]
    if not isinstance(value, str):
        raise DataError(f"{where}: field '{column}' must be text, got {type(value).__name__}")
    return value


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def implied_pairs(rows, report: DropReport):
    """``rlhf-label`` rankings and corrections as the pairs they imply, under their own row numbers: a ranking of K
    responses (best first) gives all K(K-1)/2 pairs (Bradley-Terry over every implied pair, as InstructGPT trains;
    Plackett-Luce is not implemented); a correction gives correction > original (a critique without an improved
    response implies no pair: counted as ``no_correction``). Other rows pass unchanged."""
    for row, record in rows:
        if isinstance(record.get("responses"), list) and "ranking" in record:
            ranked = record["responses"]
            for i in range(len(ranked)):
                for j in range(i + 1, len(ranked)):
                    yield row, {**record, "chosen": ranked[i], "rejected": ranked[j]}
        elif "correction" in record and "response" in record:
            if isinstance(record["correction"], str) and record["correction"].strip():
                yield row, {**record, "chosen": record["correction"], "rejected": record["response"]}
            else:
                report.drop("no_correction", f"row {row}")
        else:
            yield row, record


HINDSIGHT = "{prompt}\nA worse answer: {response}\nWhat is wrong with it: {critique}\nA better answer:"


def corrections_as_demonstrations(rows, report: DropReport, hindsight: bool):
    """``rlhf-label`` corrections as demonstrations of the improved response (learning from language feedback:
    SFT on the person's refinement). With ``hindsight`` the prompt also holds the original answer and the critique
    (``HINDSIGHT``, in the spirit of Chain of Hindsight). A critique without an improved response is counted
    (``no_correction``) and left out. Other rows pass unchanged."""
    for row, record in rows:
        if "correction" in record and "response" in record:
            if not (isinstance(record["correction"], str) and record["correction"].strip()):
                report.drop("no_correction", f"row {row}")
                continue
            prompt = record["prompt"]
            if hindsight and isinstance(prompt, str):
                prompt = HINDSIGHT.format(prompt=prompt, response=record["response"],
                                          critique=record.get("critique") or "(none given)")
            yield row, {"prompt": prompt, "response": record["correction"]}
        else:
            yield row, record


def validate_records(rows, kind: str, columns: Any, origin: str, policy: Policy, report: DropReport,
                     rating_range: Sequence[float] | None = None, fmt: str = "auto") -> list[dict]:
    """Clean records ``{"prompt", "chosen", "rejected", "margin"}`` (margin 0 where the row has none) or ``{"prompt", "response", "rating"}``.

    ``rows`` yields ``(row number, raw record)``; ``columns`` maps our field names to the file's column names;
    ``rating_range`` (``[low, high]``, optional) is the scale every rating must lie on; ``fmt`` is
    ``data.source.format`` (a public format is read by ``rlhf.data.formats``; its prompt may be a message list).
    """
    fields = PAIR_FIELDS if kind == "pairs" else RATING_FIELDS
    if kind == "pairs":
        rows = implied_pairs(rows, report)
    names = as_config(FeedbackColumnsConf, columns)
    col = {f: getattr(names, f) for f in (*fields, "margin")}
    reader = PAIR_FORMATS.get(fmt)
    clean = []
    for row, record in rows:
        where = f"{origin}, row {row}"
        if reader is not None:
            try:
                parsed = reader(record, where)
            except Malformed as err:
                policy.handle("malformed", where, f"{err} (format {fmt})", report)
                continue
            record, col = {**parsed, "margin": parsed.get("margin")}, {f: f for f in col}
        prompt = record[col["prompt"]] if reader is not None else _text(record, col["prompt"], where)
        if kind == "pairs" and record.get("tie") is True:  # rlhf-label's tie: an answer with no preference to learn
            report.drop("tie", where)
            continue
        if kind == "pairs":
            chosen, rejected = _text(record, col["chosen"], where), _text(record, col["rejected"], where)
            if not chosen.strip() or not rejected.strip():
                policy.handle("empty", where, "chosen or rejected is empty", report)
                continue
            if chosen == rejected:
                policy.handle("identical", where, "chosen == rejected (no preference to learn)", report)
                continue
            item = {"prompt": prompt, "chosen": chosen, "rejected": rejected, "margin": 0.0}  # no margin column: 0
            if col["margin"] in record and record[col["margin"]] is not None:
                margin = _number(record[col["margin"]])
                if margin is None:
                    policy.handle("nonfinite", where, f"margin {record[col['margin']]!r} is not a finite number",
                                  report)
                    continue
                item["margin"] = margin
        else:
            response = _text(record, col["response"], where)
            if col["rating"] not in record:
                _text(record, col["rating"], where)  # raises the missing-field error
            if not response.strip():
                policy.handle("empty", where, "response is empty", report)
                continue
            rating = _number(record[col["rating"]])
            if rating is None:
                policy.handle("nonfinite", where, f"rating {record[col['rating']]!r} is not a finite number", report)
                continue
            if rating_range is not None and not rating_range[0] <= rating <= rating_range[1]:
                low, high = rating_range
                policy.handle("out_of_range", where, f"rating {rating:g} is outside data.rating_range=[{low:g}, "
                              f"{high:g}] (fix the row, or set data.rating_range to your scale)", report)
                continue
            item = {"prompt": prompt, "response": response, "rating": rating}
        for extra in ("gold", "gold_chosen", "gold_rejected"):  # gold scores of simulated feedback, if present
            if _number(record.get(extra)) is not None:
                item[extra] = float(record[extra])
        clean.append(item)
    report.kept = len(clean)
    return clean


def validate_demonstrations(rows, columns: Any, origin: str, policy: Policy, report: DropReport,
                            fmt: str = "auto", hindsight: bool = False) -> list[dict]:
    """Clean demonstrations ``{"prompt", "response"}`` for supervised fine-tuning, from ``prompt``/``response``
    columns, from a conversation (``columns.messages``: a list of ``{role, content}`` whose last, assistant, message
    is the response), or, for a pair format (``pairs``, ``hh``, ``ultrafeedback``, ``tldr``, ``shp``), the chosen
    responses; ``rlhf-label`` corrections give their improved responses (``corrections_as_demonstrations``).
    ``prompt`` may be a message list (rendered with the chat template when tokenized)."""
    if fmt == "pairs" or fmt in PAIR_FORMATS:
        pairs = validate_records(rows, "pairs", columns, origin, policy, report, None, fmt)
        return [{"prompt": r["prompt"], "response": r["chosen"]} for r in pairs]
    names = as_config(FeedbackColumnsConf, columns)
    clean = []
    for row, record in corrections_as_demonstrations(rows, report, hindsight):
        where = f"{origin}, row {row}"
        if names.response in record or names.messages not in record:
            prompt, response = _text(record, names.prompt, where), _text(record, names.response, where)
        else:
            messages = record[names.messages]
            if not isinstance(messages, list) or not all(isinstance(m, Mapping) and isinstance(m.get("content"), str)
                                                         for m in messages):
                raise DataError(f"{where}: field '{names.messages}' must be a list of {{role, content}} messages")
            if not messages or messages[-1].get("role") != "assistant":
                policy.handle("malformed", where, "the conversation does not end with an assistant message", report)
                continue
            prompt = [{"role": str(m["role"]), "content": m["content"]} for m in messages[:-1]]
            response = messages[-1]["content"]
        if not response.strip():
            policy.handle("empty", where, "the response is empty", report)
            continue
        clean.append({"prompt": prompt, "response": response})
    report.kept = len(clean)
    return clean


DESIRABLE = {"true": True, "1": True, "desirable": True, "good": True, "up": True, "yes": True,
             "false": False, "0": False, "undesirable": False, "bad": False, "down": False, "no": False}


def validate_unpaired(rows, columns: Any, origin: str, policy: Policy, report: DropReport, fmt: str,
                      threshold: float) -> list[dict]:
    """Clean unpaired feedback ``{"prompt", "response", "desirable"}`` (KTO): rows with a label column
    (``columns.label``; the response in ``columns.response`` or TRL's ``completion``), ratings
    (``fmt=ratings``: desirable when the rating is at least ``threshold``), or any pair format (its chosen response
    desirable, its rejected one undesirable)."""
    if fmt == "pairs" or fmt in PAIR_FORMATS:
        pairs = validate_records(rows, "pairs", columns, origin, policy, report, None, fmt)
        unpaired = [{"prompt": r["prompt"], "response": r[side], "desirable": side == "chosen"}
                    for r in pairs for side in ("chosen", "rejected")]
        report.kept = len(unpaired)
        return unpaired
    if fmt == "ratings":
        return [{"prompt": r["prompt"], "response": r["response"], "desirable": r["rating"] >= threshold,
                 **({"gold": r["gold"]} if "gold" in r else {})}
                for r in validate_records(rows, "ratings", columns, origin, policy, report, None, "ratings")]
    names = as_config(FeedbackColumnsConf, columns)
    clean = []
    for row, record in rows:
        where = f"{origin}, row {row}"
        prompt = _text(record, names.prompt, where)
        response_column = names.response if names.response in record or "completion" not in record else "completion"
        response = _text(record, response_column, where)
        if names.label not in record or record[names.label] is None:
            _text(record, names.label, where)  # raises the missing-field error
        label = DESIRABLE.get(str(record[names.label]).strip().lower())
        if label is None:
            policy.handle("malformed", where, f"label {record[names.label]!r} is not one of "
                          f"{', '.join(sorted(DESIRABLE))}", report)
            continue
        if not response.strip():
            policy.handle("empty", where, "the response is empty", report)
            continue
        clean.append({"prompt": prompt, "response": response, "desirable": label})
    report.kept = len(clean)
    return clean


def encode_pair(prompt_ids: Sequence[int], response_ids: Sequence[Sequence[int]], max_length: int,
                layout: Mapping[str, Any]) -> tuple[list[list[int]], bool] | None:
    """Token ids of ``prompt + response`` for each response, sharing one prompt cut from the left so every
    response keeps its tail. Returns ``(sequences, prompt_truncated)`` or None when a response alone cannot fit.

    ``layout``: ``{"bos": [...], "sep": [...], "eos": [...]}`` special ids around and between the parts, e.g.
    BERT ``[CLS] p [SEP] r [SEP]`` or GPT-2 ``p r <eos>``.
    """
    fixed = len(layout["bos"]) + len(layout["sep"]) + len(layout["eos"])
    longest = max(len(r) for r in response_ids)
    room = max_length - fixed - longest
    if room < 0:
        return None
    truncated = len(prompt_ids) > room
    prompt = list(prompt_ids[len(prompt_ids) - room:]) if truncated else list(prompt_ids)
    if room == 0:
        prompt = []
    sequences = [[*layout["bos"], *prompt, *layout["sep"], *r, *layout["eos"]] for r in response_ids]
    return sequences, truncated


def sequence_layout(tokenizer) -> dict[str, list[int]]:
    """Special ids around prompt and response: ``[CLS] p [SEP] r [SEP]`` for encoders, ``p r <eos>`` for causal LMs
    (the reward is read at the final ``<eos>``)."""
    if tokenizer.cls_token_id is not None and tokenizer.sep_token_id is not None:
        return {"bos": [tokenizer.cls_token_id], "sep": [tokenizer.sep_token_id], "eos": [tokenizer.sep_token_id]}
    if tokenizer.eos_token_id is None:
        raise DataError("the tokenizer has neither [CLS]/[SEP] nor an EOS token to end a sequence with")
    return {"bos": [], "sep": [], "eos": [tokenizer.eos_token_id]}
