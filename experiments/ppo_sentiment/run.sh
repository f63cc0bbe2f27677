#!/usr/bin/env bash
# PPO on the offline sentiment task, 3 seeds x 2 rewards (VADER itself; a reward model trained on simulated VADER
# feedback), gold score (VADER) and KL on held-out prompts before and after. Writes run dirs under $OUT and prints the
# results table.   bash experiments/ppo_sentiment/run.sh      (about 30 minutes on 2 CPU cores, one job at a time)
set -euo pipefail
OUT=${OUT:-logs/experiments/ppo_sentiment}
SEEDS=${SEEDS:-"1 2 3"}
ITERS=${ITERS:-40}
common=(logger=csv callbacks.progress_bar=null)

# 1. the policy's starting point: a tiny GPT-2 pretrained on BBC (MLE)
if [ ! -f "$OUT/lm/export/model.safetensors" ]; then
  rlhf-train experiment=lm_tiny hydra.run.dir="$OUT/lm" "${common[@]}"
fi
# 2. a reward model on simulated VADER preference pairs (16 pairs per article)
if [ ! -f "$OUT/rm/export/model.safetensors" ]; then
  rlhf-train experiment=reward_tiny data.source.pairs_per_article=16 trainer.max_steps=1500 \
    trainer.val_check_interval=500 hydra.run.dir="$OUT/rm" "${common[@]}"
fi
policy=(experiment=ppo_sentiment model.name_or_path="$OUT/lm/export")
rm_reward=(method.reward.kind=reward_model method.reward.path="$OUT/rm/export")
for seed in $SEEDS; do
  # 3. before: the pretrained policy on the test prompts (proxy = the reward model, gold = VADER)
  [ -f "$OUT/before_seed$seed/metrics.json" ] || rlhf-train "${policy[@]}" "${rm_reward[@]}" train=false export=false \
    seed="$seed" hydra.run.dir="$OUT/before_seed$seed" "${common[@]}"
  # 4. PPO against each reward
  [ -f "$OUT/ppo_vader_seed$seed/metrics.json" ] || rlhf-train "${policy[@]}" trainer.max_steps="$ITERS" \
    seed="$seed" hydra.run.dir="$OUT/ppo_vader_seed$seed" "${common[@]}"
  [ -f "$OUT/ppo_rm_seed$seed/metrics.json" ] || rlhf-train "${policy[@]}" "${rm_reward[@]}" \
    trainer.max_steps="$ITERS" seed="$seed" hydra.run.dir="$OUT/ppo_rm_seed$seed" "${common[@]}"
done
python "$(dirname "$0")/summarize.py" "$OUT"
