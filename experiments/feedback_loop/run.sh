#!/usr/bin/env bash
# Issue 18, item 5: does the feedback loop improve the policy round over round? rlhf-loop from one SFT policy,
# a simulated annotator (VADER with Bradley-Terry noise T = 0.1), 3 rounds of PROMPTS_PER_ROUND compared pairs (512),
# DPO (lr 3e-4, EPOCHS passes (3) over every label so far, each round; pairs the gold scorer scores alike are ties,
# not trained on), each round from the SFT start (TRAIN_FROM=start, the default) or from the previous round's policy
# (TRAIN_FROM=previous, iterative DPO), seeds 1-3; the held-out gold score (32 held-out BBC headlines x EVAL_SAMPLES
# (16)) and the KL to the SFT start after each round. About 20 minutes on 2 CPU cores.
#   bash experiments/feedback_loop/run.sh && python experiments/feedback_loop/summarize.py
# The first experiment (128 pairs a round, 40 DPO steps, 4 samples per held-out prompt):
#   OUT=logs/experiments/feedback_loop/start PROMPTS_PER_ROUND=128 EVAL_SAMPLES=4 EPOCHS=0 \
#     TRAIN_BUDGET="trainer.max_steps=40 trainer.val_check_interval=40" bash experiments/feedback_loop/run.sh
set -euo pipefail
TRAIN_FROM=${TRAIN_FROM:-start}
SEEDS=${SEEDS:-"1 2 3"}
PROMPTS_PER_ROUND=${PROMPTS_PER_ROUND:-512}
EVAL_SAMPLES=${EVAL_SAMPLES:-16}
EPOCHS=${EPOCHS:-3}
TRAIN_BUDGET=${TRAIN_BUDGET:-}  # extra rlhf-train overrides of each round's budget (with EPOCHS=0: fixed steps)
OUT=${OUT:-logs/experiments/feedback_loop/${TRAIN_FROM}_${PROMPTS_PER_ROUND}x${EPOCHS}ep}
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
    --epochs "$EPOCHS" --train-from "$TRAIN_FROM" --train method.lr=3e-4 $TRAIN_BUDGET trainer.limit_val_batches=4 \
            method.evaluation.enabled=false logger=csv callbacks.progress_bar=null
done
python "$(dirname "$0")/summarize.py" "$(dirname "$OUT")"
