"""``rlhf-sample``: the policy's own responses to a set of prompts, written as the candidates file ``rlhf-label``
reads in the chosen labelling mode.

    rlhf-sample --policy logs/pipeline/ppo/export --prompts prompts.jsonl --mode compare --out candidates.jsonl
    rlhf-sample --policy gpt2 --prompts prompts.txt --mode rank --k 4 --max-new-tokens 48 --temperature 0.8 ...

Prompts: a jsonl/csv/parquet file with a ``prompt`` column (text, or a list of chat messages rendered with the
tokenizer's chat template), or a .txt file with one prompt per line. For each prompt, ``--k`` responses are sampled
(``--k`` defaults to 2 for compare and to 1 otherwise) and written as:

- compare: one row per prompt, ``{"prompt", "a", "b"}`` (``--k`` must be 2);
- rate and correct: one row per response, ``{"prompt", "response"}``;
- rank: one row per prompt, ``{"prompt", "responses": [...]}`` (``--k`` >= 2).

Every row also has ``id``, ``mode``, ``policy`` (the path or hub name), ``revision`` (a hash of the weights, or the
hub commit), and ``sampling`` (the settings and seed), so a label can always be traced to what produced it. The file
is written to a temporary name and renamed: a crash never leaves half a candidates file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

MODES = ("compare", "rate", "rank", "correct")


def read_prompts(path: Path, limit: int | None) -> list[str | list[dict]]:
    """The ``prompt`` of every row (txt: every non-empty line), refusing rows without one by row number."""
    from rlhf.data.readers import read_records
    from rlhf.errors import DataError

    prompts = []
    if path.suffix == ".txt":
        prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        for row, record in read_records(path):
            prompt = record.get("prompt")
            if not (isinstance(prompt, str) and prompt.strip()) and not (isinstance(prompt, list) and prompt):
                raise DataError(f"{path}, row {row}: no 'prompt' (text or a list of chat messages); every row of a "
                                f"prompts file needs one (columns: {sorted(record)})")
            prompts.append(prompt)
    if not prompts:
        raise DataError(f"{path}: no prompts in it")
    return prompts[:limit] if limit else prompts


def revision_of(policy: str, config=None) -> str:
    """The hub commit the weights came from (``config._commit_hash``), else a short hash of the weight files."""
    commit = getattr(config, "_commit_hash", None)
    if commit:
        return str(commit)
    digest = hashlib.sha256()
    for path in sorted(Path(policy).glob("*.safetensors")) + sorted(Path(policy).glob("*.bin")):
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()[:16]


def candidate_rows(prompts: list, responses: list[list[str]], mode: str, base: dict) -> list[dict]:
    """The candidates file's rows: ``responses[i]`` are the ``k`` responses to ``prompts[i]``."""
    def key(*content) -> str:  # the same id for the same content: labels of one file never collide with another's
        return hashlib.sha1(json.dumps([base["revision"], *content], ensure_ascii=False).encode()).hexdigest()[:12]

    rows = []
    for i, (prompt, texts) in enumerate(zip(prompts, responses)):
        if mode == "compare":
            rows.append({"id": key(i, prompt, texts), "prompt": prompt, "a": texts[0], "b": texts[1], **base})
        elif mode == "rank":
            rows.append({"id": key(i, prompt, texts), "prompt": prompt, "responses": texts, **base})
        else:
            rows.extend({"id": key(i, j, prompt, text), "prompt": prompt, "response": text, **base}
                        for j, text in enumerate(texts))
    return rows


def load_policy(policy: str, device: str = "cpu"):
    """A causal LM and its tokenizer, in eval mode (a tokenizer without a pad token pads with EOS: pads are masked)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(policy)
    model = AutoModelForCausalLM.from_pretrained(policy).to(device).eval()
    if tok.pad_token_id is None:
        tok.pad_token_id = tok.eos_token_id
    return tok, model


def sample_texts(tok, model, prompts: list, max_new_tokens: int, temperature: float, top_p: float, top_k: int,
                 generator, batch_size: int, reference=None, desc: str = "sampling",
                 repeats: int = 1) -> tuple[list[str], list[float]]:
    """``repeats`` sampled responses per entry of ``prompts`` (consecutive; chat prompts through the chat
    template), each prompt encoded once for all of them; batches of ``batch_size`` responses (rounded down to whole
    prompts), so with a multiple of ``repeats`` they are the samples of the prompts repeated. With a ``reference``
    model, also each sample's sum_t log pi(y_t) - log pi_ref(y_t) (a Monte Carlo estimate of the sequence KL when
    the samples come from the policy itself: temperature 1, top-p 1, top-k 0)."""
    import torch

    from rlhf.data.formats import render_prompt
    from rlhf.models.policy import left_pad, response_logprobs, response_mask, sample
    from rlhf.utils.progress import progress

    device = next(model.parameters()).device
    start = [tok.bos_token_id] if tok.bos_token_id is not None else []
    rows = [start + tok(render_prompt(tok, p), add_special_tokens=False)["input_ids"] for p in prompts]
    rows = [r or [tok.eos_token_id] for r in rows]  # an empty prompt needs one token to condition on
    banned = [tok.pad_token_id] if tok.pad_token_id != tok.eos_token_id else None
    texts, kls = [], []
    per_batch = max(1, batch_size // repeats)  # prompts per batch
    with torch.no_grad():
        for begin in progress(range(0, len(rows), per_batch), desc, total=-(-len(rows) // per_batch),
                              unit="batch"):
            ids, mask = left_pad(rows[begin:begin + per_batch], tok.pad_token_id)
            ids, mask = ids.to(device), mask.to(device)
            out, _ = sample(model, ids, mask, max_new_tokens, tok.eos_token_id, tok.pad_token_id, temperature,
                            top_k, top_p, generator, banned_ids=banned, repeats=repeats)
            ids, mask = ids.repeat_interleave(repeats, 0), mask.repeat_interleave(repeats, 0)
            real = response_mask(out, tok.eos_token_id, tok.pad_token_id)
            if reference is not None:
                kl = (response_logprobs(model, ids, mask, out, real, temperature, banned)
                      - response_logprobs(reference, ids, mask, out, real, temperature, banned)).sum(-1)
                kls.extend(kl.tolist())
            for row, row_mask in zip(out.tolist(), real.tolist()):
                kept = [t for t, m in zip(row, row_mask) if m and t != tok.eos_token_id]
                texts.append(tok.decode(kept, skip_special_tokens=True).strip())
    return texts, kls


def generate(policy: str, prompts: list, k: int, max_new_tokens: int, temperature: float, top_p: float, top_k: int,
             seed: int, batch_size: int, device: str = "cpu") -> tuple[list[list[str]], str]:
    """``k`` sampled responses per prompt, and the policy's revision."""
    import torch

    tok, model = load_policy(policy, device)
    generator = torch.Generator(device=device).manual_seed(seed)
    texts, _ = sample_texts(tok, model, prompts, max_new_tokens, temperature, top_p, top_k, generator, batch_size,
                            repeats=k)
    return [texts[i * k:(i + 1) * k] for i in range(len(prompts))], revision_of(policy, model.config)


def gold_and_kl(policy: str, reference: str, prompts: list, samples: int, max_new_tokens: int, seed: int,
                scorer: dict | None = None, batch_size: int = 64, device: str = "cpu") -> dict[str, float]:
    """A policy's held-out yardstick: the gold score (``scorer``, default VADER) of ``samples`` pure samples per
    prompt, and their KL to ``reference``; means with standard errors."""
    import math

    import torch

    from rlhf.scoring.build import build_scorer

    tok, model = load_policy(policy, device)
    _, ref = load_policy(reference, device)
    generator = torch.Generator(device=device).manual_seed(seed)
    repeated = [p for p in prompts for _ in range(samples)]
    texts, kls = sample_texts(tok, model, prompts, max_new_tokens, 1.0, 1.0, 0, generator, batch_size, ref,
                              desc="sampling for evaluation", repeats=samples)
    gold = build_scorer(scorer or {"kind": "gold", "name": "vader"}, "evaluation scorer")
    scores = gold.score([p if isinstance(p, str) else "" for p in repeated], texts, where="held-out samples").tolist()

    def mean_se(xs: list[float]) -> tuple[float, float]:
        m = sum(xs) / len(xs)
        return m, (math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs)) if len(xs) > 1 else 0.0)

    (g, g_se), (kl, kl_se) = mean_se(scores), mean_se(kls)
    return {"gold": g, "gold_se": g_se, "kl": kl, "kl_se": kl_se, "samples": len(scores), "prompts": len(prompts)}


def main(argv: list[str] | None = None) -> None:
    from rlhf.data.readers import write_jsonl
    from rlhf.errors import DataError

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", required=True, help="a causal-LM export directory (ours or save_pretrained) or "
                                                        "a hub name in the local cache")
    parser.add_argument("--prompts", required=True, type=Path, help="jsonl/csv/parquet with a 'prompt' column, or txt")
    parser.add_argument("--mode", required=True, choices=MODES, help="the rlhf-label mode the file is for")
    parser.add_argument("--out", required=True, type=Path, help="the candidates jsonl to write")
    parser.add_argument("--k", type=int, default=None, help="responses per prompt (compare: 2; rate, correct: 1; "
                                                            "rank: 4)")
    parser.add_argument("--num-prompts", type=int, default=None, help="use only the first N prompts")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0, help="0 = off")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    k = args.k if args.k is not None else {"compare": 2, "rank": 4}.get(args.mode, 1)
    problems = []
    if args.mode == "compare" and k != 2:
        problems.append(f"--mode compare shows two responses: --k must be 2 (got {k}); use --mode rank for more")
    if args.mode == "rank" and k < 2:
        problems.append(f"--mode rank orders several responses: --k must be >= 2 (got {k})")
    if k < 1 or args.temperature <= 0 or not 0 < args.top_p <= 1 or args.max_new_tokens < 1:
        problems.append("--k and --max-new-tokens must be >= 1, --temperature > 0, 0 < --top-p <= 1")
    if problems:
        parser.error("; ".join(problems))
    try:
        prompts = read_prompts(args.prompts, args.num_prompts)
        responses, revision = generate(args.policy, prompts, k, args.max_new_tokens, args.temperature, args.top_p,
                                       args.top_k, args.seed, args.batch_size, args.device)
    except DataError as err:
        print(f"Error: {err}", file=sys.stderr)
        raise SystemExit(1) from err
    sampling = {"k": k, "max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_p": args.top_p,
                "top_k": args.top_k, "seed": args.seed}
    rows = candidate_rows(prompts, responses, args.mode,
                          {"mode": args.mode, "policy": args.policy, "revision": revision, "sampling": sampling})
    write_jsonl(args.out, rows)
    print(f"wrote {len(rows)} {args.mode} candidates ({len(prompts)} prompts x {k}) to {args.out}; label them with\n"
          f"  rlhf-label --mode {args.mode} --input {args.out} --output labels.jsonl")


if __name__ == "__main__":
    main()
