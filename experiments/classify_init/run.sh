#!/usr/bin/env bash
# Issue 17, item 5: BBC topic classification (5 classes) from three initialisations, seeds 1-3:
#   random  - the tiny RoFormer of experiment=classify_bbc, random weights
#   mlm     - the same architecture initialised from our masked-LM export (experiment=mlm_tiny, seed 42)
#   mlm_lr3e-4 - the same from our masked-LM export at lr 3e-4 (the others: 1e-3, tuned for random weights)
#   minilm  - the offline MiniLM-L6 (22.7M parameters, pretrained by its authors), lr 1e-4
# Every arm: 300 steps, max length 128 tokens, the same document-hash split. MiniLM takes ~10 minutes a run
# (MINILM_SEEDS="1" for one seed). Skips what is done, resumes what was stopped; about 45 minutes on 2 CPU cores.
#   bash experiments/classify_init/run.sh && python experiments/classify_init/summarize.py
set -euo pipefail
OUT=${OUT:-logs/experiments/classify_init}
SEEDS=${SEEDS:-"1 2 3"}
export RLHF_PROGRESS=0
common=(experiment=classify_bbc data.max_length=128 logger=csv callbacks.progress_bar=null ckpt_path=auto)

[ -f "$OUT/mlm/export/model.safetensors" ] || rlhf-train experiment=mlm_tiny logger=csv callbacks.progress_bar=null \
  hydra.run.dir="$OUT/mlm"
MINILM_SEEDS=${MINILM_SEEDS:-"1 2 3"}  # MiniLM (~10 min a run on 2 CPU cores) for these seeds
for seed in $SEEDS; do
  [ -f "$OUT/random_seed$seed/metrics.json" ] || rlhf-train "${common[@]}" seed="$seed" \
    hydra.run.dir="$OUT/random_seed$seed"
  [ -f "$OUT/mlm_seed$seed/metrics.json" ] || rlhf-train "${common[@]}" model=pretrained \
    model.name_or_path="$OUT/mlm/export" seed="$seed" hydra.run.dir="$OUT/mlm_seed$seed"
  [ -f "$OUT/mlm_lr3e-4_seed$seed/metrics.json" ] || rlhf-train "${common[@]}" model=pretrained \
    model.name_or_path="$OUT/mlm/export" method.lr=3e-4 seed="$seed" hydra.run.dir="$OUT/mlm_lr3e-4_seed$seed"
done
for seed in $MINILM_SEEDS; do
  [ -f "$OUT/minilm_seed$seed/metrics.json" ] || rlhf-train "${common[@]}" model=minilm method.lr=1e-4 \
    seed="$seed" hydra.run.dir="$OUT/minilm_seed$seed"
done
python "$(dirname "$0")/summarize.py" "$OUT"
