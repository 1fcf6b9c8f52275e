"""Search RL end to end on CPU: verl GRPO with the search agent loop, BM25, our rewards and curriculum.

One scripted policy (``masksearch.env.scripted:search_then_answer``) writes the turns, so the tiny
random model "searches"; the ``hf`` rollout scores those tokens under the live weights, so masks,
observations, log-probs and rewards go through the real training path. The test kills the retrieval
server in the middle of the run and expects the run to finish with the failures counted, then
resumes from the checkpoint and expects the curriculum to continue where it stopped.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def search_data(tmp_path_factory, build_search_workspace) -> Path:
    """A 300-article slice of the embedded Wikipedia corpus, its BM25 index and RAMP data."""
    return build_search_workspace(tmp_path_factory.mktemp("search_e2e"), articles=300, samples=24)


def _overrides(base: list[str], data: Path, total_steps: int, retriever: str, trainer_overrides) -> list[str]:
    from masksearch.env.agent_loop import agent_loop_config_path
    from masksearch.rewards import verl_reward_path

    return [
        *base,
        "algorithm.adv_estimator=grpo",
        "actor_rollout_ref.actor.use_kl_loss=false",
        "algorithm.use_kl_in_reward=false",
        f"actor_rollout_ref.rollout.agent.agent_loop_config_path={agent_loop_config_path()}",
        retriever,
        "+masksearch.env.max_turns=3",
        "+masksearch.env.max_obs_tokens=96",
        "+masksearch.env.search_timeout_s=3",
        "+masksearch.curriculum.strategy=staged",
        f"trainer.rollout_data_dir={data / 'rollouts'}",
        *trainer_overrides(verl_reward_path(), total_steps),
    ]


@pytest.fixture(scope="module")
def search_runs(
    search_data, tiny_search_overrides, run_verl, start_http_service, free_port, trainer_overrides
):
    base = tiny_search_overrides(search_data, max_response_length=192)
    port = free_port()
    serve = [
        sys.executable,
        "-m",
        "masksearch.cli.main",
        "retriever",
        "serve",
        "--index",
        str(search_data / "index"),
    ]
    killed_after: list[int] = []
    with start_http_service(
        [*serve, "--host", "127.0.0.1", "--port", str(port)], f"http://127.0.0.1:{port}/health", timeout=120
    ) as server:

        def kill_server_after_step_one(steps: list[dict]) -> None:
            if steps and not killed_after:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=30)
                killed_after.append(len(steps))

        first = run_verl(
            search_data,
            _overrides(
                base,
                search_data,
                2,
                f"+masksearch.env.retriever_url=http://127.0.0.1:{port}",
                trainer_overrides,
            ),
            name="first",
            on_metrics=kill_server_after_step_one,
        )
    assert first.returncode == 0, first.log[-8000:]
    assert killed_after == [1], "the server must die between step 1 and step 2"
    second = run_verl(
        search_data,
        _overrides(
            base,
            search_data,
            3,
            f"+masksearch.env.retriever_index={search_data / 'index'}",
            trainer_overrides,
        ),
        name="second",
    )
    assert second.returncode == 0, second.log[-8000:]
    print(
        f"\nsearch e2e wall: first run {first.wall_s:.0f}s, resumed run {second.wall_s:.0f}s; "
        + ", ".join(
            f"{k}={first.metric(k)}" for k in ("timing_s/gen", "timing_s/update_actor", "timing_s/step")
        )
    )
    return first, second


def test_policy_searched_and_env_metrics_logged(search_runs):
    first, _ = search_runs
    assert first.step_numbers() == [1, 2]
    assert first.metric("env/searches_per_sample")[0] > 0
    for name in ("env/turns_per_sample", "env/invalid_actions_per_sample", "env/retrieval_latency_s"):
        assert len(first.metric(name)) == 2, name


def test_killed_retrieval_server_is_counted_not_fatal(search_runs, search_data):
    first, _ = search_runs
    errors = first.metric("env/retrieval_errors")
    assert errors[0] == 0 and errors[1] > 0, errors
    step_two = [json.loads(line) for line in (search_data / "rollouts" / "2.jsonl").read_text().splitlines()]
    assert any("Search failed" in row["output"] for row in step_two)


def test_log_probs_agree_with_observations_in_the_response(search_runs):
    first, second = search_runs
    gaps = first.metric("actor/rollout_corr/log_ppl_abs_diff") + second.metric(
        "actor/rollout_corr/log_ppl_abs_diff"
    )
    assert len(gaps) == 3 and max(gaps) <= 1e-3, gaps


def test_reward_keys_on_training_curves(search_runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first, _ = search_runs
    tags: set[str] = set()
    for event_file in first.tensorboard_dir.rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(event_file))
        accumulator.Reload()
        tags.update(accumulator.Tags()["scalars"])
    for key in (
        "reward/acc/mean",
        "reward/format_ok/mean",
        "reward/answer_score/mean",
        "env/searches_per_sample",
    ):
        assert key in tags, key
    assert first.metric("reward/format_ok/mean")[0] == 1.0  # the scripted turns follow the grammar


def test_curriculum_rises_and_resumes_without_repeats_or_skips(search_runs, search_data):
    first, second = search_runs
    means = first.metric("curriculum/mask_num_mean") + second.metric("curriculum/mask_num_mean")
    assert len(means) == 3 and means == sorted(means) and means[-1] > means[0], means
    assert second.step_numbers() == [3]

    train = pd.read_parquet(search_data / "ramp" / "train.parquet")
    mask_num_of = {
        tuple(row.reward_model["ground_truth"]): int(row.extra_info["mask_num"]) for row in train.itertuples()
    }
    steps: list[list[tuple[str, ...]]] = []
    for step in (1, 2, 3):
        rows = [
            json.loads(line) for line in (search_data / "rollouts" / f"{step}.jsonl").read_text().splitlines()
        ]
        steps.append(list(dict.fromkeys(tuple(r["gts"]) for r in rows)))  # n=2 rollouts per prompt
    drawn = [g for step in steps for g in step]
    assert len(drawn) == len(set(drawn)) == 12, "a prompt was drawn twice across the resume"
    # staged over the run: the first run (2 steps) went easy -> hard over its 8 prompts; the resumed
    # run is 3 steps long, so its step 3 is the end of a 12-prompt plan: the hardest rows left
    levels = [sorted(mask_num_of[g] for g in step) for step in steps]
    assert max(levels[0]) <= min(levels[1]), levels
    assert min(levels[2]) >= sorted(mask_num_of.values())[len(mask_num_of) // 2], levels
