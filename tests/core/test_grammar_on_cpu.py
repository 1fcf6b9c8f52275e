"""Tests for masksearch.core.grammar: tables for every function, no-raise and speed properties."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from masksearch.core import grammar as g

T = "<think>t</think>"
S = "<search>q</search>"
I = "<information>docs</information>"  # noqa: E741
A = "<answer>a</answer>"

# Text made of grammar fragments: finds edge cases much faster than arbitrary text.
FRAGMENTS = st.sampled_from(
    [t.open for t in g.TAGS.values()]
    + [t.close for t in g.TAGS.values()]
    + ["x", " ", "\n", "é", "<", ">", "/"]
)
TAGGY_TEXT = st.lists(FRAGMENTS, max_size=40).map("".join)
ANY_TEXT = st.one_of(st.text(max_size=300), TAGGY_TEXT)


class TestConstants:
    def test_stop_strings(self):
        assert g.SEARCH_STOP == "</search>"
        assert g.ANSWER_STOP == "</answer>"

    def test_tags(self):
        assert g.Tag("think", "<think>", "</think>") == g.THINK
        assert set(g.TAGS) == {"think", "search", "information", "answer"}


class TestValidateFormat:
    @pytest.mark.parametrize(
        ("response", "ok", "reason"),
        [
            (T + A, True, "ok"),  # shortest valid response
            (T + S + I + A, True, "ok"),  # one round, answer right after the observation
            (T + S + I + T + S + I + T + A, True, "ok"),  # two rounds, each followed by a think
            ("\n " + T + "\n" + S + "\n" + I + "\n\n" + A + "\n", True, "ok"),  # whitespace between blocks
            (
                T + S + "<information><answer>x</answer><think></information>" + T + A,
                True,
                "ok",
            ),  # observation is opaque
            ("", False, "empty response"),  # empty
            ("   \n", False, "empty response"),  # blank
            ("Paris", False, "text outside tags"),  # no tags at all
            (A, False, "missing <think> at start"),  # no think
            (S + I + A, False, "missing <think> at start"),  # starts with a search
            (T, False, "missing <answer>"),  # no answer
            (T + S + I, False, "missing <answer>"),  # stops after an observation
            (T + S, False, "<search> not followed by <information>"),  # truncated after a query
            (T + S + A, False, "<search> not followed by <information>"),  # answer without observation
            (T + A + A, False, "more than one <answer>"),  # two answers
            (T + A + " bye", False, "text after </answer>"),  # trailing text
            (T + A + T, False, "text after </answer>"),  # trailing block
            (T + T + A, False, "two <think> blocks in a row"),  # double think
            ("<think>t" + A, False, "unclosed <think>"),  # unclosed think swallows the answer
            ("<think>t", False, "unclosed <think>"),  # unclosed at the end
            (T + "<answer>a", False, "unclosed <answer>"),  # truncated answer
            (T + S + "<information>docs", False, "unclosed <information>"),  # truncated observation
            ("<think><search>q</search></think>" + A, False, "nested <search> in <think>"),  # nested tags
            (T + "</think>" + A, False, "unexpected </think>"),  # stray closing tag
            (T + "hello" + A, False, "text outside tags"),  # text between blocks
            (T + "<answer>  </answer>", False, "empty <answer>"),  # blank answer
            (
                T + "<answer><answer>a</answer></answer>",
                False,
                "nested <answer> in <answer>",
            ),  # nested answers
        ],
    )
    def test_table(self, response, ok, reason):
        check = g.validate_format(response)
        assert (check.ok, check.reason) == (ok, reason)
        assert bool(check) is ok

    @pytest.mark.parametrize("value", [None, 123, b"<think>"])  # non-strings never raise
    def test_non_string(self, value):
        assert g.validate_format(value).ok is False


class TestExtractAnswer:
    @pytest.mark.parametrize(
        ("response", "expected"),
        [
            (T + "<answer> Paris </answer>", "Paris"),  # stripped
            (T + "<answer>a</answer><answer>b</answer>", "b"),  # last answer wins
            (
                "<information><answer>doc</answer></information><answer>mine</answer>",
                "mine",
            ),  # observation skipped
            (
                T + S + "<information><answer>doc</answer></information>",
                None,
            ),  # only an answer in an observation
            (T + S + "<information><answer>doc</answer>", None),  # unclosed observation runs to the end
            ("<answer>a</answer><answer>b", "a"),  # last COMPLETE answer
            (T + "<answer>truncated", None),  # truncated
            (T + "<answer></answer>", ""),  # empty answer is "", not None
            ("", None),  # empty response
            ("no tags", None),  # no tags
            ("<answer>北京</answer>", "北京"),  # non-ASCII
            (None, None),  # None
        ],
    )
    def test_table(self, response, expected):
        assert g.extract_answer(response) == expected


class TestExtractSearchQuery:
    @pytest.mark.parametrize(
        ("turn", "expected"),
        [
            (T + "<search> capital of France </search>", "capital of France"),  # stripped
            ("<search>a</search><search>b</search>", "b"),  # last one
            ("<search></search>", ""),  # empty block -> ""
            ("<search>unfinished", None),  # incomplete -> None
            ("no search", None),  # none
            ("", None),  # empty
            ("</search><search>x", None),  # close before open only
        ],
    )
    def test_table(self, turn, expected):
        assert g.extract_search_query(turn) == expected


class TestParseTurns:
    def test_full_response(self):
        response = T + " \n" + S + I + "junk" + A
        turns = g.parse_turns(response)
        assert [t.kind for t in turns] == ["think", "search", "information", "text", "answer"]
        assert turns[1].content == "q"
        for t in turns:  # spans point back into the response
            block = response[t.span[0] : t.span[1]]
            tag = g.TAGS.get(t.kind)
            assert block == (tag.open + t.content + tag.close if tag else t.content)

    def test_unclosed_and_stray(self):
        turns = g.parse_turns("</answer><think>open")
        assert [(t.kind, t.content, t.closed) for t in turns] == [
            ("text", "</answer>", True),  # stray closing tag becomes text
            ("think", "open", False),  # unclosed block runs to the end
        ]

    def test_empty(self):
        assert g.parse_turns("") == []


class TestCountAndStrip:
    @pytest.mark.parametrize(
        ("response", "n"),
        [
            (T + A, 0),  # no search
            (T + S + I + T + S + I + A, 2),  # two searches
            (T + S + "<information><search>z</search></information>" + A, 1),  # search in observation ignored
            ("<search>unfinished", 0),  # incomplete search
        ],
    )
    def test_count_searches(self, response, n):
        assert g.count_searches(response) == n

    def test_strip_information(self):
        assert g.strip_information(T + S + I + A) == T + S + A
        assert g.strip_information("x<information>never closed") == "x"
        assert g.strip_information("plain") == "plain"


class TestProperties:
    @settings(max_examples=300, deadline=None)
    @given(ANY_TEXT)
    def test_never_raises(self, text):
        check = g.validate_format(text)
        assert isinstance(check.reason, str) and check.reason
        turns = g.parse_turns(text)
        assert all(0 <= t.span[0] <= t.span[1] <= len(text) for t in turns)
        answer = g.extract_answer(text)
        assert answer is None or isinstance(answer, str)
        assert g.count_searches(text) >= 0
        assert len(g.strip_information(text)) <= len(text)
        g.extract_search_query(text)

    @settings(max_examples=100, deadline=None)
    @given(st.lists(st.booleans(), max_size=5), st.text(alphabet="abc é", max_size=20))
    def test_valid_responses_validate(self, rounds, answer):
        """Every response generated from the grammar validates (when its answer is non-blank)."""
        response = (
            T + "".join(S + I + (T if think else "") for think in rounds) + f"<answer>{answer}</answer>"
        )
        check = g.validate_format(response)
        assert check.ok == bool(answer.strip()), check.reason
        assert g.extract_answer(response) == answer.strip()
        assert g.count_searches(response) == len(rounds)


class TestSpeed:
    @pytest.mark.parametrize(
        "text",
        [
            "<think>" * 20_000,  # many unclosed opens
            "</think>" * 12_000,  # many stray closes
            "<information>" * 8_000,  # many unclosed observations
            T + (S + "<information>" + "d" * 900 + "</information>") * 100 + A,  # long valid response
            "x" * 100_000,  # plain text
            "<" * 100_000,  # almost-tags
            "<search>" + "q" * 100_000,  # unclosed search
        ],
        ids=["opens", "closes", "infos", "long-valid", "plain", "angles", "unclosed-search"],
    )
    def test_100k_is_fast(self, text):
        start = time.perf_counter()
        g.validate_format(text)
        g.parse_turns(text)
        g.extract_answer(text)
        g.count_searches(text)
        g.strip_information(text)
        g.extract_search_query(text)
        assert time.perf_counter() - start < 0.5
