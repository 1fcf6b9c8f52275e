#!/bin/bash
# `make demo` step profile before/after (issue 14): the demo command, STEPS (5) steps, no validation, run
# twice on the same data and settings:
#   before = the code before issue 14 (BEFORE_COMMIT, default the parent of the first batched-rollout
#            commit), checked out as a git worktree and imported through PYTHONPATH in place of this
#            checkout (same venv, same verl; only masksearch's own code differs);
#   after  = this checkout, its defaults.
# Compare timing_s/* in $OUT/{before,after}/run.log (the last lines print them per step).
# Run it alone: the two cores are the measurement. ~20 min.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-outputs/demo_step_profile}; case $OUT in /*) ;; *) OUT=$ROOT/$OUT ;; esac; D=$OUT/data
BEFORE_COMMIT=${BEFORE_COMMIT:-7d4850c^}
ONLY=${ONLY:-before after}
test -f $D/ramp/train.parquet || { .venv/bin/masksearch corpus build --out $D/corpus.jsonl --no-progress && \
  .venv/bin/masksearch ramp build --corpus $D/corpus.jsonl --out $D/ramp --num-samples 200 --max-masks 1 --seed 0 --no-progress; }

SHIM=$OUT/before-src
if [[ " $ONLY " == *" before "* ]] && [ ! -d "$SHIM/masksearch" ]; then
  mkdir -p "$SHIM"
  git worktree add --force --detach "$SHIM/masksearch" "$BEFORE_COMMIT" > /dev/null
fi

run() {  # name, source dir (or empty for this checkout), extra overrides...
  local name=$1 src=$2; shift 2
  local W=$OUT/$name; rm -rf "$W"; mkdir -p "$W"; cp -r $D/corpus.jsonl $D/ramp "$W/"
  local env=(PATH="$ROOT/.venv/bin:$PATH" PYTHON=$ROOT/.venv/bin/python WORK_DIR=$W PROFILE=cpu
    TOTAL_STEPS=${STEPS:-5} TRAIN_BATCH_SIZE=2 GROUP_SIZE=2 MAX_RESPONSE_LENGTH=256 MAX_TURNS=2 SAVE_FREQ=100
    EXPERIMENT_NAME=demo_$name)
  # the old code's one verl plugin; this checkout's second entry point (recipes) does not exist there
  [ -n "$src" ] && env+=(PYTHONPATH=$src VERL_USE_EXTERNAL_PLUGINS=masksearch)
  local script=${src:+$src/masksearch/}examples/run_dapo_ramp.sh
  env "${env[@]}" bash "$script" actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1 \
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2 masksearch.env.max_obs_tokens=128 \
    masksearch.env.topk=1 reward.reward_kwargs.overlong_buffer_cfg.len=32 \
    masksearch.dynamic_sampling.max_gen_batches=1 reward.custom_reward_function.reward_kwargs.format_weight=0.2 \
    trainer.test_freq=-1 trainer.val_before_train=false "$@" > "$W/run.log" 2>&1 && rc=0 || rc=$?
  echo "== $name (rc=$rc): timing_s per step"
  grep -o "timing_s/\(step\|gen\|update_actor\|old_log_prob\|update_weights\|reward\|adv\):[0-9.]*" "$W/run.log" \
    | awk -F'[/:]' '{v[$2]=v[$2] sprintf(" %6.1f", $3)} END {for (k in v) printf "  %-15s%s\n", k, v[k]}' | sort
}
for name in $ONLY; do
  case $name in
    before) run before "$SHIM" ;;
    after) run after "" ;;
    *) run "$name" "" ${EXTRA:-} ;;  # a named variant of this checkout with EXTRA overrides
  esac
done
