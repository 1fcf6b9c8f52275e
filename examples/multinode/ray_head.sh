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
RETRIEVER_HOST=${RETRIEVER_HOST:-$NODE_IP}    # the node's address, not 0.0.0.0
RETRIEVER_TOKEN_FILE=${RETRIEVER_TOKEN_FILE:-$HOME/.masksearch/retriever_token}  # created (0600) if missing
RETRIEVER_WAIT=${RETRIEVER_WAIT:-600}         # seconds for the index to load before giving up
WAIT_TIMEOUT=${WAIT_TIMEOUT:-600}
# -------------------------

EXTRA=()
[ -n "$NUM_CPUS" ] && EXTRA+=(--num-cpus "$NUM_CPUS")
[ -n "$NUM_GPUS" ] && EXTRA+=(--num-gpus "$NUM_GPUS")
ray start --head --node-ip-address "$NODE_IP" --port "$RAY_PORT" --disable-usage-stats "${EXTRA[@]}"

if [ -n "$INDEX_DIR" ]; then
  if [ ! -s "$RETRIEVER_TOKEN_FILE" ]; then   # a bearer token: only holders of the file can search
    mkdir -p "$(dirname "$RETRIEVER_TOKEN_FILE")"
    (umask 077 && python -c 'import secrets; print(secrets.token_urlsafe(32))' > "$RETRIEVER_TOKEN_FILE")
  fi
  nohup masksearch retriever serve --index "$INDEX_DIR" --host "$RETRIEVER_HOST" --port "$RETRIEVER_PORT" \
    --token-file "$RETRIEVER_TOKEN_FILE" > retriever.log 2>&1 &
  RETRIEVER_PID=$!
  if ! masksearch retriever wait --url "http://$RETRIEVER_HOST:$RETRIEVER_PORT" --timeout "$RETRIEVER_WAIT" \
      --pid "$RETRIEVER_PID"; then
    kill -0 "$RETRIEVER_PID" 2>/dev/null || echo "retrieval server exited; last lines of retriever.log:" >&2
    tail -n 20 retriever.log >&2
    exit 1
  fi
  echo "retrieval server: http://$RETRIEVER_HOST:$RETRIEVER_PORT (log: retriever.log; token: $RETRIEVER_TOKEN_FILE)"
  echo "the driver needs: export MASKSEARCH_RETRIEVER_TOKEN=\$(cat $RETRIEVER_TOKEN_FILE)"
fi

if [ "$WAIT_TIMEOUT" != "0" ]; then   # 0: start only (e.g. SLURM, which waits after starting the workers)
  python "$(dirname "$0")/wait_for_cluster.py" --address "$NODE_IP:$RAY_PORT" \
    --nodes "$NNODES" --gpus-per-node "$N_GPUS_PER_NODE" --timeout "$WAIT_TIMEOUT"
  echo "cluster ready: export RAY_ADDRESS=$NODE_IP:$RAY_PORT and run examples/run_dapo_ramp.sh on this node"
fi
