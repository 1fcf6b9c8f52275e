"""Multi-node launch on one machine: a Ray head and a worker node on loopback, one recipe step across both.

Each node declares one logical GPU, so verl's two trainer ranks (``trainer.nnodes=2``) can only be
placed one per node: the step really spans both nodes (FSDP over gloo between them).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
MULTINODE = REPO / "examples" / "multinode"
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    yield env
    subprocess.run(
        [str(BIN / "ray"), "stop", "--force"], env=env, capture_output=True, check=False, timeout=120
    )


@pytest.fixture(scope="module")
def cluster(ray_env) -> str:
    port = _free_port()
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


def test_one_recipe_step_across_two_nodes(ray_env, cluster, tiny_model_path, tmp_path, run_verl):
    cli = [sys.executable, "-m", "masksearch.cli.main"]
    for args in (
        ["corpus", "build", "--out", "corpus.jsonl", "--limit", "150"],
        ["index", "build", "--corpus", "corpus.jsonl", "--retriever", "bm25", "--out", "index"],
        ["ramp", "build", "--corpus", "corpus.jsonl", "--out", "ramp", "--num-samples", "8", "--val-fraction",
         "0.25", "--no-one-shot", "--max-words", "80", "--no-progress"],
    ):  # fmt: skip
        proc = subprocess.run(
            [*cli, *args], cwd=tmp_path, capture_output=True, text=True, check=False, timeout=600
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    run = run_verl(
        tmp_path,
        [
            f"data.train_files={tmp_path / 'ramp' / 'train.parquet'}",
            f"data.val_files={tmp_path / 'ramp' / 'val.parquet'}",
            "data.train_batch_size=4",
            "data.max_prompt_length=512",
            "data.max_response_length=128",
            f"actor_rollout_ref.model.path={tiny_model_path}",
            "actor_rollout_ref.rollout.n=2",
            "actor_rollout_ref.actor.ppo_mini_batch_size=4",
            "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
            "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2",
            f"masksearch.env.retriever_index={tmp_path / 'index'}",
            "masksearch.env.max_obs_tokens=64",
            "+actor_rollout_ref.rollout.engine_kwargs.hf.scripted_policy=masksearch.env.scripted:search_then_answer",
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
