#!/usr/bin/env bash
# Step 1 of 3 — on the head node: start Ray, optionally the retrieval server, wait for the workers.
#   NNODES=2 N_GPUS_PER_NODE=8 bash examples/multinode/ray_head.sh
# Step 2 — on every worker:  HEAD_ADDRESS=<head-ip>:6379 bash examples/multinode/ray_worker.sh
# Step 3 — on the head:      RAY_ADDRESS=<head-ip>:6379 RETRIEVER_URL=http://<head-ip>:8000 NNODES=2 N_GPUS_PER_NODE=8 \
#                              bash examples/run_dapo_ramp.sh
# masksearch must be installed on every node (same venv path), or shipped with a Ray runtime_env.
# Ray >= 2.5x turns on token authentication on the head: copy ~/.ray/auth_token to every node and
# export RAY_AUTH_MODE=token everywhere, or export RAY_AUTH_MODE=disabled on a trusted network.
set -xeuo pipefail

# ---- user-adjustable ----
NNODES=${NNODES:-2}
N_GPUS_PER_NODE=${N_GPUS_PER_NODE:-8}
RAY_PORT=${RAY_PORT:-6379}
NODE_IP=${NODE_IP:-$(hostname -I 2>/dev/null | awk '{print $1}')}
NUM_CPUS=${NUM_CPUS:-}                        # default: Ray's own count
NUM_GPUS=${NUM_GPUS:-}                        # set on CPU-only test clusters (logical GPUs)
INDEX_DIR=${INDEX_DIR:-}                      # set to start the retrieval server here, once for all nodes
RETRIEVER_PORT=${RETRIEVER_PORT:-8000}
WAIT_TIMEOUT=${WAIT_TIMEOUT:-600}
# -------------------------

EXTRA=()
[ -n "$NUM_CPUS" ] && EXTRA+=(--num-cpus "$NUM_CPUS")
[ -n "$NUM_GPUS" ] && EXTRA+=(--num-gpus "$NUM_GPUS")
ray start --head --node-ip-address "$NODE_IP" --port "$RAY_PORT" --disable-usage-stats "${EXTRA[@]}"

if [ -n "$INDEX_DIR" ]; then
  nohup masksearch retriever serve --index "$INDEX_DIR" --host 0.0.0.0 --port "$RETRIEVER_PORT" > retriever.log 2>&1 &
  echo "retrieval server: http://$NODE_IP:$RETRIEVER_PORT (log: retriever.log)"
fi

if [ "$WAIT_TIMEOUT" != "0" ]; then   # 0: start only (e.g. SLURM, which waits after starting the workers)
  python "$(dirname "$0")/wait_for_cluster.py" --address "$NODE_IP:$RAY_PORT" \
    --nodes "$NNODES" --gpus-per-node "$N_GPUS_PER_NODE" --timeout "$WAIT_TIMEOUT"
  echo "cluster ready: export RAY_ADDRESS=$NODE_IP:$RAY_PORT and run examples/run_dapo_ramp.sh on this node"
fi
