"""DPO training: ``rlhf-train method=dpo`` vs TRL's ``DPOTrainer`` on the same pairs and the same tiny policy.

Both start from the same initial weights: the tiny GPT-2 (``trl_common.MODEL``, dropout off) as our run initialises
it, with the byte-level BPE 4,096 it trains, exported once (``trl_common.initial_policy``); repeat i uses seed i on
both sides (the data order). Both train it, with a frozen copy as the reference, on the same simulated VADER preference pairs (7,236
train / 840 test), sigmoid loss, beta 0.1, batch 16 pairs, max length 96, AdamW lr 5e-4 with 20 warm-up steps and
linear decay, clipping 1.0, on CPU. Printed per run: pairs/s over the logging windows after the first (start-up and
tokenization excluded on both sides), and the held-out implicit-reward accuracy on the 840 test pairs. Runs
alternate (ours, TRL, ...).

    pip install -e ".[bench]"          # TRL is needed only here
    python experiments/benchmarks/dpo_vs_trl.py --repeats 2 --steps 200

Goal (issue 17): ours >= 1.3x TRL's pairs/s at equal held-out reward accuracy.
"""

from __future__ import annotations

from trl_common import MODEL, bench_args, initial_policy, interleave, report, run_ours, run_trl, workspace

BATCH, MAX_LENGTH, LR, WARMUP, BETA = 16, 96, 5e-4, 20, 0.1

TRL_WORKER = r'''
from trl import DPOConfig, DPOTrainer
def dataset(split):
    return Dataset.from_list([{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}
                              for r in rows(split)])
config = DPOConfig(output_dir=args_in["out"] + "-trl", per_device_train_batch_size=args_in["batch"],
                   per_device_eval_batch_size=args_in["batch"], beta=args_in["beta"], loss_type="sigmoid",
                   max_length=args_in["max_length"], precompute_ref_log_probs=False, disable_dropout=True, **common)
reference = AutoModelForCausalLM.from_pretrained(args_in["init"]).eval().requires_grad_(False)
trainer = DPOTrainer(model=model, ref_model=reference, args=config, train_dataset=dataset("train"),
                     processing_class=tok, callbacks=[window])
trainer.train()
evaluation = trainer.evaluate(dataset("test"))
json.dump({"rate": steady_rate(args_in["batch"]), "reward_accuracy": evaluation["eval_rewards/accuracies"]},
          open(args_in["out"], "w"))
'''


def main() -> None:
    args = bench_args(__doc__)
    with workspace("rlhf-bench-dpo-") as (workdir, data):
        data_overrides = ["experiment=dpo_tiny", "data.source.kind=file", f"data.source.path='{data}/pairs_{{split}}.jsonl'",
                          f"data.max_length={MAX_LENGTH}", "method.evaluation.enabled=false"]
        init = initial_policy(workdir, data_overrides)

        def ours(seed: int) -> dict:
            result, metrics = run_ours(
                [*data_overrides, f"data.loader.batch_size={BATCH}", f"method.beta={BETA}", f"method.lr={LR}",
                 f"method.warmup_steps={WARMUP}", f"trainer.max_steps={args.steps}"], workdir, init, seed,
                "train/samples_per_sec", per_row=0.5)
            return {**result, "reward_accuracy": metrics["test/rewards/accuracy"]}

        def trl(seed: int) -> dict:
            return run_trl(TRL_WORKER, workdir, init=str(init), seed=seed, data=str(data), prefix="pairs",
                           steps=args.steps, batch=BATCH, max_length=MAX_LENGTH, lr=LR, warmup=WARMUP, beta=BETA)

        results = interleave(args.repeats, ours, trl, "pairs", "reward_accuracy")
    print(f"\ntiny GPT-2 policy {MODEL}, batch {BATCH} pairs, max_length {MAX_LENGTH}, "
          f"{args.steps} steps")
    report(results, "pairs", "reward_accuracy", goal=1.3)


if __name__ == "__main__":
    main()
