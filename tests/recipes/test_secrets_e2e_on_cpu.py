"""One tiny recipe run with canary secrets and a retriever that dies after the first step.

* The canary judge key and retriever token are set in the driver's environment only: they reach
  the workers (step 1 searches through the token-protected server without errors) and are found in
  none of stdout/stderr, ``.hydra/``, checkpoints, tensorboard events or the metrics file.
* The retriever is killed after step 1: the run stops after ``max_retrieval_error_steps`` bad steps
  with a message naming the retriever (issue 16, items B and C).
"""

from __future__ import annotations

import sys

import pytest

JUDGE_KEY = "sk-canary-judge-51e0d2"
RETRIEVER_TOKEN = "canary-retriever-token-9b77c4"


@pytest.mark.slow
def test_canary_secrets_found_nowhere_and_dead_retriever_stops_the_run(
    tmp_path, build_search_workspace, tiny_search_overrides, run_verl, start_http_service, free_port
):
    root = build_search_workspace(tmp_path, articles=120, samples=12)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "masksearch.search_tool.cli", "retriever", "serve"]
    argv += ["--index", str(root / "index"), "--port", str(port), "--backend", "numpy"]
    with start_http_service(
        argv, url + "/health", env={"MASKSEARCH_RETRIEVER_TOKEN": RETRIEVER_TOKEN}
    ) as server:

        def kill_after_first_step(steps):
            if steps and server.poll() is None:
                server.kill()

        run = run_verl(
            root,
            [
                *tiny_search_overrides(root, max_response_length=96),
                f"masksearch.env.retriever_url={url}",
                "masksearch.env.max_obs_tokens=48",
                "masksearch.env.search_timeout_s=2",
                "masksearch.env.max_retrieval_error_steps=2",
                # the client's cache answers the repeated queries of a group (n=2): a dead server
                # shows as ~50% errors here, so the threshold sits below that
                "masksearch.env.max_retrieval_error_rate=0.25",
                "reward.reward_kwargs.overlong_buffer_cfg.len=16",
                "masksearch.dynamic_sampling.max_gen_batches=1",
                # room for steps without a retriever request (no search, or only cache hits): they
                # neither count nor reset, so the stop may come after step 3
                "trainer.total_training_steps=6",
                "trainer.save_freq=1",
                "trainer.test_freq=100",
            ],
            name="secrets",
            entry="masksearch.recipes.dapo_ramp",
            env={
                "MASKSEARCH_JUDGE_API_KEY": JUDGE_KEY,
                "MASKSEARCH_RETRIEVER_TOKEN": RETRIEVER_TOKEN,
                "MASKSEARCH_BUDGET_CHECK": "warn",  # a tiny budget on purpose: steps must be short
            },
            on_metrics=kill_after_first_step,
        )
    # the token reached the workers: step 1 searched the protected server without errors
    first = run.steps[0]["data"]
    assert first["env/searches_per_sample"] > 0 and first["env/retrieval_error_rate"] == 0.0, run.log[-4000:]
    # then the dead retriever stopped the run, naming it
    per_step = [
        {
            k: step["data"].get(k)
            for k in ("env/searches_per_sample", "env/retriever_requests", "env/retrieval_error_rate")
        }
        for step in run.steps
    ]
    assert run.returncode != 0, (per_step, run.log[-3000:])
    assert "consecutive steps" in run.log and f"server {url}" in run.log, run.log[-4000:]
    assert len(run.steps) < 6, per_step
    print("per-step env metrics:", per_step)
    # nothing secret anywhere the run wrote
    hydra_dirs = list(root.rglob(".hydra"))
    assert (
        hydra_dirs and (run.checkpoint_dir / "global_step_1").is_dir() and any(run.tensorboard_dir.rglob("*"))
    )
    assert JUDGE_KEY not in run.log and RETRIEVER_TOKEN not in run.log
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert JUDGE_KEY.encode() not in data and RETRIEVER_TOKEN.encode() not in data, path
