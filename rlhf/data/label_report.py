"""``rlhf-label --report``: what label files hold (answers per kind, ties, skips, annotators) and, where several
annotators labelled the same items, how much they agree: Cohen's kappa for two annotators, Fleiss' kappa for more.

An item's category: compare, the chosen response (or "tie"); rate, the rating; rank, the whole ranking. Corrections
have no category (free text): they are counted, not compared.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from pathlib import Path


def cohen_kappa(first: Sequence[Hashable], second: Sequence[Hashable]) -> float:
    """Agreement of two annotators on the same items beyond chance: (p_o - p_e) / (1 - p_e), p_e from each one's own
    category frequencies. 1.0 when both always give the one same category (no disagreement possible)."""
    if len(first) != len(second) or not first:
        raise ValueError("cohen_kappa needs two equally long, non-empty lists of answers to the same items")
    n = len(first)
    observed = sum(a == b for a, b in zip(first, second)) / n
    counts_a, counts_b = Counter(first), Counter(second)
    expected = sum(counts_a[c] * counts_b[c] for c in counts_a) / (n * n)
    return 1.0 if expected == 1.0 else (observed - expected) / (1.0 - expected)


def fleiss_kappa(items: Sequence[Sequence[Hashable]]) -> float:
    """Agreement of several annotators: ``items[i]`` holds the categories the annotators gave item i (two or more;
    their number may vary per item). P_i = sum_c n_ic (n_ic - 1) / (n_i (n_i - 1)); p_c over every answer;
    kappa = (mean P_i - sum_c p_c^2) / (1 - sum_c p_c^2)."""
    items = [list(item) for item in items if len(item) >= 2]
    if not items:
        raise ValueError("fleiss_kappa needs items with at least two answers each")
    agreement = []
    totals: Counter = Counter()
    for item in items:
        counts = Counter(item)
        n = len(item)
        agreement.append(sum(c * (c - 1) for c in counts.values()) / (n * (n - 1)))
        totals.update(counts)
    answers = sum(totals.values())
    expected = sum((c / answers) ** 2 for c in totals.values())
    observed = sum(agreement) / len(agreement)
    return 1.0 if expected == 1.0 else (observed - expected) / (1.0 - expected)


def category(record: dict) -> Hashable | None:
    if record.get("tie"):
        return "tie"
    if "chosen" in record:
        return record["chosen"]
    if "rating" in record:
        return record["rating"]
    if "ranking" in record:
        return tuple(record["ranking"])
    return None


def kind_of(record: dict) -> str:
    if record.get("tie"):
        return "tie"
    for key, kind in (("chosen", "comparison"), ("rating", "rating"), ("ranking", "ranking"),
                      ("correction", "correction"), ("critique", "correction")):
        if key in record:
            return kind
    return "other"


def read_labels(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    raise ValueError(f"{path}, line {number}: not JSON (a torn last line is repaired by running "
                                     f"rlhf-label on that file again)") from None
    return rows


def report(paths: Sequence[Path]) -> str:
    """Counts per file and kind, skips, annotators, and agreement on the items several annotators answered."""
    lines, answers = [], defaultdict(dict)  # item id -> annotator -> category
    for path in paths:
        rows = read_labels(Path(path))
        kinds = Counter(kind_of(r) for r in rows)
        skipped_path = Path(str(path) + ".skipped")
        skipped = len(read_labels(skipped_path)) if skipped_path.exists() else 0
        by_annotator = Counter(r.get("annotator", r.get("labeler", "?")) for r in rows)
        lines.append(f"{path}: {len(rows)} answers ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}); "
                     f"{skipped} skipped; annotators: {', '.join(f'{a} {n}' for a, n in sorted(by_annotator.items()))}")
        ratings = Counter(r["rating"] for r in rows if "rating" in r)
        if ratings:
            lines.append("  ratings: " + ", ".join(f"{k:g}: {n}" for k, n in sorted(ratings.items())))
        for r in rows:
            value = category(r)
            if value is not None and "id" in r:
                answers[str(r["id"])][r.get("annotator", r.get("labeler", "?"))] = value
    shared = {item: by for item, by in answers.items() if len(by) >= 2}
    annotators = sorted({a for by in answers.values() for a in by})
    if not shared:
        lines.append(f"agreement: no item was answered by two or more annotators ({len(annotators)} annotator(s))")
        return "\n".join(lines)
    if len(annotators) == 2:
        a, b = annotators
        kappa = cohen_kappa([by[a] for by in shared.values()], [by[b] for by in shared.values()])
        name = "Cohen's kappa"
    else:
        kappa = fleiss_kappa([list(by.values()) for by in shared.values()])
        name = "Fleiss' kappa"
    raw = sum(len(set(by.values())) == 1 for by in shared.values()) / len(shared)
    lines.append(f"agreement on {len(shared)} items answered by several of {len(annotators)} annotators: "
                 f"{name} {kappa:.3f}; all agree on {raw:.0%} of them")
    return "\n".join(lines)
