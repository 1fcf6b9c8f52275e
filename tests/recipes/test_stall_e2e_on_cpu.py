"""A run whose rollouts stop moving ends with one line (exit 3) instead of waiting forever.

The scripted policy here never returns, so the step's trajectories stay ``running`` in verl's replay
buffer — what the buffer sees when Ray kills the worker holding them (measured: a ``make demo`` run
out of memory logged ``pending: 0, running: 100, finished: 0`` for 10+ minutes). With
``masksearch.sampler.stall_timeout_s=15`` the recipe must stop within a bounded time.
"""

from __future__ import annotations

import json
import re

import pytest

pytestmark = pytest.mark.slow

RAY_WORKER_LINE = re.compile(r"^(\x1b\[\d+m)?\((\w+ pid=\d+|raylet)")

HANGING_POLICY = """
import time


def hang(context: str) -> str:
    time.sleep(3600)
    return "<answer>never</answer>"
"""


def test_stalled_rollouts_stop_the_run_with_one_line(
    tmp_path, build_search_workspace, tiny_search_overrides, run_verl
):
    root = build_search_workspace(tmp_path, articles=60, samples=8)
    (tmp_path / "stall_policy.py").write_text(HANGING_POLICY)
    overrides = [
        *[o for o in tiny_search_overrides(root) if "scripted_policy" not in o],
        "+actor_rollout_ref.rollout.engine_kwargs.hf.scripted_policy=stall_policy:hang",
        f"masksearch.env.retriever_index={root / 'index'}",
        "masksearch.curriculum.strategy=none",
        "masksearch.dynamic_sampling.max_gen_batches=1",
        "masksearch.sampler.stall_timeout_s=15",
        "trainer.total_training_steps=2",
        "trainer.test_freq=-1",
    ]
    env = {"PYTHONPATH": str(tmp_path), "MASKSEARCH_BUDGET_CHECK": "warn"}
    run = run_verl(root, overrides, name="stall", entry="masksearch.recipes.dapo_ramp", env=env, timeout=600)
    assert run.returncode == 3, run.log[-6000:]
    lines = [line for line in run.log.splitlines() if line.startswith("masksearch: error: no train rollout")]
    assert lines and "changed state for" in lines[-1] and "stall_timeout_s" in lines[-1], run.log[-4000:]
    # the entry prints nothing after its line; Ray may still stream its dying workers' logs (each line
    # prefixed with "(ActorName pid=N)"), which are not the run's output
    after = run.log.split(lines[-1])[-1].splitlines()
    own = [line for line in after if line.strip() and not RAY_WORKER_LINE.match(line)]
    assert not any("Traceback" in line for line in own), "\n".join(own)[-4000:]
    result = json.loads((run.checkpoint_dir / "run_result.json").read_text())
    assert result["status"] == "error" and result["error"].startswith("masksearch: error: no train rollout")
