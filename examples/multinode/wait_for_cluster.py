"""Readiness barrier: wait until the Ray cluster has the expected nodes and GPUs, or fail clearly.

Usage: python examples/multinode/wait_for_cluster.py --address HEAD:6379 --nodes 2 --gpus-per-node 8 [--timeout 600]

Launch scripts that `sleep 60` and hope hang or crash when a worker node is late; this polls the
cluster's live resources and exits 0 as soon as they are there, or 1 after the timeout with what is
missing.
"""

from __future__ import annotations

import argparse
import sys
import time


def cluster_state(address: str) -> tuple[int, float]:
    import ray

    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        gpus = sum(n.get("Resources", {}).get("GPU", 0.0) for n in nodes)
        return len(nodes), gpus
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True, help="Ray head address, host:port")
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument(
        "--gpus-per-node", type=int, required=True, help="GPUs (logical GPUs on CPU) per node"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds")
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args(argv)

    want_gpus = args.nodes * args.gpus_per_node
    deadline = time.monotonic() + args.timeout
    nodes, gpus = 0, 0.0
    while time.monotonic() < deadline:
        try:
            nodes, gpus = cluster_state(args.address)
        except Exception as exc:  # head not up yet
            print(f"waiting for the Ray head at {args.address}: {exc}", flush=True)
        else:
            print(f"cluster: {nodes}/{args.nodes} nodes, {gpus:g}/{want_gpus} GPUs", flush=True)
            if nodes >= args.nodes and gpus >= want_gpus:
                return 0
        time.sleep(args.interval)
    print(
        f"error: after {args.timeout:g}s the cluster at {args.address} has {nodes}/{args.nodes} nodes and "
        f"{gpus:g}/{want_gpus} GPUs. Check that every worker ran examples/multinode/ray_worker.sh with this "
        "head address and that the port is reachable.",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
