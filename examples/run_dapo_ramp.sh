#!/usr/bin/env bash
# MaskSearch RL: DAPO on RAMP data with the search environment.
#
# Usage:  bash examples/run_dapo_ramp.sh [hydra overrides...]
#   CPU laptop (embedded default): bash examples/run_dapo_ramp.sh
#     The default policy is the warm start: SmolLM2-135M-Instruct after a short SFT on rules-teacher
#     trajectories (`masksearch model path --warm-start` builds it once, ~6-8 min on 2 CPU cores, then
#     reuses it from ~/.cache/masksearch/models). The base model never writes a tag, so RL from it sees
#     reward 0; to train it anyway: MODEL_PATH=$(masksearch model path) bash examples/run_dapo_ramp.sh
#   GPU node:   MODEL_PATH=Qwen/Qwen2.5-1.5B-Instruct N_GPUS_PER_NODE=8 bash examples/run_dapo_ramp.sh
#   Cluster:    see examples/multinode/ (start Ray first, then run this on the head node).
# Every knob below is an environment variable; extra arguments are passed to Hydra as overrides.
# Re-running the same command resumes from the latest checkpoint in OUTPUT_DIR.
set -xeuo pipefail

# ---- user-adjustable ----
PYTHON=${PYTHON:-python}
PROFILE=${PROFILE:-auto}                          # auto | cpu | gpu
MODEL_PATH=${MODEL_PATH:-}                        # default: the warm start of the embedded SmolLM2-135M-Instruct
WORK_DIR=${WORK_DIR:-$PWD/outputs/dapo_ramp}
CORPUS=${CORPUS:-$WORK_DIR/corpus.jsonl}          # Search-R1 JSONL corpus; built from the embedded Wikipedia if missing
INDEX_DIR=${INDEX_DIR:-$WORK_DIR/index_bm25}      # in-process BM25 index; built if missing
RETRIEVER_URL=${RETRIEVER_URL:-}                  # set to use a running retrieval server instead of INDEX_DIR
RETRIEVER_WAIT=${RETRIEVER_WAIT:-600}             # seconds to wait for the server's /health to report ready
DATA_DIR=${DATA_DIR:-$WORK_DIR/ramp}              # train.parquet / val.parquet; built with `masksearch ramp build` if missing
RAMP_SAMPLES=${RAMP_SAMPLES:-2000}
NNODES=${NNODES:-1}
N_GPUS_PER_NODE=${N_GPUS_PER_NODE:-1}
TOTAL_STEPS=${TOTAL_STEPS:-100}
TRAIN_BATCH_SIZE=${TRAIN_BATCH_SIZE:-8}
GROUP_SIZE=${GROUP_SIZE:-4}
MAX_PROMPT_LENGTH=${MAX_PROMPT_LENGTH:-1024}
MAX_RESPONSE_LENGTH=${MAX_RESPONSE_LENGTH:-512}
MAX_TURNS=${MAX_TURNS:-4}
CURRICULUM=${CURRICULUM:-staged}                  # none | staged | linear | mixed | balanced
SAVE_FREQ=${SAVE_FREQ:-10}
OUTPUT_DIR=${OUTPUT_DIR:-$WORK_DIR/checkpoints}
TENSORBOARD_DIR=${TENSORBOARD_DIR:-$WORK_DIR/tensorboard}
ROLLOUT_DATA_DIR=${ROLLOUT_DATA_DIR:-$WORK_DIR/rollouts}        # verl's per-step dumps, <step>.jsonl (train_batch_size x n lines); null = off
VALIDATION_DATA_DIR=${VALIDATION_DATA_DIR:-$WORK_DIR/validation} # validation generations at each test; null = off (browse: masksearch view)
EXPERIMENT_NAME=${EXPERIMENT_NAME:-dapo_ramp_$(basename "${MODEL_PATH:-smollm2-135m-warm}")_n${GROUP_SIZE}}
# -------------------------

export TENSORBOARD_DIR HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
mkdir -p "$WORK_DIR"
if [ -z "$MODEL_PATH" ]; then
  MODEL_PATH=$(masksearch model path --warm-start)   # built once (progress on stderr), then cached
fi

# data and retrieval: built once, reused afterwards
if [ ! -f "$CORPUS" ]; then
  masksearch corpus build --out "$CORPUS"
fi
if [ -z "$RETRIEVER_URL" ] && [ ! -f "$INDEX_DIR/manifest.json" ]; then
  masksearch index build --corpus "$CORPUS" --retriever bm25 --out "$INDEX_DIR"
fi
if [ ! -f "$DATA_DIR/train.parquet" ]; then
  masksearch ramp build --corpus "$CORPUS" --out "$DATA_DIR" --num-samples "$RAMP_SAMPLES" --seed 0 --overwrite
fi
if [ -n "$RETRIEVER_URL" ]; then
  RETRIEVER=("masksearch.env.retriever_url=$RETRIEVER_URL")
  # waits for a large index to load; exits with the reason (refused, not ready, wrong server)
  masksearch retriever wait --url "$RETRIEVER_URL" --timeout "$RETRIEVER_WAIT"
else
  RETRIEVER=("masksearch.env.retriever_index=$INDEX_DIR")
fi

DATA=(
  data.train_files="$DATA_DIR/train.parquet"
  data.val_files="$DATA_DIR/val.parquet"
  data.train_batch_size="$TRAIN_BATCH_SIZE"
  data.max_prompt_length="$MAX_PROMPT_LENGTH"
  data.max_response_length="$MAX_RESPONSE_LENGTH"
)
MODEL=(
  actor_rollout_ref.model.path="$MODEL_PATH"
  actor_rollout_ref.rollout.n="$GROUP_SIZE"
  actor_rollout_ref.actor.ppo_mini_batch_size="$TRAIN_BATCH_SIZE"
)
MASKSEARCH=(
  masksearch.profile="$PROFILE"
  masksearch.env.max_turns="$MAX_TURNS"
  masksearch.curriculum.strategy="$CURRICULUM"
  "${RETRIEVER[@]}"
)
TRAINER=(
  trainer.nnodes="$NNODES"
  trainer.n_gpus_per_node="$N_GPUS_PER_NODE"
  trainer.total_training_steps="$TOTAL_STEPS"
  trainer.save_freq="$SAVE_FREQ"
  trainer.default_local_dir="$OUTPUT_DIR"
  trainer.experiment_name="$EXPERIMENT_NAME"
  trainer.rollout_data_dir="$ROLLOUT_DATA_DIR"
  trainer.validation_data_dir="$VALIDATION_DATA_DIR"
)

echo "tensorboard logs: $TENSORBOARD_DIR   checkpoints: $OUTPUT_DIR (resumes from the latest)"
"$PYTHON" -m masksearch.recipes.dapo_ramp "${DATA[@]}" "${MODEL[@]}" "${MASKSEARCH[@]}" "${TRAINER[@]}" "$@"
echo "done. tensorboard --logdir $TENSORBOARD_DIR ; checkpoints in $OUTPUT_DIR"
echo "trajectories: masksearch view $WORK_DIR --out $WORK_DIR/view  (then open $WORK_DIR/view/index.html)"
