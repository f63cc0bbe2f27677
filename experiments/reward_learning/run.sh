#!/usr/bin/env bash
# Reward model on simulated VADER preference pairs: MLM-pretrained encoder vs the same architecture and tokenizer
# with random weights, same budget, 3 seeds. Writes run dirs under $OUT and prints the results table.
#   bash experiments/reward_learning/run.sh            (about 45 minutes on 2 CPU cores)
set -euo pipefail
OUT=${OUT:-logs/experiments/reward_learning}
MLM_STEPS=${MLM_STEPS:-2000}
MODEL=${MODEL:-tiny_roformer}  # the encoder pretrained by MLM (tiny_roformer, tiny_bert, or minilm: continued MLM)
MLM_EXPERIMENT=${MLM_EXPERIMENT:-mlm_tiny}  # mlm_minilm for MODEL=minilm (lr 5e-5, 128-token blocks)
RM_STEPS=${RM_STEPS:-1000}
SEEDS=${SEEDS:-"1 2 3"}
PAIRS=${PAIRS:-4}        # pairs per article (4: 7.2k train pairs; 32: 58k)
LR=${LR:-5e-4}
EXTRA=${EXTRA:-}           # more overrides for the reward runs, e.g. EXTRA="data.source.scorer=offensive"
SELECT=${SELECT:-best}  # best: test/export the checkpoint with the lowest val/loss (early stopping); last: the final one
VAL_EVERY=${VAL_EVERY:-100}
LR_MLM=${LR_MLM:-$LR}    # the MLM-initialised arm's learning rate (pretrained encoders usually want a lower one)
common=(logger=csv callbacks.progress_bar=null ckpt_path=auto)   # auto: a rerun resumes an interrupted stage

if [ ! -f "$OUT/mlm/export/model.safetensors" ]; then
  rlhf-train experiment="$MLM_EXPERIMENT" model="$MODEL" trainer.max_steps="$MLM_STEPS" trainer.val_check_interval=$(( MLM_STEPS < 500 ? MLM_STEPS : 500 )) \
    hydra.run.dir="$OUT/mlm" "${common[@]}"
fi
for seed in $SEEDS; do
  for init in mlm random; do
    random_init=false; lr=$LR_MLM; [ "$init" = random ] && random_init=true && lr=$LR
    [ -f "$OUT/rm_${init}_seed$seed/metrics.json" ] && continue
    rlhf-train experiment=reward_tiny model=pretrained model.name_or_path="$OUT/mlm/export" \
      model.random_init=$random_init data.source.pairs_per_article="$PAIRS" method.lr="$lr" \
      trainer.max_steps="$RM_STEPS" trainer.val_check_interval="$VAL_EVERY" final_weights="$SELECT" seed="$seed" \
      hydra.run.dir="$OUT/rm_${init}_seed$seed" "${common[@]}" $EXTRA
  done
done
python "$(dirname "$0")/summarize.py" "$OUT"
