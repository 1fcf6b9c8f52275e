"""Multi-node launch on one machine: a Ray head and a worker node on loopback, one recipe step across both.

Each node declares one logical GPU, so verl's two trainer ranks (``trainer.nnodes=2``) can only be
placed one per node: the step really spans both nodes (FSDP over gloo between them).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
MULTINODE = REPO / "examples" / "multinode"
BIN = Path(sys.executable).parent


def _stop_cluster(port: int) -> None:
    """Kill this test's Ray nodes only (``ray stop`` would take down every Ray on the machine)."""
    ours = re.compile(rf"gcs[-_]address[= ]\S*:{port}\b|gcs_server_port[= ]{port}\b")
    victims = [p for p in psutil.process_iter(["cmdline"]) if ours.search(" ".join(p.info["cmdline"] or []))]
    for proc in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(victims, timeout=30)
    # what `ray stop` also removes: later `ray.init()` calls would otherwise try to attach to it
    current = Path("/tmp/ray/ray_current_cluster")
    with contextlib.suppress(OSError):
        if current.read_text().strip().endswith(f":{port}"):
            current.unlink()


@pytest.fixture(scope="module")
def ray_env():
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "RAY_AUTH_MODE": "disabled",  # one machine, loopback only
        "NODE_IP": "127.0.0.1",
        "NUM_CPUS": "8",
        "NUM_GPUS": "1",  # logical GPUs: CPU torch ignores them
    }
    return env


@pytest.fixture(scope="module")
def cluster(ray_env, free_port):
    port = free_port()
    try:
        yield _start_cluster(ray_env, port)
    finally:
        _stop_cluster(port)


def _start_cluster(ray_env, port: int) -> str:
    head = subprocess.run(
        ["bash", str(MULTINODE / "ray_head.sh")],
        env={**ray_env, "RAY_PORT": str(port), "NNODES": "2", "N_GPUS_PER_NODE": "1", "WAIT_TIMEOUT": "0"},
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert head.returncode == 0, head.stderr[-3000:]
    address = f"127.0.0.1:{port}"
    worker = subprocess.run(
        ["bash", str(MULTINODE / "ray_worker.sh")],
        env={**ray_env, "HEAD_ADDRESS": address},
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert worker.returncode == 0, worker.stderr[-3000:]
    return address


def _barrier(ray_env, address: str, nodes: int, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(MULTINODE / "wait_for_cluster.py"), "--address", address, "--nodes", str(nodes),
         "--gpus-per-node", "1", "--timeout", str(timeout), "--interval", "1"],
        env=ray_env, capture_output=True, text=True, check=False, timeout=timeout + 120,
    )  # fmt: skip


def test_readiness_barrier_sees_both_nodes(ray_env, cluster):
    result = _barrier(ray_env, cluster, nodes=2, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2/2 nodes, 2/2 GPUs" in result.stdout


def test_readiness_barrier_times_out_with_a_clear_message(ray_env, cluster):
    result = _barrier(ray_env, cluster, nodes=3, timeout=3)
    assert result.returncode == 1
    assert "has 2/3 nodes and 2/3 GPUs" in result.stderr


def test_one_recipe_step_across_two_nodes(
    cluster, build_search_workspace, tiny_search_overrides, tmp_path, run_verl
):
    root = build_search_workspace(tmp_path, articles=150, samples=8, val_fraction=0.25)
    run = run_verl(
        root,
        [
            *tiny_search_overrides(root, max_response_length=128),
            f"masksearch.env.retriever_index={root / 'index'}",
            "masksearch.env.max_obs_tokens=64",
            "masksearch.dynamic_sampling.max_gen_batches=1",
            "trainer.nnodes=2",
            "trainer.n_gpus_per_node=1",
            "trainer.total_training_steps=1",
            "trainer.save_freq=-1",
        ],
        name="two_nodes",
        entry="masksearch.recipes.dapo_ramp",
        env={"RAY_ADDRESS": cluster, "RAY_AUTH_MODE": "disabled"},
    )
    assert run.returncode == 0, run.log[-8000:]
    assert run.step_numbers() == [1]
    print(f"\ntwo-node step: {run.wall_s:.0f}s wall, step {json.dumps(run.metric('timing_s/step'))}s")
