"""The offline rules teacher on real BM25 over a slice of the embedded Wikipedia corpus."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from masksearch.core.grammar import count_searches, validate_format
from masksearch.env.session import OBS_PREFIX, OBS_SUFFIX
from masksearch.rewards import compute_score
from masksearch.sft.synthesize import (
    FILL_NOT_FOUND,
    KEPT_FILE,
    REJECTED_FILE,
    SynthesisConfig,
    read_records,
    synthesize,
)
from masksearch.sft.teachers.rules import (
    MAX_QUERY_WORDS,
    find_in_observation,
    plan_masks,
    query_variants,
)

ENV = {"max_turns": 5, "topk": 1, "max_obs_tokens": 160}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, build_search_workspace):
    return build_search_workspace(tmp_path_factory.mktemp("rules"), articles=300, samples=40)


@pytest.fixture(scope="module")
def client(workspace):
    from masksearch.search_tool.client import make_search_client

    return make_search_client(index=str(workspace / "index"))


def _run(workspace, client, tokenizer, out, data=None, **kw):
    config = SynthesisConfig(mode="rules", concurrency=1, max_response_tokens=1400, **{**ENV, **kw})
    return synthesize(
        data or workspace / "ramp" / "train.parquet",
        out,
        search_client=client,
        tokenizer=tokenizer,
        config=config,
    )


class TestRules:
    @pytest.mark.parametrize(
        ("text", "before", "after"),
        [
            ("Paris is the capital of [mask]. It is big.", "Paris is the capital of", ""),  # sentence end
            ("It is big. [mask] was founded in 1900.", "", "was founded in 1900"),  # sentence start
        ],
    )
    def test_plan_one_slot_per_mask_with_its_sentence(self, text, before, after):
        (slot,) = plan_masks(text)
        assert slot.before == before and slot.after == after and "[mask]" in slot.sentence
        assert "It is big" not in slot.before + slot.after  # the other sentence is not its context

    def test_masks_in_one_sentence_get_their_own_first_query_in_rows(self):
        slots = plan_masks("The tower in [mask] was built by [mask] in 1889.")
        assert [s.number for s in slots] == [1, 2]
        first = query_variants("Eiffel Tower", slots[0])
        assert first[0].startswith(
            "Eiffel Tower The tower in was built by"
        )  # title + sentence, masks dropped
        assert all(len(q.split()) <= MAX_QUERY_WORDS and "[mask]" not in q for q in first)
        assert len(first) == len({q.lower() for q in first})  # no repeats

    @pytest.mark.parametrize(
        ("fills", "expected"),
        [
            (
                ["Gustave Eiffel"],
                ("Gustave Eiffel", 2, "Eiffel Tower"),
            ),  # found in doc 2, case and spaces ignored
            (["Eiffel"], ("Eiffel", 2, "Eiffel Tower")),  # word boundary match
            (["Eiff"], None),  # not a word of the document
            (["1889", "Lyon"], ("1889", 2, "Eiffel Tower")),  # first alias found
        ],
    )
    def test_observer_match(self, fills, expected):
        obs = (
            OBS_PREFIX
            + "Doc 1(Title: Paris) Paris is big.\nDoc 2(Title: Eiffel Tower) Built by gustave  EIFFEL in 1889."
            + OBS_SUFFIX
        )
        assert find_in_observation(obs, fills) == expected


class TestRulesSynthesis:
    def test_kept_trajectories_are_rl_rollouts_that_score_acc_1(
        self, workspace, client, embedded_tokenizer, tmp_path
    ):
        report = _run(workspace, client, embedded_tokenizer, tmp_path / "out")
        kept = read_records(tmp_path / "out" / KEPT_FILE)
        assert report["items"] >= 30 and report["kept"] == len(kept) and report["kept_share"] >= 0.8, report
        for record in kept:
            response = record["response"]
            assert validate_format(response).ok
            # the training reward verl loads (recall) and the filter's (em) both give acc = 1
            for reward in ("recall", "em"):
                score = compute_score(
                    record["data_source"],
                    response,
                    record["ground_truth"],
                    record["extra_info"],
                    answer_reward=reward,
                )
                assert score["acc"] == 1.0, (reward, response)
            # one search per mask, each observation in the env's own wrapper, every fill inside one
            assert count_searches(response) == record["mask_num"] == record["num_searches"]
            observations = [s["content"] for s in record["segments"] if s["role"] == "tool"]
            assert len(observations) == record["mask_num"]
            assert all(o.startswith(OBS_PREFIX) and o.endswith(OBS_SUFFIX) for o in observations)
            for gold in record["ground_truth"]:
                assert any(find_in_observation(o, [gold]) for o in observations), gold
            assert "Doc " in record["segments"][2]["content"] if len(record["segments"]) > 2 else True
        by_mask = report["by_mask_count"]
        assert (
            set(by_mask) <= {"1", "2", "3", "4"}
            and sum(v["processed"] for v in by_mask.values()) == report["items"]
        )

    def test_rejections_carry_reasons(self, workspace, client, embedded_tokenizer, tmp_path):
        # observations of 24 tokens cut most passages before the fill: the observer refuses to guess
        report = _run(workspace, client, embedded_tokenizer, tmp_path / "out", max_obs_tokens=24)
        rejected = read_records(tmp_path / "out" / REJECTED_FILE)
        assert rejected and all(r["reason"] for r in rejected)
        assert report["rejection_reasons"].get(FILL_NOT_FOUND, 0) >= 1
        assert sum(report["rejection_reasons"].values()) == len(rejected)
        for r in rejected:
            if r["reason"] == FILL_NOT_FOUND:
                assert r["trace"]["missing"] and "<answer>" not in r["response"]

    def test_turn_budget_takes_seen_fills_and_resume_skips(
        self, workspace, client, embedded_tokenizer, tmp_path
    ):
        # 2 turns: one search and the answer; other masks are only taken from that one observation
        out = tmp_path / "out"
        report = _run(workspace, client, embedded_tokenizer, out, max_turns=2)
        for record in read_records(out / KEPT_FILE):
            assert record["num_searches"] == 1
        again = _run(workspace, client, embedded_tokenizer, out, max_turns=2)
        assert again["this_run"]["ran"] == 0 and again["kept"] == report["kept"]

    def test_qa_rows_kept_only_when_an_observation_holds_the_answer(
        self, workspace, client, embedded_tokenizer, tmp_path, make_rows
    ):
        # a question made of a one-mask RAMP row: its masked sentence and title; the gold is the span
        row = next(
            r
            for r in pq.read_table(workspace / "ramp" / "train.parquet").to_pylist()
            if r["extra_info"]["mask_num"] == 1
        )
        slot = plan_masks(row["extra_info"]["masked_text"])[0]
        question = f"In {row['extra_info']['title']}: {slot.sentence.replace('[mask]', 'what')}?"
        rows = make_rows(
            tmp_path / "qa.parquet",
            qa=[
                (question, list(row["reward_model"]["ground_truth"])),
                ("Who is Zqxwv Plorbnik?", ["Zqxwv Plorbnik"]),
            ],
            ramp=False,
        )
        report = _run(workspace, client, embedded_tokenizer, tmp_path / "out", data=rows)
        assert report["kept"] == 1 and report["rejection_reasons"] == {FILL_NOT_FOUND: 1}

    def test_cli_needs_no_endpoint(self, workspace, tmp_path):
        base = [sys.executable, "-m", "masksearch.cli.main", "sft", "synthesize", "--data", str(workspace / "ramp" / "train.parquet"),
                "--index", str(workspace / "index"), "--limit", "5", "--topk", "1", "--max-obs-tokens", "160", "--max-turns", "5"]  # fmt: skip

        def synthesize(teacher: str, out: Path) -> subprocess.CompletedProcess:
            argv = [*base, "--teacher", teacher, "--out", str(out)]
            return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)

        proc = synthesize("rules", tmp_path / "a")
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert json.loads((tmp_path / "a" / "report.json").read_text())["items"] == 5
        assert pq.read_metadata(workspace / "ramp" / "train.parquet").num_rows >= 5
        proc = synthesize("agents", tmp_path / "b")
        assert proc.returncode == 2 and "needs --endpoint and --model" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert not Path(tmp_path / "b" / "report.json").exists()
