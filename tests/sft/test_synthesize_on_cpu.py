"""Synthesis against real OpenAI-compatible servers on 127.0.0.1 (scripted teachers in subprocesses)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from masksearch.core.grammar import count_searches, extract_search_query, validate_format
from masksearch.env.session import OBS_PREFIX, OBS_SUFFIX
from masksearch.search_tool.observation import format_observation
from masksearch.sft.endpoint import RetryPolicy
from masksearch.sft.synthesize import (
    ENDPOINT_FAILED,
    KEPT_FILE,
    REJECTED_FILE,
    WRONG_ANSWER,
    SynthesisConfig,
    load_items,
    read_records,
    synthesize,
)

FAST = RetryPolicy(max_attempts=3, backoff_initial_s=0.0)


def _config(**kw):
    return SynthesisConfig(**{"max_turns": 3, "concurrency": 2, "retry": FAST, **kw})


def _run(rows, out, server, client, tok, model="teacher", **kw):
    return synthesize(
        rows, out, endpoint_url=server.url, model=model, search_client=client, tokenizer=tok,
        config=_config(**kw), sleep=lambda s: None,
    )  # fmt: skip


def _by_question(out: Path) -> dict[str, dict]:
    records = read_records(out / KEPT_FILE) + read_records(out / REJECTED_FILE)
    return {r["extra_info"].get("question") or r["extra_info"]["masked_text"]: r for r in records}


class TestMultiAgentSynthesis:
    def test_outcomes_reasons_and_report(
        self, tmp_path, rows_file, agent_server, search_client, student_tokenizer
    ):
        report = _run(rows_file, tmp_path / "out", agent_server, search_client, student_tokenizer)
        rec = _by_question(tmp_path / "out")
        tosca = rec["In which city was the composer of Tosca born?"]
        ramp = rec["The Eiffel Tower was built by the company of [mask] and completed in [mask]."]
        # kept: the two-hop question (planner's 2 sub-questions, observer's NEXT) and the RAMP row
        assert (tosca["status"], tosca["num_searches"], tosca["answer"]) == ("kept", 2, "Lucca")
        assert (ramp["status"], ramp["num_searches"], ramp["answer"]) == ("kept", 1, "Gustave Eiffel\n1889")
        # rejected: wrong answer / grammar's reason (turn budget, no answer) / endpoint failed
        assert rec["What is the capital of Atlantis?"]["reason"] == WRONG_ANSWER
        forever = rec["Search forever for the Tosca premiere?"]
        assert forever["reason"] == validate_format(forever["response"]).reason != "ok"
        assert forever["stop_reason"] == "turn_budget" and forever["num_turns"] == 3
        garbage = rec["Answer garbage about Tosca?"]
        assert garbage["reason"] == ENDPOINT_FAILED and "planner" in garbage["detail"]
        assert report["items"] == report["processed"] == 5
        assert (report["kept"], report["rejected"], report["failed"]) == (2, 2, 1)
        assert report["kept_share"] == 0.4 and report["mean_searches"] == 1.5
        assert report["rejection_reasons"] == {WRONG_ANSWER: 1, forever["reason"]: 1, ENDPOINT_FAILED: 1}
        assert json.loads((tmp_path / "out" / "report.json").read_text())["kept"] == 2

    def test_kept_trajectories_are_env_format(
        self, tmp_path, rows_file, agent_server, search_client, student_tokenizer
    ):
        _run(rows_file, tmp_path / "out", agent_server, search_client, student_tokenizer)
        kept = read_records(tmp_path / "out" / KEPT_FILE)
        assert kept
        for record in kept:
            response = record["response"]
            assert validate_format(response).ok
            assert response == "".join(s["content"] for s in record["segments"])
            assert count_searches(response) == record["num_searches"]
            roles = [s["role"] for s in record["segments"]]
            assert roles == ["assistant", "tool"] * record["num_searches"] + ["assistant"]
            for turn, obs in zip(record["segments"][0::2], record["segments"][1::2], strict=False):
                # byte-for-byte what the env appends for this query
                hits = search_client.search([extract_search_query(turn["content"])], 3)[0].hits
                assert obs["content"] == OBS_PREFIX + format_observation(hits).strip() + OBS_SUFFIX
                assert turn["content"].startswith("<think>") and turn["content"].endswith("</search>")
            assert record["segments"][-1]["content"].endswith("</answer>")

    def test_server_killed_mid_run_then_resume(
        self, tmp_path, rows_file, own_agent_server, search_client, student_tokenizer
    ):
        out = tmp_path / "out"
        seen = []

        def kill_after_first(record):
            seen.append(record["id"])
            if len(seen) == 1:
                own_agent_server.kill()

        synthesize(
            rows_file, out, endpoint_url=own_agent_server.url, model="teacher", search_client=search_client,
            tokenizer=student_tokenizer, config=_config(concurrency=1), on_record=kill_after_first,
            sleep=lambda s: None,
        )  # fmt: skip
        first = read_records(out / KEPT_FILE) + read_records(out / REJECTED_FILE)
        assert len(first) == 5  # nothing lost: every item has a record
        failed = [r for r in first if r["reason"] == ENDPOINT_FAILED]
        assert len(failed) >= 3 and all(
            "ConnectError" in r["detail"] or "HTTP" in r["detail"] for r in failed[1:]
        )

        own_agent_server.start()  # same port
        report = _run(rows_file, out, own_agent_server, search_client, student_tokenizer)
        records = read_records(out / KEPT_FILE) + read_records(out / REJECTED_FILE)
        ids = [r["id"] for r in records]
        assert len(ids) == len(set(ids)) == 5  # each item once
        assert report["this_run"]["ran"] == len(failed) and report["this_run"]["skipped"] == 5 - len(failed)
        assert (report["kept"], report["failed"]) == (2, 1)  # only the malformed-planner row still fails

    def test_rate_limited_endpoint_is_retried(
        self, tmp_path, rows_file, agent_server, search_client, student_tokenizer
    ):
        report = _run(
            rows_file, tmp_path / "out", agent_server, search_client, student_tokenizer, model="ratelimited"
        )
        assert report["endpoint_calls"]["rate_limited"] > 0 and report["endpoint_calls"]["retries"] > 0
        assert (report["kept"], report["failed"]) == (2, 1)

    def test_broken_endpoint_records_every_item_as_failed(
        self, tmp_path, rows_file, agent_server, search_client, student_tokenizer
    ):
        before = agent_server.stats()["requests"]
        report = _run(
            rows_file, tmp_path / "out", agent_server, search_client, student_tokenizer, model="broken"
        )
        assert report["failed"] == report["items"] == 5
        assert report["rejection_reasons"] == {ENDPOINT_FAILED: 5}
        assert agent_server.stats()["requests"] - before == 5 * FAST.max_attempts

    def test_cache_answers_a_rerun(self, tmp_path, rows_file, agent_server, search_client, student_tokenizer):
        out = tmp_path / "out"
        _run(rows_file, out, agent_server, search_client, student_tokenizer)
        before = agent_server.stats()["chat"]
        (out / KEPT_FILE).unlink()
        (out / REJECTED_FILE).unlink()
        report = _run(rows_file, out, agent_server, search_client, student_tokenizer, retry_failed=True)
        # only the malformed planner replies (never cached) reach the server again
        assert agent_server.stats()["chat"] - before == FAST.max_attempts
        assert report["endpoint_calls"]["cache_hits"] > 0 and report["kept"] == 2

    def test_limit_and_item_ids_are_stable(self, rows_file):
        a, b = load_items(rows_file), load_items(rows_file, limit=2)
        assert [i.id for i in a[:2]] == [i.id for i in b] and len({i.id for i in a}) == 5
        assert a[-1].kind == "ramp" and a[-1].mask_num == 2


class TestPolicySynthesis:
    """A served search agent (the env tests' scripted policy) as teacher, as in the evolve rounds."""

    @pytest.mark.parametrize(
        ("model", "status", "reason"),
        [
            ("scripted", "kept", "ok"),  # searches twice, answers Lucca
            ("vllm-style", "kept", "ok"),  # same with vLLM's stop_reason
            ("mute", "rejected", "text outside tags"),  # no tags at all: breaks the grammar
        ],
    )
    def test_policy_teacher(
        self, tmp_path, policy_server, search_client, student_tokenizer, make_rows, model, status, reason
    ):
        rows = make_rows(
            tmp_path / "rows.parquet", qa=[("Where was the composer of Tosca born?", ["Lucca"])], ramp=False
        )
        report = _run(
            rows,
            tmp_path / "out",
            policy_server,
            search_client,
            student_tokenizer,
            model=model,
            mode="policy",
            max_turns=4,
        )
        (record,) = read_records(tmp_path / "out" / KEPT_FILE) + read_records(
            tmp_path / "out" / REJECTED_FILE
        )
        assert (record["status"], record["reason"]) == (status, reason)
        assert report["teacher"]["mode"] == "policy"


class TestCli:
    def test_synthesize_command(self, tmp_path, rows_file, agent_server, sft_index, tiny_model_path):
        from masksearch.cli.main import main

        rc = main([
            "sft", "synthesize", "--data", str(rows_file), "--endpoint", agent_server.url, "--model", "teacher",
            "--index", str(sft_index), "--out", str(tmp_path / "out"), "--tokenizer", str(tiny_model_path),
            "--max-turns", "3", "--max-attempts", "2", "--backoff", "0",
        ])  # fmt: skip
        assert rc == 0
        assert json.loads((tmp_path / "out" / "report.json").read_text())["kept"] == 2

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            ({"--data": "missing.parquet"}, "no such file"),
            ({"--index": "no-index"}, "no such folder"),
            ({"--answer-check": "nope"}, "Unknown reward"),
            ({"--max-turns": "1"}, "max_turns"),
        ],
    )
    def test_bad_input_is_one_line(self, tmp_path, rows_file, sft_index, capsys, change, message):
        from masksearch.cli.main import main

        args = {"--data": str(rows_file), "--endpoint": "http://127.0.0.1:9", "--model": "m",
                "--index": str(sft_index), "--out": str(tmp_path / "o"), **change}  # fmt: skip
        rc = main(["sft", "synthesize", *[x for kv in args.items() for x in kv]])
        assert rc == 2 and message in capsys.readouterr().err
