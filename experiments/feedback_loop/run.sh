#!/usr/bin/env bash
# Issue 18, item 5: does the feedback loop improve the policy round over round? rlhf-loop from one SFT policy,
# a simulated annotator (VADER with Bradley-Terry noise T = 0.1), 3 rounds of 128 compared pairs,
# DPO (lr 3e-4, 40 steps per round on every label so far; pairs the gold scorer scores alike are ties, not trained
# on), each round from the SFT start (TRAIN_FROM=start, the default) or from the previous round's policy
# (TRAIN_FROM=previous, iterative DPO), seeds 1-3; the held-out gold score (32 held-out BBC headlines x 4 samples)
# and the KL to the SFT start after each round. About 15 minutes on 2 CPU cores.
#   bash experiments/feedback_loop/run.sh && python experiments/feedback_loop/summarize.py
set -euo pipefail
TRAIN_FROM=${TRAIN_FROM:-start}
OUT=${OUT:-logs/experiments/feedback_loop/$TRAIN_FROM}
SEEDS=${SEEDS:-"1 2 3"}
PROMPTS_PER_ROUND=${PROMPTS_PER_ROUND:-128}
EVAL_SAMPLES=${EVAL_SAMPLES:-4}
# each round's DPO run: 40 steps (the first experiment), or e.g. TRAIN_BUDGET="trainer.max_steps=-1
# trainer.max_epochs=3 trainer.val_check_interval=1.0": 3 epochs over every label so far
TRAIN_BUDGET=${TRAIN_BUDGET:-"trainer.max_steps=40 trainer.val_check_interval=40"}
export RLHF_PROGRESS=0
SFT=${SFT:-logs/experiments/method_frontier/pipeline/sft/export}
if [ ! -f "$SFT/model.safetensors" ]; then  # no method_frontier run here: make the same SFT start
  SFT="$OUT/pipeline/sft/export"
  [ -f "$SFT/model.safetensors" ] || rlhf-pipeline recipe=dpo out_dir="$OUT/pipeline" only=[lm,sft]
fi
mkdir -p "$OUT"
# prompts: 32 held-out headlines (the simulated task's test split) first, then the training split's
python - "$OUT/prompts.jsonl" <<'PY'
import json, sys
from rlhf.data.simulated_feedback import make_feedback
pairs = make_feedback()["pairs"]
test = list(dict.fromkeys(r["prompt"] for r in pairs["test"]))[:32]
train = [p for p in dict.fromkeys(r["prompt"] for r in pairs["train"]) if p not in test]
with open(sys.argv[1], "w") as handle:
    for prompt in test + train:
        handle.write(json.dumps({"prompt": prompt}) + "\n")
PY
for seed in $SEEDS; do
  rlhf-loop --policy "$SFT" --prompts "$OUT/prompts.jsonl" --out "$OUT/seed$seed" --rounds 3 \
    --prompts-per-round "$PROMPTS_PER_ROUND" --eval-prompts 32 --eval-samples "$EVAL_SAMPLES" --seed "$seed" \
    --train-from "$TRAIN_FROM" --train method.lr=3e-4 $TRAIN_BUDGET trainer.limit_val_batches=4 \
            method.evaluation.enabled=false logger=csv callbacks.progress_bar=null
done
python "$(dirname "$0")/summarize.py" "$(dirname "$OUT")"
