#!/usr/bin/env bash
# The alignment / capability trade-off of preference-weighted pretraining on BBC sentences scored by VADER
# (misaligned: compound < -0.3): every objective x 3 seeds, same budget, one Hydra multirun; plus conditional training
# with distinct control-token embeddings (control_init_noise=1.0). Prints the results table.
#   bash experiments/pwp_tradeoff/run.sh          (STEPS=600: about 45 minutes on 2 CPU cores)
#   EXPERIMENT=pwp_offensive OUT=logs/experiments/pwp_offensive bash experiments/pwp_tradeoff/run.sh
#     (the same comparison with the offensive-language classifier as the scorer; misaligned: probability > 0.1)
set -euo pipefail
EXPERIMENT=${EXPERIMENT:-pwp_tiny}
OUT=${OUT:-logs/experiments/pwp_tradeoff}
STEPS=${STEPS:-600}
SEEDS=${SEEDS:-1,2,3}
common=(experiment="$EXPERIMENT" trainer.max_steps="$STEPS" trainer.val_check_interval="$STEPS" logger=csv
        callbacks.progress_bar=null method.evaluation.num_samples=256 method.evaluation.num_prompts=128
        trainer.limit_test_batches=40)
rlhf-train -m "${common[@]}" method.objective=mle,filtering,conditional,unlikelihood,rwr,awr seed="$SEEDS" \
  hydra.sweep.dir="$OUT/sweep" hydra.sweep.subdir='${method.objective}_seed${seed}'
rlhf-train -m "${common[@]}" method.objective=conditional method.control_init_noise=1.0 seed="$SEEDS" \
  hydra.sweep.dir="$OUT/sweep" hydra.sweep.subdir='conditional-noise1_seed${seed}'
python "$(dirname "$0")/summarize.py" "$OUT/sweep"
