#!/usr/bin/env bash
# Does DPO move the held-out gold score (VADER) up, starting from one SFT policy? (issue 17, item 7; DPO sigmoid part)
#   1. rlhf-pipeline recipe=dpo (seed 42): LM pretraining -> SFT -> DPO; its SFT export is the shared start.
#   2. DPO (sigmoid, beta 0.1) from that SFT export for seeds 1, 2, 3, each measuring the VADER score of samples
#      from held-out prompts before (evaluate_at_start) and after.
#   bash experiments/dpo_learns/run.sh && python experiments/dpo_learns/summarize.py
set -euo pipefail
OUT=${OUT:-logs/experiments/dpo_learns}
rlhf-pipeline recipe=dpo out_dir="$OUT/pipeline" only=[lm,sft]
for seed in 1 2 3; do
  rlhf-train experiment=dpo_tiny model=pretrained model.name_or_path="$OUT/pipeline/sft/export" \
    evaluate_at_start=true seed=$seed logger=csv callbacks.progress_bar=null hydra.run.dir="$OUT/dpo_seed$seed"
done
