"""Supervised fine-tuning: ``rlhf-train method=sft`` vs TRL's ``SFTTrainer`` on the same demonstrations and model.

Both start from the same initial weights: the tiny GPT-2 (``trl_common.MODEL``, dropout off) as our run initialises
it, with the byte-level BPE 4,096 it trains, exported once (``trl_common.initial_policy``); repeat i uses seed i on
both sides (the data order). Both train it on the same demonstrations (the simulated task's preferred responses: prompt + response,
EOS appended, loss on the response only, padded, no packing), batch 16, max length 96, AdamW lr 5e-4 with 20
warm-up steps and linear decay, clipping 1.0, on CPU. Printed per run: training tokens/s (real tokens, prompt and
response, padding excluded) over the logging windows after the first, and the held-out response loss per token on
the test demonstrations (ours: micro-averaged over tokens; TRL: its ``eval_loss``, a mean of per-batch means).
Runs alternate (ours, TRL, ...).

    pip install -e ".[bench]"          # TRL is needed only here
    python experiments/benchmarks/sft_vs_trl.py --repeats 2 --steps 200

Goal (issue 17): ours >= 1.0x TRL's tokens/s.
"""

from __future__ import annotations

import json
from pathlib import Path

from trl_common import MODEL, bench_args, initial_policy, interleave, report, run_ours, run_trl, workspace

BATCH, MAX_LENGTH, LR, WARMUP = 16, 96, 5e-4, 20

TRL_WORKER = r'''
from trl import SFTConfig, SFTTrainer
def dataset(split):
    return Dataset.from_list([{"prompt": r["prompt"], "completion": r["response"]} for r in rows(split)])
config = SFTConfig(output_dir=args_in["out"] + "-trl", per_device_train_batch_size=args_in["batch"],
                   per_device_eval_batch_size=args_in["batch"], max_length=args_in["max_length"], packing=False,
                   completion_only_loss=True, **common)
trainer = SFTTrainer(model=model, args=config, train_dataset=dataset("train"), processing_class=tok,
                     callbacks=[window])
tokens = []
collate = trainer.data_collator
def counting(features):
    batch = collate(features)
    tokens.append(int(batch["attention_mask"].sum()))
    return batch
trainer.data_collator = counting
trainer.train()
per_step = sum(tokens) / len(tokens)  # mean real tokens per batch (the same shuffled data every window)
evaluation = trainer.evaluate(dataset("test"))
json.dump({"rate": steady_rate(per_step), "test_loss": evaluation["eval_loss"]}, open(args_in["out"], "w"))
'''


def write_demonstrations(data: Path) -> None:
    """The simulated pairs' preferred responses as prompt/response rows, per split."""
    for split in ("train", "val", "test"):
        rows = [json.loads(line) for line in (data / f"pairs_{split}.jsonl").read_text().splitlines()]
        with open(data / f"demos_{split}.jsonl", "w") as handle:
            for r in rows:
                handle.write(json.dumps({"prompt": r["prompt"], "response": r["chosen"]}) + "\n")


def main() -> None:
    args = bench_args(__doc__)
    with workspace("rlhf-bench-sft-") as (workdir, data):
        write_demonstrations(data)
        data_overrides = ["experiment=sft_tiny", "data.source.kind=file", f"data.source.path='{data}/demos_{{split}}.jsonl'",
                          f"data.max_length={MAX_LENGTH}", "data.packing=false", "method.evaluation.enabled=false"]
        init = initial_policy(workdir, data_overrides)

        def ours(seed: int) -> dict:
            result, metrics = run_ours(
                [*data_overrides, f"data.loader.batch_size={BATCH}", f"method.lr={LR}",
                 f"method.warmup_steps={WARMUP}", f"trainer.max_steps={args.steps}"], workdir, init, seed,
                "train/tokens_per_sec", per_row=1.0)
            return {**result, "test_loss": metrics["test/loss"]}

        def trl(seed: int) -> dict:
            return run_trl(TRL_WORKER, workdir, init=str(init), seed=seed, data=str(data), prefix="demos",
                           steps=args.steps, batch=BATCH, max_length=MAX_LENGTH, lr=LR, warmup=WARMUP)

        results = interleave(args.repeats, ours, trl, "tokens", "test_loss")
    print(f"\ntiny GPT-2 {MODEL}, batch {BATCH} demonstrations, max_length {MAX_LENGTH}, {args.steps} steps")
    report(results, "tokens", "test_loss", goal=1.0)


if __name__ == "__main__":
    main()
