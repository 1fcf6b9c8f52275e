"""Tests for masksearch.rewards.judge against a real OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import threading
import time

import pytest

from masksearch.rewards import compute_score
from masksearch.rewards.judge import LLMJudge, make_llm_judge, parse_verdict


def fast_judge(url: str, tmp_path, **kw) -> LLMJudge:
    kw.setdefault("timeout_s", 1.0)
    kw.setdefault("max_retries", 1)
    kw.setdefault("deadline_s", 3.0)
    return LLMJudge(url=url, model=kw.pop("model", "stub"), cache_path=str(tmp_path / "cache.sqlite"), **kw)


class TestParseVerdict:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("Yes", 1.0),  # plain
            ("yes.", 1.0),  # punctuation
            ("**Yes**", 1.0),  # markdown
            ("**Yes** it does", None),  # issue 16: only an exact verdict counts (was 1.0: first word)
            ("No", 0.0),  # plain no
            ("Incorrect.", 0.0),  # synonym
            ("", None),  # empty
            ("The answer is yes", None),  # verdict must come first
            (None, None),  # None
        ],
    )
    def test_table(self, text, expected):
        assert parse_verdict(text) == expected


class TestJudgeWithServer:
    def test_judging_and_cache(self, judge_server, tmp_path):
        judge = fast_judge(judge_server.url, tmp_path, api_key="secret-key")
        before = judge_server.count()
        assert judge("Paris", ["paris", "City of Light"]) == 1.0
        assert judge("Rome", ["paris"]) == 0.0
        assert judge_server.count() - before == 2
        assert judge_server.last_auth() == "Bearer secret-key"
        # Same question again: answered from the cache, the server is not called.
        assert judge("Paris", ["paris", "City of Light"]) == 1.0
        assert judge_server.count() - before == 2
        # A new judge on the same cache file (e.g. after a restart) also hits the cache.
        assert fast_judge(judge_server.url, tmp_path)("Rome", ["paris"]) == 0.0
        assert judge_server.count() - before == 2
        # A different model is a different cache key.
        assert fast_judge(judge_server.url, tmp_path, model="other")("Rome", ["paris"]) == 0.0
        assert judge_server.count() - before == 3
        stats = judge.stats()
        assert (
            stats["calls"],
            stats["requests"],
            stats["cache_hits"],
            stats["verdicts"],
            stats["fallbacks"],
        ) == (
            3,
            2,
            1,
            2,
            0,
        )

    def test_url_with_v1_suffix(self, judge_server, tmp_path):
        assert fast_judge(judge_server.url + "/v1/", tmp_path)("Paris", ["Paris"]) == 1.0

    def test_server_killed_falls_back(self, killable_judge_server, tmp_path):
        judge = fast_judge(killable_judge_server.url, tmp_path)
        assert judge("Paris", ["Paris"]) == 1.0
        killable_judge_server.kill()
        start = time.monotonic()
        # Not cached -> fallback (token recall: 1 of 2 gold tokens).
        assert judge("Paris", ["Paris France"]) == 0.5
        assert time.monotonic() - start < 3
        stats = judge.stats()
        assert stats["fallbacks"] == 1 and sum(stats["fallback_reasons"].values()) == 1
        assert judge("Paris", ["Paris"]) == 1.0  # cached verdicts still work without the server

    def test_slow_server_times_out_and_falls_back(self, judge_server, tmp_path):
        judge = fast_judge(
            judge_server.url, tmp_path, model="slow", timeout_s=0.3, max_retries=1, deadline_s=2
        )
        start = time.monotonic()
        assert judge("Paris", ["Paris"]) == 1.0  # fallback recall
        assert time.monotonic() - start < 2.5
        assert judge.stats()["fallback_reasons"] == {"timeout": 1}
        assert judge.stats()["requests"] == 2  # one retry

    def test_unparseable_verdict_falls_back(self, judge_server, tmp_path):
        judge = fast_judge(judge_server.url, tmp_path, model="garbage", fallback=lambda p, g: 0.25)
        assert judge("Paris", ["Paris"]) == 0.25
        assert judge.stats()["fallback_reasons"] == {"unparseable": 1}

    def test_concurrency_limit(self, judge_server, tmp_path):
        judge = fast_judge(judge_server.url, tmp_path, max_concurrency=2)
        results: list[float] = []
        threads = [
            threading.Thread(target=lambda i=i: results.append(judge(f"p{i}", [f"p{i}"]))) for i in range(6)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [1.0] * 6 and judge.stats()["fallbacks"] == 0

    def test_through_compute_score(self, judge_server, tmp_path):
        opts = {"url": judge_server.url, "cache_path": str(tmp_path / "c.sqlite"), "timeout_s": 1.0}
        response = "<think>t</think><answer>Paris</answer>"
        out = compute_score("nq", response, ["paris"], answer_reward="llm_judge", answer_reward_options=opts)
        assert (out["score"], out["acc"]) == (1.0, 1.0)
        out = compute_score(
            "ramp",
            "<think>t</think><answer>Paris\nRome</answer>",
            ["paris", "1889"],
            answer_reward="llm_judge",
            answer_reward_options=opts,
        )
        assert (out["score"], out["acc"]) == (0.5, 0.0)


class TestJudgeWithoutServer:
    def test_env_config(self, monkeypatch):
        monkeypatch.setenv("MASKSEARCH_JUDGE_URL", "http://127.0.0.1:1")
        monkeypatch.setenv("MASKSEARCH_JUDGE_MODEL", "m")
        monkeypatch.setenv("MASKSEARCH_JUDGE_API_KEY", "k")
        monkeypatch.setenv("MASKSEARCH_JUDGE_CACHE", "")
        judge = LLMJudge()
        assert (judge.url, judge.model, judge.cache_path) == ("http://127.0.0.1:1", "m", "")

    def test_no_endpoint(self):
        judge = LLMJudge(url="", cache_path="")
        assert judge("Paris", ["Paris"]) == 1.0
        assert judge.stats()["fallback_reasons"] == {"no_endpoint": 1}

    def test_nothing_to_judge(self):
        judge = LLMJudge(url="http://127.0.0.1:1", cache_path="")
        assert judge("", ["Paris"]) == 0.0 and judge("Paris", [None]) == 0.0
        assert judge.stats()["requests"] == 0 and judge.stats()["fallbacks"] == 0

    def test_fallback_by_name(self):
        # issue 16: the registry factory needs a URL, so an unreachable one stands in here
        judge = make_llm_judge(url="http://127.0.0.1:1", cache_path="", fallback="em", max_retries=0)
        assert judge("Paris France", ["Paris"]) == 0.0

    def test_unusable_cache_path(self, tmp_path):
        blocker = tmp_path / "file"
        blocker.write_text("x")
        judge = LLMJudge(url="", cache_path=str(blocker / "sub" / "c.sqlite"))
        assert judge("Paris", ["Paris"]) == 1.0

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"timeout_s": 0},
            {"max_retries": -1},
            {"max_concurrency": 0},
            {"deadline_s": -1},
            {"prompt_template": "no placeholders"},
        ],
    )
    def test_bad_config(self, kwargs):
        with pytest.raises(ValueError):
            LLMJudge(url="", cache_path="", **kwargs)
