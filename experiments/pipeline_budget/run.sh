#!/usr/bin/env bash
# Choosing the main job's stage settings by measurement (issue: the pipeline should show what the framework can do
# within ~10 minutes on 2 CPU cores). One job at a time; each arm is an ordinary rlhf-train run under $OUT.
#   bash experiments/pipeline_budget/run.sh            # reward arms, then PPO arms; ~40 minutes
# Needs the pipeline's MLM stage first:  rlhf-pipeline out_dir=$OUT/base only=[mlm]
set -euo pipefail
OUT=${OUT:-logs/experiments/pipeline_budget}
SEED=${SEED:-42}
common=(logger=csv callbacks.progress_bar=null seed="$SEED")
mlm="$OUT/base/mlm/export"
[ -f "$mlm/config.json" ] || rlhf-pipeline out_dir="$OUT/base" only=[mlm] seed="$SEED"

# 1. reward stage: data size (pairs per article), steps, initialisation (the MLM export vs the same architecture with
#    random weights). MiniLM is not an arm: ~3 s per step here (200 steps = 10 minutes), see experiments/reward_learning.
rm_arm() {  # name, then overrides
  local name=$1; shift
  [ -f "$OUT/$name/metrics.json" ] || rlhf-train experiment=reward_tiny model=pretrained model.name_or_path="$mlm" \
    hydra.run.dir="$OUT/$name" "${common[@]}" "$@"
}
rm_arm rm_p16_s1000_mlm data.source.pairs_per_article=16
rm_arm rm_p16_s1000_scratch data.source.pairs_per_article=16 model.random_init=true
rm_arm rm_p16_s600_mlm data.source.pairs_per_article=16 trainer.max_steps=600 trainer.val_check_interval=300
rm_arm rm_p8_s1000_mlm data.source.pairs_per_article=8

# 2. PPO stage, against the reward model named by $RM: starting policy (the pipeline's PWP export vs a plain LM with
#    the same 600-step budget) and KL coefficient. Held-out gold before -> after comes from evaluate_at_start=true.
RM=${RM:-rm_p16_s1000_mlm}
rm="$OUT/$RM/export"
if [ ! -f "$OUT/pwp/export/config.json" ]; then
  rlhf-train experiment=pwp_tiny method.objective=unlikelihood data.scores.scorer.kind=reward_model \
    data.scores.scorer.path="$rm" data.scores.sense=reward data.scores.threshold=-1.0 trainer.max_steps=600 \
    trainer.val_check_interval=300 hydra.run.dir="$OUT/pwp" "${common[@]}"
fi
if [ ! -f "$OUT/lm/export/config.json" ]; then
  rlhf-train experiment=lm_tiny trainer.max_steps=600 trainer.val_check_interval=300 hydra.run.dir="$OUT/lm" \
    "${common[@]}"
fi
ppo_arm() {  # name, policy dir, then overrides
  local name=$1 policy=$2; shift 2
  [ -f "$OUT/$name/metrics.json" ] || rlhf-train experiment=ppo_sentiment model.name_or_path="$policy" \
    method.reward.kind=reward_model method.reward.path="$rm" evaluate_at_start=true hydra.run.dir="$OUT/$name" \
    "${common[@]}" "$@"
}
ppo_arm ppo_pwp_kl0.05 "$OUT/pwp/export"
ppo_arm ppo_pwp_kl0.1 "$OUT/pwp/export" method.kl_coef=0.1
ppo_arm ppo_pwp_kl0.03 "$OUT/pwp/export" method.kl_coef=0.03
ppo_arm ppo_pwp_kl0.02 "$OUT/pwp/export" method.kl_coef=0.02
ppo_arm ppo_lm_kl0.05 "$OUT/lm/export"
python "$(dirname "$0")/summarize.py" "$OUT"
