#!/bin/bash
# `make demo` step profile before/after (issue 14): the demo command, 3 steps, no final validation;
# "before" = the serial hf rollout (max_batch_size=1, 1 thread, OMP 1), "after" = the defaults.
# Compare timing_s/* in $OUT/{before,after}/run.log. Run it alone (2 cores).
set -e
cd "$(dirname "$0")/.."
OUT=${OUT:-outputs/demo_step_profile}; D=$OUT/data
test -f $D/ramp/train.parquet || { .venv/bin/masksearch corpus build --out $D/corpus.jsonl --no-progress && \
  .venv/bin/masksearch ramp build --corpus $D/corpus.jsonl --out $D/ramp --num-samples 200 --max-masks 1 --seed 0 --no-progress; }
run() {  # name, extra overrides...
  local name=$1; shift
  local W=$PWD/$OUT/$name; mkdir -p $W; cp -rn $D/corpus.jsonl $D/ramp $W/ 2>/dev/null || true
  PATH="$PWD/.venv/bin:$PATH" PYTHON=$PWD/.venv/bin/python WORK_DIR=$W PROFILE=cpu \
  TOTAL_STEPS=3 TRAIN_BATCH_SIZE=2 GROUP_SIZE=2 MAX_RESPONSE_LENGTH=256 MAX_TURNS=2 SAVE_FREQ=100 EXPERIMENT_NAME=demo_$name \
  bash examples/run_dapo_ramp.sh actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1 \
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2 masksearch.env.max_obs_tokens=128 \
    masksearch.env.topk=1 reward.reward_kwargs.overlong_buffer_cfg.len=32 \
    masksearch.dynamic_sampling.max_gen_batches=1 reward.custom_reward_function.reward_kwargs.format_weight=0.2 \
    trainer.test_freq=-1 trainer.val_before_train=false "$@" > $W/run.log 2>&1
  echo "$name rc=$?"
}
run before ++actor_rollout_ref.rollout.engine_kwargs.hf.max_batch_size=1 ++actor_rollout_ref.rollout.engine_kwargs.hf.num_threads=1 "++ray_kwargs.ray_init.runtime_env.env_vars.OMP_NUM_THREADS='1'"
run after
