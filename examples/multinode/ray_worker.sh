#!/usr/bin/env bash
# Step 2 of 3 — on every worker node: join the head's Ray cluster (see ray_head.sh for all steps).
#   HEAD_ADDRESS=10.0.0.1:6379 bash examples/multinode/ray_worker.sh
set -xeuo pipefail

# ---- user-adjustable ----
HEAD_ADDRESS=${HEAD_ADDRESS:?set HEAD_ADDRESS=<head-ip>:<port>}
NODE_IP=${NODE_IP:-$(hostname -I 2>/dev/null | awk '{print $1}')}
NUM_CPUS=${NUM_CPUS:-}
NUM_GPUS=${NUM_GPUS:-}
# -------------------------

EXTRA=()
[ -n "$NUM_CPUS" ] && EXTRA+=(--num-cpus "$NUM_CPUS")
[ -n "$NUM_GPUS" ] && EXTRA+=(--num-gpus "$NUM_GPUS")
ray start --address "$HEAD_ADDRESS" --node-ip-address "$NODE_IP" --disable-usage-stats "${EXTRA[@]}"
