#!/usr/bin/env bash
# Issue 17, item 5: BBC topic classification (5 classes) from three initialisations, seeds 1-3:
#   random  - the tiny RoFormer of experiment=classify_bbc, random weights
#   mlm     - the same architecture initialised from our masked-LM export (experiment=mlm_tiny, seed 42)
#   minilm  - the offline MiniLM-L6 (22.7M parameters, pretrained by its authors), lr 1e-4
# Every arm: 300 steps, max length 128 tokens, the same document-hash split. MiniLM runs for seed 1 only by default
# (MINILM_SEEDS="1 2 3" for all: ~10 minutes each). Skips what is done, resumes what was stopped; about 20 minutes on
# 2 CPU cores.
#   bash experiments/classify_init/run.sh && python experiments/classify_init/summarize.py
set -euo pipefail
OUT=${OUT:-logs/experiments/classify_init}
SEEDS=${SEEDS:-"1 2 3"}
export RLHF_PROGRESS=0
common=(experiment=classify_bbc data.max_length=128 logger=csv callbacks.progress_bar=null ckpt_path=auto)

[ -f "$OUT/mlm/export/model.safetensors" ] || rlhf-train experiment=mlm_tiny logger=csv callbacks.progress_bar=null \
  hydra.run.dir="$OUT/mlm"
MINILM_SEEDS=${MINILM_SEEDS:-"1"}  # MiniLM (~10 min a run on 2 CPU cores) for these seeds only
for seed in $SEEDS; do
  [ -f "$OUT/random_seed$seed/metrics.json" ] || rlhf-train "${common[@]}" seed="$seed" \
    hydra.run.dir="$OUT/random_seed$seed"
  [ -f "$OUT/mlm_seed$seed/metrics.json" ] || rlhf-train "${common[@]}" model=pretrained \
    model.name_or_path="$OUT/mlm/export" seed="$seed" hydra.run.dir="$OUT/mlm_seed$seed"
done
for seed in $MINILM_SEEDS; do
  [ -f "$OUT/minilm_seed$seed/metrics.json" ] || rlhf-train "${common[@]}" model=minilm method.lr=1e-4 \
    seed="$seed" hydra.run.dir="$OUT/minilm_seed$seed"
done
python "$(dirname "$0")/summarize.py" "$OUT"
