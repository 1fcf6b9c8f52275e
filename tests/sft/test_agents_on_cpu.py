"""Unit tests of the agents' reply parsers and of the endpoint client's retry / cache logic."""

from __future__ import annotations

import pickle

import httpx
import pytest

from masksearch.sft.agents import (
    AgentOutputError,
    Task,
    clean,
    observer_messages,
    parse_observer,
    parse_plan,
    parse_query,
    planner_messages,
)
from masksearch.sft.endpoint import CallStats, ChatEndpoint, DiskCache, EndpointError, RetryPolicy


class TestParsePlan:
    @pytest.mark.parametrize(
        ("text", "thought", "subs"),
        [
            ("THOUGHT: two facts\n1. A?\n2. B?", "two facts", ["A?", "B?"]),  # the asked format
            ("1) A?\n- B?", "", ["A?", "B?"]),  # other numbering, no thought
            ("**Thought**: x\n1. <search>A?</search>", "x", ["A?"]),  # markdown key, tags removed
            ("THOUGHT: t\n1. A\n2. B\n3. C\n4. D\n5. E", "t", ["A", "B", "C", "D"]),  # capped
        ],
    )
    def test_reads(self, text, thought, subs):
        plan = parse_plan(text, 4)
        assert (plan.thought, plan.sub_questions) == (thought, subs)

    @pytest.mark.parametrize("text", ["", None, "I will not plan.", "THOUGHT: only a thought"])
    def test_malformed(self, text):  # empty / None / no sub-question
        with pytest.raises(AgentOutputError):
            parse_plan(text, 4)


class TestParseQuery:
    @pytest.mark.parametrize(
        ("text", "query"),
        [
            ("QUERY: Puccini birthplace", "Puccini birthplace"),
            ('Sure.\nQUERY: "Puccini birthplace"', "Puccini birthplace"),  # key wins, quotes stripped
            ("Puccini birthplace", "Puccini birthplace"),  # no key: first line
            ("QUERY: <search>x</search>", "x"),  # tags cannot leak into the turn
        ],
    )
    def test_reads(self, text, query):
        assert parse_query(text) == query

    @pytest.mark.parametrize("text", ["", None, "QUERY:   ", "QUERY: " + "x" * 400])
    def test_malformed(self, text):
        with pytest.raises(AgentOutputError):
            parse_query(text)


class TestParseObserver:
    @pytest.mark.parametrize(
        ("text", "answer", "next_need"),
        [
            ("NOTE: n\nANSWER: Lucca", "Lucca", None),
            ("NOTE: n\nANSWER:\nGustave Eiffel\n1889", "Gustave Eiffel\n1889", None),  # RAMP, one per line
            ("NOTE: n\nNEXT: where born", None, "where born"),
            ("ANSWER: x</answer> tail", "x tail", None),  # a closing tag in the answer is removed
        ],
    )
    def test_reads(self, text, answer, next_need):
        reply = parse_observer(text)
        assert (reply.answer, reply.next_need) == (answer, next_need)

    @pytest.mark.parametrize("text", ["", None, "NOTE: only a note", "ANSWER:   "])
    def test_malformed(self, text):
        with pytest.raises(AgentOutputError):
            parse_observer(text)

    def test_last_step_is_said(self):
        task = Task("qa", "q?")
        assert "last step" in observer_messages(task, "n", "q", "obs", [], [], last_step=True)[0]["content"]
        assert (
            "last step" not in observer_messages(task, "n", "q", "obs", [], [], last_step=False)[0]["content"]
        )

    def test_ramp_task_describes_masks(self):
        content = planner_messages(Task("ramp", "A [mask] b.", 1), 3)[1]["content"]
        assert "[mask]" in content and "Number of masks: 1" in content

    def test_clean_handles_none(self):
        assert clean(None) == ""


class _Transport(httpx.BaseTransport):
    """Scripted HTTP replies for the endpoint client (status, body) in order."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.calls = 0

    def handle_request(self, request):
        self.calls += 1
        status, body, headers = self.replies.pop(0) if self.replies else (500, {}, {})
        return httpx.Response(status, json=body, headers=headers)


def _ok(text):
    return (200, {"choices": [{"message": {"content": text}}]}, {})


def _endpoint(transport, tmp_path=None, attempts=3):
    return ChatEndpoint(
        "http://teacher",
        "m",
        retry=RetryPolicy(max_attempts=attempts, backoff_initial_s=0.0),
        cache=DiskCache(tmp_path),
        http_client=httpx.Client(transport=transport),
        sleep=lambda s: None,
    )


class TestChatEndpoint:
    @pytest.mark.parametrize(
        ("replies", "calls"),
        [
            ([(429, {}, {"Retry-After": "0"}), _ok("hi")], 2),  # rate limited, then fine
            ([(503, {}, {}), (500, {}, {}), _ok("hi")], 3),  # server errors
            ([(200, {"no": "choices"}, {}), _ok("hi")], 2),  # malformed JSON body
        ],
    )
    def test_retries_then_succeeds(self, replies, calls):
        transport = _Transport(replies)
        assert _endpoint(transport).chat([{"role": "user", "content": "x"}]) == "hi"
        assert transport.calls == calls

    def test_gives_up_after_attempts(self):
        transport = _Transport([(500, {}, {})] * 5)
        endpoint = _endpoint(transport, attempts=3)
        with pytest.raises(EndpointError, match="after 3 attempts"):
            endpoint.chat([{"role": "user", "content": "x"}])
        assert transport.calls == 3 and endpoint.stats.as_dict()["failures"] == 1

    def test_client_error_is_not_retried(self):
        transport = _Transport([(401, {}, {}), _ok("hi")])
        with pytest.raises(EndpointError, match="401"):
            _endpoint(transport).chat([{"role": "user", "content": "x"}])
        assert transport.calls == 1

    def test_malformed_text_is_retried_and_not_cached(self, tmp_path):
        transport = _Transport([_ok("no plan"), _ok("1. A?")])
        endpoint = _endpoint(transport, tmp_path)
        plan = endpoint.chat([{"role": "user", "content": "x"}], lambda t: parse_plan(t, 3))
        assert plan.sub_questions == ["A?"] and transport.calls == 2
        # cached: the same request does not reach the server again
        again = _endpoint(_Transport([]), tmp_path)
        assert again.chat([{"role": "user", "content": "x"}], lambda t: parse_plan(t, 3)) == plan
        assert again.stats.as_dict()["cache_hits"] == 1

    def test_stats_and_policy_are_picklable(self):
        assert pickle.loads(pickle.dumps(RetryPolicy(2))).max_attempts == 2
        assert CallStats().as_dict()["calls"] == 0

    @pytest.mark.parametrize("bad", [0, -1])
    def test_policy_checks_arguments(self, bad):
        with pytest.raises(ValueError):
            RetryPolicy(max_attempts=bad)


@pytest.mark.parametrize(
    "module",
    ["masksearch.sft.agents", "masksearch.sft.endpoint", "masksearch.recipes.sft_ramp.main"],
)
def test_doctests(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0
